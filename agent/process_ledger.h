#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace sched::agent {

// Notes on disk the process group of every running job, so that an agent started after its
// predecessor was killed (kill -9, OOM) can kill the jobs that were left running: schedd has
// already given them to someone else or will, and two runs of one job must not go on at once.
//
// A record is "<pgid> <start time>" in <dir>/<key>; the start time (from /proc) guards against
// a reused pid. Thread-safe as long as keys differ between callers.
class ProcessLedger {
 public:
  explicit ProcessLedger(std::string dir) : dir_(std::move(dir)) {}

  void Record(const std::string& key, pid_t pgid);
  void Erase(const std::string& key);
  // SIGKILLs every recorded group that is still the one recorded, then forgets all records.
  // Returns how many groups were killed.
  int KillLeftovers();

 private:
  std::string dir_;
};

// Start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat); 0 if it is gone.
uint64_t ProcessStartTime(pid_t pid);

}  // namespace sched::agent
