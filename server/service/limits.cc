#include "server/service/limits.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace sched {

absl::Status StreamSlots::Take() {
  if (open_.fetch_add(1, std::memory_order_relaxed) >= max_) {
    open_.fetch_sub(1, std::memory_order_relaxed);
    return absl::ResourceExhaustedError(
        absl::StrCat("schedd has ", max_,
                     " streams open, the most it takes "
                     "(--max_open_streams): close a watch or a followed log, or retry later"));
  }
  return absl::OkStatus();
}

absl::Status SubmitRate::Take(const std::string& project) {
  if (per_second_ <= 0) return absl::OkStatus();
  const absl::Time now = clock_->Now();
  const double burst = std::max(per_second_, 1.0);
  absl::MutexLock lock(&mu_);
  auto [it, fresh] = buckets_.try_emplace(project, Bucket{burst, now});
  Bucket& b = it->second;
  if (!fresh) {
    b.tokens = std::min(burst, b.tokens + absl::ToDoubleSeconds(now - b.at) * per_second_);
    b.at = now;
  }
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return absl::OkStatus();
  }
  const int64_t wait_ms = static_cast<int64_t>(std::ceil((1 - b.tokens) / per_second_ * 1000));
  return absl::ResourceExhaustedError(
      absl::StrCat("project ", project, " submits faster than its quota of ", per_second_,
                   " jobs/s (--submit_rate_per_project): retry in ", wait_ms, " ms"));
}

}  // namespace sched
