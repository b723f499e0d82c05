#pragma once

#include "absl/status/status.h"
#include "server/core/job.h"

namespace sched {

inline constexpr int32_t kMinPriority = -1000;
inline constexpr int32_t kMaxPriority = 1000;
inline constexpr size_t kMaxScriptBytes = 256 * 1024;
inline constexpr size_t kMaxRequestIdBytes = 128;
inline constexpr int64_t kDefaultCpuMillis = 1000;

inline constexpr int64_t kMaxModelParameters = 100'000'000'000'000;  // 100T
inline constexpr uint32_t kMaxBatchSize = 1 << 20;
inline constexpr uint32_t kMaxSequenceLength = 1 << 24;
inline constexpr double kMaxCostDollars = 1e9;
inline constexpr uint32_t kMaxRestarts = 100;

// Checks `spec` at submit time `now` and fills defaults (project "default", 1 CPU).
// INVALID_ARGUMENT names the field and the reason ("resources.cpus: must be >= 0, got -1").
absl::Status ValidateAndDefaultJobSpec(JobSpec& spec, absl::Time now);

// Names of jobs, projects and nodes: 1..63 of [A-Za-z0-9._-], starting alphanumeric.
bool IsValidName(absl::string_view name);

}  // namespace sched
