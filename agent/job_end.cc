#include "agent/job_end.h"

#include "absl/strings/str_cat.h"

namespace sched::agent {

JobEnd DescribeJobEnd(const absl::StatusOr<ExitStatus>& exit, bool cancel_requested) {
  JobEnd end;
  if (!exit.ok()) {
    end.message = std::string(exit.status().message());
  } else if (exit->signal != 0) {
    end.exit_code = 128 + exit->signal;
    end.message = absl::StrCat("killed by signal ", exit->signal);
  } else {
    end.exit_code = exit->exit_code;
    end.message = absl::StrCat("exit code ", exit->exit_code);
    if (exit->exit_code == 0) {
      end.state = v1::JOB_STATE_SUCCEEDED;
      end.result = JobResult::kSucceeded;
    }
  }
  if (cancel_requested) {
    end.state = v1::JOB_STATE_CANCELLED;
    end.result = JobResult::kCancelled;
    end.message = absl::StrCat("cancelled: ", end.message);
  }
  return end;
}

}  // namespace sched::agent
