#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/core/job.h"
#include "server/core/ledger.h"
#include "server/core/node.h"

namespace sched {

enum class LogStreamKind { kStdout = 1, kStderr = 2 };

struct LogRecord {
  uint64_t index = 0;  // per job, from 1, assigned by the store
  uint32_t attempt = 0;
  LogStreamKind stream = LogStreamKind::kStdout;
  std::string data;
  absl::Time time = absl::InfinitePast();
};

// One durable change: whole records are written, never deltas, so replay is trivial.
struct StoreOp {
  enum class Kind { kPutJob, kPutNode, kPutLedger, kPutBudget };
  Kind kind = Kind::kPutJob;
  Job job;
  NodeRecord node;
  LedgerEntry ledger;  // keyed by (job_id, epoch)
  Budget budget;       // keyed by project
};
using StoreBatch = std::vector<StoreOp>;

struct LoadedState {
  std::vector<Job> jobs;
  std::vector<NodeRecord> nodes;
  std::vector<LedgerEntry> ledger;  // in (job_id, epoch) order
  std::vector<Budget> budgets;
};

// Where the scheduler's state lives. Implementations: RocksDbStore (server/store) and
// MemoryStore (server/store, for tests).
//
// Durability contract: Append() enqueues a batch and returns a ticket at once, never blocking
// on I/O; batches become durable in ticket order (a ticket durable implies every smaller one
// is). WhenDurable(t, done) calls `done` once ticket t is durable — possibly inside the call if
// it already is, else on the store's writer thread — with a non-OK status if the store failed.
// Thread-safe.
class Store {
 public:
  virtual ~Store() = default;

  // Everything stored, for the scheduler to rebuild its state at start.
  virtual absl::StatusOr<LoadedState> Load() = 0;

  virtual uint64_t Append(StoreBatch batch) = 0;
  virtual void WhenDurable(uint64_t ticket, absl::AnyInvocable<void(absl::Status)> done) = 0;

  // Job output. Appends are ordered per job and become durable with the next durable batch;
  // they are not synced on their own. Returns the record's index.
  virtual absl::StatusOr<uint64_t> AppendLog(const std::string& job_id, LogRecord record) = 0;
  // Records of `job_id` with index >= from_index, in order, at most `max` of them.
  virtual absl::StatusOr<std::vector<LogRecord>> ReadLogs(const std::string& job_id,
                                                          uint64_t from_index, size_t max) = 0;

  // Side records other parts of schedd keep beside the scheduler's state (checkpoint metadata),
  // by key. Written at once, outside the batches, and durable on return. A store that keeps
  // none (the simulation's) answers UNIMPLEMENTED.
  virtual absl::Status PutRecord(const std::string& key, const std::string& value);
  virtual absl::Status DeleteRecords(const std::vector<std::string>& keys);
  // Every record whose key starts with `prefix`, in key order.
  virtual absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ScanRecords(
      const std::string& prefix);

  // A consistent copy of everything durable so far into the new folder `dir`, from which a
  // store of the same kind opens. A store that cannot answers UNIMPLEMENTED.
  virtual absl::Status Backup(const std::string& dir);
};

}  // namespace sched
