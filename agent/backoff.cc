#include "agent/backoff.h"

#include <algorithm>

namespace sched::agent {

Backoff::Backoff(absl::Duration initial, absl::Duration max, uint64_t seed)
    : initial_(initial), max_(std::max(initial, max)), ceiling_(initial), random_(seed) {}

absl::Duration Backoff::Next() {
  const absl::Duration d = ceiling_;
  ceiling_ = std::min(ceiling_ * 2, max_);
  std::uniform_real_distribution<double> fraction(0.5, 1.0);
  return d * fraction(random_);
}

}  // namespace sched::agent
