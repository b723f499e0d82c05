#include "agent/owner_watch.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace sched::agent {
namespace {

struct ProcStat {
  std::string name;
  int ppid = 0;
  int pgrp = 0;
};

// /proc/<pid>/stat: "pid (comm) state ppid pgrp ...". The name may hold spaces and ')', so the
// fields after it are found from the last ')'.
bool ReadStat(const std::string& proc, int pid, ProcStat* out) {
  std::ifstream in(absl::StrCat(proc, "/", pid, "/stat"));
  if (!in) return false;
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  const size_t open = text.find('(');
  const size_t close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return false;
  out->name = text.substr(open + 1, close - open - 1);
  std::vector<std::string> fields =
      absl::StrSplit(absl::string_view(text).substr(close + 1), ' ', absl::SkipEmpty());
  // fields[0] is the state, then ppid and pgrp.
  return fields.size() >= 3 && absl::SimpleAtoi(fields[1], &out->ppid) &&
         absl::SimpleAtoi(fields[2], &out->pgrp);
}

}  // namespace

std::vector<ForeignProcess> ForeignGpuProcesses(const std::vector<GpuProcess>& processes,
                                                const std::set<int>& roots,
                                                const std::vector<std::string>& ignore,
                                                const std::string& proc) {
  std::vector<ForeignProcess> out;
  for (const GpuProcess& p : processes) {
    ProcStat stat;
    if (p.pid <= 0 || !ReadStat(proc, p.pid, &stat)) continue;
    if (std::find(ignore.begin(), ignore.end(), stat.name) != ignore.end()) continue;
    // Each job leads its own process group; a descendant that left the group is found by its
    // parents. The walk stops at init, at a loop, or after 64 steps.
    bool ours = roots.count(stat.pgrp) > 0;
    int pid = p.pid;
    ProcStat up = stat;
    for (int steps = 0; !ours && steps < 64 && pid > 1; ++steps) {
      if (roots.count(pid)) {
        ours = true;
        break;
      }
      if (up.ppid == pid) break;
      pid = up.ppid;
      if (pid <= 1 || !ReadStat(proc, pid, &up)) break;
      if (roots.count(up.pgrp)) ours = true;
    }
    if (!ours) out.push_back({p.gpu, p.pid, stat.name});
  }
  return out;
}

absl::StatusOr<std::vector<GpuProcess>> ReadGpuProcessesFile(const std::string& path) {
  std::vector<GpuProcess> out;
  std::ifstream in(path);
  if (!in) return out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    absl::string_view text = line;
    if (size_t hash = text.find('#'); hash != absl::string_view::npos) text = text.substr(0, hash);
    std::vector<absl::string_view> fields = absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.empty()) continue;
    GpuProcess p;
    if (fields.size() != 2 || !absl::SimpleAtoi(fields[0], &p.gpu) ||
        !absl::SimpleAtoi(fields[1], &p.pid) || p.pid <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", n, ": want '<gpu index> <pid>', got '", line, "'"));
    }
    out.push_back(p);
  }
  return out;
}

OwnerWatch::Change OwnerWatch::Observe(absl::Time now, const std::vector<ForeignProcess>& foreign) {
  Change change;
  for (const ForeignProcess& f : foreign) {
    last_seen_[f.gpu] = now;
    who_[f.gpu] = absl::StrCat("pid ", f.pid, " (", f.name, ")");
    if (gpus_.insert(f.gpu).second) change.taken.insert(f.gpu);
  }
  for (auto it = gpus_.begin(); it != gpus_.end();) {
    if (now - last_seen_[*it] >= idle_) {
      change.returned.insert(*it);
      last_seen_.erase(*it);
      who_.erase(*it);
      it = gpus_.erase(it);
    } else {
      ++it;
    }
  }
  return change;
}

std::string OwnerWatch::Describe() const {
  std::vector<std::string> parts;
  for (uint32_t gpu : gpus_) {
    auto who = who_.find(gpu);
    parts.push_back(absl::StrCat("GPU ", gpu, ": ", who != who_.end() ? who->second : "?"));
  }
  return absl::StrJoin(parts, "; ");
}

}  // namespace sched::agent
