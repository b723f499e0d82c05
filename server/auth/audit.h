#pragma once
// Who did what, one JSON object per line in <data_dir>/audit.log (0600): submits, cancels,
// budget changes, cordons and drains, tokens made, revoked and first used, nodes joined,
// renewed and revoked, and every call refused for want of a token or a right.
//
//   {"time":"2026-11-26T13:40:01.123Z","who":"token 3f9a... (member)","peer":"ipv4:10.0.0.7:51234",
//    "action":"submit","target":"job 9c1e...","project":"llm","result":"ok"}
//
// Lines are written by a thread of their own, so no call waits on the disk; they reach it
// within a second (synced each second) and at shutdown. Secret values never appear: the log
// names jobs, projects, tokens and nodes, never a spec's variables.
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace sched::auth {

struct AuditEntry {
  std::string who;     // Caller::Name()
  std::string peer;    // the caller's address as gRPC gives it
  std::string action;  // "submit", "cancel", "token_create", "denied", ...
  std::string target;  // "job <id>", "token <id>", "node <name>", "project <name>"
  std::string project;
  std::string result;  // "ok", or the status code and message of a refusal
};

class AuditLog {
 public:
  // Appends to `path` (made 0600 if missing). Empty path: a log that keeps nothing.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path);
  ~AuditLog();  // writes and syncs what is queued

  void Record(AuditEntry entry, absl::Time when = absl::Now());
  // Blocks until everything recorded so far is written (tests).
  void Flush();

  // The JSON line for `entry` (without the newline).
  static std::string Format(const AuditEntry& entry, absl::Time when);

 private:
  AuditLog() = default;
  void WriterLoop();

  int fd_ = -1;
  absl::Mutex mu_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t queued_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t written_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;
};

}  // namespace sched::auth
