#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/gpu.h"

namespace sched::agent {

// The query whose output ParseNvidiaSmiCsv reads: one line a GPU, memory in MiB.
inline constexpr char kNvidiaSmiQuery[] =
    "nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits";

// Parses kNvidiaSmiQuery's output ("0, GPU-8f3e..., NVIDIA H100 80GB HBM3, 81559"). Blank lines
// are skipped. INVALID_ARGUMENT naming the line for a line without four fields, an index or
// memory that is not a whole number, or an empty UUID.
absl::StatusOr<std::vector<GpuDevice>> ParseNvidiaSmiCsv(absl::string_view text);

// Runs kNvidiaSmiQuery and parses it. NOT_FOUND when nvidia-smi is not installed, UNAVAILABLE
// when it fails (no driver, say).
absl::StatusOr<std::vector<GpuDevice>> QueryNvidiaSmi();

}  // namespace sched::agent
