#pragma once

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "sched/v1/types.pb.h"

namespace sched::fuzz {

// The time submits are checked at: deadlines are judged against it.
inline const absl::Time kFuzzNow = absl::FromUnixSeconds(1'750'000'000);  // 2025-06-15

// What schedd does with a submitted spec before it queues the job, in its order:
// JobSpecFromProto (the handler), then ValidateAndDefaultJobSpec and EstimateGpuMemory (the
// scheduler). Fails the process when a step breaks its contract: an error other than
// INVALID_ARGUMENT, or a spec let through that breaks a rule of job_spec_validation.h; and when a
// spec accepted does not come back the same from the store's encoding (JobSpecToProto, bytes,
// JobSpecFromProto) or is refused on a second pass. Returns what the submit would answer.
absl::Status CheckSubmit(const v1::JobSpec& proto, absl::Time now = kFuzzNow);

}  // namespace sched::fuzz
