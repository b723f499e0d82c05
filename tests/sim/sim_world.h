#pragma once

// A deterministic simulation of the scheduler core. One seed drives a whole world on one
// thread: the real sched::Scheduler over a store that loses unsynced batches when schedd
// "crashes", simulated agents that follow the real agent's protocol (register, heartbeat, lease
// watchdog, final update kept until acknowledged), clients that submit with request ids and
// cancel, and a network that drops, duplicates, delays and reorders messages, partitions agents
// one way or both, and pauses them. The scheduler's clock jumps too.
//
// Safety invariants are checked after every step; once the faults stop, every job must end
// within a bound (liveness). The same seed replays the same run exactly.

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace sched::sim {

struct SimOptions {
  uint64_t seed = 1;
  // Print every event as it happens.
  bool trace = false;
  // Faults and new submits happen in [0, fault_time); then the world heals.
  absl::Duration fault_time = absl::Seconds(30);
};

struct SimResult {
  uint64_t seed = 0;
  bool ok = true;
  std::string violation;  // the first broken invariant, with the step and time
  uint64_t steps = 0;
  absl::Duration sim_time;
  int agents = 0;
  int jobs = 0;
  int schedd_crashes = 0;
  int agent_crashes = 0;
  int pauses = 0;
  int partitions = 0;
  int clock_jumps = 0;
  uint64_t messages = 0;
  uint64_t dropped = 0;
  uint64_t duplicated = 0;
  int unknown_calls = 0;      // client calls whose outcome the client could not know
  int refused_reports = 0;    // agent reports refused as stale
  int accepted_completions = 0;
  uint64_t priority_preemptions = 0;  // jobs stopped for a higher-priority one

  std::string Summary() const;
};

SimResult RunSimulation(const SimOptions& options);

// How to run one seed again, with its trace.
std::string ReplayCommand(uint64_t seed);

}  // namespace sched::sim
