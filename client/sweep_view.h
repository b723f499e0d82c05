#pragma once

#include <ostream>

#include "absl/time/time.h"
#include "sched/v1/job_service.pb.h"

namespace sched::client {

// `schedctl get sweep`: a row per run (index, job, state, each parameter, the last step and
// value of the sweep's metric, the best marked), then the counts by state and the best run.
void PrintSweep(const sched::v1::SweepStatus& sweep, std::ostream& out);

}  // namespace sched::client
