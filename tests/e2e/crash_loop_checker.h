#pragma once

// The crash loop's judge: plain C++ over what the clients saw. It knows nothing of processes or
// RPCs, so it is tested on hand-made histories.

#include <string>
#include <vector>

#include "tests/e2e/crash_loop_history.h"

namespace sched::crash_loop {

struct CheckInput {
  std::vector<Op> ops;
  // Every WatchJobs event in the order it arrived, across all subscriptions.
  std::vector<JobView> events;
  // ListJobs after the run.
  std::vector<JobView> final_jobs;
  // Liveness: every job must have ended by the time `final_jobs` was read.
  bool require_all_terminal = true;
};

// One line per broken rule; empty when the run was correct. The rules:
//  - every acknowledged submit exists at the end, under its request id and job id; no request
//    id has two jobs and no job has a request id nobody sent;
//  - no job's state went backwards: per job, (ended, attempt, epoch, state) never decreases
//    across events and the final state;
//  - at most one terminal outcome per job: once ended, always the same state and exit code;
//  - epochs only grow: a job's epoch never decreases and no epoch is given to two jobs;
//  - every call whose outcome was unknown was resolved; none stayed merely invoked;
//  - an acknowledged cancel (or any cancel_requested) ends CANCELLED; a cancel of an
//    acknowledged job never gets NOT_FOUND;
//  - a job seen in an event exists at the end; a SUCCEEDED job exited 0;
//  - with require_all_terminal, every job ended.
std::vector<std::string> Check(const CheckInput& input);

}  // namespace sched::crash_loop
