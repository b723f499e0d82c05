#pragma once

#include "absl/status/status.h"
#include "server/core/job.h"

namespace sched {

inline constexpr int32_t kMinPriority = -1000;
inline constexpr int32_t kMaxPriority = 1000;
inline constexpr size_t kMaxScriptBytes = 256 * 1024;
inline constexpr size_t kMaxRequestIdBytes = 128;
inline constexpr int64_t kDefaultCpuMillis = 1000;

// Checks `spec` and fills defaults (project "default", 1 CPU). INVALID_ARGUMENT names the field
// and the reason ("resources.cpus: must be >= 0, got -1").
absl::Status ValidateAndDefaultJobSpec(JobSpec& spec);

// Names of jobs, projects and nodes: 1..63 of [A-Za-z0-9._-], starting alphanumeric.
bool IsValidName(absl::string_view name);

}  // namespace sched
