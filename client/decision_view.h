#pragma once

#include <ostream>

#include "absl/time/time.h"
#include "sched/v1/types.pb.h"

namespace sched::client {

// The options of a placement decision as a table: where, when it would start and finish
// (relative to the decision), the expected runtime, the price and cost, the verdict and why.
// Rows are indented by `indent` spaces.
void PrintDecisionTable(const sched::v1::Decision& decision, int indent, std::ostream& out);

// `schedctl estimate`: the summary line, the table, and how many nodes were left out.
void PrintEstimate(const sched::v1::Decision& decision, std::ostream& out);

}  // namespace sched::client
