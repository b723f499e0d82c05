#pragma once

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sched/v1/types.pb.h"
#include "server/core/node.h"
#include "server/cost/price_schedule.h"

namespace sched::fuzz {

// For a schedule ValidatePriceSchedule (or PriceScheduleFromProto) accepted: fails the process
// unless it keeps the rules of price_schedule.h (minutes, prices, the offset, no overlaps, at
// most kMaxPriceWindows), reads back from FormatPriceSchedule unchanged, and the cost functions
// answer within the bounds its prices set (PriceAt one of its prices; CostOver between the
// cheapest and dearest price times the hours; CheapestStart inside its range and no dearer than
// starting at once). `base` is the price outside the windows (finite, >= 0).
void CheckAcceptedSchedule(const cost::PriceSchedule& schedule, double base,
                           absl::string_view where);

// CapabilitiesFromProto, as schedd runs it on an agent's Register and on a stored node: an
// error is INVALID_ARGUMENT; what it accepts has its figures in range, a schedule that passes
// CheckAcceptedSchedule, and comes back the same through CapabilitiesToProto.
absl::StatusOr<NodeCapabilities> CheckCapabilities(const v1::Capabilities& proto);

}  // namespace sched::fuzz
