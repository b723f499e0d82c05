#pragma once

#include "absl/status/status.h"
#include "server/core/job.h"

namespace sched {

// Fills resources.gpu_memory_bytes from the spec's model description when the job asks GPUs,
// describes its model and gives no gpu_memory (each GPU must hold the whole estimate: data
// parallel, the conservative case). Leaves the spec alone otherwise. INVALID_ARGUMENT, naming
// `model`, when the description cannot run (a full fine-tune of int4 weights, say).
absl::Status EstimateGpuMemory(JobSpec& spec);

}  // namespace sched
