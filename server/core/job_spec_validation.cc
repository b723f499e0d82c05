#include "server/core/job_spec_validation.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace sched {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", reason));
}

bool IsValidEnvName(absl::string_view name) {
  if (name.empty() || absl::ascii_isdigit(name[0])) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_') return false;
  }
  return true;
}

}  // namespace

bool IsValidName(absl::string_view name) {
  if (name.empty() || name.size() > 63 || !absl::ascii_isalnum(name[0])) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

absl::Status ValidateAndDefaultJobSpec(JobSpec& spec) {
  constexpr absl::string_view kNameRule =
      "must be 1-63 characters of letters, digits, '.', '_' or '-', starting with a letter or "
      "digit";
  if (!spec.name.empty() && !IsValidName(spec.name)) {
    return Invalid("name", absl::StrCat(kNameRule, ", got \"", spec.name, "\""));
  }
  if (spec.project.empty()) spec.project = "default";
  if (!IsValidName(spec.project)) {
    return Invalid("project", absl::StrCat(kNameRule, ", got \"", spec.project, "\""));
  }
  if (spec.run.find_first_not_of(" \t\r\n") == std::string::npos) {
    return Invalid("run", "required: the shell script to run");
  }
  if (spec.run.size() > kMaxScriptBytes) {
    return Invalid("run", absl::StrCat("longer than ", kMaxScriptBytes, " bytes"));
  }
  if (spec.setup.size() > kMaxScriptBytes) {
    return Invalid("setup", absl::StrCat("longer than ", kMaxScriptBytes, " bytes"));
  }
  for (const auto& [name, value] : spec.env) {
    if (!IsValidEnvName(name)) {
      return Invalid(absl::StrCat("env.", name),
                     "not a valid variable name (letters, digits and '_', not starting with a "
                     "digit)");
    }
    if (name.rfind("SCHED_", 0) == 0) {
      return Invalid(absl::StrCat("env.", name), "the SCHED_ prefix is reserved");
    }
  }
  Resources& r = spec.resources;
  if (r.gpus > 64) return Invalid("resources.gpus", absl::StrCat("at most 64, got ", r.gpus));
  if (r.gpu_memory_bytes < 0) return Invalid("resources.gpu_memory", "must be >= 0");
  if (r.gpu_memory_bytes > 0 && r.gpus == 0) {
    return Invalid("resources.gpu_memory", "set, but resources.gpus is 0");
  }
  if (!r.gpu_models.empty() && r.gpus == 0) {
    return Invalid("resources.gpu_model", "set, but resources.gpus is 0");
  }
  for (const std::string& m : r.gpu_models) {
    if (m.empty()) return Invalid("resources.gpu_model", "empty model name");
  }
  if (r.cpu_millis < 0) {
    return Invalid("resources.cpus", absl::StrCat("must be >= 0, got ", r.cpu_millis / 1000.0));
  }
  if (r.cpu_millis == 0) r.cpu_millis = kDefaultCpuMillis;
  if (r.memory_bytes < 0) return Invalid("resources.memory", "must be >= 0");
  if (spec.priority < kMinPriority || spec.priority > kMaxPriority) {
    return Invalid("priority", absl::StrCat("must be in ", kMinPriority, "..", kMaxPriority,
                                            ", got ", spec.priority));
  }
  for (const auto& [key, value] : spec.labels) {
    if (!IsValidName(key)) return Invalid(absl::StrCat("labels.", key), kNameRule);
    if (value.size() > 256) return Invalid(absl::StrCat("labels.", key), "value over 256 bytes");
  }
  return absl::OkStatus();
}

}  // namespace sched
