#include "agent/nvml.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/common/status_macros.h"

namespace sched::agent {
namespace {

// The few NVML declarations used here (nvml.h is not a build dependency).
using nvmlReturn_t = int;
using nvmlDevice_t = void*;
constexpr nvmlReturn_t kNvmlSuccess = 0;
constexpr unsigned int kNvmlBufferSize = 96;  // NVML_DEVICE_UUID_V2_BUFFER_SIZE and name size

struct nvmlMemory_t {
  unsigned long long total;  // NOLINT(runtime/int): NVML's types
  unsigned long long free;   // NOLINT(runtime/int)
  unsigned long long used;   // NOLINT(runtime/int)
};

struct nvmlUtilization_t {
  unsigned int gpu;
  unsigned int memory;
};

// What the _v2 and _v3 process calls fill in, and the first call's shorter record.
struct nvmlProcessInfo_v2_t {
  unsigned int pid;
  unsigned long long usedGpuMemory;  // NOLINT(runtime/int)
  unsigned int gpuInstanceId;
  unsigned int computeInstanceId;
};
struct nvmlProcessInfo_v1_t {
  unsigned int pid;
  unsigned long long usedGpuMemory;  // NOLINT(runtime/int)
};
constexpr nvmlReturn_t kNvmlInsufficientSize = 7;
// NVML_VALUE_NOT_AVAILABLE: the memory a process uses when the driver cannot tell.
constexpr unsigned long long kNvmlValueNotAvailable = ~0ULL;  // NOLINT(runtime/int)

}  // namespace

struct Nvml::Api {
  nvmlReturn_t (*init)();
  nvmlReturn_t (*shutdown)();
  nvmlReturn_t (*device_count)(unsigned int*);
  nvmlReturn_t (*device_by_index)(unsigned int, nvmlDevice_t*);
  nvmlReturn_t (*device_name)(nvmlDevice_t, char*, unsigned int);
  nvmlReturn_t (*device_uuid)(nvmlDevice_t, char*, unsigned int);
  nvmlReturn_t (*device_memory)(nvmlDevice_t, nvmlMemory_t*);
  nvmlReturn_t (*device_utilization)(nvmlDevice_t, nvmlUtilization_t*);
  const char* (*error_string)(nvmlReturn_t);  // may be null
  // The newest of nvmlDeviceGetComputeRunningProcesses_v3, _v2 and the first, or null; and the
  // size of the record it fills in.
  nvmlReturn_t (*compute_processes)(nvmlDevice_t, unsigned int*, void*);
  size_t process_record_size;

  absl::Status Check(nvmlReturn_t r, const char* what) const {
    if (r == kNvmlSuccess) return absl::OkStatus();
    const char* text = error_string != nullptr ? error_string(r) : nullptr;
    return absl::UnavailableError(absl::StrCat(
        "NVML ", what, ": error ", r, text != nullptr ? " " : "", text != nullptr ? text : ""));
  }
};

namespace {

template <typename Fn>
absl::Status Bind(void* handle, const char* name, Fn* fn) {
  *fn = reinterpret_cast<Fn>(dlsym(handle, name));
  if (*fn == nullptr) return absl::UnavailableError(absl::StrCat("NVML: no symbol ", name));
  return absl::OkStatus();
}

absl::Status BindAll(void* handle, Nvml::Api& api) {
  SCHED_RETURN_IF_ERROR(Bind(handle, "nvmlInit_v2", &api.init));
  SCHED_RETURN_IF_ERROR(Bind(handle, "nvmlShutdown", &api.shutdown));
  SCHED_RETURN_IF_ERROR(Bind(handle, "nvmlDeviceGetCount_v2", &api.device_count));
  SCHED_RETURN_IF_ERROR(Bind(handle, "nvmlDeviceGetHandleByIndex_v2", &api.device_by_index));
  SCHED_RETURN_IF_ERROR(Bind(handle, "nvmlDeviceGetName", &api.device_name));
  SCHED_RETURN_IF_ERROR(Bind(handle, "nvmlDeviceGetUUID", &api.device_uuid));
  SCHED_RETURN_IF_ERROR(Bind(handle, "nvmlDeviceGetMemoryInfo", &api.device_memory));
  SCHED_RETURN_IF_ERROR(Bind(handle, "nvmlDeviceGetUtilizationRates", &api.device_utilization));
  api.error_string =
      reinterpret_cast<const char* (*)(nvmlReturn_t)>(dlsym(handle, "nvmlErrorString"));
  api.compute_processes = nullptr;
  api.process_record_size = 0;
  for (const char* name : {"nvmlDeviceGetComputeRunningProcesses_v3",
                           "nvmlDeviceGetComputeRunningProcesses_v2",
                           "nvmlDeviceGetComputeRunningProcesses"}) {
    if (void* fn = dlsym(handle, name); fn != nullptr) {
      api.compute_processes =
          reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, unsigned int*, void*)>(fn);
      api.process_record_size = absl::string_view(name).back() == 's'
                                    ? sizeof(nvmlProcessInfo_v1_t)
                                    : sizeof(nvmlProcessInfo_v2_t);
      break;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Nvml>> Nvml::Load(const char* library) {
  void* handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return absl::UnavailableError(
        absl::StrCat("NVML: cannot open ", library, ": ", why != nullptr ? why : "unknown"));
  }
  auto api = std::make_unique<Api>();
  if (absl::Status s = BindAll(handle, *api); !s.ok()) {
    dlclose(handle);
    return s;
  }
  if (absl::Status s = api->Check(api->init(), "init"); !s.ok()) {
    dlclose(handle);
    return s;
  }
  std::unique_ptr<Nvml> nvml(new Nvml(handle, std::move(api)));
  SCHED_RETURN_IF_ERROR(nvml->ReadDevices());
  return nvml;
}

Nvml::Nvml(void* handle, std::unique_ptr<Api> api) : handle_(handle), api_(std::move(api)) {}

Nvml::~Nvml() {
  api_->shutdown();
  dlclose(handle_);
}

absl::Status Nvml::ReadDevices() {
  unsigned int count = 0;
  SCHED_RETURN_IF_ERROR(api_->Check(api_->device_count(&count), "device count"));
  for (unsigned int i = 0; i < count; ++i) {
    nvmlDevice_t device = nullptr;
    SCHED_RETURN_IF_ERROR(api_->Check(api_->device_by_index(i, &device), "device handle"));
    char name[kNvmlBufferSize] = {};
    char uuid[kNvmlBufferSize] = {};
    nvmlMemory_t memory = {};
    SCHED_RETURN_IF_ERROR(api_->Check(api_->device_name(device, name, sizeof(name)), "name"));
    SCHED_RETURN_IF_ERROR(api_->Check(api_->device_uuid(device, uuid, sizeof(uuid)), "uuid"));
    SCHED_RETURN_IF_ERROR(api_->Check(api_->device_memory(device, &memory), "memory"));
    device_handles_.push_back(device);
    devices_.push_back(GpuDevice{i, uuid, name, static_cast<int64_t>(memory.total)});
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<GpuSample>> Nvml::Sample() const {
  std::vector<GpuSample> samples;
  samples.reserve(devices_.size());
  for (size_t i = 0; i < devices_.size(); ++i) {
    nvmlMemory_t memory = {};
    nvmlUtilization_t use = {};
    SCHED_RETURN_IF_ERROR(api_->Check(api_->device_memory(device_handles_[i], &memory), "memory"));
    SCHED_RETURN_IF_ERROR(
        api_->Check(api_->device_utilization(device_handles_[i], &use), "utilization"));
    GpuSample s;
    s.device = devices_[i];
    s.device.memory_bytes = static_cast<int64_t>(memory.total);
    s.memory_used_bytes = static_cast<int64_t>(memory.used);
    s.utilization = use.gpu / 100.0;
    samples.push_back(std::move(s));
  }
  return samples;
}

absl::StatusOr<std::vector<GpuProcess>> Nvml::ComputeProcesses() const {
  if (api_->compute_processes == nullptr) {
    return absl::UnimplementedError("NVML: this driver cannot list the processes on a GPU");
  }
  std::vector<GpuProcess> out;
  std::vector<unsigned char> buffer;
  for (size_t i = 0; i < devices_.size(); ++i) {
    unsigned int count = 32;
    nvmlReturn_t r = kNvmlInsufficientSize;
    // The list may grow between the calls; a few tries with room to spare.
    for (int attempt = 0; attempt < 4 && r == kNvmlInsufficientSize; ++attempt) {
      count = std::max(count, 32u) * 2;
      buffer.assign(size_t{count} * api_->process_record_size, 0);
      r = api_->compute_processes(device_handles_[i], &count, buffer.data());
    }
    SCHED_RETURN_IF_ERROR(api_->Check(r, "compute processes"));
    for (unsigned int k = 0; k < count; ++k) {
      // Both records begin with the pid and the memory used.
      nvmlProcessInfo_v1_t info;
      std::memcpy(&info, buffer.data() + k * api_->process_record_size, sizeof(info));
      GpuProcess p;
      p.gpu = devices_[i].index;
      p.pid = static_cast<int>(info.pid);
      p.memory_bytes = info.usedGpuMemory == kNvmlValueNotAvailable
                           ? -1
                           : static_cast<int64_t>(info.usedGpuMemory);
      out.push_back(p);
    }
  }
  return out;
}

}  // namespace sched::agent
