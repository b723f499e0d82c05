#include "client/job_spec_yaml.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "client/units.h"
#include "server/common/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace sched::client {
namespace {

using sched::v1::JobSpec;

constexpr int32_t kMinPriority = -1000;
constexpr int32_t kMaxPriority = 1000;

absl::Status Invalid(absl::string_view path, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat(path.empty() ? "job spec" : path, ": ", reason));
}

std::string Child(absl::string_view path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return absl::StrCat("\"", node.Scalar(), "\"");
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    default:
      return "nothing";
  }
}

absl::Status Expected(absl::string_view path, absl::string_view what, const YAML::Node& got) {
  return Invalid(path, absl::StrCat("expected ", what, ", got ", Describe(got)));
}

// The entries of a mapping, in document order, after checking that `node` is a mapping whose
// keys are distinct scalars drawn from `allowed` (any key when `allowed` is empty).
absl::StatusOr<std::vector<std::pair<std::string, YAML::Node>>> Entries(
    const YAML::Node& node, absl::string_view path, const std::vector<std::string>& allowed) {
  if (!node.IsMap()) return Expected(path, "a mapping", node);
  std::vector<std::pair<std::string, YAML::Node>> entries;
  std::set<std::string> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!it->first.IsScalar()) return Expected(path, "plain keys", it->first);
    const std::string key = it->first.Scalar();
    const std::string key_path = Child(path, key);
    if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return Invalid(
          key_path,
          absl::StrCat("unknown key (expected one of: ", absl::StrJoin(allowed, ", "), ")"));
    }
    if (!seen.insert(key).second) return Invalid(key_path, "duplicate key");
    entries.emplace_back(key, it->second);
  }
  return entries;
}

// An empty value ("setup:") is "".
absl::StatusOr<std::string> String(const YAML::Node& node, absl::string_view path) {
  if (node.IsNull()) return std::string();
  if (!node.IsScalar()) return Expected(path, "a string", node);
  return node.Scalar();
}

// Env and label values: any scalar, written as it stands; an empty value is "".
absl::StatusOr<std::string> ScalarValue(const YAML::Node& node, absl::string_view path) {
  if (node.IsNull()) return std::string();
  if (!node.IsScalar()) return Expected(path, "a string, number or boolean", node);
  return node.Scalar();
}

absl::StatusOr<int64_t> Integer(const YAML::Node& node, absl::string_view path, int64_t min,
                                int64_t max, absl::string_view what) {
  int64_t value = 0;
  if (!node.IsScalar() || !absl::SimpleAtoi(node.Scalar(), &value)) {
    return Expected(path, what, node);
  }
  if (value < 0 && min == 0) return Expected(path, what, node);
  if (value < min || value > max) {
    return Invalid(path, absl::StrCat("must be in ", min, "..", max, ", got ", value));
  }
  return value;
}

absl::StatusOr<int64_t> Size(const YAML::Node& node, absl::string_view path) {
  if (!node.IsScalar()) return Expected(path, "a size such as 8GB", node);
  absl::StatusOr<int64_t> bytes = ParseByteSize(node.Scalar());
  if (!bytes.ok()) return Invalid(path, bytes.status().message());
  return *bytes;
}

absl::Status ParseGpuModels(const YAML::Node& node, absl::string_view path,
                            sched::v1::Resources& resources) {
  if (node.IsScalar()) {
    resources.add_gpu_models(node.Scalar());
    return absl::OkStatus();
  }
  if (!node.IsSequence()) return Expected(path, "a model name or a list of them", node);
  for (size_t i = 0; i < node.size(); ++i) {
    SCHED_ASSIGN_OR_RETURN(std::string model, String(node[i], absl::StrCat(path, "[", i, "]")));
    resources.add_gpu_models(std::move(model));
  }
  return absl::OkStatus();
}

absl::Status ParseResources(const YAML::Node& node, absl::string_view path,
                            sched::v1::Resources& r) {
  SCHED_ASSIGN_OR_RETURN(
      auto entries,
      Entries(node, path, {"gpus", "gpu_memory", "gpu_model", "cpus", "memory", "share_gpu"}));
  for (const auto& [key, value] : entries) {
    const std::string key_path = Child(path, key);
    if (key == "gpus") {
      SCHED_ASSIGN_OR_RETURN(int64_t gpus,
                             Integer(value, key_path, 0, std::numeric_limits<uint32_t>::max(),
                                     "a non-negative integer"));
      r.set_gpus(static_cast<uint32_t>(gpus));
    } else if (key == "gpu_memory") {
      SCHED_ASSIGN_OR_RETURN(int64_t bytes, Size(value, key_path));
      r.set_gpu_memory_bytes(bytes);
    } else if (key == "gpu_model") {
      SCHED_RETURN_IF_ERROR(ParseGpuModels(value, key_path, r));
    } else if (key == "share_gpu") {
      bool on = false;
      if (!value.IsScalar() || !absl::SimpleAtob(value.Scalar(), &on)) {
        return Expected(key_path, "true or false", value);
      }
      r.set_share_gpu(on);
    } else if (key == "cpus") {
      double cpus = 0;
      if (!value.IsScalar() || !absl::SimpleAtod(value.Scalar(), &cpus) || !std::isfinite(cpus) ||
          cpus < 0) {
        return Expected(key_path, "a non-negative number", value);
      }
      r.set_cpus(cpus);
    } else {  // memory
      SCHED_ASSIGN_OR_RETURN(int64_t bytes, Size(value, key_path));
      r.set_memory_bytes(bytes);
    }
  }
  return absl::OkStatus();
}

// "7B", "1.5B", "350M", "125k" or a plain count.
absl::StatusOr<int64_t> ParameterCount(const YAML::Node& node, absl::string_view path) {
  constexpr absl::string_view kWhat = "a parameter count such as 7B, 1.5B or 350M";
  if (!node.IsScalar()) return Expected(path, kWhat, node);
  std::string text(absl::StripAsciiWhitespace(node.Scalar()));
  double scale = 1;
  if (!text.empty()) {
    switch (absl::ascii_toupper(text.back())) {
      case 'T':
        scale = 1e12;
        break;
      case 'B':
        scale = 1e9;
        break;
      case 'M':
        scale = 1e6;
        break;
      case 'K':
        scale = 1e3;
        break;
      default:
        break;
    }
    if (scale != 1) text.pop_back();
  }
  double count = 0;
  if (!absl::SimpleAtod(text, &count) || !std::isfinite(count) || count < 1 ||
      count * scale > 1e14) {
    return Expected(path, kWhat, node);
  }
  return static_cast<int64_t>(std::llround(count * scale));
}

absl::StatusOr<absl::Duration> Duration(const YAML::Node& node, absl::string_view path) {
  absl::Duration d;
  if (!node.IsScalar() || !absl::ParseDuration(node.Scalar(), &d) || d <= absl::ZeroDuration()) {
    return Expected(path, "a positive duration such as 90m or 2h30m", node);
  }
  return d;
}

absl::Status ParseModel(const YAML::Node& node, absl::string_view path,
                        sched::v1::ModelDescription& m) {
  SCHED_ASSIGN_OR_RETURN(auto entries,
                         Entries(node, path,
                                 {"parameters", "precision", "method", "optimizer", "batch_size",
                                  "sequence_length", "gradient_checkpointing", "lora_rank"}));
  for (const auto& [key, value] : entries) {
    const std::string key_path = Child(path, key);
    if (key == "parameters") {
      SCHED_ASSIGN_OR_RETURN(int64_t n, ParameterCount(value, key_path));
      m.set_parameters(n);
    } else if (key == "precision") {
      SCHED_ASSIGN_OR_RETURN(*m.mutable_precision(), String(value, key_path));
    } else if (key == "method") {
      SCHED_ASSIGN_OR_RETURN(*m.mutable_method(), String(value, key_path));
    } else if (key == "optimizer") {
      SCHED_ASSIGN_OR_RETURN(*m.mutable_optimizer(), String(value, key_path));
    } else if (key == "gradient_checkpointing") {
      bool on = false;
      if (!value.IsScalar() || !absl::SimpleAtob(value.Scalar(), &on)) {
        return Expected(key_path, "true or false", value);
      }
      m.set_gradient_checkpointing(on);
    } else {
      SCHED_ASSIGN_OR_RETURN(
          int64_t n,
          Integer(value, key_path, 1, std::numeric_limits<uint32_t>::max(), "a positive integer"));
      if (key == "batch_size") m.set_batch_size(static_cast<uint32_t>(n));
      if (key == "sequence_length") m.set_sequence_length(static_cast<uint32_t>(n));
      if (key == "lora_rank") m.set_lora_rank(static_cast<uint32_t>(n));
    }
  }
  if (m.parameters() == 0) return Invalid(Child(path, "parameters"), "required");
  return absl::OkStatus();
}

absl::Status ParseRuntime(const YAML::Node& node, absl::string_view path,
                          sched::v1::RuntimeEstimate& r) {
  absl::Duration d;
  if (node.IsScalar()) {
    SCHED_ASSIGN_OR_RETURN(d, Duration(node, path));
  } else {
    SCHED_ASSIGN_OR_RETURN(auto entries, Entries(node, path, {"duration", "gpu_model"}));
    for (const auto& [key, value] : entries) {
      if (key == "duration") {
        SCHED_ASSIGN_OR_RETURN(d, Duration(value, Child(path, key)));
      } else {
        SCHED_ASSIGN_OR_RETURN(*r.mutable_gpu_model(), String(value, Child(path, key)));
      }
    }
    if (d == absl::ZeroDuration()) return Invalid(Child(path, "duration"), "required");
  }
  r.set_seconds(std::max<int64_t>(1, absl::ToInt64Seconds(d)));
  return absl::OkStatus();
}

absl::Status ParseDeadline(const YAML::Node& node, absl::string_view path, absl::Time now,
                           google::protobuf::Timestamp& out) {
  constexpr absl::string_view kWhat =
      "a time such as 2026-11-27T08:00:00Z or a duration from now such as 12h";
  if (!node.IsScalar()) return Expected(path, kWhat, node);
  absl::Time t;
  absl::Duration d;
  std::string err;
  if (absl::ParseTime(absl::RFC3339_full, node.Scalar(), &t, &err)) {
    // as written
  } else if (absl::ParseDuration(node.Scalar(), &d) && d > absl::ZeroDuration()) {
    t = now + d;
  } else {
    return Expected(path, kWhat, node);
  }
  out.set_seconds(absl::ToUnixSeconds(t));
  return absl::OkStatus();
}

// "retry: 3" (three restarts on any failure), or a mapping with max_restarts, exit_codes,
// backoff and max_backoff.
absl::Status ParseRetry(const YAML::Node& node, absl::string_view path,
                        sched::v1::RetryPolicy& r) {
  constexpr int64_t kMaxRestarts = 100;
  if (node.IsScalar()) {
    SCHED_ASSIGN_OR_RETURN(int64_t n, Integer(node, path, 0, kMaxRestarts,
                                              "a number of restarts, or a mapping"));
    r.set_max_restarts(static_cast<uint32_t>(n));
    return absl::OkStatus();
  }
  SCHED_ASSIGN_OR_RETURN(
      auto entries,
      Entries(node, path, {"max_restarts", "exit_codes", "backoff", "max_backoff"}));
  bool restarts_given = false;
  for (const auto& [key, value] : entries) {
    const std::string key_path = Child(path, key);
    if (key == "max_restarts") {
      SCHED_ASSIGN_OR_RETURN(int64_t n, Integer(value, key_path, 0, kMaxRestarts,
                                                "a non-negative integer"));
      r.set_max_restarts(static_cast<uint32_t>(n));
      restarts_given = true;
    } else if (key == "exit_codes") {
      std::vector<YAML::Node> codes;
      if (value.IsScalar()) {
        codes.push_back(value);
      } else if (value.IsSequence()) {
        for (size_t i = 0; i < value.size(); ++i) codes.push_back(value[i]);
      } else {
        return Expected(key_path, "an exit code or a list of them", value);
      }
      for (size_t i = 0; i < codes.size(); ++i) {
        SCHED_ASSIGN_OR_RETURN(int64_t code, Integer(codes[i], absl::StrCat(key_path, "[", i, "]"),
                                                     1, 255, "an exit code 1..255"));
        r.add_exit_codes(static_cast<int32_t>(code));
      }
    } else {
      SCHED_ASSIGN_OR_RETURN(absl::Duration d, Duration(value, key_path));
      const int64_t seconds = std::max<int64_t>(1, absl::ToInt64Seconds(d));
      if (key == "backoff") r.set_backoff_seconds(seconds);
      if (key == "max_backoff") r.set_max_backoff_seconds(seconds);
    }
  }
  if (!restarts_given) return Invalid(Child(path, "max_restarts"), "required");
  return absl::OkStatus();
}

// "1e-3", "0.25", "16": as the number is written when the range's ends and step are whole,
// else in the shortest form that reads back the same.
std::string FormatNumber(double v, bool whole) {
  if (whole) return absl::StrCat(static_cast<int64_t>(std::llround(v)));
  return absl::StrFormat("%.10g", v);
}

// A parameter's values: a list of scalars, or a range {from, to, step} / {from, to, count,
// scale: linear|log}.
absl::StatusOr<std::vector<std::string>> SweepValues(const YAML::Node& node,
                                                     absl::string_view path) {
  constexpr size_t kMaxValues = 10'000;
  std::vector<std::string> values;
  if (node.IsSequence()) {
    if (node.size() == 0) return Invalid(path, "an empty list");
    for (size_t i = 0; i < node.size(); ++i) {
      SCHED_ASSIGN_OR_RETURN(std::string v, ScalarValue(node[i], absl::StrCat(path, "[", i, "]")));
      values.push_back(std::move(v));
    }
    return values;
  }
  if (node.IsScalar()) return std::vector<std::string>{node.Scalar()};
  SCHED_ASSIGN_OR_RETURN(auto entries,
                         Entries(node, path, {"from", "to", "step", "count", "scale"}));
  std::map<std::string, double> n;
  std::string scale = "linear";
  bool whole = true;
  for (const auto& [key, value] : entries) {
    if (key == "scale") {
      SCHED_ASSIGN_OR_RETURN(scale, String(value, Child(path, key)));
      if (scale != "linear" && scale != "log") {
        return Expected(Child(path, key), "linear or log", value);
      }
      continue;
    }
    double d = 0;
    if (!value.IsScalar() || !absl::SimpleAtod(value.Scalar(), &d) || !std::isfinite(d)) {
      return Expected(Child(path, key), "a number", value);
    }
    int64_t i = 0;
    if (!absl::SimpleAtoi(value.Scalar(), &i)) whole = false;
    n[key] = d;
  }
  if (!n.count("from") || !n.count("to")) return Invalid(path, "a range needs from and to");
  if (n.count("step") == n.count("count")) {
    return Invalid(path, "a range needs step or count (one of them)");
  }
  const double from = n["from"], to = n["to"];
  if (n.count("step")) {
    const double step = n["step"];
    if (scale == "log") return Invalid(Child(path, "scale"), "log takes count, not step");
    if (!(step > 0) || to < from) return Invalid(path, "needs from <= to and step > 0");
    if ((to - from) / step + 1 > kMaxValues) {
      return Invalid(path, absl::StrCat("more than ", kMaxValues, " values"));
    }
    for (int64_t k = 0;; ++k) {
      const double v = from + static_cast<double>(k) * step;
      if (v > to + std::abs(step) * 1e-9) break;
      values.push_back(FormatNumber(v, whole));
    }
    return values;
  }
  const double count = n["count"];
  if (!(count >= 1) || count > kMaxValues || count != std::floor(count)) {
    return Invalid(Child(path, "count"), absl::StrCat("must be a whole number 1..", kMaxValues));
  }
  if (scale == "log" && !(from > 0 && to > 0)) {
    return Invalid(Child(path, "scale"), "log needs from and to above 0");
  }
  const int64_t k_max = static_cast<int64_t>(count);
  for (int64_t k = 0; k < k_max; ++k) {
    const double t = k_max == 1 ? 0 : static_cast<double>(k) / static_cast<double>(k_max - 1);
    const double v = scale == "log" ? std::exp(std::log(from) + t * (std::log(to) - std::log(from)))
                                    : from + t * (to - from);
    values.push_back(FormatNumber(v, whole && scale == "linear" &&
                                         std::abs(v - std::round(v)) < 1e-9));
  }
  return values;
}

absl::Status ParseEarlyStopping(const YAML::Node& node, absl::string_view path,
                                sched::v1::EarlyStopping& e) {
  if (node.IsScalar()) {
    e.set_rule(node.Scalar());
    return absl::OkStatus();
  }
  SCHED_ASSIGN_OR_RETURN(
      auto entries,
      Entries(node, path, {"rule", "min_step", "min_runs", "reduction_factor", "max_step"}));
  for (const auto& [key, value] : entries) {
    const std::string key_path = Child(path, key);
    if (key == "rule") {
      SCHED_ASSIGN_OR_RETURN(*e.mutable_rule(), String(value, key_path));
      continue;
    }
    SCHED_ASSIGN_OR_RETURN(int64_t v, Integer(value, key_path, 0, int64_t{1} << 53,
                                              "a non-negative integer"));
    if (key == "min_step") e.set_min_step(v);
    if (key == "max_step") e.set_max_step(v);
    if (key == "min_runs") e.set_min_runs(static_cast<uint32_t>(std::min<int64_t>(v, 1 << 30)));
    if (key == "reduction_factor") {
      e.set_reduction_factor(static_cast<uint32_t>(std::min<int64_t>(v, 1 << 30)));
    }
  }
  if (e.rule().empty()) return Invalid(Child(path, "rule"), "required (median or asha)");
  return absl::OkStatus();
}

// sweep: {parameters: {NAME: values...} | runs: [{NAME: value, ...}], max_parallel, metric,
// goal: minimize|maximize, early_stopping}
absl::Status ParseSweep(const YAML::Node& node, absl::string_view path, sched::v1::Sweep& sw) {
  SCHED_ASSIGN_OR_RETURN(auto entries,
                         Entries(node, path,
                                 {"parameters", "runs", "max_parallel", "metric", "goal",
                                  "early_stopping"}));
  for (const auto& [key, value] : entries) {
    const std::string key_path = Child(path, key);
    if (key == "parameters") {
      SCHED_ASSIGN_OR_RETURN(auto params, Entries(value, key_path, {}));
      for (const auto& [name, v] : params) {
        sched::v1::SweepParameter* p = sw.add_parameters();
        p->set_name(name);
        SCHED_ASSIGN_OR_RETURN(std::vector<std::string> values,
                               SweepValues(v, Child(key_path, name)));
        for (std::string& x : values) p->add_values(std::move(x));
      }
    } else if (key == "runs") {
      if (!value.IsSequence()) return Expected(key_path, "a list of mappings", value);
      for (size_t i = 0; i < value.size(); ++i) {
        const std::string run_path = absl::StrCat(key_path, "[", i, "]");
        SCHED_ASSIGN_OR_RETURN(auto vars, Entries(value[i], run_path, {}));
        auto* run = sw.add_runs()->mutable_values();
        for (const auto& [name, v] : vars) {
          SCHED_ASSIGN_OR_RETURN((*run)[name], ScalarValue(v, Child(run_path, name)));
        }
      }
    } else if (key == "max_parallel") {
      SCHED_ASSIGN_OR_RETURN(int64_t n, Integer(value, key_path, 0, 1'000'000,
                                                "a non-negative integer"));
      sw.set_max_parallel(static_cast<uint32_t>(n));
    } else if (key == "metric") {
      SCHED_ASSIGN_OR_RETURN(*sw.mutable_metric(), String(value, key_path));
    } else if (key == "goal") {
      if (!value.IsScalar() || (value.Scalar() != "minimize" && value.Scalar() != "maximize")) {
        return Expected(key_path, "minimize or maximize", value);
      }
      sw.set_maximize(value.Scalar() == "maximize");
    } else {  // early_stopping
      SCHED_RETURN_IF_ERROR(ParseEarlyStopping(value, key_path, *sw.mutable_early_stopping()));
    }
  }
  if (sw.parameters_size() == 0 && sw.runs_size() == 0) {
    return Invalid(path, "needs parameters (a grid) or runs (a list)");
  }
  return absl::OkStatus();
}

// "after: ID", "after: [ID, ...]" (each must succeed) or a list of {job: ID, when:
// success|failure|always}.
absl::Status ParseAfter(const YAML::Node& node, absl::string_view path, JobSpec& spec) {
  std::vector<YAML::Node> items;
  if (node.IsScalar()) {
    items.push_back(node);
  } else if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) items.push_back(node[i]);
  } else {
    return Expected(path, "a job ID or a list of them", node);
  }
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string item_path = absl::StrCat(path, "[", i, "]");
    sched::v1::Dependency* d = spec.add_after();
    if (items[i].IsScalar()) {
      d->set_job_id(items[i].Scalar());
      d->set_when("success");
      continue;
    }
    SCHED_ASSIGN_OR_RETURN(auto entries, Entries(items[i], item_path, {"job", "when"}));
    for (const auto& [key, value] : entries) {
      if (key == "job") {
        SCHED_ASSIGN_OR_RETURN(*d->mutable_job_id(), String(value, Child(item_path, key)));
      } else if (!value.IsScalar() || (value.Scalar() != "success" &&
                                       value.Scalar() != "failure" &&
                                       value.Scalar() != "always")) {
        return Expected(Child(item_path, key), "success, failure or always", value);
      } else {
        d->set_when(value.Scalar());
      }
    }
    if (d->job_id().empty()) return Invalid(Child(item_path, "job"), "required");
    if (d->when().empty()) d->set_when("success");
  }
  return absl::OkStatus();
}

// "outputs: [model/, metrics.json]" (or one path).
absl::Status ParseOutputs(const YAML::Node& node, absl::string_view path, JobSpec& spec) {
  if (node.IsScalar()) {
    spec.add_outputs(node.Scalar());
    return absl::OkStatus();
  }
  if (!node.IsSequence()) return Expected(path, "a path or a list of paths", node);
  for (size_t i = 0; i < node.size(); ++i) {
    SCHED_ASSIGN_OR_RETURN(*spec.add_outputs(), String(node[i], absl::StrCat(path, "[", i, "]")));
  }
  return absl::OkStatus();
}

// "inputs: {data: ID, model: ID}" (the folder's name, the job), or "inputs: [ID, ...]" (each in
// a folder named as given: in a pipeline, the stages' names).
absl::Status ParseInputs(const YAML::Node& node, absl::string_view path, JobSpec& spec) {
  if (node.IsScalar() || node.IsSequence()) {
    std::vector<YAML::Node> items;
    if (node.IsScalar()) items.push_back(node);
    for (size_t i = 0; node.IsSequence() && i < node.size(); ++i) items.push_back(node[i]);
    for (size_t i = 0; i < items.size(); ++i) {
      SCHED_ASSIGN_OR_RETURN(std::string id, String(items[i], absl::StrCat(path, "[", i, "]")));
      sched::v1::JobInput* input = spec.add_inputs();
      input->set_name(id);
      input->set_job_id(std::move(id));
    }
    return absl::OkStatus();
  }
  SCHED_ASSIGN_OR_RETURN(auto entries, Entries(node, path, {}));
  for (const auto& [name, value] : entries) {
    sched::v1::JobInput* input = spec.add_inputs();
    input->set_name(name);
    SCHED_ASSIGN_OR_RETURN(*input->mutable_job_id(), String(value, Child(path, name)));
  }
  return absl::OkStatus();
}

template <typename Enum>
absl::StatusOr<Enum> Choice(const YAML::Node& node, absl::string_view path,
                            const std::vector<std::pair<std::string, Enum>>& choices) {
  std::vector<std::string> names;
  for (const auto& [name, value] : choices) {
    if (node.IsScalar() && node.Scalar() == name) return value;
    names.push_back(name);
  }
  return Expected(path, absl::StrJoin(names, ", "), node);
}

absl::Status ParseSpec(const YAML::Node& root, absl::Time now, JobSpec& spec) {
  if (root.IsNull()) return Invalid("run", "required");
  SCHED_ASSIGN_OR_RETURN(
      auto entries,
      Entries(root, "",
              {"name", "project", "run", "setup", "env", "secrets", "resources", "priority",
               "labels", "model", "runtime", "deadline", "max_cost", "placement", "spot",
               "retry", "max_duration", "not_before", "sweep", "after", "outputs", "inputs"}));
  for (const auto& [key, value] : entries) {
    if (key == "name") {
      SCHED_ASSIGN_OR_RETURN(*spec.mutable_name(), String(value, key));
    } else if (key == "project") {
      SCHED_ASSIGN_OR_RETURN(*spec.mutable_project(), String(value, key));
    } else if (key == "run") {
      SCHED_ASSIGN_OR_RETURN(*spec.mutable_run(), String(value, key));
    } else if (key == "setup") {
      SCHED_ASSIGN_OR_RETURN(*spec.mutable_setup(), String(value, key));
    } else if (key == "env") {
      SCHED_ASSIGN_OR_RETURN(auto vars, Entries(value, key, {}));
      for (const auto& [name, v] : vars) {
        sched::v1::EnvVar* var = spec.add_env();
        var->set_name(name);
        SCHED_ASSIGN_OR_RETURN(*var->mutable_value(), ScalarValue(v, Child(key, name)));
      }
    } else if (key == "secrets") {
      // Names only: schedctl takes each value from its own environment when it submits.
      if (!value.IsSequence()) return Expected(key, "a list of variable names", value);
      for (size_t i = 0; i < value.size(); ++i) {
        SCHED_ASSIGN_OR_RETURN(std::string name, String(value[i], absl::StrCat(key, "[", i, "]")));
        sched::v1::EnvVar* var = spec.add_env();
        var->set_name(std::move(name));
        var->set_secret(true);
      }
    } else if (key == "resources") {
      SCHED_RETURN_IF_ERROR(ParseResources(value, key, *spec.mutable_resources()));
    } else if (key == "priority") {
      SCHED_ASSIGN_OR_RETURN(int64_t priority,
                             Integer(value, key, kMinPriority, kMaxPriority, "an integer"));
      spec.set_priority(static_cast<int32_t>(priority));
    } else if (key == "model") {
      SCHED_RETURN_IF_ERROR(ParseModel(value, key, *spec.mutable_model()));
    } else if (key == "runtime") {
      SCHED_RETURN_IF_ERROR(ParseRuntime(value, key, *spec.mutable_runtime()));
    } else if (key == "deadline") {
      SCHED_RETURN_IF_ERROR(ParseDeadline(value, key, now, *spec.mutable_deadline()));
    } else if (key == "not_before") {
      SCHED_RETURN_IF_ERROR(ParseDeadline(value, key, now, *spec.mutable_not_before()));
    } else if (key == "max_duration") {
      SCHED_ASSIGN_OR_RETURN(absl::Duration d, Duration(value, key));
      spec.set_max_duration_seconds(std::max<int64_t>(1, absl::ToInt64Seconds(d)));
    } else if (key == "retry") {
      SCHED_RETURN_IF_ERROR(ParseRetry(value, key, *spec.mutable_retry()));
    } else if (key == "sweep") {
      SCHED_RETURN_IF_ERROR(ParseSweep(value, key, *spec.mutable_sweep()));
    } else if (key == "after") {
      SCHED_RETURN_IF_ERROR(ParseAfter(value, key, spec));
    } else if (key == "outputs") {
      SCHED_RETURN_IF_ERROR(ParseOutputs(value, key, spec));
    } else if (key == "inputs") {
      SCHED_RETURN_IF_ERROR(ParseInputs(value, key, spec));
    } else if (key == "max_cost") {
      double dollars = 0;
      std::string text = value.IsScalar() ? value.Scalar() : "";
      if (!text.empty() && text[0] == '$') text.erase(0, 1);
      if (!absl::SimpleAtod(text, &dollars) || !std::isfinite(dollars) || dollars < 0) {
        return Expected(key, "an amount in dollars such as 5 or 12.50", value);
      }
      spec.set_max_cost(dollars);
    } else if (key == "placement") {
      SCHED_ASSIGN_OR_RETURN(sched::v1::PlacementPolicy p,
                             Choice<sched::v1::PlacementPolicy>(
                                 value, key,
                                 {{"local-only", sched::v1::PLACEMENT_POLICY_LOCAL_ONLY},
                                  {"prefer-local", sched::v1::PLACEMENT_POLICY_PREFER_LOCAL},
                                  {"cheapest", sched::v1::PLACEMENT_POLICY_CHEAPEST},
                                  {"cloud-only", sched::v1::PLACEMENT_POLICY_CLOUD_ONLY}}));
      spec.set_placement(p);
    } else if (key == "spot") {
      SCHED_ASSIGN_OR_RETURN(
          sched::v1::SpotPolicy p,
          Choice<sched::v1::SpotPolicy>(value, key,
                                        {{"auto", sched::v1::SPOT_POLICY_AUTO},
                                         {"spot", sched::v1::SPOT_POLICY_SPOT},
                                         {"on-demand", sched::v1::SPOT_POLICY_ON_DEMAND}}));
      spec.set_spot(p);
    } else {  // labels
      SCHED_ASSIGN_OR_RETURN(auto labels, Entries(value, key, {}));
      for (const auto& [name, v] : labels) {
        SCHED_ASSIGN_OR_RETURN((*spec.mutable_labels())[name], ScalarValue(v, Child(key, name)));
      }
    }
  }
  if (absl::StripAsciiWhitespace(spec.run()).empty()) return Invalid("run", "required");
  return absl::OkStatus();
}

// Where `text` stops being UTF-8 (text.size() when it all is): overlong forms, surrogates and
// code points past U+10FFFF count as not.
size_t FirstNonUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto b = static_cast<unsigned char>(text[i]);
    size_t n = 0;
    uint32_t cp = 0, min = 0;
    if (b < 0x80) {
      ++i;
      continue;
    } else if ((b & 0xe0) == 0xc0) {
      n = 1, cp = b & 0x1f, min = 0x80;
    } else if ((b & 0xf0) == 0xe0) {
      n = 2, cp = b & 0x0f, min = 0x800;
    } else if ((b & 0xf8) == 0xf0) {
      n = 3, cp = b & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (i + n >= text.size()) return i;  // cut short
    for (size_t k = 1; k <= n; ++k) {
      const auto c = static_cast<unsigned char>(text[i + k]);
      if ((c & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += n + 1;
  }
  return i;
}

}  // namespace

namespace {

// Only UTF-8, tabs and line breaks: what the YAML reader would misread is refused first.
absl::Status CheckSpecText(std::string_view yaml) {
  // Every string in a spec travels as a protobuf string, which must be UTF-8.
  if (const size_t bad = FirstNonUtf8(yaml); bad < yaml.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the spec is not UTF-8 text (byte ", bad, " is not)"));
  }
  // yaml-cpp reads a NUL and the byte after it as one character that is not UTF-8, and other
  // control characters have no place in a spec: only tab and line breaks may appear.
  for (size_t i = 0; i < yaml.size(); ++i) {
    const auto c = static_cast<unsigned char>(yaml[i]);
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
      return absl::InvalidArgumentError(absl::StrFormat(
          "the spec holds a control character (byte %d is 0x%02x); only tab and line breaks may "
          "appear",
          i, c));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<YAML::Node> LoadSpecYaml(std::string_view yaml) {
  SCHED_RETURN_IF_ERROR(CheckSpecText(yaml));
  try {
    return YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid YAML at line ", e.mark.line + 1,
                                                   ", column ", e.mark.column + 1, ": ", e.msg));
  }
}

absl::StatusOr<JobSpec> SpecOf(const YAML::Node& root, absl::Time now) {
  JobSpec spec;
  absl::Status status;
  try {
    status = ParseSpec(root, now, spec);
  } catch (const YAML::Exception& e) {  // Not expected: every access above checks the type.
    status = absl::InvalidArgumentError(absl::StrCat("invalid job spec: ", e.what()));
  }
  SCHED_RETURN_IF_ERROR(status);
  // What schedd receives is what these bytes parse back to; a value the YAML reader made that
  // is not UTF-8 (an escape) would not survive the trip.
  std::string bytes;
  JobSpec sent;
  if (!spec.SerializeToString(&bytes) || !sent.ParseFromString(bytes)) {
    return absl::InvalidArgumentError("a value in the spec is not UTF-8 text");
  }
  return spec;
}

}  // namespace

absl::StatusOr<JobSpec> ParseJobSpecYaml(std::string_view yaml, absl::Time now) {
  SCHED_ASSIGN_OR_RETURN(YAML::Node root, LoadSpecYaml(yaml));
  if (root.IsMap() && root["stages"]) {
    return absl::InvalidArgumentError("stages: this is a pipeline, not a job spec");
  }
  return SpecOf(root, now);
}

bool IsPipelineYaml(std::string_view yaml) {
  absl::StatusOr<YAML::Node> root = LoadSpecYaml(yaml);
  try {
    return root.ok() && root->IsMap() && (*root)["stages"];
  } catch (const YAML::Exception&) {
    return false;
  }
}

absl::StatusOr<Pipeline> ParsePipelineYaml(std::string_view yaml, absl::Time now) {
  SCHED_ASSIGN_OR_RETURN(YAML::Node root, LoadSpecYaml(yaml));
  Pipeline pipeline;
  std::string project;
  YAML::Node stages;
  try {
    SCHED_ASSIGN_OR_RETURN(auto entries, Entries(root, "", {"pipeline", "project", "stages"}));
    for (const auto& [key, value] : entries) {
      if (key == "pipeline") {
        SCHED_ASSIGN_OR_RETURN(pipeline.name, String(value, key));
      } else if (key == "project") {
        SCHED_ASSIGN_OR_RETURN(project, String(value, key));
      } else {
        stages = value;
      }
    }
    if (!stages.IsSequence() || stages.size() == 0) {
      return Expected("stages", "a list of job specs, each with a name", stages);
    }
    if (stages.size() > 64) return Invalid("stages", "at most 64");
    std::set<std::string> earlier;
    for (size_t i = 0; i < stages.size(); ++i) {
      const std::string path = absl::StrCat("stages[", i, "]");
      absl::StatusOr<JobSpec> spec = SpecOf(stages[i], now);
      if (!spec.ok()) {
        return absl::Status(spec.status().code(),
                            absl::StrCat(path, ".", spec.status().message()));
      }
      PipelineStage stage{spec->name(), *std::move(spec)};
      if (stage.name.empty()) return Invalid(Child(path, "name"), "required: it names the stage");
      if (earlier.count(stage.name)) {
        return Invalid(Child(path, "name"), absl::StrCat("\"", stage.name, "\" is taken"));
      }
      if (stage.spec.project().empty()) stage.spec.set_project(project);
      // Without `after`, a stage runs once the one before it succeeded.
      if (stage.spec.after_size() == 0 && i > 0) {
        sched::v1::Dependency* d = stage.spec.add_after();
        d->set_job_id(pipeline.stages.back().name);
        d->set_when("success");
      }
      for (int k = 0; k < stage.spec.after_size(); ++k) {
        if (!earlier.count(stage.spec.after(k).job_id())) {
          return Invalid(absl::StrCat(path, ".after[", k, "]"),
                         absl::StrCat("no earlier stage is named \"",
                                      stage.spec.after(k).job_id(), "\""));
        }
      }
      // An input is a stage this one runs after, on its success.
      for (int k = 0; k < stage.spec.inputs_size(); ++k) {
        const std::string& from = stage.spec.inputs(k).job_id();
        if (!earlier.count(from)) {
          return Invalid(absl::StrCat(path, ".inputs[", k, "]"),
                         absl::StrCat("no earlier stage is named \"", from, "\""));
        }
        bool listed = false;
        for (const sched::v1::Dependency& d : stage.spec.after()) {
          listed = listed || (d.job_id() == from && d.when() == "success");
        }
        if (!listed) {
          sched::v1::Dependency* d = stage.spec.add_after();
          d->set_job_id(from);
          d->set_when("success");
        }
      }
      if (!pipeline.name.empty()) (*stage.spec.mutable_labels())["pipeline"] = pipeline.name;
      (*stage.spec.mutable_labels())["stage"] = stage.name;
      earlier.insert(stage.name);
      pipeline.stages.push_back(std::move(stage));
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid pipeline: ", e.what()));
  }
  return pipeline;
}

absl::Status ResolveStages(JobSpec& spec, const std::map<std::string, std::string>& ids) {
  for (sched::v1::Dependency& d : *spec.mutable_after()) {
    auto it = ids.find(d.job_id());
    if (it == ids.end()) return absl::NotFoundError(absl::StrCat("no stage ", d.job_id()));
    d.set_job_id(it->second);
  }
  for (sched::v1::JobInput& input : *spec.mutable_inputs()) {
    auto it = ids.find(input.job_id());
    if (it == ids.end()) return absl::NotFoundError(absl::StrCat("no stage ", input.job_id()));
    input.set_job_id(it->second);
  }
  return absl::OkStatus();
}

}  // namespace sched::client
