#pragma once

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/message.h"

namespace sched::client {

// The message in protobuf's canonical JSON mapping (lowerCamelCase names, int64 as strings,
// default values left out), indented, ending in a newline.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);

// The same document as block YAML. Strings a YAML reader would take for another type
// ("24000000000", "true", "2024-01-01T00:00:00Z") are double-quoted so that they stay strings.
absl::StatusOr<std::string> ToYaml(const google::protobuf::Message& message);

}  // namespace sched::client
