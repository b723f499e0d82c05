// The records schedd reads back from its store at start (proto/sched/v1/storage.proto), decoded
// into the core's types the way RocksDbStore::Load does (server/store/rocksdb_store.cc; its
// per-record steps are repeated here, without RocksDB). The first byte picks the record, the
// rest is its bytes:
//
//   0 StoredJob          JobFromProto, PriceScheduleFromProto
//   1 StoredNode         CapabilitiesFromProto
//   2 StoredLedgerEntry  PriceScheduleFromProto, then LedgerEntry::CostWithin as the month's
//                        spend is reckoned
//   3 StoredBudget
//   4 StoredLogChunk     LogStreamFromProto
//
// Checked: errors are INVALID_ARGUMENT; a record that loads is written back (as
// RocksDbStore's Encode does) into bytes that load again and then stay the same, so a restart
// reads what the last one wrote; schedules that load keep their rules (node_checks.h); what
// the API shows of a job (RedactSecrets) holds no secret value.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "sched/v1/storage.pb.h"
#include "server/convert/convert.h"
#include "server/core/ledger.h"
#include "server/core/store.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/fuzz/node_checks.h"
#include "tests/fuzz/submit_checks.h"

namespace sched::fuzz {
namespace {

// ---- As rocksdb_store.cc reads and writes them.

int64_t MillisOrZero(absl::Time t) { return t == absl::InfinitePast() ? 0 : absl::ToUnixMillis(t); }
absl::Time TimeOrPast(int64_t unix_ms) {
  return unix_ms == 0 ? absl::InfinitePast() : absl::FromUnixMillis(unix_ms);
}

absl::StatusOr<Job> LoadJob(const v1::StoredJob& stored) {
  absl::StatusOr<Job> job = JobFromProto(stored.job());
  if (!job.ok()) return job.status();
  job->seq = stored.seq();
  job->finished_by_agent = stored.finished_by_agent();
  job->lease_start = TimeOrPast(stored.lease_start_unix_ms());
  job->lease_price_per_hour = stored.lease_price_per_hour();
  job->lease_provider = stored.lease_provider();
  absl::StatusOr<cost::PriceSchedule> schedule =
      PriceScheduleFromProto(stored.lease_price_schedule());
  if (!schedule.ok()) return schedule.status();
  job->lease_price_schedule = *std::move(schedule);
  return job;
}

v1::StoredJob EncodeJob(const Job& job) {
  v1::StoredJob stored;
  JobToProto(job, stored.mutable_job());
  stored.set_seq(job.seq);
  stored.set_finished_by_agent(job.finished_by_agent);
  stored.set_lease_start_unix_ms(MillisOrZero(job.lease_start));
  stored.set_lease_price_per_hour(job.lease_price_per_hour);
  stored.set_lease_provider(job.lease_provider);
  if (!job.lease_price_schedule.empty()) {
    PriceScheduleToProto(job.lease_price_schedule, stored.mutable_lease_price_schedule());
  }
  return stored;
}

absl::StatusOr<NodeRecord> LoadNode(const v1::StoredNode& stored) {
  NodeRecord record;
  record.name = stored.name();
  absl::StatusOr<NodeCapabilities> caps = CheckCapabilities(stored.capabilities());
  if (!caps.ok()) return caps.status();
  record.caps = *std::move(caps);
  record.cordoned = stored.cordoned();
  record.draining = stored.draining();
  record.register_time = TimeOrPast(stored.register_time_unix_ms());
  return record;
}

v1::StoredNode EncodeNode(const NodeRecord& node) {
  v1::StoredNode stored;
  NodeRecordToStored(node, &stored);
  return stored;
}

absl::StatusOr<LedgerEntry> LoadLedger(const v1::StoredLedgerEntry& stored) {
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
  absl::StatusOr<cost::PriceSchedule> schedule = PriceScheduleFromProto(stored.price_schedule());
  if (!schedule.ok()) return schedule.status();
  e.price_schedule = *std::move(schedule);
  return e;
}

v1::StoredLedgerEntry EncodeLedger(const LedgerEntry& e) {
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
  if (!e.price_schedule.empty())
    PriceScheduleToProto(e.price_schedule, stored.mutable_price_schedule());
  return stored;
}

Budget LoadBudget(const v1::StoredBudget& stored) {
  Budget b;
  b.project = stored.project();
  b.monthly_limit = stored.monthly_limit();
  b.alert_percents.assign(stored.alert_percents().begin(), stored.alert_percents().end());
  b.hard_cap = stored.hard_cap();
  b.update_time = TimeOrPast(stored.update_time_unix_ms());
  return b;
}

v1::StoredBudget EncodeBudget(const Budget& b) {
  v1::StoredBudget stored;
  stored.set_project(b.project);
  stored.set_monthly_limit(b.monthly_limit);
  for (int p : b.alert_percents) stored.add_alert_percents(p);
  stored.set_hard_cap(b.hard_cap);
  stored.set_update_time_unix_ms(MillisOrZero(b.update_time));
  return stored;
}

// ---- Checks

void CheckError(const absl::Status& status, absl::string_view what) {
  SCHED_FUZZ_CHECK(absl::IsInvalidArgument(status),
                   absl::StrCat("loading a ", what, " answered ", Describe(status)));
}

// `encode(load(x))` is what schedd writes after reading x; it must load, and from then on the
// bytes must not change: a restart reads back exactly what the previous run wrote.
// Loads what `written` holds and writes it again.
template <typename Stored, typename Load, typename Encode>
Stored Rewrite(const Stored& written, Load load, Encode encode, absl::string_view what) {
  Stored reread;
  SCHED_FUZZ_CHECK(reread.ParseFromString(DeterministicBytes(written)),
                   absl::StrCat(what, " bytes do not parse"));
  auto loaded = load(reread);
  SCHED_FUZZ_CHECK(loaded.ok(),
                   absl::StrCat("a ", what, " schedd wrote does not load: ",
                                Describe(loaded.status()), "\n", written.DebugString()));
  return encode(*loaded);
}

template <typename Stored, typename Load, typename Encode>
void CheckStable(Stored first, Load load, Encode encode, absl::string_view what) {
  const Stored second = Rewrite(first, load, encode, what);
  SCHED_FUZZ_CHECK(DeterministicBytes(second) == DeterministicBytes(first),
                   absl::StrCat("a ", what, " changes each time it is loaded and written:\n",
                                first.DebugString(), "became\n", second.DebugString()));
}

void CheckJob(const v1::StoredJob& stored) {
  absl::StatusOr<Job> job = LoadJob(stored);
  if (!job.ok()) return CheckError(job.status(), "job");
  SCHED_FUZZ_CHECK(JobStateToProto(job->state) != v1::JOB_STATE_UNSPECIFIED,
                   "a job loaded in no state");
  CheckAcceptedSchedule(job->lease_price_schedule, 0, "a stored job's lease schedule");
  CheckStable(EncodeJob(*job), LoadJob, EncodeJob, "job");

  v1::Job shown;
  JobToProto(*job, &shown);
  RedactSecrets(&shown);
  for (const v1::EnvVar& e : shown.spec().env()) {
    SCHED_FUZZ_CHECK(!e.secret() || e.value().empty(), absl::StrCat("secret ", e.name(), " shown"));
    const bool secret = std::find(job->spec.secret_env.begin(), job->spec.secret_env.end(),
                                  e.name()) != job->spec.secret_env.end();
    SCHED_FUZZ_CHECK(!secret || e.value().empty(),
                     absl::StrCat("the value of secret ", e.name(), " is shown"));
  }
}

void CheckNode(const v1::StoredNode& stored) {
  absl::StatusOr<NodeRecord> node = LoadNode(stored);
  if (!node.ok()) return CheckError(node.status(), "node");
  CheckStable(EncodeNode(*node), LoadNode, EncodeNode, "node");
}

void CheckLedger(const v1::StoredLedgerEntry& stored) {
  absl::StatusOr<LedgerEntry> e = LoadLedger(stored);
  if (!e.ok()) return CheckError(e.status(), "ledger entry");
  // The base price is the node's as it was (capped at kMaxUsdPerHour by CapabilitiesFromProto);
  // the entry does not check it again.
  const bool priced = e->price_per_hour >= 0 && e->price_per_hour <= cost::kMaxUsdPerHour;
  if (priced) CheckAcceptedSchedule(e->price_schedule, e->price_per_hour, "a stored ledger entry");
  CheckStable(EncodeLedger(*e), LoadLedger, EncodeLedger, "ledger entry");
  // The month's spend, as the scheduler reckons it at start.
  const absl::Time month = MonthStart(kFuzzNow);
  const double spent = e->CostWithin(month, kFuzzNow);
  if (priced) SCHED_FUZZ_CHECK(spent >= 0, absl::StrCat("a lease cost ", spent));
  e->Cost();
}

void CheckBudget(const v1::StoredBudget& stored) {
  const Budget b = LoadBudget(stored);
  CheckStable(
      EncodeBudget(b),
      [](const v1::StoredBudget& s) -> absl::StatusOr<Budget> { return LoadBudget(s); },
      EncodeBudget, "budget");
}

}  // namespace
}  // namespace sched::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sched;
  using namespace sched::fuzz;
  if (size == 0) return 0;
  const uint8_t kind = data[0];
  const int rest = static_cast<int>(size - 1);
  ++data;
  switch (kind % 5) {
    case 0: {
      v1::StoredJob stored;
      if (stored.ParseFromArray(data, rest)) CheckJob(stored);
      break;
    }
    case 1: {
      v1::StoredNode stored;
      if (stored.ParseFromArray(data, rest)) CheckNode(stored);
      break;
    }
    case 2: {
      v1::StoredLedgerEntry stored;
      if (stored.ParseFromArray(data, rest)) CheckLedger(stored);
      break;
    }
    case 3: {
      v1::StoredBudget stored;
      if (stored.ParseFromArray(data, rest)) CheckBudget(stored);
      break;
    }
    case 4: {
      v1::StoredLogChunk stored;
      if (!stored.ParseFromArray(data, rest)) break;
      LogRecord record;
      record.attempt = stored.attempt();
      record.stream = LogStreamFromProto(stored.stream());
      record.data = stored.data();
      record.time = TimeOrPast(stored.time_unix_ms());
      SCHED_FUZZ_CHECK(LogStreamToProto(record.stream) != v1::LOG_STREAM_UNSPECIFIED,
                       "a log chunk in no stream");
      break;
    }
  }
  return 0;
}
