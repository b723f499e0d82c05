#include "server/store/rocksdb_store.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"
#include "sched/v1/storage.pb.h"
#include "server/common/failpoint.h"
#include "server/common/status_macros.h"
#include "server/convert/convert.h"

namespace sched {
namespace {

constexpr absl::string_view kJobPrefix = "j/";
constexpr absl::string_view kNodePrefix = "n/";
constexpr absl::string_view kLogPrefix = "l/";

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsCorruption()) return absl::DataLossError(absl::StrCat(what, ": ", s.ToString()));
  if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat(what, ": ", s.ToString()));
  return absl::UnavailableError(absl::StrCat(what, ": ", s.ToString()));
}

std::string LogKey(absl::string_view job_id, uint64_t index) {
  return absl::StrFormat("%s%s/%016x", kLogPrefix, job_id, index);
}

void Encode(const StoreOp& op, rocksdb::WriteBatch& wb) {
  std::string value;
  switch (op.kind) {
    case StoreOp::Kind::kPutJob: {
      v1::StoredJob stored;
      JobToProto(op.job, stored.mutable_job());
      stored.set_seq(op.job.seq);
      stored.set_finished_by_agent(op.job.finished_by_agent);
      stored.SerializeToString(&value);
      wb.Put(absl::StrCat(kJobPrefix, op.job.id), value);
      break;
    }
    case StoreOp::Kind::kPutNode: {
      v1::StoredNode stored;
      stored.set_name(op.node.name);
      CapabilitiesToProto(op.node.caps, stored.mutable_capabilities());
      stored.set_cordoned(op.node.cordoned);
      stored.set_draining(op.node.draining);
      if (op.node.register_time != absl::InfinitePast()) {
        stored.set_register_time_unix_ms(absl::ToUnixMillis(op.node.register_time));
      }
      stored.SerializeToString(&value);
      wb.Put(absl::StrCat(kNodePrefix, op.node.name), value);
      break;
    }
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<RocksDbStore>> RocksDbStore::Open(RocksDbStoreOptions options) {
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.IncreaseParallelism(2);
  db_options.OptimizeLevelStyleCompaction();
  db_options.max_total_wal_size = 256 << 20;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, options.path, &raw);
  if (!s.ok()) return FromRocks(s, absl::StrCat("opening store at ", options.path));
  return std::unique_ptr<RocksDbStore>(
      new RocksDbStore(std::move(options), std::unique_ptr<rocksdb::DB>(raw)));
}

RocksDbStore::RocksDbStore(RocksDbStoreOptions options, std::unique_ptr<rocksdb::DB> db)
    : options_(std::move(options)), db_(std::move(db)) {
  writer_ = std::thread([this] { WriterLoop(); });
}

RocksDbStore::~RocksDbStore() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  writer_.join();
  db_->FlushWAL(/*sync=*/true);
  db_->Close();
}

absl::StatusOr<LoadedState> RocksDbStore::Load() {
  LoadedState state;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(rocksdb::Slice(kJobPrefix.data(), kJobPrefix.size()));
       it->Valid() && it->key().starts_with(rocksdb::Slice(kJobPrefix.data(), kJobPrefix.size()));
       it->Next()) {
    v1::StoredJob stored;
    if (!stored.ParseFromArray(it->value().data(), it->value().size())) {
      return absl::DataLossError(absl::StrCat("unreadable job record ", it->key().ToString()));
    }
    SCHED_ASSIGN_OR_RETURN(Job job, JobFromProto(stored.job()));
    job.seq = stored.seq();
    job.finished_by_agent = stored.finished_by_agent();
    state.jobs.push_back(std::move(job));
  }
  SCHED_RETURN_IF_ERROR(FromRocks(it->status(), "reading jobs"));
  for (it->Seek(rocksdb::Slice(kNodePrefix.data(), kNodePrefix.size()));
       it->Valid() && it->key().starts_with(rocksdb::Slice(kNodePrefix.data(), kNodePrefix.size()));
       it->Next()) {
    v1::StoredNode stored;
    if (!stored.ParseFromArray(it->value().data(), it->value().size())) {
      return absl::DataLossError(absl::StrCat("unreadable node record ", it->key().ToString()));
    }
    NodeRecord record;
    record.name = stored.name();
    SCHED_ASSIGN_OR_RETURN(record.caps, CapabilitiesFromProto(stored.capabilities()));
    record.cordoned = stored.cordoned();
    record.draining = stored.draining();
    if (stored.register_time_unix_ms() != 0) {
      record.register_time = absl::FromUnixMillis(stored.register_time_unix_ms());
    }
    state.nodes.push_back(std::move(record));
  }
  SCHED_RETURN_IF_ERROR(FromRocks(it->status(), "reading nodes"));
  return state;
}

uint64_t RocksDbStore::Append(StoreBatch batch) {
  absl::MutexLock lock(&mu_);
  queue_.emplace_back(++last_ticket_, std::move(batch));
  return last_ticket_;
}

void RocksDbStore::WhenDurable(uint64_t ticket, absl::AnyInvocable<void(absl::Status)> done) {
  {
    absl::MutexLock lock(&mu_);
    if (ticket > durable_ticket_) {
      waiters_.emplace(ticket, std::move(done));
      return;
    }
  }
  done(absl::OkStatus());
}

void RocksDbStore::WriterLoop() {
  std::vector<std::pair<uint64_t, StoreBatch>> group;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](RocksDbStore* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
            return s->stop_ || !s->queue_.empty();
          },
          this));
      if (queue_.empty() && stop_) return;
      group.swap(queue_);
    }
    rocksdb::WriteBatch wb;
    for (const auto& [ticket, batch] : group) {
      for (const StoreOp& op : batch) Encode(op, wb);
    }
    rocksdb::WriteOptions wo;
    wo.sync = options_.sync;
    MaybeCrashAt(kFailpointBeforeSync);
    rocksdb::Status s = db_->Write(wo, &wb);
    if (!s.ok()) {
      std::fprintf(stderr, "schedd: store write failed, stopping: %s\n", s.ToString().c_str());
      std::abort();
    }
    MaybeCrashAt(kFailpointAfterSyncBeforeReply);
    std::vector<absl::AnyInvocable<void(absl::Status)>> ready;
    {
      absl::MutexLock lock(&mu_);
      durable_ticket_ = group.back().first;
      syncs_++;
      auto end = waiters_.upper_bound(durable_ticket_);
      for (auto it = waiters_.begin(); it != end; ++it) ready.push_back(std::move(it->second));
      waiters_.erase(waiters_.begin(), end);
    }
    group.clear();
    for (auto& done : ready) done(absl::OkStatus());
  }
}

absl::StatusOr<uint64_t> RocksDbStore::AppendLog(const std::string& job_id, LogRecord record) {
  absl::MutexLock lock(&log_mu_);
  auto [it, inserted] = last_log_index_.try_emplace(job_id, 0);
  if (inserted) {
    // First append since start: continue after the last stored record.
    std::unique_ptr<rocksdb::Iterator> iter(db_->NewIterator(rocksdb::ReadOptions()));
    iter->SeekForPrev(LogKey(job_id, ~uint64_t{0}));
    const std::string prefix = absl::StrCat(kLogPrefix, job_id, "/");
    if (iter->Valid() && iter->key().starts_with(prefix)) {
      it->second = std::stoull(iter->key().ToString().substr(prefix.size()), nullptr, 16);
    }
  }
  const uint64_t index = it->second + 1;
  v1::StoredLogChunk stored;
  stored.set_attempt(record.attempt);
  stored.set_stream(LogStreamToProto(record.stream));
  stored.set_data(std::move(record.data));
  stored.set_time_unix_ms(absl::ToUnixMillis(record.time));
  rocksdb::Status s = db_->Put(rocksdb::WriteOptions(), LogKey(job_id, index),
                               stored.SerializeAsString());
  SCHED_RETURN_IF_ERROR(FromRocks(s, "storing log"));
  it->second = index;
  return index;
}

absl::StatusOr<std::vector<LogRecord>> RocksDbStore::ReadLogs(const std::string& job_id,
                                                              uint64_t from_index, size_t max) {
  std::vector<LogRecord> out;
  const std::string prefix = absl::StrCat(kLogPrefix, job_id, "/");
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(LogKey(job_id, std::max<uint64_t>(from_index, 1)));
       it->Valid() && it->key().starts_with(prefix) && out.size() < max; it->Next()) {
    v1::StoredLogChunk stored;
    if (!stored.ParseFromArray(it->value().data(), it->value().size())) {
      return absl::DataLossError(absl::StrCat("unreadable log record ", it->key().ToString()));
    }
    LogRecord record;
    record.index = std::stoull(it->key().ToString().substr(prefix.size()), nullptr, 16);
    record.attempt = stored.attempt();
    record.stream = LogStreamFromProto(stored.stream());
    record.data = std::move(*stored.mutable_data());
    record.time = absl::FromUnixMillis(stored.time_unix_ms());
    out.push_back(std::move(record));
  }
  SCHED_RETURN_IF_ERROR(FromRocks(it->status(), "reading logs"));
  return out;
}

uint64_t RocksDbStore::batches_committed() const {
  absl::MutexLock lock(&mu_);
  return durable_ticket_;
}

uint64_t RocksDbStore::syncs() const {
  absl::MutexLock lock(&mu_);
  return syncs_;
}

}  // namespace sched
