#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/node_settings.h"

namespace sched::agent {

// The agent's config file (--config=agent.yaml): a YAML mapping whose keys are NodeSettings'
// names, the same as the flags'. labels is a mapping (or "k=v,k=v"); spot a boolean; the prices,
// power and months numbers; the others strings. advertise_gpus is a string in the flag's syntax
// or a list whose items are such strings or mappings {count, model, memory}. Values are checked
// as ValidateNodeSettings does. INVALID_ARGUMENT naming the key (and line) for an unknown key, a
// value of the wrong type or a bad value; an empty document sets nothing.
absl::StatusOr<NodeSettings> ParseAgentConfig(absl::string_view yaml);

// ParseAgentConfig of the file at `path`; its errors start with "<path>: ". NOT_FOUND when the
// file cannot be read.
absl::StatusOr<NodeSettings> LoadAgentConfig(const std::string& path);

}  // namespace sched::agent
