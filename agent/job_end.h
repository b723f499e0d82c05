#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "agent/metrics.h"
#include "agent/runner.h"
#include "sched/v1/types.pb.h"

namespace sched::agent {

// What the agent reports when a job's process has ended.
struct JobEnd {
  v1::JobState state = v1::JOB_STATE_FAILED;
  // The shell's exit code; 128 + N when killed by signal N (the shell's habit); -1 when the
  // process never started.
  int exit_code = -1;
  std::string message;  // "exit code N", "killed by signal N", or why it never started
  JobResult result = JobResult::kFailed;
};

// SUCCEEDED for exit code 0, FAILED otherwise, CANCELLED whenever a cancel was asked for.
JobEnd DescribeJobEnd(const absl::StatusOr<ExitStatus>& exit, bool cancel_requested);

}  // namespace sched::agent
