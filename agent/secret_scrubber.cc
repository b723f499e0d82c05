#include "agent/secret_scrubber.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace sched::agent {

SecretScrubber::SecretScrubber(const std::vector<std::pair<std::string, std::string>>& secrets) {
  for (const auto& [name, value] : secrets) {
    if (value.size() >= kMinSecretBytes) {
      secrets_.emplace_back(value, absl::StrCat("[secret ", name, "]"));
    }
  }
  // The longest first, so a value that contains another is replaced whole.
  std::sort(secrets_.begin(), secrets_.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

std::string SecretScrubber::Feed(absl::string_view data) {
  if (secrets_.empty()) return std::string(data);
  const std::string buf = absl::StrCat(pending_, data);
  pending_.clear();
  std::string out;
  out.reserve(buf.size());
  const absl::string_view all(buf);
  size_t i = 0;
  while (i < all.size()) {
    const absl::string_view rest = all.substr(i);
    bool replaced = false, maybe = false;
    for (const auto& [value, replacement] : secrets_) {
      if (rest.size() >= value.size()) {
        if (rest.substr(0, value.size()) == value) {
          out += replacement;
          i += value.size();
          replaced = true;
          break;
        }
      } else if (value.compare(0, rest.size(), rest.data(), rest.size()) == 0) {
        maybe = true;  // the rest may be the start of this value
      }
    }
    if (replaced) continue;
    if (maybe) {
      pending_ = std::string(rest);
      break;
    }
    out += all[i++];
  }
  return out;
}

std::string SecretScrubber::Flush() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

}  // namespace sched::agent
