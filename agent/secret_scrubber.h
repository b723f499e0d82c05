#pragma once
// Keeps a job's secret values out of its logs: each occurrence in its output becomes
// "[secret NAME]", also when the output arrives split in the middle of a value (the end of a
// piece that may begin one is held back until the next piece shows whether it does).
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace sched::agent {

// Values shorter than this are not looked for: "1" or "on" would blank out ordinary output.
inline constexpr size_t kMinSecretBytes = 4;

class SecretScrubber {
 public:
  // (name, value) pairs; values under kMinSecretBytes are ignored.
  explicit SecretScrubber(const std::vector<std::pair<std::string, std::string>>& secrets);

  // The output so far with secrets replaced; may hold back a tail (up to the longest value - 1
  // bytes) until more comes.
  std::string Feed(absl::string_view data);
  // Whatever is held back: the output has ended.
  std::string Flush();
  bool active() const { return !secrets_.empty(); }

 private:
  std::vector<std::pair<std::string, std::string>> secrets_;  // value, replacement
  std::string pending_;
};

}  // namespace sched::agent
