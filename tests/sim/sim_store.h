#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "server/core/store.h"

namespace sched::sim {

// What survives a crash: the batches that were synced, and job output.
struct SimDisk {
  std::map<std::string, Job> jobs;
  std::map<std::string, NodeRecord> nodes;
  std::map<std::pair<std::string, uint64_t>, LedgerEntry> ledger;
  std::map<std::string, Budget> budgets;
  std::map<std::string, std::vector<LogRecord>> logs;
};

// A Store for the simulation, on one thread. Append() only queues; the world decides when the
// queue is synced (SyncSome), and a crash (Crash) throws away what was not synced and every
// callback still waiting, as a killed process would. After Crash() the object answers
// WhenDurable of lost tickets with UNAVAILABLE at once, so the dying Scheduler's destructor ends.
class SimStore final : public Store {
 public:
  explicit SimStore(SimDisk* disk) : disk_(disk) {}

  absl::StatusOr<LoadedState> Load() override;
  uint64_t Append(StoreBatch batch) override;
  void WhenDurable(uint64_t ticket, absl::AnyInvocable<void(absl::Status)> done) override;
  absl::StatusOr<uint64_t> AppendLog(const std::string& job_id, LogRecord record) override;
  absl::StatusOr<std::vector<LogRecord>> ReadLogs(const std::string& job_id, uint64_t from_index,
                                                  size_t max) override;

  bool has_unsynced() const { return !queue_.empty(); }
  // Syncs the oldest `count` queued batches (all when count exceeds the queue), then runs the
  // callbacks they satisfy, in ticket order.
  void SyncSome(size_t count);
  void Crash();

 private:
  SimDisk* const disk_;
  bool crashed_ = false;
  uint64_t last_ticket_ = 0;
  uint64_t durable_ticket_ = 0;
  std::vector<std::pair<uint64_t, StoreBatch>> queue_;
  std::multimap<uint64_t, absl::AnyInvocable<void(absl::Status)>> waiters_;
};

}  // namespace sched::sim
