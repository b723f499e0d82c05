#include "client/resource_view.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "client/table.h"
#include "client/units.h"

namespace sched::client {
namespace {

using sched::v1::Job;
using sched::v1::JobState;
using sched::v1::Node;

std::string StripPrefix(std::string name, absl::string_view prefix) {
  if (absl::StartsWith(name, prefix)) name.erase(0, prefix.size());
  return name;
}

bool IsVendorWord(absl::string_view word) {
  for (absl::string_view vendor : {"nvidia", "geforce", "tesla", "quadro"}) {
    if (absl::EqualsIgnoreCase(word, vendor)) return true;
  }
  return false;
}

// Words after the model proper: "80GB", "HBM3", "PCIe", "SXM4", "NVL".
bool IsTrailingWord(absl::string_view word) {
  const std::string w = absl::AsciiStrToLower(word);
  if (!w.empty() && absl::ascii_isdigit(w[0]) && absl::EndsWith(w, "gb")) return true;
  for (absl::string_view prefix : {"hbm", "pcie", "sxm", "nvl"}) {
    if (absl::StartsWith(w, prefix)) return true;
  }
  return false;
}

bool IsTerminal(JobState state) {
  return state == sched::v1::JOB_STATE_SUCCEEDED || state == sched::v1::JOB_STATE_FAILED ||
         state == sched::v1::JOB_STATE_CANCELLED || state == sched::v1::JOB_STATE_STOPPED_EARLY;
}

template <typename Item>
void PrintRows(std::vector<std::string> header,
               const google::protobuf::RepeatedPtrField<Item>& items,
               std::vector<std::string> (*row)(const Item&, bool, absl::Time), bool wide,
               absl::Time now, std::ostream& out) {
  Table table(std::move(header));
  for (const Item& item : items) table.AddRow(row(item, wide, now));
  table.Print(out);
}

}  // namespace

std::string OrNone(const std::string& s) { return s.empty() ? "<none>" : s; }

bool HasExitCode(sched::v1::JobState state) {
  return state == sched::v1::JOB_STATE_SUCCEEDED || state == sched::v1::JOB_STATE_FAILED;
}

std::string ShortJobState(sched::v1::JobState state) {
  return StripPrefix(sched::v1::JobState_Name(state), "JOB_STATE_");
}

std::string ShortNodeState(sched::v1::NodeState state) {
  return StripPrefix(sched::v1::NodeState_Name(state), "NODE_STATE_");
}

std::optional<absl::Time> FromTimestamp(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return std::nullopt;
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

std::string AgeOf(const google::protobuf::Timestamp& ts, absl::Time now) {
  const std::optional<absl::Time> t = FromTimestamp(ts);
  return t ? FormatAge(now - *t) : "<unknown>";
}

std::string FromNow(absl::Time t, absl::Time now) {
  if (t >= now) return absl::StrCat("in ", FormatAge(t - now));
  return absl::StrCat(FormatAge(now - t), " ago");
}

std::string TimeFromNow(const google::protobuf::Timestamp& ts, absl::Time now) {
  const std::optional<absl::Time> t = FromTimestamp(ts);
  if (!t) return "<none>";
  return absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", *t, absl::UTCTimeZone()), " (",
                      FromNow(*t, now), ")");
}

std::string ShortGpuModel(absl::string_view model) {
  std::string out;
  bool in_model = false;
  for (absl::string_view word : absl::StrSplit(model, absl::ByAnyChar(" -"), absl::SkipEmpty())) {
    if (!in_model && IsVendorWord(word)) continue;
    if (in_model && IsTrailingWord(word)) break;
    in_model = true;
    absl::StrAppend(&out, word);
  }
  return out.empty() ? std::string(absl::StripAsciiWhitespace(model)) : out;
}

std::string GpuRequestSummary(const sched::v1::Resources& r) {
  std::string out = absl::StrCat(r.gpus());
  if (r.gpus() == 0) return out;
  if (r.gpu_models_size() > 0) {
    absl::StrAppend(&out, "x", absl::StrJoin(r.gpu_models(), "|"));
  } else if (r.gpu_memory_bytes() > 0) {
    out += "xany";
  }
  if (r.gpu_memory_bytes() > 0) absl::StrAppend(&out, " ", FormatBytes(r.gpu_memory_bytes()));
  return out;
}

std::string NodeGpuSummary(const sched::v1::Capabilities& caps) {
  std::vector<std::pair<std::string, int>> groups;  // "H100 80GB" -> count, in first-seen order
  for (const auto& gpu : caps.gpus()) {
    std::string key =
        absl::StrCat(ShortGpuModel(gpu.model()), " ", FormatGpuMemory(gpu.memory_bytes()));
    auto it =
        std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == key; });
    if (it == groups.end()) {
      groups.emplace_back(std::move(key), 1);
    } else {
      ++it->second;
    }
  }
  if (groups.empty()) return "-";
  std::string summary = absl::StrJoin(groups, ",", [](std::string* out, const auto& g) {
    absl::StrAppend(out, g.second, "x", g.first);
  });
  if (IsAdvertised(caps, "gpus")) summary += kAdvertisedMark;
  return summary;
}

bool IsAdvertised(const sched::v1::Capabilities& caps, absl::string_view field) {
  return std::find(caps.advertised().begin(), caps.advertised().end(), field) !=
         caps.advertised().end();
}

std::string FormatPrice(double price_per_hour) {
  if (price_per_hour <= 0) return "-";
  return absl::StrFormat(price_per_hour < 0.01 ? "$%.4f" : "$%.2f", price_per_hour);
}

std::string FormatIndexes(const google::protobuf::RepeatedField<uint32_t>& indexes) {
  return indexes.empty() ? "-" : absl::StrJoin(indexes, ",");
}

std::vector<std::string> JobTableHeader(bool wide) {
  std::vector<std::string> h = {"ID", "NAME", "PROJECT", "STATE", "NODE", "ATTEMPT", "AGE"};
  if (wide) h.insert(h.end(), {"PRIORITY", "GPUS", "CPUS", "MEMORY", "EXIT", "MESSAGE"});
  return h;
}

std::vector<std::string> JobTableRow(const Job& job, bool wide, absl::Time now) {
  const sched::v1::JobSpec& spec = job.spec();
  std::vector<std::string> row = {job.id(),
                                  OrNone(spec.name()),
                                  OrNone(spec.project()),
                                  ShortJobState(job.state()),
                                  OrNone(job.node()),
                                  absl::StrCat(job.attempt()),
                                  AgeOf(job.create_time(), now)};
  if (!wide) return row;
  const sched::v1::Resources& r = spec.resources();
  std::string message = job.message();
  if (job.cancel_requested() && !IsTerminal(job.state())) {
    message = message.empty() ? "cancel requested" : absl::StrCat("cancel requested: ", message);
  }
  row.insert(row.end(), {absl::StrCat(spec.priority()), GpuRequestSummary(r),
                         FormatCpus(r.cpus() > 0 ? r.cpus() : 1.0),
                         r.memory_bytes() > 0 ? FormatBytes(r.memory_bytes()) : "-",
                         HasExitCode(job.state()) ? absl::StrCat(job.exit_code()) : "-", message});
  return row;
}

std::vector<size_t> JobWatchWidths(bool wide) {
  // ID is 16 hex characters; CANCELLED and SUCCEEDED are the longest states.
  std::vector<size_t> w = {16, 20, 12, 9, 12, 7, 5};
  if (wide) w.insert(w.end(), {8, 10, 4, 6, 4, 0});
  return w;
}

void PrintJobTable(const google::protobuf::RepeatedPtrField<Job>& jobs, bool wide, absl::Time now,
                   std::ostream& out) {
  PrintRows(JobTableHeader(wide), jobs, JobTableRow, wide, now, out);
}

std::vector<std::string> NodeTableHeader(bool wide) {
  std::vector<std::string> h = {"NAME",     "STATE",   "CPUS", "MEMORY", "GPUS",
                                "PROVIDER", "PRICE/H", "COST", "JOBS",   "AGE"};
  if (wide) {
    h.insert(h.end(), {"SPOT", "REGION", "INSTANCE-TYPE", "ALLOC-CPUS", "ALLOC-MEMORY",
                       "ALLOC-GPUS", "HEARTBEAT"});
  }
  return h;
}

std::vector<std::string> NodeTableRow(const Node& node, bool wide, absl::Time now) {
  const sched::v1::Capabilities& caps = node.capabilities();
  std::vector<std::string> row = {
      node.name(), ShortNodeState(node.state()), FormatCpus(caps.cpus()),
      FormatBytes(caps.memory_bytes()), NodeGpuSummary(caps),
      OrNone(caps.provider()) + (IsAdvertised(caps, "provider") ? kAdvertisedMark : ""),
      FormatPrice(caps.price_per_hour()),
      // A rented node's dollars so far, and its age from the create request.
      node.has_rental() ? absl::StrFormat("$%.2f", node.rental().cost_so_far()) : "-",
      absl::StrCat(node.running_jobs()),
      AgeOf(node.has_rental() ? node.rental().create_time() : node.register_time(), now)};
  if (!wide) return row;
  row.insert(row.end(),
             {caps.spot() ? "yes" : "no", caps.region().empty() ? "-" : caps.region(),
              caps.instance_type().empty() ? "-" : caps.instance_type(),
              FormatCpus(node.allocated_cpus()), FormatBytes(node.allocated_memory_bytes()),
              FormatIndexes(node.allocated_gpu_indexes()), AgeOf(node.last_heartbeat_time(), now)});
  return row;
}

void PrintNodeTable(const google::protobuf::RepeatedPtrField<Node>& nodes, bool wide,
                    absl::Time now, std::ostream& out) {
  PrintRows(NodeTableHeader(wide), nodes, NodeTableRow, wide, now, out);
  const bool marked = std::any_of(nodes.begin(), nodes.end(), [](const Node& node) {
    const sched::v1::Capabilities& caps = node.capabilities();
    return (IsAdvertised(caps, "gpus") && caps.gpus_size() > 0) || IsAdvertised(caps, "provider");
  });
  if (marked) out << kAdvertisedFootnote << '\n';
}

}  // namespace sched::client
