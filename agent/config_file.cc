#include "agent/config_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/labels.h"
#include "server/common/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace sched::agent {
namespace {

// "price_per_hour (line 3)": where a value sits, for messages.
std::string Where(absl::string_view key, const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.line < 0) return std::string(key);
  return absl::StrCat(key, " (line ", mark.line + 1, ")");
}

absl::Status WrongType(absl::string_view key, const YAML::Node& node, absl::string_view want) {
  std::string got = "a list";
  if (node.IsScalar()) got = absl::StrCat("\"", node.Scalar(), "\"");
  if (node.IsMap()) got = "a mapping";
  if (node.IsNull()) got = "nothing";
  return absl::InvalidArgumentError(absl::StrCat(Where(key, node), ": want ", want, ", got ", got));
}

absl::StatusOr<std::string> Text(absl::string_view key, const YAML::Node& node) {
  if (!node.IsScalar()) return WrongType(key, node, "a string");
  return node.Scalar();
}

absl::StatusOr<double> Number(absl::string_view key, const YAML::Node& node) {
  double value = 0;
  if (!node.IsScalar() || !absl::SimpleAtod(node.Scalar(), &value)) {
    return WrongType(key, node, "a number");
  }
  return value;
}

absl::StatusOr<bool> Boolean(absl::string_view key, const YAML::Node& node) {
  bool value = false;
  if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) {
    return WrongType(key, node, "true or false");
  }
  return value;
}

absl::StatusOr<std::map<std::string, std::string>> Labels(const YAML::Node& node) {
  if (node.IsScalar()) return ParseLabels(node.Scalar());
  if (!node.IsMap()) return WrongType("labels", node, "a mapping of strings");
  std::map<std::string, std::string> labels;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar() || !kv.second.IsScalar()) {
      return WrongType("labels", kv.second, "a mapping of strings");
    }
    labels[kv.first.Scalar()] = kv.second.Scalar();
  }
  return labels;
}

// One item of an advertise_gpus list: "2x MODEL:MEMORY" or {count, model, memory}.
absl::StatusOr<std::vector<GpuDevice>> GpuItem(const YAML::Node& item, uint32_t first_index) {
  if (item.IsScalar()) return ParseAdvertisedGpuEntry(item.Scalar(), first_index);
  if (!item.IsMap()) return WrongType("advertise_gpus", item, "a string or {count, model, memory}");
  std::string entry;
  std::string count = "1";
  std::string model;
  std::string memory;
  for (const auto& kv : item) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "";
    std::string* field = key == "count"    ? &count
                         : key == "model"  ? &model
                         : key == "memory" ? &memory
                                           : nullptr;
    if (field == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          Where("advertise_gpus", kv.first), ": unknown key \"", key, "\" (count, model, memory)"));
    }
    SCHED_ASSIGN_OR_RETURN(*field, Text(absl::StrCat("advertise_gpus.", key), kv.second));
  }
  int unused = 0;
  if (!absl::SimpleAtoi(count, &unused)) {
    return WrongType("advertise_gpus.count", item["count"], "a whole number");
  }
  return ParseAdvertisedGpuEntry(absl::StrCat(count, "x ", model, ":", memory), first_index);
}

absl::StatusOr<std::vector<GpuDevice>> Gpus(const YAML::Node& node) {
  if (node.IsScalar()) return ParseAdvertisedGpus(node.Scalar());
  if (!node.IsSequence() || node.size() == 0) {
    return WrongType("advertise_gpus", node, "a string or a list of GPU entries");
  }
  std::vector<GpuDevice> gpus;
  for (const YAML::Node& item : node) {
    absl::StatusOr<std::vector<GpuDevice>> more = GpuItem(item, static_cast<uint32_t>(gpus.size()));
    if (!more.ok() && absl::StrContains(more.status().message(), "(line ")) return more.status();
    if (!more.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", item.Mark().line + 1, ": ", more.status().message()));
    }
    gpus.insert(gpus.end(), more->begin(), more->end());
  }
  return gpus;
}

// A price schedule: its text, or a list of its windows ("00:00-07:00=0.12").
absl::StatusOr<std::string> Schedule(absl::string_view key, const YAML::Node& node) {
  if (node.IsScalar()) return node.Scalar();
  if (!node.IsSequence() || node.size() == 0) {
    return WrongType(key, node, "a string or a list of windows like 00:00-07:00=0.12");
  }
  std::vector<std::string> items;
  for (const YAML::Node& item : node) {
    SCHED_ASSIGN_OR_RETURN(std::string text, Text(key, item));
    items.push_back(std::move(text));
  }
  return absl::StrJoin(items, ", ");
}

using Setter = std::function<absl::Status(const YAML::Node&, NodeSettings&)>;

template <typename T>
Setter Set(std::optional<T> NodeSettings::*field,
           absl::StatusOr<T> (*read)(absl::string_view, const YAML::Node&), const char* key) {
  return [field, read, key](const YAML::Node& node, NodeSettings& s) -> absl::Status {
    SCHED_ASSIGN_OR_RETURN(T value, read(key, node));
    s.*field = std::move(value);
    return absl::OkStatus();
  };
}

const std::map<std::string, Setter>& Setters() {
  static const auto* setters = new std::map<std::string, Setter>{
      {"labels",
       [](const YAML::Node& n, NodeSettings& s) -> absl::Status {
         SCHED_ASSIGN_OR_RETURN(s.labels, Labels(n));
         return absl::OkStatus();
       }},
      {"advertise_gpus",
       [](const YAML::Node& n, NodeSettings& s) -> absl::Status {
         SCHED_ASSIGN_OR_RETURN(s.advertise_gpus, Gpus(n));
         return absl::OkStatus();
       }},
      {"price_per_hour", Set(&NodeSettings::price_per_hour, Number, "price_per_hour")},
      {"spot", Set(&NodeSettings::spot, Boolean, "spot")},
      {"provider", Set(&NodeSettings::provider, Text, "provider")},
      {"region", Set(&NodeSettings::region, Text, "region")},
      {"instance_type", Set(&NodeSettings::instance_type, Text, "instance_type")},
      {"power_watts", Set(&NodeSettings::power_watts, Number, "power_watts")},
      {"electricity_per_kwh",
       Set(&NodeSettings::electricity_per_kwh, Number, "electricity_per_kwh")},
      {"hardware_cost", Set(&NodeSettings::hardware_cost, Number, "hardware_cost")},
      {"amortize_months", Set(&NodeSettings::amortize_months, Number, "amortize_months")},
      {"price_schedule", Set(&NodeSettings::price_schedule, Schedule, "price_schedule")},
  };
  return *setters;
}

std::string KnownKeys() {
  std::vector<std::string> keys;
  for (const auto& [key, setter] : Setters()) keys.push_back(key);
  return absl::StrJoin(keys, ", ");
}

}  // namespace

absl::StatusOr<NodeSettings> ParseAgentConfig(absl::string_view yaml) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("line ", e.mark.line + 1, ": not YAML: ", e.msg));
  }
  NodeSettings settings;
  if (root.IsNull()) return settings;
  if (!root.IsMap()) return WrongType("the file", root, "a mapping of settings");
  for (const auto& kv : root) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "";
    auto it = Setters().find(key);
    if (it == Setters().end()) {
      return absl::InvalidArgumentError(absl::StrCat(Where(absl::StrCat("\"", key, "\""), kv.first),
                                                     ": unknown key; known: ", KnownKeys()));
    }
    SCHED_RETURN_IF_ERROR(it->second(kv.second, settings));
  }
  SCHED_RETURN_IF_ERROR(ValidateNodeSettings(settings));
  return settings;
}

absl::StatusOr<NodeSettings> LoadAgentConfig(const std::string& path) {
  std::ifstream file(path);
  if (!file) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  std::stringstream text;
  text << file.rdbuf();
  absl::StatusOr<NodeSettings> settings = ParseAgentConfig(text.str());
  if (!settings.ok()) {
    return absl::Status(settings.status().code(),
                        absl::StrCat(path, ": ", settings.status().message()));
  }
  return settings;
}

}  // namespace sched::agent
