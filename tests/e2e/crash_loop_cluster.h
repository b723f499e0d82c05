#pragma once

// The crash loop's processes: schedd on a fixed port over one data folder kept across restarts,
// and real sched-agents that reconnect on their own.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/testing/subprocess.h"

namespace sched::crash_loop {

// One schedd after another on the same port and data folder; each incarnation logs to its own
// file, so a failpoint's crash can be told from our SIGKILL.
class SchedIncarnations {
 public:
  SchedIncarnations(std::string dir, int port);

  std::string address() const;
  // Starts the next incarnation, with `failpoints` armed when not empty, and waits until it
  // accepts connections (the store is open by then). Returns how long that took. UNAVAILABLE when
  // it did not come up within `timeout` on its own (the log says why); ABORTED when a failpoint
  // crashed it before we saw it serve.
  absl::StatusOr<absl::Duration> Start(const std::string& failpoints, uint64_t seed,
                                       absl::Duration timeout);
  bool running();
  // SIGKILL, and reap.
  void Kill();
  // The failpoint that crashed the current incarnation, from its log; empty if none did.
  std::string CrashedAt() const;
  int incarnations() const { return incarnation_; }

 private:
  std::string LogPath() const;

  const std::string dir_;
  const int port_;
  int incarnation_ = 0;
  std::unique_ptr<testing::Subprocess> proc_;
};

// `count` sched-agents named a1, a2, ... each with its own work folder under `dir`.
std::vector<std::unique_ptr<testing::Subprocess>> StartAgents(const std::string& dir,
                                                              const std::string& address,
                                                              int count);

}  // namespace sched::crash_loop
