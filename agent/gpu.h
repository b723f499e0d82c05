#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sched::agent {

class Nvml;

// One GPU as the driver numbers it (NVML and nvidia-smi use the same order, PCI bus order).
struct GpuDevice {
  uint32_t index = 0;
  std::string uuid;
  std::string model;
  int64_t memory_bytes = 0;
};

// How to look for GPUs (--gpu_detection).
enum class GpuDetection {
  kAuto,       // NVML, else nvidia-smi, else none
  kNvml,       // NVML or an error
  kNvidiaSmi,  // nvidia-smi or an error
  kNone,       // report no GPU
};

// "auto", "nvml", "nvidia-smi" or "none"; INVALID_ARGUMENT otherwise.
absl::StatusOr<GpuDetection> ParseGpuDetection(absl::string_view text);

struct DetectedGpus {
  std::vector<GpuDevice> gpus;
  // What found them: "nvml", "nvidia-smi" or "none" (Capabilities.gpu_detection).
  std::string method = "none";
  // The loaded library when method is "nvml", for sampling use and utilization later.
  std::unique_ptr<Nvml> nvml;
};

// Finds the machine's GPUs. In kAuto mode a machine without the NVIDIA driver gives method
// "none" and no error; kNvml and kNvidiaSmi fail with the reason when their tool fails.
// Never scans PCI.
absl::StatusOr<DetectedGpus> DetectGpus(GpuDetection mode);

}  // namespace sched::agent
