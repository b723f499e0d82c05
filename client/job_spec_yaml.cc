#include "client/job_spec_yaml.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
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
      auto entries, Entries(node, path, {"gpus", "gpu_memory", "gpu_model", "cpus", "memory"}));
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

absl::Status ParseSpec(const YAML::Node& root, JobSpec& spec) {
  if (root.IsNull()) return Invalid("run", "required");
  SCHED_ASSIGN_OR_RETURN(auto entries, Entries(root, "",
                                               {"name", "project", "run", "setup", "env",
                                                "resources", "priority", "labels"}));
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
    } else if (key == "resources") {
      SCHED_RETURN_IF_ERROR(ParseResources(value, key, *spec.mutable_resources()));
    } else if (key == "priority") {
      SCHED_ASSIGN_OR_RETURN(int64_t priority,
                             Integer(value, key, kMinPriority, kMaxPriority, "an integer"));
      spec.set_priority(static_cast<int32_t>(priority));
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

}  // namespace

absl::StatusOr<JobSpec> ParseJobSpecYaml(std::string_view yaml) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid YAML at line ", e.mark.line + 1,
                                                   ", column ", e.mark.column + 1, ": ", e.msg));
  }
  JobSpec spec;
  absl::Status status;
  try {
    status = ParseSpec(root, spec);
  } catch (const YAML::Exception& e) {  // Not expected: every access above checks the type.
    status = absl::InvalidArgumentError(absl::StrCat("invalid job spec: ", e.what()));
  }
  SCHED_RETURN_IF_ERROR(status);
  return spec;
}

}  // namespace sched::client
