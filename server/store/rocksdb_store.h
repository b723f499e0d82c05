#pragma once

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "server/core/store.h"

namespace rocksdb {
class DB;
}

namespace sched {

struct RocksDbStoreOptions {
  std::string path;
  // Sync the WAL before a batch counts as durable. Off only in benchmarks that say so.
  bool sync = true;
};

// The Store on an embedded RocksDB. One writer thread takes every batch queued since its last
// write and commits them as one synced WriteBatch (group commit), so many concurrent callers
// share one fdatasync. Keys: "j/<job id>" StoredJob, "n/<node>" StoredNode,
// "l/<job id>/<index, 16 hex>" StoredLogChunk.
//
// If a write fails the process stops (after printing why): the scheduler's memory would no
// longer match the disk, and a restart reloads the truth.
class RocksDbStore final : public Store {
 public:
  // The store's format, kept under "m/format". A newer schedd that changes how records are kept
  // raises it and migrates older stores at open; an older schedd refuses a newer store
  // (FAILED_PRECONDITION) rather than misread it.
  static constexpr int kFormat = 1;

  static absl::StatusOr<std::unique_ptr<RocksDbStore>> Open(RocksDbStoreOptions options);
  // Commits what is queued, then closes the database.
  ~RocksDbStore() override;

  absl::StatusOr<LoadedState> Load() override;
  uint64_t Append(StoreBatch batch) override;
  void WhenDurable(uint64_t ticket, absl::AnyInvocable<void(absl::Status)> done) override;
  absl::StatusOr<uint64_t> AppendLog(const std::string& job_id, LogRecord record) override;
  absl::StatusOr<std::vector<LogRecord>> ReadLogs(const std::string& job_id, uint64_t from_index,
                                                  size_t max) override;

  // Batches committed and WAL syncs done: their ratio is the group-commit factor.
  absl::Status PutRecord(const std::string& key, const std::string& value) override;
  absl::Status DeleteRecords(const std::vector<std::string>& keys) override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ScanRecords(
      const std::string& prefix) override;

  // A RocksDB checkpoint (hard-linked table files, copied logs) of what is durable now.
  absl::Status Backup(const std::string& dir) override;

  uint64_t batches_committed() const;
  uint64_t syncs() const;

 private:
  RocksDbStore(RocksDbStoreOptions options, std::unique_ptr<rocksdb::DB> db);
  void WriterLoop();

  const RocksDbStoreOptions options_;
  std::unique_ptr<rocksdb::DB> db_;

  mutable absl::Mutex mu_;
  std::vector<std::pair<uint64_t, StoreBatch>> queue_ ABSL_GUARDED_BY(mu_);
  std::multimap<uint64_t, absl::AnyInvocable<void(absl::Status)>> waiters_ ABSL_GUARDED_BY(mu_);
  uint64_t last_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t durable_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t syncs_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;

  absl::Mutex log_mu_;
  absl::flat_hash_map<std::string, uint64_t> last_log_index_ ABSL_GUARDED_BY(log_mu_);
};

}  // namespace sched
