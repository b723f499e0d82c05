#include "server/store/memory_store.h"

#include <algorithm>
#include <tuple>

namespace sched {

absl::StatusOr<LoadedState> MemoryStore::Load() {
  absl::MutexLock lock(&mu_);
  LoadedState state;
  for (const auto& [id, job] : jobs_) state.jobs.push_back(job);
  for (const auto& [name, node] : nodes_) state.nodes.push_back(node);
  for (const auto& [key, entry] : ledger_) state.ledger.push_back(entry);
  for (const auto& [project, budget] : budgets_) state.budgets.push_back(budget);
  // In key order, as RocksDbStore reads them.
  std::sort(state.jobs.begin(), state.jobs.end(),
            [](const Job& a, const Job& b) { return a.id < b.id; });
  std::sort(state.nodes.begin(), state.nodes.end(),
            [](const NodeRecord& a, const NodeRecord& b) { return a.name < b.name; });
  std::sort(state.ledger.begin(), state.ledger.end(), [](const LedgerEntry& a, const LedgerEntry& b) {
    return std::tie(a.job_id, a.epoch) < std::tie(b.job_id, b.epoch);
  });
  std::sort(state.budgets.begin(), state.budgets.end(),
            [](const Budget& a, const Budget& b) { return a.project < b.project; });
  return state;
}

uint64_t MemoryStore::Append(StoreBatch batch) {
  absl::MutexLock lock(&mu_);
  for (StoreOp& op : batch) {
    switch (op.kind) {
      case StoreOp::Kind::kPutJob: {
        std::string id = op.job.id;
        jobs_.insert_or_assign(std::move(id), std::move(op.job));
        break;
      }
      case StoreOp::Kind::kPutNode: {
        std::string name = op.node.name;
        nodes_[name] = std::move(op.node);
        break;
      }
      case StoreOp::Kind::kPutLedger: {
        auto key = std::make_pair(op.ledger.job_id, op.ledger.epoch);
        ledger_[key] = std::move(op.ledger);
        break;
      }
      case StoreOp::Kind::kPutBudget: {
        std::string project = op.budget.project;
        budgets_[project] = std::move(op.budget);
        break;
      }
    }
  }
  return ++last_ticket_;
}

void MemoryStore::WhenDurable(uint64_t ticket, absl::AnyInvocable<void(absl::Status)> done) {
  done(absl::OkStatus());
}

absl::StatusOr<uint64_t> MemoryStore::AppendLog(const std::string& job_id, LogRecord record) {
  absl::MutexLock lock(&mu_);
  std::vector<LogRecord>& log = logs_[job_id];
  record.index = log.size() + 1;
  log.push_back(std::move(record));
  return log.size();
}

absl::StatusOr<std::vector<LogRecord>> MemoryStore::ReadLogs(const std::string& job_id,
                                                             uint64_t from_index, size_t max) {
  absl::MutexLock lock(&mu_);
  std::vector<LogRecord> out;
  auto it = logs_.find(job_id);
  if (it == logs_.end()) return out;
  for (uint64_t i = std::max<uint64_t>(from_index, 1); i <= it->second.size() && out.size() < max;
       ++i) {
    out.push_back(it->second[i - 1]);
  }
  return out;
}

absl::Status MemoryStore::PutRecord(const std::string& key, const std::string& value) {
  absl::MutexLock lock(&mu_);
  records_[key] = value;
  return absl::OkStatus();
}

absl::Status MemoryStore::DeleteRecords(const std::vector<std::string>& keys) {
  absl::MutexLock lock(&mu_);
  for (const std::string& key : keys) records_.erase(key);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> MemoryStore::ScanRecords(
    const std::string& prefix) {
  absl::MutexLock lock(&mu_);
  std::vector<std::pair<std::string, std::string>> out;
  for (auto it = records_.lower_bound(prefix);
       it != records_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    out.emplace_back(it->first, it->second);
  }
  return out;
}

uint64_t MemoryStore::appended() const {
  absl::MutexLock lock(&mu_);
  return last_ticket_;
}

}  // namespace sched
