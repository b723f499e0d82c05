#include "server/core/job_spec_validation.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "server/common/status_macros.h"

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

bool OneOf(absl::string_view value, std::initializer_list<absl::string_view> allowed) {
  for (absl::string_view a : allowed) {
    if (value == a) return true;
  }
  return false;
}

absl::Status ValidateModel(const ModelDescription& m) {
  if (m.parameters == 0 && (!m.precision.empty() || !m.method.empty() || !m.optimizer.empty() ||
                            m.batch_size != 0 || m.sequence_length != 0 || m.lora_rank != 0 ||
                            m.gradient_checkpointing)) {
    return Invalid("model.parameters", "required when the model is described");
  }
  if (m.parameters < 0 || m.parameters > kMaxModelParameters) {
    return Invalid("model.parameters",
                   absl::StrCat("must be in 1..", kMaxModelParameters, ", got ", m.parameters));
  }
  if (!m.precision.empty() && !OneOf(m.precision, {"fp32", "bf16", "fp16", "int8", "int4"})) {
    return Invalid("model.precision",
                   absl::StrCat("expected fp32, bf16, fp16, int8 or int4, got \"", m.precision,
                                "\""));
  }
  if (!m.method.empty() && !OneOf(m.method, {"inference", "full", "lora", "qlora"})) {
    return Invalid("model.method", absl::StrCat("expected inference, full, lora or qlora, got \"",
                                                m.method, "\""));
  }
  if (!m.optimizer.empty() && !OneOf(m.optimizer, {"adamw", "adamw-8bit", "sgd"})) {
    return Invalid("model.optimizer",
                   absl::StrCat("expected adamw, adamw-8bit or sgd, got \"", m.optimizer, "\""));
  }
  if (!m.optimizer.empty() && (m.method.empty() || m.method == "inference")) {
    return Invalid("model.optimizer", "only for training methods (full, lora, qlora)");
  }
  if (m.lora_rank != 0 && m.method != "lora" && m.method != "qlora") {
    return Invalid("model.lora_rank", "only for method lora or qlora");
  }
  if (m.method == "qlora" && !m.precision.empty() && m.precision != "int4") {
    return Invalid("model.precision", "qlora keeps the base model in int4; leave it out or say int4");
  }
  if (m.batch_size > kMaxBatchSize) {
    return Invalid("model.batch_size", absl::StrCat("at most ", kMaxBatchSize));
  }
  if (m.sequence_length > kMaxSequenceLength) {
    return Invalid("model.sequence_length", absl::StrCat("at most ", kMaxSequenceLength));
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view PlacementPolicyName(PlacementPolicy p) {
  switch (p) {
    case PlacementPolicy::kPreferLocal:
      return "prefer-local";
    case PlacementPolicy::kLocalOnly:
      return "local-only";
    case PlacementPolicy::kCheapest:
      return "cheapest";
    case PlacementPolicy::kCloudOnly:
      return "cloud-only";
  }
  return "unknown";
}

absl::string_view SpotPolicyName(SpotPolicy p) {
  switch (p) {
    case SpotPolicy::kAuto:
      return "auto";
    case SpotPolicy::kSpot:
      return "spot";
    case SpotPolicy::kOnDemand:
      return "on-demand";
  }
  return "unknown";
}

bool RetryPolicy::Restarts(int32_t exit_code, uint32_t restarts) const {
  if (restarts >= max_restarts) return false;
  return exit_codes.empty() ||
         std::find(exit_codes.begin(), exit_codes.end(), exit_code) != exit_codes.end();
}

absl::Duration RetryPolicy::Backoff(uint32_t restart) const {
  absl::Duration wait = backoff;
  for (uint32_t i = 1; i < restart && wait < max_backoff; ++i) wait *= 2;
  return std::min(wait, max_backoff);
}

bool IsValidMetricName(absl::string_view name) {
  if (name.empty() || name.size() > 64 || !absl::ascii_isalpha(name[0])) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '.' && c != ':' && c != '/' && c != '-') {
      return false;
    }
  }
  return true;
}

absl::StatusOr<SweepRuns> ExpandSweep(
    const SweepSpec& sweep) {
  if (!sweep.parameters.empty() && !sweep.runs.empty()) {
    return Invalid("sweep", "give parameters (a grid) or runs (a list), not both");
  }
  auto check_name = [](const std::string& name) -> absl::Status {
    if (!IsValidEnvName(name)) {
      return Invalid(absl::StrCat("sweep.", name),
                     "not a valid variable name (letters, digits and '_', not starting with a "
                     "digit)");
    }
    if (name.rfind("SCHED_", 0) == 0) {
      return Invalid(absl::StrCat("sweep.", name), "the SCHED_ prefix is reserved");
    }
    return absl::OkStatus();
  };
  auto check_value = [](const std::string& name, const std::string& value) -> absl::Status {
    if (value.size() > 1024) {
      return Invalid(absl::StrCat("sweep.", name), "a value over 1024 bytes");
    }
    return absl::OkStatus();
  };
  std::vector<std::map<std::string, std::string>> runs;
  if (!sweep.runs.empty()) {
    if (sweep.runs.size() > kMaxSweepRuns) {
      return Invalid("sweep.runs", absl::StrCat("at most ", kMaxSweepRuns, " runs, got ",
                                                sweep.runs.size()));
    }
    for (size_t i = 0; i < sweep.runs.size(); ++i) {
      if (sweep.runs[i].empty()) {
        return Invalid(absl::StrCat("sweep.runs[", i, "]"), "names no parameter");
      }
      for (const auto& [name, value] : sweep.runs[i]) {
        SCHED_RETURN_IF_ERROR(check_name(name));
        SCHED_RETURN_IF_ERROR(check_value(name, value));
      }
    }
    return sweep.runs;
  }
  size_t count = 1;
  std::set<std::string> names;
  for (const auto& [name, values] : sweep.parameters) {
    SCHED_RETURN_IF_ERROR(check_name(name));
    if (!names.insert(name).second) return Invalid(absl::StrCat("sweep.", name), "given twice");
    if (values.empty()) return Invalid(absl::StrCat("sweep.", name), "has no values");
    for (const std::string& v : values) SCHED_RETURN_IF_ERROR(check_value(name, v));
    if (values.size() > kMaxSweepRuns / count) {
      return Invalid("sweep.parameters",
                     absl::StrCat("the grid has more than ", kMaxSweepRuns, " runs"));
    }
    count *= values.size();
  }
  runs.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    std::map<std::string, std::string>& run = runs.emplace_back();
    size_t rest = i;
    for (auto it = sweep.parameters.rbegin(); it != sweep.parameters.rend(); ++it) {
      run[it->first] = it->second[rest % it->second.size()];
      rest /= it->second.size();
    }
  }
  return runs;
}

absl::Status CheckOutputPath(absl::string_view path) {
  if (path.empty()) return absl::InvalidArgumentError("empty");
  if (path.size() > 1024) return absl::InvalidArgumentError("longer than 1024 bytes");
  if (path.front() == '/') {
    return absl::InvalidArgumentError(absl::StrCat("\"", path, "\" is absolute: give it relative to the job's folder"));
  }
  if (path.find('\0') != absl::string_view::npos || path.find('\\') != absl::string_view::npos) {
    return absl::InvalidArgumentError("holds a NUL or a backslash");
  }
  absl::string_view rest = path;
  if (rest.back() == '/') rest.remove_suffix(1);
  for (absl::string_view part : absl::StrSplit(rest, '/')) {
    if (part.empty() || part == "." || part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", path, "\" has an empty, '.' or '..' part: it must stay inside the job's folder"));
    }
  }
  return absl::OkStatus();
}

bool IsValidName(absl::string_view name) {
  if (name.empty() || name.size() > 63 || !absl::ascii_isalnum(name[0])) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

absl::Status ValidateAndDefaultJobSpec(JobSpec& spec, absl::Time now) {
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
  std::set<std::string> env_names;
  for (const auto& [name, value] : spec.env) {
    if (!env_names.insert(name).second) {
      return Invalid(absl::StrCat("env.", name), "set twice (in env and secrets, or twice)");
    }
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
  if (r.share_gpu && r.gpus != 1) {
    return Invalid("resources.share_gpu", absl::StrCat("needs gpus: 1, got ", r.gpus));
  }
  if (r.share_gpu && r.gpu_memory_bytes == 0 && spec.model.parameters == 0) {
    return Invalid("resources.share_gpu",
                   "needs resources.gpu_memory (or a model to estimate it): what it takes of the "
                   "card");
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
  if (absl::Status s = ValidateModel(spec.model); !s.ok()) return s;
  if (spec.runtime < absl::ZeroDuration() || spec.runtime > absl::Hours(24 * 366)) {
    return Invalid("runtime", absl::StrCat("must be between 0 and a year, got ",
                                           absl::FormatDuration(spec.runtime)));
  }
  if (!spec.runtime_gpu_model.empty() && spec.runtime == absl::ZeroDuration()) {
    return Invalid("runtime.gpu_model", "set, but runtime.duration is not");
  }
  if (spec.deadline != absl::InfiniteFuture() && spec.deadline <= now) {
    return Invalid("deadline", absl::StrCat("already passed: ",
                                            absl::FormatTime(absl::RFC3339_sec, spec.deadline,
                                                             absl::UTCTimeZone())));
  }
  if (!(spec.max_cost >= 0) || spec.max_cost > kMaxCostDollars) {
    return Invalid("max_cost", absl::StrCat("must be between 0 and ", kMaxCostDollars,
                                            " dollars, got ", spec.max_cost));
  }
  const RetryPolicy& retry = spec.retry;
  if (retry.max_restarts > kMaxRestarts) {
    return Invalid("retry.max_restarts",
                   absl::StrCat("at most ", kMaxRestarts, ", got ", retry.max_restarts));
  }
  if (retry.exit_codes.size() > 255) return Invalid("retry.exit_codes", "at most 255 codes");
  for (int32_t code : retry.exit_codes) {
    if (code < 1 || code > 255) {
      return Invalid("retry.exit_codes",
                     absl::StrCat("an exit code is 1..255 (128+N for signal N), got ", code));
    }
  }
  if (retry.max_restarts == 0 && !retry.exit_codes.empty()) {
    return Invalid("retry.exit_codes", "set, but retry.max_restarts is 0");
  }
  if (retry.backoff <= absl::ZeroDuration() || retry.max_backoff <= absl::ZeroDuration()) {
    return Invalid("retry.backoff", "must be positive");
  }
  if (retry.backoff > retry.max_backoff) {
    return Invalid("retry.backoff",
                   absl::StrCat(absl::FormatDuration(retry.backoff), " is above retry.max_backoff ",
                                absl::FormatDuration(retry.max_backoff)));
  }
  if (spec.max_duration < absl::ZeroDuration() || spec.max_duration > absl::Hours(24 * 366)) {
    return Invalid("max_duration", absl::StrCat("must be between 0 and a year, got ",
                                                absl::FormatDuration(spec.max_duration)));
  }
  if (spec.not_before != absl::InfinitePast() && spec.not_before > now + absl::Hours(24 * 366)) {
    return Invalid("not_before", absl::StrCat("more than a year ahead: ",
                                              absl::FormatTime(absl::RFC3339_sec, spec.not_before,
                                                               absl::UTCTimeZone())));
  }
  if (spec.not_before != absl::InfinitePast() && spec.deadline != absl::InfiniteFuture() &&
      spec.not_before >= spec.deadline) {
    return Invalid("not_before", "is at or after the deadline");
  }
  if (spec.after.size() > kMaxDependencies) {
    return Invalid("after", absl::StrCat("at most ", kMaxDependencies, " jobs"));
  }
  for (size_t i = 0; i < spec.after.size(); ++i) {
    const auto& [id, when] = spec.after[i];
    if (id.empty()) return Invalid(absl::StrCat("after[", i, "].job"), "required");
    if (when != "success" && when != "failure" && when != "always") {
      return Invalid(absl::StrCat("after[", i, "].when"),
                     absl::StrCat("expected success, failure or always, got \"", when, "\""));
    }
  }
  if (spec.outputs.size() > kMaxArtifacts) {
    return Invalid("outputs", absl::StrCat("at most ", kMaxArtifacts, " paths"));
  }
  for (size_t i = 0; i < spec.outputs.size(); ++i) {
    if (absl::Status s = CheckOutputPath(spec.outputs[i]); !s.ok()) {
      return Invalid(absl::StrCat("outputs[", i, "]"), s.message());
    }
  }
  if (spec.inputs.size() > kMaxArtifacts) {
    return Invalid("inputs", absl::StrCat("at most ", kMaxArtifacts, " jobs"));
  }
  for (size_t i = 0; i < spec.inputs.size(); ++i) {
    const auto& [name, id] = spec.inputs[i];
    if (!IsValidName(name)) {
      return Invalid(absl::StrCat("inputs[", i, "].name"),
                     "1-63 of letters, digits, '.', '_', '-', starting with a letter or digit");
    }
    if (id.empty()) return Invalid(absl::StrCat("inputs[", i, "].job"), "required");
    for (size_t k = 0; k < i; ++k) {
      if (spec.inputs[k].first == name) {
        return Invalid(absl::StrCat("inputs[", i, "].name"), absl::StrCat("\"", name, "\" twice"));
      }
    }
  }
  if (!spec.after.empty() && !spec.sweep.empty()) {
    return Invalid("after", "not with a sweep (give the sweep's runs no after, or submit the "
                            "sweep once its inputs are ready)");
  }
  const SweepSpec& sweep = spec.sweep;
  if (sweep.empty()) {
    if (sweep.max_parallel != 0 || !sweep.metric.empty() || !sweep.early_stopping.rule.empty()) {
      return Invalid("sweep", "has no parameters and no runs (a run of a sweep is not a sweep)");
    }
    return absl::OkStatus();
  }
  SCHED_ASSIGN_OR_RETURN(SweepRuns runs,
                         ExpandSweep(sweep));
  for (const auto& run : runs) {
    for (const auto& [name, value] : run) {
      if (env_names.count(name)) {
        return Invalid(absl::StrCat("sweep.", name), "also set in env");
      }
    }
  }
  if (!sweep.metric.empty() && !IsValidMetricName(sweep.metric)) {
    return Invalid("sweep.metric",
                   absl::StrCat("1-64 of letters, digits, '_', '.', ':', '/' or '-', starting "
                                "with a letter, got \"",
                                sweep.metric, "\""));
  }
  const EarlyStopping& es = sweep.early_stopping;
  if (!es.rule.empty()) {
    if (es.rule != "median" && es.rule != "asha") {
      return Invalid("sweep.early_stopping.rule",
                     absl::StrCat("expected median or asha, got \"", es.rule, "\""));
    }
    if (sweep.metric.empty()) {
      return Invalid("sweep.metric", "required for early stopping: the metric that ranks runs");
    }
  }
  if (es.min_step < 0 || es.max_step < 0) {
    return Invalid("sweep.early_stopping", "steps must be >= 0");
  }
  if (es.reduction_factor == 1 || es.reduction_factor > 100) {
    return Invalid("sweep.early_stopping.reduction_factor",
                   absl::StrCat("must be 2..100, got ", es.reduction_factor));
  }
  if (es.max_step != 0 && es.max_step < es.min_step) {
    return Invalid("sweep.early_stopping.max_step", "below min_step");
  }
  if (es.min_runs > kMaxSweepRuns) {
    return Invalid("sweep.early_stopping.min_runs", absl::StrCat("at most ", kMaxSweepRuns));
  }
  return absl::OkStatus();
}

}  // namespace sched
