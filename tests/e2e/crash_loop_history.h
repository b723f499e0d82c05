#pragma once

// The crash loop's record of every client call: when it was invoked and how it came out (ok,
// failed for certain, or unknown because schedd died or the transport broke). Unknown calls are
// resolved after the last kill. The checker reads the ops; the JSON-lines file is for a person
// reading a failed run.

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace sched::crash_loop {

// Job states, numbered as sched.v1.JobState, so the checker needs no protobuf.
enum class State { kUnspecified = 0, kPending, kAssigned, kRunning, kSucceeded, kFailed, kCancelled };
bool IsTerminal(State s);
const char* StateName(State s);

// What a client saw of a job: an ack's value, a WatchJobs event, or a row of the final ListJobs.
struct JobView {
  std::string id;
  std::string request_id;
  State state = State::kUnspecified;
  uint32_t attempt = 0;
  uint64_t epoch = 0;
  bool cancel_requested = false;
  int32_t exit_code = 0;
};

enum class OpKind { kSubmit, kCancel };
enum class Outcome { kInvoked, kOk, kFailed, kUnknown };
// How an unknown call turned out, found after the last kill.
enum class Resolution { kNone, kApplied, kNotApplied };

struct Op {
  uint64_t id = 0;
  int worker = 0;
  OpKind kind = OpKind::kSubmit;
  std::string key;  // submit: the request id; cancel: the job id
  int64_t invoke_us = 0;
  int64_t complete_us = 0;
  Outcome outcome = Outcome::kInvoked;
  JobView job;            // kOk: the job in the reply
  bool existing = false;  // kOk submit: the request id matched an earlier submit
  int code = 0;           // kFailed / kUnknown: the gRPC status code
  std::string message;
  Resolution resolution = Resolution::kNone;
};

// Thread-safe. Each call appends a line to `jsonl_path` (when not empty) and flushes it, so the
// file tells what happened even if the harness itself dies.
class History {
 public:
  explicit History(const std::string& jsonl_path = "");

  uint64_t Invoke(int worker, OpKind kind, std::string key);
  void Ok(uint64_t op, JobView job, bool existing = false);
  void Fail(uint64_t op, int code, std::string message);
  void Unknown(uint64_t op, int code, std::string message);
  void Resolve(uint64_t op, Resolution resolution);

  std::vector<Op> ops() const;

 private:
  Op& At(uint64_t op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Complete(uint64_t op, Outcome outcome, int code, std::string message);
  void WriteLocked(const Op& op, const char* event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::vector<Op> ops_ ABSL_GUARDED_BY(mu_);  // ops_[i].id == i + 1
  std::ofstream out_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sched::crash_loop
