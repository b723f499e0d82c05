#pragma once

#include <cstdint>
#include <string>

#include "server/core/job.h"

namespace sched {

// The scheduler's way to push commands to one connected agent. Implemented by the service
// layer over the agent's Connect stream; calls must not block and must not call back into the
// Scheduler. The Scheduler only calls it after the change that caused the command is durable.
class AgentLink {
 public:
  virtual ~AgentLink() = default;
  // Run `job` (its epoch and gpu_indexes are set).
  virtual void Assign(const Job& job) = 0;
  // Stop the job and report how it ended.
  virtual void Cancel(const std::string& job_id, uint64_t epoch) = 0;
  // The job is no longer this agent's: kill it, report nothing more.
  virtual void Stop(const std::string& job_id, uint64_t epoch, const std::string& reason) = 0;
  virtual void Drain() = 0;
};

}  // namespace sched
