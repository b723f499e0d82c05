#include "agent/gpu.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/log.h"
#include "agent/nvidia_smi.h"
#include "agent/nvml.h"

namespace sched::agent {

absl::StatusOr<GpuDetection> ParseGpuDetection(absl::string_view text) {
  if (text == "auto") return GpuDetection::kAuto;
  if (text == "nvml") return GpuDetection::kNvml;
  if (text == "nvidia-smi") return GpuDetection::kNvidiaSmi;
  if (text == "none") return GpuDetection::kNone;
  return absl::InvalidArgumentError(
      absl::StrCat("gpu_detection: want auto, nvml, nvidia-smi or none, got \"", text, "\""));
}

namespace {

absl::StatusOr<DetectedGpus> WithNvml() {
  absl::StatusOr<std::unique_ptr<Nvml>> nvml = Nvml::Load();
  if (!nvml.ok()) return nvml.status();
  DetectedGpus found;
  found.method = "nvml";
  found.gpus = (*nvml)->devices();
  found.nvml = std::move(*nvml);
  return found;
}

absl::StatusOr<DetectedGpus> WithNvidiaSmi() {
  absl::StatusOr<std::vector<GpuDevice>> gpus = QueryNvidiaSmi();
  if (!gpus.ok()) return gpus.status();
  DetectedGpus found;
  found.method = "nvidia-smi";
  found.gpus = std::move(*gpus);
  return found;
}

}  // namespace

absl::StatusOr<DetectedGpus> DetectGpus(GpuDetection mode) {
  switch (mode) {
    case GpuDetection::kNvml:
      return WithNvml();
    case GpuDetection::kNvidiaSmi:
      return WithNvidiaSmi();
    case GpuDetection::kNone:
      return DetectedGpus{};
    case GpuDetection::kAuto:
      break;
  }
  absl::StatusOr<DetectedGpus> found = WithNvml();
  if (found.ok()) return found;
  const absl::Status nvml_status = found.status();
  found = WithNvidiaSmi();
  if (found.ok()) return found;
  if (!absl::IsNotFound(found.status())) {
    Log("no GPU found: %s; %s", nvml_status.ToString(), found.status().ToString());
  }
  return DetectedGpus{};
}

}  // namespace sched::agent
