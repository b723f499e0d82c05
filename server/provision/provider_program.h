#pragma once

#include <atomic>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace sched::provision {

// Runs a provider program once: `program op` with `request` as one JSON object on its stdin,
// and reads the one JSON object it writes on stdout (docs/providers.md, "The protocol").
//
// The program runs in a process group of its own; past `timeout` the whole group is killed and
// DEADLINE_EXCEEDED returned. A non-zero exit is UNAVAILABLE with the program's {"error": ...}
// or the tail of its stderr; an answer that is not one JSON object, or longer than 4 MiB, is
// INTERNAL. Every message names the program and the op. Thread-safe: one call per thread.
// When `cancel` becomes true the program is killed as at a timeout (CANCELLED).
absl::StatusOr<nlohmann::json> RunProvider(const std::string& program, const std::string& op,
                                           const nlohmann::json& request, absl::Duration timeout,
                                           const std::atomic<bool>* cancel = nullptr);

}  // namespace sched::provision
