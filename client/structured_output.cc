#include "client/structured_output.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "yaml-cpp/yaml.h"

namespace sched::client {
namespace {

// Plain scalars YAML would read as numbers, booleans, nulls or timestamps.
bool NeedsQuotes(const std::string& s) {
  if (s.empty()) return true;
  const char c = s[0];
  if (absl::ascii_isdigit(c) || c == '+' || c == '-' || c == '.') return true;
  const std::string lower = absl::AsciiStrToLower(s);
  for (const char* word : {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"}) {
    if (lower == word) return true;
  }
  return false;
}

void Emit(const YAML::Node& node, YAML::Emitter& out) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      out << YAML::BeginMap;
      for (auto it = node.begin(); it != node.end(); ++it) {
        out << YAML::Key << it->first.Scalar() << YAML::Value;
        Emit(it->second, out);
      }
      out << YAML::EndMap;
      break;
    case YAML::NodeType::Sequence:
      out << YAML::BeginSeq;
      for (const YAML::Node& item : node) Emit(item, out);
      out << YAML::EndSeq;
      break;
    case YAML::NodeType::Scalar:
      // yaml-cpp tags quoted scalars (JSON strings) "!" and plain ones (numbers, booleans) "?".
      if (node.Tag() == "!" && NeedsQuotes(node.Scalar())) out << YAML::DoubleQuoted;
      out << node.Scalar();
      break;
    default:
      out << YAML::Null;
  }
}

}  // namespace

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat("cannot write JSON: ", status.ToString()));
  }
  if (json.empty() || json.back() != '\n') json += '\n';
  return json;
}

absl::StatusOr<std::string> ToYaml(const google::protobuf::Message& message) {
  absl::StatusOr<std::string> json = ToJson(message);
  if (!json.ok()) return json.status();
  YAML::Emitter out;
  try {
    Emit(YAML::Load(*json), out);
  } catch (const YAML::Exception& e) {
    return absl::InternalError(absl::StrCat("cannot write YAML: ", e.what()));
  }
  if (!out.good())
    return absl::InternalError(absl::StrCat("cannot write YAML: ", out.GetLastError()));
  return absl::StrCat(out.c_str(), "\n");
}

}  // namespace sched::client
