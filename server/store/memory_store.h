#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "server/core/store.h"

namespace sched {

// A Store in memory: every batch is durable as soon as it is appended. For tests; it also keeps
// state across a Scheduler "restart" when the same object is handed to a new Scheduler.
class MemoryStore final : public Store {
 public:
  absl::StatusOr<LoadedState> Load() override;
  uint64_t Append(StoreBatch batch) override;
  void WhenDurable(uint64_t ticket, absl::AnyInvocable<void(absl::Status)> done) override;
  absl::StatusOr<uint64_t> AppendLog(const std::string& job_id, LogRecord record) override;
  absl::StatusOr<std::vector<LogRecord>> ReadLogs(const std::string& job_id, uint64_t from_index,
                                                  size_t max) override;

  absl::Status PutRecord(const std::string& key, const std::string& value) override;
  absl::Status DeleteRecords(const std::vector<std::string>& keys) override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ScanRecords(
      const std::string& prefix) override;

  // Batches appended so far.
  uint64_t appended() const;

 private:
  mutable absl::Mutex mu_;
  uint64_t last_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  // Hashed: a write costs what it would on the daemon's thread with RocksDbStore (a queue
  // push), not a walk down a tree; Load() puts them in key order.
  absl::flat_hash_map<std::string, Job> jobs_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, NodeRecord> nodes_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::pair<std::string, uint64_t>, LedgerEntry> ledger_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Budget> budgets_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<LogRecord>> logs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> records_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sched
