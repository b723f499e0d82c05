#pragma once

// The owner comes first: on the user's own machine, a GPU that a process the agent did not start
// begins to use is the owner's. The agent steps its jobs on that GPU aside (they checkpoint and
// go back to the queue) and tells schedd, which places nothing there until the agent gives the
// GPU back: once no process of the owner's has used it for `idle`.
//
// OwnerWatch holds the decisions and nothing else (no clocks or files of its own), so that they
// can be tested exactly; ForeignGpuProcesses() sorts NVML's processes into the agent's and the
// others by reading /proc.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/nvml.h"

namespace sched::agent {

// A process on a GPU that the agent did not start.
struct ForeignProcess {
  uint32_t gpu = 0;
  int pid = 0;
  std::string name;  // /proc/<pid>/comm
};

// Of `processes`, those that are neither one of `roots` (the agent's jobs' first processes) nor
// their descendants (the parent chain) nor in their process groups, and whose name is not in
// `ignore`. A process gone from `proc` (ended, or in another PID namespace) is left out.
std::vector<ForeignProcess> ForeignGpuProcesses(const std::vector<GpuProcess>& processes,
                                                const std::set<int>& roots,
                                                const std::vector<std::string>& ignore,
                                                const std::string& proc = "/proc");

// The processes on GPUs as a file lists them, one "<gpu index> <pid>" a line ('#' starts a
// comment); a missing file lists none. For machines without NVML, where tests stand in for the
// owner (sched-agent --owner_processes_file). INVALID_ARGUMENT names a bad line.
absl::StatusOr<std::vector<GpuProcess>> ReadGpuProcessesFile(const std::string& path);

class OwnerWatch {
 public:
  explicit OwnerWatch(absl::Duration idle) : idle_(idle) {}

  struct Change {
    std::set<uint32_t> taken;     // GPUs the owner began to use
    std::set<uint32_t> returned;  // GPUs the owner left idle for `idle`: the agent's again
    bool changed() const { return !taken.empty() || !returned.empty(); }
  };
  // What the owner uses at `now`: `foreign` as ForeignGpuProcesses gave it.
  Change Observe(absl::Time now, const std::vector<ForeignProcess>& foreign);

  // The owner's GPUs now, and for each the owner's process seen on it last ("pid 4242 (python3)").
  const std::set<uint32_t>& gpus() const { return gpus_; }
  // "GPU 0: pid 4242 (python3)", joined with "; ", for schedd and people.
  std::string Describe() const;

 private:
  const absl::Duration idle_;
  std::set<uint32_t> gpus_;
  std::map<uint32_t, absl::Time> last_seen_;
  std::map<uint32_t, std::string> who_;
};

}  // namespace sched::agent
