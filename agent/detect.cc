#include "agent/detect.h"

#include <sched.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/nvml.h"
#include "server/common/status_macros.h"

#ifndef SCHED_AGENT_VERSION
#define SCHED_AGENT_VERSION "dev"
#endif

namespace sched::agent {

const char kAgentVersion[] = SCHED_AGENT_VERSION;

namespace {

// The whole file, or nullopt when it cannot be read.
std::optional<std::string> ReadFile(const char* path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

EnvLookup ProcessEnv() {
  return [](const char* name) -> std::optional<std::string> {
    const char* value = std::getenv(name);
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

std::string DetectProvider(const EnvLookup& env) {
  if (env("RUNPOD_POD_ID")) return "runpod";
  if (env("CONTAINER_ID") || env("VAST_CONTAINERLABEL")) return "vastai";
  return "local";
}

absl::StatusOr<int64_t> ParseMemTotal(absl::string_view meminfo) {
  for (absl::string_view line : absl::StrSplit(meminfo, '\n')) {
    if (!absl::ConsumePrefix(&line, "MemTotal:")) continue;
    line = absl::StripAsciiWhitespace(line);
    int64_t kib = 0;
    if (!absl::ConsumeSuffix(&line, "kB") ||
        !absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kib) || kib <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("meminfo: MemTotal is not \"N kB\": \"", line, "\""));
    }
    return kib * 1024;
  }
  return absl::InvalidArgumentError("meminfo: no MemTotal line");
}

std::optional<double> ParseCgroupCpuMax(absl::string_view cpu_max) {
  std::vector<absl::string_view> parts =
      absl::StrSplit(absl::StripAsciiWhitespace(cpu_max), ' ', absl::SkipEmpty());
  int64_t quota = 0;
  int64_t period = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &quota) ||
      !absl::SimpleAtoi(parts[1], &period) || quota <= 0 || period <= 0) {
    return std::nullopt;
  }
  return static_cast<double>(quota) / static_cast<double>(period);
}

std::optional<int64_t> ParseCgroupMemoryMax(absl::string_view memory_max) {
  int64_t bytes = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(memory_max), &bytes) || bytes <= 0) {
    return std::nullopt;
  }
  return bytes;
}

double DetectCpus() {
  double cpus = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = CPU_COUNT(&set);
  if (cpus <= 0) cpus = static_cast<double>(sysconf(_SC_NPROCESSORS_ONLN));
  if (std::optional<std::string> text = ReadFile("/sys/fs/cgroup/cpu.max")) {
    if (std::optional<double> quota = ParseCgroupCpuMax(*text); quota && *quota < cpus) {
      cpus = *quota;
    }
  }
  return cpus;
}

absl::StatusOr<int64_t> DetectMemoryBytes() {
  std::optional<std::string> meminfo = ReadFile("/proc/meminfo");
  if (!meminfo) return absl::UnavailableError("cannot read /proc/meminfo");
  SCHED_ASSIGN_OR_RETURN(int64_t bytes, ParseMemTotal(*meminfo));
  if (std::optional<std::string> text = ReadFile("/sys/fs/cgroup/memory.max")) {
    if (std::optional<int64_t> limit = ParseCgroupMemoryMax(*text); limit && *limit < bytes) {
      bytes = *limit;
    }
  }
  return bytes;
}

absl::StatusOr<int64_t> DetectDiskBytes(const std::string& path) {
  std::filesystem::path p = std::filesystem::absolute(path);
  while (true) {
    struct statvfs fs;
    if (statvfs(p.c_str(), &fs) == 0) {
      return static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize);
    }
    if (errno != ENOENT || !p.has_relative_path()) {
      return absl::UnavailableError(
          absl::StrCat("statvfs ", p.string(), ": ", std::strerror(errno)));
    }
    p = p.parent_path();
  }
}

std::string Hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "localhost";
  return name;
}

int32_t LocalUtcOffsetMinutes(absl::Time now) {
  const time_t t = absl::ToTimeT(now);
  struct tm local = {};
  if (localtime_r(&t, &local) == nullptr) return 0;
  return static_cast<int32_t>(local.tm_gmtoff / 60);
}

absl::StatusOr<Detected> DetectCapabilities(const DetectOptions& options) {
  Detected detected;
  v1::Capabilities& caps = detected.capabilities;
  caps.set_cpus(DetectCpus());
  SCHED_ASSIGN_OR_RETURN(int64_t memory, DetectMemoryBytes());
  caps.set_memory_bytes(memory);
  SCHED_ASSIGN_OR_RETURN(int64_t disk, DetectDiskBytes(options.work_dir));
  caps.set_disk_bytes(disk);
  DetectedGpus gpus;
  if (options.settings.advertise_gpus) {
    gpus.gpus = *options.settings.advertise_gpus;
    gpus.method = "advertised";
    caps.add_advertised("gpus");
  } else {
    SCHED_ASSIGN_OR_RETURN(gpus, DetectGpus(options.gpu_detection));
  }
  for (const GpuDevice& gpu : gpus.gpus) {
    v1::GpuInfo* info = caps.add_gpus();
    info->set_index(gpu.index);
    info->set_uuid(gpu.uuid);
    info->set_model(gpu.model);
    info->set_memory_bytes(gpu.memory_bytes);
  }
  caps.set_gpu_detection(gpus.method);
  caps.set_provider(DetectProvider(ProcessEnv()));
  SCHED_RETURN_IF_ERROR(ApplyNodeSettings(options.settings, options.utc_offset_minutes, &caps));
  caps.set_hostname(Hostname());
  caps.set_agent_version(kAgentVersion);
  detected.gpus = std::move(gpus.gpus);
  detected.nvml = std::move(gpus.nvml);
  return detected;
}

}  // namespace sched::agent
