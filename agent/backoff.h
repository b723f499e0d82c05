#pragma once

#include <cstdint>
#include <random>

#include "absl/time/time.h"

namespace sched::agent {

// Waits between reconnect attempts: doubling from `initial` up to `max`, each drawn uniformly
// from [d/2, d] so that many agents cut off together do not come back together. Seeded, so a
// test sees the same waits every time. Not thread-safe.
class Backoff {
 public:
  Backoff(absl::Duration initial, absl::Duration max, uint64_t seed);

  absl::Duration Next();
  // Back to `initial` (after a connection that worked).
  void Reset() { ceiling_ = initial_; }

 private:
  const absl::Duration initial_;
  const absl::Duration max_;
  absl::Duration ceiling_;
  std::mt19937_64 random_;
};

}  // namespace sched::agent
