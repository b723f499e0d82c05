#pragma once

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sched::agent {

// One line on stderr, prefixed with the program's name. The agent's only logging: Debian 12's
// Abseil has no absl/log.
template <typename... Args>
void Log(const absl::FormatSpec<Args...>& format, const Args&... args) {
  std::string line = absl::StrCat("sched-agent: ", absl::StrFormat(format, args...), "\n");
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace sched::agent
