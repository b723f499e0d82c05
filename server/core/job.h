#pragma once

#include <cstdint>
#include <map>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace sched {

enum class JobState { kPending, kAssigned, kRunning, kSucceeded, kFailed, kCancelled };

inline bool IsTerminal(JobState s) {
  return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kCancelled;
}
// True while the job holds a lease on a node.
inline bool IsLeased(JobState s) { return s == JobState::kAssigned || s == JobState::kRunning; }
absl::string_view JobStateName(JobState s);

struct Resources {
  uint32_t gpus = 0;
  int64_t gpu_memory_bytes = 0;
  std::vector<std::string> gpu_models;
  int64_t cpu_millis = 0;
  int64_t memory_bytes = 0;
};

struct JobSpec {
  std::string name;
  std::string project;
  std::string run;
  std::string setup;
  std::vector<std::pair<std::string, std::string>> env;
  Resources resources;
  int32_t priority = 0;
  std::map<std::string, std::string> labels;
};

// A job as the scheduler keeps it. Plain data: the Scheduler owns the rules.
struct Job {
  std::string id;
  uint64_t seq = 0;  // submit order
  JobSpec spec;
  JobState state = JobState::kPending;
  uint32_t attempt = 1;
  uint64_t epoch = 0;
  std::string node;
  std::vector<uint32_t> gpu_indexes;
  absl::Time create_time = absl::InfinitePast();
  absl::Time start_time = absl::InfinitePast();
  absl::Time finish_time = absl::InfinitePast();
  absl::Time update_time = absl::InfinitePast();
  int32_t exit_code = 0;
  std::string message;
  bool cancel_requested = false;
  std::string request_id;
  // The last attempt's agent reported the end itself (not a lease expiry); a repeat of that
  // report is acknowledged again.
  bool finished_by_agent = false;
};

}  // namespace sched
