#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/gpu.h"
#include "agent/node_settings.h"
#include "sched/v1/types.pb.h"

namespace sched::agent {

// The agent's version, reported in Capabilities.agent_version.
extern const char kAgentVersion[];

// Reads one environment variable; nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const char* name)>;
// The process environment.
EnvLookup ProcessEnv();

// Where the machine is rented: RUNPOD_POD_ID set: "runpod"; CONTAINER_ID or VAST_CONTAINERLABEL
// set: "vastai"; otherwise "local".
std::string DetectProvider(const EnvLookup& env);

// MemTotal of /proc/meminfo's text, in bytes. INVALID_ARGUMENT when absent or not "N kB".
absl::StatusOr<int64_t> ParseMemTotal(absl::string_view meminfo);
// A cgroup v2 cpu.max ("200000 100000") as CPUs (2.0); nullopt for "max ..." or bad text.
std::optional<double> ParseCgroupCpuMax(absl::string_view cpu_max);
// A cgroup v2 memory.max in bytes; nullopt for "max" or bad text.
std::optional<int64_t> ParseCgroupMemoryMax(absl::string_view memory_max);

// CPUs this process may run on, lowered to the cgroup's CPU quota when there is one.
double DetectCpus();
// MemTotal, lowered to the cgroup's memory limit when there is one.
absl::StatusOr<int64_t> DetectMemoryBytes();
// Bytes free to unprivileged users on the file system holding `path`, or its nearest existing
// parent.
absl::StatusOr<int64_t> DetectDiskBytes(const std::string& path);
std::string Hostname();
// The machine's local time zone's offset from UTC at `now`, in minutes (tm_gmtoff): +60 in
// Paris in winter. What a price schedule that names no offset is taken to be in.
int32_t LocalUtcOffsetMinutes(absl::Time now);

struct DetectOptions {
  std::string work_dir = "./sched-agent-work";
  GpuDetection gpu_detection = GpuDetection::kAuto;
  // What the operator gave; settings.advertise_gpus, when set, replaces GPU detection.
  NodeSettings settings;
  // The machine's UTC offset (LocalUtcOffsetMinutes), for a price schedule that names none.
  int32_t utc_offset_minutes = 0;
};

struct Detected {
  v1::Capabilities capabilities;
  // The GPUs in index order, and NVML when it found them (for metrics); null otherwise.
  std::vector<GpuDevice> gpus;
  std::unique_ptr<Nvml> nvml;
};

// Everything the agent tells schedd about its machine: what it detects, with the settings put in
// (ApplyNodeSettings). INVALID_ARGUMENT when the settings do not fit together (ResolvePrice).
absl::StatusOr<Detected> DetectCapabilities(const DetectOptions& options);

}  // namespace sched::agent
