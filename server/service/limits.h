#pragma once
// Caps the services enforce so no caller can take schedd's memory or threads: long-lived
// streams open at once, and each project's rate of submits. Refusals are RESOURCE_EXHAUSTED
// naming the limit and its flag.
#include <atomic>
#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/clock.h"

namespace sched {

// Places for streams that stay open (WatchJobs, GetJobLogs, agents' Connect).
class StreamSlots {
 public:
  explicit StreamSlots(int64_t max) : max_(max) {}
  // A place, or RESOURCE_EXHAUSTED when all are taken. Give() it back when the stream ends.
  absl::Status Take();
  void Give() { open_.fetch_sub(1, std::memory_order_relaxed); }
  int64_t open() const { return open_.load(std::memory_order_relaxed); }

 private:
  const int64_t max_;
  std::atomic<int64_t> open_{0};
};

// Submits per second for each project: a bucket of one second's worth, refilled as time passes.
class SubmitRate {
 public:
  // `per_second` 0: no limit.
  SubmitRate(double per_second, const Clock* clock) : per_second_(per_second), clock_(clock) {}
  // One submit for `project`, or RESOURCE_EXHAUSTED saying when to come back.
  absl::Status Take(const std::string& project);

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time at;
  };
  const double per_second_;
  const Clock* const clock_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

struct ServiceLimits {
  StreamSlots* streams = nullptr;  // null: no cap
  SubmitRate* submits = nullptr;   // null: no cap
  size_t max_spec_bytes = 1 << 20;
};

}  // namespace sched
