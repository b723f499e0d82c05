#pragma once

#include <optional>

#include <ostream>

#include "absl/time/time.h"
#include "sched/v1/cost_service.pb.h"
#include "sched/v1/types.pb.h"

namespace sched::client {

// `schedctl describe job`: every field of the job for people, sizes and times made readable
// (times in UTC with their age relative to `now`).
// `spent`: what the job has cost so far (its ledger line), when known.
void DescribeJob(const sched::v1::Job& job, absl::Time now, std::ostream& out,
                 const std::optional<sched::v1::CostLine>& spent = std::nullopt);

// `schedctl describe node`: capabilities with each GPU, state and allocation.
void DescribeNode(const sched::v1::Node& node, absl::Time now, std::ostream& out);

}  // namespace sched::client
