#include "agent/labels.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace sched::agent {

absl::StatusOr<std::map<std::string, std::string>> ParseLabels(absl::string_view text) {
  std::map<std::string, std::string> labels;
  if (absl::StripAsciiWhitespace(text).empty()) return labels;
  for (absl::string_view entry : absl::StrSplit(text, ',')) {
    std::vector<absl::string_view> kv = absl::StrSplit(entry, absl::MaxSplits('=', 1));
    if (kv.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("labels: \"", entry, "\" is not key=value (write k=v,k=v)"));
    }
    std::string key(absl::StripAsciiWhitespace(kv[0]));
    if (key.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("labels: \"", entry, "\" has an empty key"));
    }
    auto [it, inserted] = labels.emplace(key, absl::StripAsciiWhitespace(kv[1]));
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat("labels: key \"", key, "\" given twice"));
    }
  }
  return labels;
}

}  // namespace sched::agent
