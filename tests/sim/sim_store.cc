#include "tests/sim/sim_store.h"

#include <algorithm>

namespace sched::sim {

absl::StatusOr<LoadedState> SimStore::Load() {
  LoadedState state;
  for (const auto& [id, job] : disk_->jobs) state.jobs.push_back(job);
  for (const auto& [name, node] : disk_->nodes) state.nodes.push_back(node);
  for (const auto& [key, entry] : disk_->ledger) state.ledger.push_back(entry);
  for (const auto& [project, budget] : disk_->budgets) state.budgets.push_back(budget);
  return state;
}

uint64_t SimStore::Append(StoreBatch batch) {
  queue_.emplace_back(++last_ticket_, std::move(batch));
  return last_ticket_;
}

void SimStore::WhenDurable(uint64_t ticket, absl::AnyInvocable<void(absl::Status)> done) {
  if (ticket <= durable_ticket_) {
    done(absl::OkStatus());
  } else if (crashed_) {
    done(absl::UnavailableError("store crashed before the batch was synced"));
  } else {
    waiters_.emplace(ticket, std::move(done));
  }
}

void SimStore::SyncSome(size_t count) {
  if (crashed_ || queue_.empty()) return;
  count = std::min(count, queue_.size());
  for (size_t i = 0; i < count; ++i) {
    for (StoreOp& op : queue_[i].second) {
      switch (op.kind) {
        case StoreOp::Kind::kPutJob:
          disk_->jobs[op.job.id] = op.job;
          break;
        case StoreOp::Kind::kPutNode:
          disk_->nodes[op.node.name] = op.node;
          break;
        case StoreOp::Kind::kPutLedger:
          disk_->ledger[{op.ledger.job_id, op.ledger.epoch}] = op.ledger;
          break;
        case StoreOp::Kind::kPutBudget:
          disk_->budgets[op.budget.project] = op.budget;
          break;
      }
    }
  }
  durable_ticket_ = queue_[count - 1].first;
  queue_.erase(queue_.begin(), queue_.begin() + count);
  // A callback may append and wait again; take the ready ones out first.
  std::vector<absl::AnyInvocable<void(absl::Status)>> ready;
  auto end = waiters_.upper_bound(durable_ticket_);
  for (auto it = waiters_.begin(); it != end; ++it) ready.push_back(std::move(it->second));
  waiters_.erase(waiters_.begin(), end);
  for (auto& done : ready) done(absl::OkStatus());
}

void SimStore::Crash() {
  crashed_ = true;
  queue_.clear();
  waiters_.clear();  // never called: the process that waited is gone
}

absl::StatusOr<uint64_t> SimStore::AppendLog(const std::string& job_id, LogRecord record) {
  std::vector<LogRecord>& logs = disk_->logs[job_id];
  record.index = logs.size() + 1;
  logs.push_back(std::move(record));
  return logs.back().index;
}

absl::StatusOr<std::vector<LogRecord>> SimStore::ReadLogs(const std::string& job_id,
                                                          uint64_t from_index, size_t max) {
  std::vector<LogRecord> out;
  auto it = disk_->logs.find(job_id);
  if (it == disk_->logs.end()) return out;
  for (const LogRecord& r : it->second) {
    if (r.index >= from_index && out.size() < max) out.push_back(r);
  }
  return out;
}

}  // namespace sched::sim
