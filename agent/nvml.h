#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/gpu.h"

namespace sched::agent {

// Use and load of one GPU at one moment.
struct GpuSample {
  GpuDevice device;
  int64_t memory_used_bytes = 0;
  double utilization = 0;  // 0..1, over the driver's last sample period
};

// A process with a compute context on a GPU.
struct GpuProcess {
  uint32_t gpu = 0;  // the device's index
  int pid = 0;       // as the kernel sees it from the driver's side (the host's PID namespace)
  int64_t memory_bytes = -1;  // -1: not known (NVML cannot say, e.g. without privileges)
};

// NVML, loaded at run time with dlopen so that one binary runs on machines with and without
// the NVIDIA driver. Thread-safe (NVML is). The devices are read once, at Load().
class Nvml {
 public:
  // UNAVAILABLE when the library cannot be opened or initialised (no driver), naming why.
  static absl::StatusOr<std::unique_ptr<Nvml>> Load(const char* library = "libnvidia-ml.so.1");
  ~Nvml();
  Nvml(const Nvml&) = delete;
  Nvml& operator=(const Nvml&) = delete;

  const std::vector<GpuDevice>& devices() const { return devices_; }
  // Memory used and utilization of every device, in devices() order.
  absl::StatusOr<std::vector<GpuSample>> Sample() const;
  // The processes using each device for compute now (nvmlDeviceGetComputeRunningProcesses),
  // whoever started them. UNIMPLEMENTED when the driver's NVML lacks the call.
  absl::StatusOr<std::vector<GpuProcess>> ComputeProcesses() const;

  struct Api;  // the dlsym'd functions

 private:
  Nvml(void* handle, std::unique_ptr<Api> api);
  absl::Status ReadDevices();

  void* const handle_;
  const std::unique_ptr<Api> api_;
  std::vector<void*> device_handles_;
  std::vector<GpuDevice> devices_;
};

}  // namespace sched::agent
