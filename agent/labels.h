#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sched::agent {

// Parses the --labels flag: "k=v,k=v". Blanks around keys and values are dropped; an empty
// string gives no labels. INVALID_ARGUMENT for an entry without '=', an empty key or a key given
// twice.
absl::StatusOr<std::map<std::string, std::string>> ParseLabels(absl::string_view text);

}  // namespace sched::agent
