#pragma once

// Helpers shared by the agent's tests.

#include <stdlib.h>
#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"

namespace sched::agent::testing {

// A new empty folder under the test's temporary folder, by its canonical path.
inline std::string MakeTempDir(const std::string& prefix) {
  std::string pattern = ::testing::TempDir() + prefix + ".XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) return "";
  return std::filesystem::canonical(pattern).string();
}

// True while `pid` runs; a zombie counts as ended.
inline bool IsAlive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(stat, text)) return false;
  const size_t paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] != 'Z' &&
         text[paren + 2] != 'X';
}

// How long until `pid` ended, or nullopt if it still runs after `timeout`.
inline std::optional<absl::Duration> TimeToDeath(pid_t pid, absl::Duration timeout) {
  const absl::Time start = absl::Now();
  while (IsAlive(pid)) {
    if (absl::Now() - start > timeout) return std::nullopt;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return absl::Now() - start;
}

// The first line of `path` as a pid; 0 when unreadable.
inline pid_t ReadPid(const std::string& path) {
  std::ifstream in(path);
  pid_t pid = 0;
  in >> pid;
  return pid;
}

// The value of the counter or gauge `name` with exactly `labels`; -1 when absent.
inline double MetricValue(prometheus::Registry& registry, const std::string& name,
                          const std::vector<prometheus::ClientMetric::Label>& labels = {}) {
  for (const prometheus::MetricFamily& f : registry.Collect()) {
    if (f.name != name) continue;
    for (const prometheus::ClientMetric& m : f.metric) {
      if (m.label != labels) continue;
      return f.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
    }
  }
  return -1;
}

}  // namespace sched::agent::testing
