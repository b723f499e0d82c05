#include "server/store/rocksdb_store.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/utilities/checkpoint.h"
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
constexpr absl::string_view kLedgerPrefix = "c/";
constexpr absl::string_view kBudgetPrefix = "b/";
constexpr absl::string_view kRecordPrefix = "x/";  // side records: x/<the caller's key>

int64_t MillisOrZero(absl::Time t) { return t == absl::InfinitePast() ? 0 : absl::ToUnixMillis(t); }
absl::Time TimeOrPast(int64_t unix_ms) {
  return unix_ms == 0 ? absl::InfinitePast() : absl::FromUnixMillis(unix_ms);
}

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
      stored.set_lease_start_unix_ms(MillisOrZero(op.job.lease_start));
      stored.set_lease_price_per_hour(op.job.lease_price_per_hour);
      stored.set_lease_provider(op.job.lease_provider);
      if (!op.job.lease_price_schedule.empty()) {
        PriceScheduleToProto(op.job.lease_price_schedule, stored.mutable_lease_price_schedule());
      }
      stored.SerializeToString(&value);
      wb.Put(absl::StrCat(kJobPrefix, op.job.id), value);
      break;
    }
    case StoreOp::Kind::kPutNode: {
      v1::StoredNode stored;
      NodeRecordToStored(op.node, &stored);
      stored.SerializeToString(&value);
      wb.Put(absl::StrCat(kNodePrefix, op.node.name), value);
      break;
    }
    case StoreOp::Kind::kPutLedger: {
      const LedgerEntry& e = op.ledger;
      v1::StoredLedgerEntry stored;
      stored.set_job_id(e.job_id);
      stored.set_epoch(e.epoch);
      stored.set_attempt(e.attempt);
      stored.set_project(e.project);
      stored.set_node(e.node);
      stored.set_provider(e.provider);
      stored.set_price_per_hour(e.price_per_hour);
      stored.set_start_unix_ms(MillisOrZero(e.start));
      stored.set_end_unix_ms(MillisOrZero(e.end));
      if (!e.price_schedule.empty()) {
        PriceScheduleToProto(e.price_schedule, stored.mutable_price_schedule());
      }
      stored.SerializeToString(&value);
      wb.Put(absl::StrFormat("%s%s/%016x", kLedgerPrefix, e.job_id, e.epoch), value);
      break;
    }
    case StoreOp::Kind::kPutBudget: {
      const Budget& b = op.budget;
      v1::StoredBudget stored;
      stored.set_project(b.project);
      stored.set_monthly_limit(b.monthly_limit);
      for (int p : b.alert_percents) stored.add_alert_percents(p);
      stored.set_hard_cap(b.hard_cap);
      stored.set_update_time_unix_ms(MillisOrZero(b.update_time));
      stored.SerializeToString(&value);
      wb.Put(absl::StrCat(kBudgetPrefix, b.project), value);
      break;
    }
  }
}

constexpr absl::string_view kFormatKey = "m/format";

// The steps that bring a store of format f to f + 1, run in order at open: kMigrations[f - 1].
// None yet: format 1 is the first written.
using Migration = absl::Status (*)(rocksdb::DB& db);
constexpr Migration kMigrations[] = {nullptr};

// Reads the store's format (a store from before formats were written is format 1), refuses a
// newer one, and migrates an older one, writing each step's format as it completes.
absl::Status CheckFormat(rocksdb::DB& db, const std::string& path) {
  rocksdb::WriteOptions synced;
  synced.sync = true;
  std::string value;
  const rocksdb::Status got = db.Get(rocksdb::ReadOptions(), std::string(kFormatKey), &value);
  int format = 1;
  if (got.IsNotFound()) {
    value = std::to_string(RocksDbStore::kFormat);
    return FromRocks(db.Put(synced, std::string(kFormatKey), value), "writing the store format");
  }
  SCHED_RETURN_IF_ERROR(FromRocks(got, "reading the store format"));
  if (!absl::SimpleAtoi(value, &format) || format < 1) {
    return absl::DataLossError(
        absl::StrCat("store at ", path, ": its format record says \"", value.substr(0, 32), "\""));
  }
  if (format > RocksDbStore::kFormat) {
    return absl::FailedPreconditionError(
        absl::StrCat("store at ", path, " has format ", format,
                     ", written by a newer schedd; this one reads "
                     "formats up to ",
                     RocksDbStore::kFormat,
                     ": run the newer schedd, or start from a backup made before the upgrade"));
  }
  for (; format < RocksDbStore::kFormat; ++format) {
    const Migration step = kMigrations[format - 1];
    if (step != nullptr) SCHED_RETURN_IF_ERROR(step(db));
    SCHED_RETURN_IF_ERROR(FromRocks(
        db.Put(synced, std::string(kFormatKey), std::to_string(format + 1)), "migrating"));
    std::fprintf(stderr, "schedd: store at %s migrated to format %d\n", path.c_str(), format + 1);
  }
  return absl::OkStatus();
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
  std::unique_ptr<rocksdb::DB> db(raw);
  SCHED_RETURN_IF_ERROR(CheckFormat(*db, options.path));
  return std::unique_ptr<RocksDbStore>(new RocksDbStore(std::move(options), std::move(db)));
}

absl::Status RocksDbStore::Backup(const std::string& dir) {
  rocksdb::Checkpoint* raw = nullptr;
  SCHED_RETURN_IF_ERROR(FromRocks(rocksdb::Checkpoint::Create(db_.get(), &raw), "backup"));
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  // The logs are copied whatever their size (never flushed first): what they hold is synced.
  return FromRocks(checkpoint->CreateCheckpoint(dir, /*log_size_for_flush=*/UINT64_MAX),
                   absl::StrCat("backup into ", dir));
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

namespace {

// Parses every record under `prefix` as a `Stored` message and hands it to `add`.
template <typename Stored, typename Add>
absl::Status ForEachRecord(rocksdb::DB& db, absl::string_view prefix, absl::string_view what,
                           Add add) {
  std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(rocksdb::ReadOptions()));
  const rocksdb::Slice start(prefix.data(), prefix.size());
  for (it->Seek(start); it->Valid() && it->key().starts_with(start); it->Next()) {
    Stored stored;
    if (!stored.ParseFromArray(it->value().data(), it->value().size())) {
      return absl::DataLossError(
          absl::StrCat("unreadable ", what, " record ", it->key().ToString()));
    }
    SCHED_RETURN_IF_ERROR(add(stored));
  }
  return FromRocks(it->status(), absl::StrCat("reading ", what, " records"));
}

}  // namespace

absl::StatusOr<LoadedState> RocksDbStore::Load() {
  LoadedState state;
  SCHED_RETURN_IF_ERROR(ForEachRecord<v1::StoredJob>(
      *db_, kJobPrefix, "job", [&](const v1::StoredJob& stored) -> absl::Status {
        SCHED_ASSIGN_OR_RETURN(Job job, JobFromProto(stored.job()));
        job.seq = stored.seq();
        job.finished_by_agent = stored.finished_by_agent();
        job.lease_start = TimeOrPast(stored.lease_start_unix_ms());
        job.lease_price_per_hour = stored.lease_price_per_hour();
        job.lease_provider = stored.lease_provider();
        SCHED_ASSIGN_OR_RETURN(job.lease_price_schedule,
                               PriceScheduleFromProto(stored.lease_price_schedule()));
        state.jobs.push_back(std::move(job));
        return absl::OkStatus();
      }));
  SCHED_RETURN_IF_ERROR(ForEachRecord<v1::StoredNode>(
      *db_, kNodePrefix, "node", [&](const v1::StoredNode& stored) -> absl::Status {
        SCHED_ASSIGN_OR_RETURN(NodeRecord record, NodeRecordFromStored(stored));
        state.nodes.push_back(std::move(record));
        return absl::OkStatus();
      }));
  SCHED_RETURN_IF_ERROR(ForEachRecord<v1::StoredLedgerEntry>(
      *db_, kLedgerPrefix, "ledger", [&](const v1::StoredLedgerEntry& stored) -> absl::Status {
        LedgerEntry e;
        e.job_id = stored.job_id();
        e.epoch = stored.epoch();
        e.attempt = stored.attempt();
        e.project = stored.project();
        e.node = stored.node();
        e.provider = stored.provider();
        e.price_per_hour = stored.price_per_hour();
        e.start = TimeOrPast(stored.start_unix_ms());
        e.end = TimeOrPast(stored.end_unix_ms());
        SCHED_ASSIGN_OR_RETURN(e.price_schedule, PriceScheduleFromProto(stored.price_schedule()));
        state.ledger.push_back(std::move(e));
        return absl::OkStatus();
      }));
  SCHED_RETURN_IF_ERROR(ForEachRecord<v1::StoredBudget>(
      *db_, kBudgetPrefix, "budget", [&](const v1::StoredBudget& stored) {
        Budget b;
        b.project = stored.project();
        b.monthly_limit = stored.monthly_limit();
        b.alert_percents.assign(stored.alert_percents().begin(), stored.alert_percents().end());
        b.hard_cap = stored.hard_cap();
        b.update_time = TimeOrPast(stored.update_time_unix_ms());
        state.budgets.push_back(std::move(b));
        return absl::OkStatus();
      }));
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
          +[](RocksDbStore* s)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) { return s->stop_ || !s->queue_.empty(); },
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
  rocksdb::Status s =
      db_->Put(rocksdb::WriteOptions(), LogKey(job_id, index), stored.SerializeAsString());
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

absl::Status RocksDbStore::PutRecord(const std::string& key, const std::string& value) {
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  return FromRocks(db_->Put(wo, absl::StrCat(kRecordPrefix, key), value), "storing a record");
}

absl::Status RocksDbStore::DeleteRecords(const std::vector<std::string>& keys) {
  rocksdb::WriteBatch wb;
  for (const std::string& key : keys) wb.Delete(absl::StrCat(kRecordPrefix, key));
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  return FromRocks(db_->Write(wo, &wb), "deleting records");
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> RocksDbStore::ScanRecords(
    const std::string& prefix) {
  const std::string full = absl::StrCat(kRecordPrefix, prefix);
  std::vector<std::pair<std::string, std::string>> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(full); it->Valid() && it->key().starts_with(full); it->Next()) {
    out.emplace_back(it->key().ToString().substr(kRecordPrefix.size()), it->value().ToString());
  }
  SCHED_RETURN_IF_ERROR(FromRocks(it->status(), "reading records"));
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
