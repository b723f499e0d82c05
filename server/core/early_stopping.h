#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "server/core/job.h"

namespace sched {

// One run of a sweep as early stopping sees it: its sweep metric, step by step (steps rising).
struct RunCurve {
  uint32_t index = 0;
  std::vector<MetricSample> samples;
};

// Whether `run`, which has just reported `samples.back()`, should stop, given the other runs of
// its sweep (`others`, without it): the reason in words, or empty to go on. `previous_step` is
// the step of its report before this one (-1 for none), so that an ASHA rung is judged once,
// when the run first reaches it.
//
// median: from min_step (default 1) on, a run whose value at this step is worse than the median
// of the values the other runs had at that step (their last at or before it, among runs that
// reached it) is stopped, once at least min_runs (default 3) of them have.
// asha: rungs at min_step (default 1) times powers of reduction_factor (η, default 3) up to
// max_step; a run reaching a rung goes on only if its value there is among the best ⌈n/η⌉ of
// the n runs that have reached it (each counted with its first value at or past the rung).
std::string ShouldStopEarly(const EarlyStopping& rule, bool maximize, const std::string& metric,
                            const RunCurve& run, int64_t previous_step,
                            absl::Span<const RunCurve> others);

}  // namespace sched
