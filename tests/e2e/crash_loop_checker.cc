#include "tests/e2e/crash_loop_checker.h"

#include <map>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace sched::crash_loop {
namespace {

constexpr int kGrpcNotFound = 5;

std::string Describe(const JobView& j) {
  return absl::StrCat(StateName(j.state), " attempt ", j.attempt, " epoch ", j.epoch,
                      IsTerminal(j.state) ? absl::StrCat(" exit ", j.exit_code) : "");
}

// Orders the versions of one job: an ended job is past every live version; then attempts, then
// epochs, then the state within one assignment.
std::tuple<bool, uint32_t, uint64_t, int> Progress(const JobView& j) {
  return {IsTerminal(j.state), j.attempt, j.epoch, static_cast<int>(j.state)};
}

// Checks one job's versions in the order they were seen.
class JobTimeline {
 public:
  void See(const JobView& j, const char* where, std::vector<std::string>& out) {
    if (seen_) {
      if (Progress(j) < Progress(last_)) {
        out.push_back(absl::StrCat("job ", j.id, " went backwards", where, ": ", Describe(last_),
                                   " then ", Describe(j)));
      }
      if (j.epoch < last_.epoch) {
        out.push_back(absl::StrCat("job ", j.id, " epoch decreased", where, ": ", last_.epoch,
                                   " then ", j.epoch));
      }
    }
    if (IsTerminal(j.state)) {
      if (has_terminal_ &&
          (terminal_.state != j.state || terminal_.exit_code != j.exit_code)) {
        out.push_back(absl::StrCat("job ", j.id, " has two terminal outcomes", where, ": ",
                                   Describe(terminal_), " and ", Describe(j)));
      }
      if (!has_terminal_) terminal_ = j;
      has_terminal_ = true;
    }
    last_ = j;
    seen_ = true;
  }

 private:
  bool seen_ = false;
  JobView last_;
  bool has_terminal_ = false;
  JobView terminal_;
};

void CheckSubmits(const CheckInput& in, const std::map<std::string, const JobView*>& final_by_id,
                  std::vector<std::string>& out) {
  std::set<std::string> sent;
  for (const Op& op : in.ops) {
    if (op.kind != OpKind::kSubmit) continue;
    sent.insert(op.key);
    if (op.outcome != Outcome::kOk) continue;
    auto it = final_by_id.find(op.job.id);
    if (it == final_by_id.end()) {
      out.push_back(absl::StrCat("acknowledged submit ", op.key, " (job ", op.job.id, ") lost"));
    } else if (it->second->request_id != op.key) {
      out.push_back(absl::StrCat("acknowledged submit ", op.key, " answered job ", op.job.id,
                                 ", which has request id ", it->second->request_id));
    }
  }
  std::map<std::string, std::string> by_request;
  for (const JobView& j : in.final_jobs) {
    if (!sent.count(j.request_id)) {
      out.push_back(absl::StrCat("job ", j.id, " has request id \"", j.request_id,
                                 "\" that no client sent"));
    }
    auto [it, inserted] = by_request.emplace(j.request_id, j.id);
    if (!inserted) {
      out.push_back(absl::StrCat("request id ", j.request_id, " made two jobs: ", it->second,
                                 " and ", j.id));
    }
  }
}

void CheckCalls(const CheckInput& in, const std::map<std::string, const JobView*>& final_by_id,
                std::vector<std::string>& out) {
  std::set<std::string> acked_jobs;
  for (const Op& op : in.ops) {
    if (op.kind == OpKind::kSubmit && op.outcome == Outcome::kOk) acked_jobs.insert(op.job.id);
  }
  for (const Op& op : in.ops) {
    const char* kind = op.kind == OpKind::kSubmit ? "submit" : "cancel";
    if (op.outcome == Outcome::kInvoked) {
      out.push_back(absl::StrCat(kind, " ", op.key, " (op ", op.id, ") never completed"));
    }
    if (op.outcome == Outcome::kUnknown && op.resolution == Resolution::kNone) {
      out.push_back(absl::StrCat(kind, " ", op.key, " (op ", op.id,
                                 ") had an unknown outcome that was never resolved"));
    }
    if (op.kind != OpKind::kCancel) continue;
    if (op.outcome == Outcome::kFailed && op.code == kGrpcNotFound && acked_jobs.count(op.key)) {
      out.push_back(absl::StrCat("cancel of acknowledged job ", op.key,
                                 " got NOT_FOUND: ", op.message));
    }
    if (op.outcome != Outcome::kOk) continue;
    auto it = final_by_id.find(op.key);
    if (it != final_by_id.end() && IsTerminal(it->second->state) &&
        it->second->state != State::kCancelled) {
      out.push_back(absl::StrCat("acknowledged cancel of job ", op.key, " (op ", op.id,
                                 ") ended ", Describe(*it->second)));
    }
  }
}

void CheckFinal(const CheckInput& in, std::vector<std::string>& out) {
  std::map<uint64_t, std::string> epoch_owner;
  for (const JobView& j : in.final_jobs) {
    if (in.require_all_terminal && !IsTerminal(j.state)) {
      out.push_back(absl::StrCat("job ", j.id, " never ended: ", Describe(j)));
    }
    if (j.cancel_requested && IsTerminal(j.state) && j.state != State::kCancelled) {
      out.push_back(absl::StrCat("job ", j.id, " had a cancel acknowledged but ended ",
                                 Describe(j)));
    }
    if (j.state == State::kSucceeded && j.exit_code != 0) {
      out.push_back(absl::StrCat("job ", j.id, " SUCCEEDED with exit code ", j.exit_code));
    }
    if (j.epoch == 0) continue;
    auto [it, inserted] = epoch_owner.emplace(j.epoch, j.id);
    if (!inserted) {
      out.push_back(absl::StrCat("epoch ", j.epoch, " was given to two jobs: ", it->second,
                                 " and ", j.id));
    }
  }
}

}  // namespace

std::vector<std::string> Check(const CheckInput& in) {
  std::vector<std::string> out;
  std::map<std::string, const JobView*> final_by_id;
  for (const JobView& j : in.final_jobs) final_by_id[j.id] = &j;

  std::map<std::string, JobTimeline> timelines;
  for (const JobView& e : in.events) {
    timelines[e.id].See(e, " between events", out);
    if (!final_by_id.count(e.id)) {
      out.push_back(absl::StrCat("job ", e.id, " was seen in an event (", Describe(e),
                                 ") but is gone at the end"));
    }
  }
  for (const JobView& j : in.final_jobs) timelines[j.id].See(j, " at the end", out);

  CheckSubmits(in, final_by_id, out);
  CheckCalls(in, final_by_id, out);
  CheckFinal(in, out);
  return out;
}

}  // namespace sched::crash_loop
