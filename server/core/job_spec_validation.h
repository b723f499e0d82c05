#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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
inline constexpr size_t kMaxSweepRuns = 10'000;
inline constexpr size_t kMaxMetricPointsPerReport = 1000;
inline constexpr size_t kMaxMetricsPerJob = 256;
inline constexpr size_t kMaxDependencies = 64;
inline constexpr size_t kMaxArtifacts = 64;  // outputs, and inputs

// An output's path: relative to the job's folder, '/'-separated (a trailing '/' allowed), no
// empty, "." or ".." parts, no NUL or backslash, at most 1,024 bytes. INVALID_ARGUMENT saying
// what is wrong.
absl::Status CheckOutputPath(absl::string_view path);

using SweepRuns = std::vector<std::map<std::string, std::string>>;

// The runs of a sweep, each its parameters, in index order: a grid's combinations with the
// first parameter changing slowest, or the listed runs. INVALID_ARGUMENT names the bad field.
absl::StatusOr<SweepRuns> ExpandSweep(
    const SweepSpec& sweep);

// Metric names: 1..64 of [A-Za-z0-9_.:/-], starting with a letter.
bool IsValidMetricName(absl::string_view name);

// Checks `spec` at submit time `now` and fills defaults (project "default", 1 CPU).
// INVALID_ARGUMENT names the field and the reason ("resources.cpus: must be >= 0, got -1").
absl::Status ValidateAndDefaultJobSpec(JobSpec& spec, absl::Time now);

// Names of jobs, projects and nodes: 1..63 of [A-Za-z0-9._-], starting alphanumeric.
bool IsValidName(absl::string_view name);

}  // namespace sched
