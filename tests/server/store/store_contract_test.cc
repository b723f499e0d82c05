// The same contract, run against every Store implementation.
#include <filesystem>
#include <functional>
#include <memory>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "server/store/memory_store.h"
#include "server/store/rocksdb_store.h"
#include "tests/testing/status_matchers.h"

namespace sched {
namespace {

using ::sched::testing::IsOk;
using ::testing::ElementsAre;
using ::testing::SizeIs;

// Opens (or reopens) the store under test.
struct StoreFactory {
  std::string name;
  std::function<std::unique_ptr<Store>(const std::string& dir)> open;
  bool survives_reopen;
};

class StoreContractTest : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("store_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    store_ = GetParam().open(dir_.string());
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    store_.reset();
    store_ = GetParam().open(dir_.string());
  }
  void WaitDurable(uint64_t ticket) {
    absl::Notification n;
    absl::Status got;
    store_->WhenDurable(ticket, [&](absl::Status s) {
      got = s;
      n.Notify();
    });
    n.WaitForNotification();
    ASSERT_THAT(got, IsOk());
  }

  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

Job SampleJob(std::string id, uint64_t seq) {
  Job j;
  j.id = std::move(id);
  j.seq = seq;
  j.spec.name = "train";
  j.spec.project = "vision";
  j.spec.run = "python train.py";
  j.spec.setup = "pip install -r req.txt";
  j.spec.env = {{"LR", "0.1"}, {"EPOCHS", "3"}};
  j.spec.resources.gpus = 2;
  j.spec.resources.gpu_memory_bytes = 24'000'000'000;
  j.spec.resources.gpu_models = {"H100", "A100"};
  j.spec.resources.cpu_millis = 1500;
  j.spec.resources.memory_bytes = 8'000'000'000;
  j.spec.priority = -7;
  j.spec.labels = {{"team", "ml"}};
  j.spec.model = {7'000'000'000, "int4", "qlora", "adamw-8bit", 4, 2048, true, 64};
  j.spec.runtime = absl::Hours(3);
  j.spec.runtime_gpu_model = "a100-80gb";
  j.spec.deadline = absl::FromUnixSeconds(1'800'000'000);
  j.spec.max_cost = 7.5;
  j.spec.placement = PlacementPolicy::kCloudOnly;
  j.spec.spot = SpotPolicy::kSpot;
  j.state = JobState::kRunning;
  j.attempt = 3;
  j.epoch = 99;
  j.node = "gpu-1";
  j.gpu_indexes = {1, 3};
  j.create_time = absl::FromUnixMillis(1'700'000'000'123);
  j.start_time = absl::FromUnixMillis(1'700'000'100'000);
  j.update_time = absl::FromUnixMillis(1'700'000'200'000);
  j.exit_code = 0;
  j.message = "running";
  j.cancel_requested = true;
  j.request_id = "req-xyz";
  j.finished_by_agent = true;
  j.lease_start = absl::FromUnixMillis(1'700'000'050'000);
  j.lease_price_per_hour = 1.89;
  j.lease_provider = "runpod";
  j.lease_price_schedule = {{{0, 420, 0.9}}, 60};
  return j;
}

TEST_P(StoreContractTest, JobsAndNodesRoundTrip) {
  Job job = SampleJob("00000000000000aa", 7);
  NodeRecord node;
  node.name = "gpu-1";
  node.caps.cpu_millis = 16000;
  node.caps.memory_bytes = 64 * (int64_t{1} << 30);
  node.caps.gpus = {{0, "GPU-1234", "NVIDIA H100 80GB HBM3", 80 * (int64_t{1} << 30)}};
  node.caps.provider = "runpod";
  node.caps.price_per_hour = 1.89;
  node.cordoned = true;
  node.register_time = absl::FromUnixMillis(1'700'000'000'000);
  StoreBatch batch(2);
  batch[0].kind = StoreOp::Kind::kPutJob;
  batch[0].job = job;
  batch[1].kind = StoreOp::Kind::kPutNode;
  batch[1].node = node;
  WaitDurable(store_->Append(std::move(batch)));
  if (GetParam().survives_reopen) Reopen();

  auto loaded = store_->Load();
  ASSERT_THAT(loaded, IsOk());
  ASSERT_THAT(loaded->jobs, SizeIs(1));
  const Job& j = loaded->jobs[0];
  EXPECT_EQ(j.id, job.id);
  EXPECT_EQ(j.seq, 7u);
  EXPECT_EQ(j.spec.setup, job.spec.setup);
  EXPECT_EQ(j.spec.env, job.spec.env);
  EXPECT_EQ(j.spec.resources.gpus, 2u);
  EXPECT_EQ(j.spec.resources.gpu_memory_bytes, 24'000'000'000);
  EXPECT_THAT(j.spec.resources.gpu_models, ElementsAre("H100", "A100"));
  EXPECT_EQ(j.spec.resources.cpu_millis, 1500);
  EXPECT_EQ(j.spec.priority, -7);
  EXPECT_EQ(j.spec.model.parameters, 7'000'000'000);
  EXPECT_EQ(j.spec.model.precision, "int4");
  EXPECT_EQ(j.spec.model.method, "qlora");
  EXPECT_EQ(j.spec.model.optimizer, "adamw-8bit");
  EXPECT_EQ(j.spec.model.batch_size, 4u);
  EXPECT_EQ(j.spec.model.sequence_length, 2048u);
  EXPECT_TRUE(j.spec.model.gradient_checkpointing);
  EXPECT_EQ(j.spec.model.lora_rank, 64u);
  EXPECT_EQ(j.spec.runtime, absl::Hours(3));
  EXPECT_EQ(j.spec.runtime_gpu_model, "a100-80gb");
  EXPECT_EQ(j.spec.deadline, absl::FromUnixSeconds(1'800'000'000));
  EXPECT_DOUBLE_EQ(j.spec.max_cost, 7.5);
  EXPECT_EQ(j.spec.placement, PlacementPolicy::kCloudOnly);
  EXPECT_EQ(j.spec.spot, SpotPolicy::kSpot);
  EXPECT_EQ(j.lease_start, absl::FromUnixMillis(1'700'000'050'000));
  EXPECT_DOUBLE_EQ(j.lease_price_per_hour, 1.89);
  EXPECT_EQ(j.lease_provider, "runpod");
  EXPECT_EQ(j.lease_price_schedule, (cost::PriceSchedule{{{0, 420, 0.9}}, 60}));
  EXPECT_EQ(j.spec.labels.at("team"), "ml");
  EXPECT_EQ(j.state, JobState::kRunning);
  EXPECT_EQ(j.attempt, 3u);
  EXPECT_EQ(j.epoch, 99u);
  EXPECT_THAT(j.gpu_indexes, ElementsAre(1u, 3u));
  EXPECT_EQ(j.create_time, job.create_time);
  EXPECT_EQ(j.start_time, job.start_time);
  EXPECT_EQ(j.finish_time, absl::InfinitePast());
  EXPECT_TRUE(j.cancel_requested);
  EXPECT_EQ(j.request_id, "req-xyz");
  EXPECT_TRUE(j.finished_by_agent);
  ASSERT_THAT(loaded->nodes, SizeIs(1));
  EXPECT_EQ(loaded->nodes[0].caps.gpus[0].model, "NVIDIA H100 80GB HBM3");
  EXPECT_DOUBLE_EQ(loaded->nodes[0].caps.price_per_hour, 1.89);
  EXPECT_TRUE(loaded->nodes[0].cordoned);
  EXPECT_EQ(loaded->nodes[0].register_time, node.register_time);
}

TEST_P(StoreContractTest, LedgerAndBudgetsRoundTripAndLaterPutWins) {
  LedgerEntry e;
  e.job_id = "00000000000000aa";
  e.epoch = 12;
  e.attempt = 2;
  e.project = "llm";
  e.node = "vast-1";
  e.provider = "vastai";
  e.price_per_hour = 0.4;
  e.start = absl::FromUnixMillis(1'700'000'000'000);
  e.end = absl::FromUnixMillis(1'700'003'600'000);
  LedgerEntry other = e;
  other.epoch = 3;
  other.end = e.start + absl::Minutes(1);
  // 22:13:20-23:13:20 UTC: 46m40s at the $0.40 base price, then 13m20s in the $0.10 night
  // window, 00:00-07:00 at UTC+1.
  other.price_schedule = {{{0, 7 * 60, 0.1}}, 60};
  other.end = e.end;
  Budget b;
  b.project = "llm";
  b.monthly_limit = 50;
  b.alert_percents = {50, 80, 100};
  b.hard_cap = false;
  b.update_time = absl::FromUnixMillis(1'700'000'000'500);
  StoreBatch batch(3);
  batch[0].kind = StoreOp::Kind::kPutLedger;
  batch[0].ledger = e;
  batch[1].kind = StoreOp::Kind::kPutLedger;
  batch[1].ledger = other;
  batch[2].kind = StoreOp::Kind::kPutBudget;
  batch[2].budget = b;
  store_->Append(std::move(batch));
  b.monthly_limit = 75;
  StoreBatch again(1);
  again[0].kind = StoreOp::Kind::kPutBudget;
  again[0].budget = b;
  WaitDurable(store_->Append(std::move(again)));
  if (GetParam().survives_reopen) Reopen();
  auto loaded = store_->Load();
  ASSERT_THAT(loaded, IsOk());
  ASSERT_THAT(loaded->ledger, SizeIs(2));
  // In (job id, epoch) order.
  EXPECT_EQ(loaded->ledger[0].epoch, 3u);
  EXPECT_EQ(loaded->ledger[0].price_schedule, other.price_schedule);
  EXPECT_NEAR(loaded->ledger[0].Cost(), 0.4 * (2800.0 / 3600) + 0.1 * (800.0 / 3600), 1e-9);
  const LedgerEntry& l = loaded->ledger[1];
  EXPECT_EQ(l.job_id, e.job_id);
  EXPECT_EQ(l.epoch, 12u);
  EXPECT_EQ(l.attempt, 2u);
  EXPECT_EQ(l.project, "llm");
  EXPECT_EQ(l.node, "vast-1");
  EXPECT_EQ(l.provider, "vastai");
  EXPECT_DOUBLE_EQ(l.price_per_hour, 0.4);
  EXPECT_EQ(l.start, e.start);
  EXPECT_EQ(l.end, e.end);
  EXPECT_DOUBLE_EQ(l.Cost(), 0.4);
  ASSERT_THAT(loaded->budgets, SizeIs(1));
  EXPECT_EQ(loaded->budgets[0].project, "llm");
  EXPECT_DOUBLE_EQ(loaded->budgets[0].monthly_limit, 75);
  EXPECT_THAT(loaded->budgets[0].alert_percents, ElementsAre(50, 80, 100));
  EXPECT_FALSE(loaded->budgets[0].hard_cap);
  EXPECT_EQ(loaded->budgets[0].update_time, b.update_time);
}

TEST_P(StoreContractTest, LaterPutWins) {
  Job job = SampleJob("00000000000000bb", 1);
  StoreBatch b1(1), b2(1);
  b1[0].job = job;
  job.state = JobState::kSucceeded;
  b2[0].job = job;
  store_->Append(std::move(b1));
  WaitDurable(store_->Append(std::move(b2)));
  if (GetParam().survives_reopen) Reopen();
  auto loaded = store_->Load();
  ASSERT_THAT(loaded, IsOk());
  ASSERT_THAT(loaded->jobs, SizeIs(1));
  EXPECT_EQ(loaded->jobs[0].state, JobState::kSucceeded);
}

TEST_P(StoreContractTest, ConcurrentAppendsAllBecomeDurable) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 200;
  std::vector<std::thread> threads;
  std::atomic<int> durable{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        StoreBatch b(1);
        b[0].job = SampleJob(absl::StrFormat("%08x%08x", t, i), t * kPerThread + i + 1);
        uint64_t ticket = store_->Append(std::move(b));
        store_->WhenDurable(ticket, [&](absl::Status s) {
          if (s.ok()) durable++;
        });
      }
    });
  }
  for (auto& t : threads) t.join();
  // A barrier on the last ticket: everything before it is durable too.
  uint64_t last;
  {
    StoreBatch empty;
    last = store_->Append(std::move(empty));
  }
  WaitDurable(last);
  EXPECT_EQ(durable.load(), kThreads * kPerThread);
  if (GetParam().survives_reopen) Reopen();
  auto loaded = store_->Load();
  ASSERT_THAT(loaded, IsOk());
  EXPECT_THAT(loaded->jobs, SizeIs(kThreads * kPerThread));
}

TEST_P(StoreContractTest, LogsKeepOrderAndContinueAfterReopen) {
  for (int i = 0; i < 3; ++i) {
    LogRecord r;
    r.attempt = 1;
    r.stream = i == 1 ? LogStreamKind::kStderr : LogStreamKind::kStdout;
    r.data = "line " + std::to_string(i) + "\n";
    auto index = store_->AppendLog("job1", r);
    ASSERT_THAT(index, IsOk());
    EXPECT_EQ(*index, static_cast<uint64_t>(i + 1));
  }
  LogRecord other;
  other.data = "other job";
  ASSERT_THAT(store_->AppendLog("job10", other), IsOk());
  if (GetParam().survives_reopen) {
    WaitDurable(store_->Append({}));
    Reopen();
    LogRecord r;
    r.attempt = 2;
    r.data = "after reopen\n";
    auto index = store_->AppendLog("job1", r);
    ASSERT_THAT(index, IsOk());
    EXPECT_EQ(*index, 4u);
  }
  auto all = store_->ReadLogs("job1", 1, 100);
  ASSERT_THAT(all, IsOk());
  ASSERT_GE(all->size(), 3u);
  EXPECT_EQ((*all)[0].data, "line 0\n");
  EXPECT_EQ((*all)[1].stream, LogStreamKind::kStderr);
  EXPECT_EQ((*all)[2].index, 3u);
  auto from2 = store_->ReadLogs("job1", 2, 1);
  ASSERT_THAT(from2, IsOk());
  ASSERT_THAT(*from2, SizeIs(1));
  EXPECT_EQ((*from2)[0].data, "line 1\n");
  auto none = store_->ReadLogs("nojob", 1, 100);
  ASSERT_THAT(none, IsOk());
  EXPECT_THAT(*none, SizeIs(0));
}

INSTANTIATE_TEST_SUITE_P(
    Stores, StoreContractTest,
    ::testing::Values(StoreFactory{"memory",
                                   [](const std::string&) -> std::unique_ptr<Store> {
                                     return std::make_unique<MemoryStore>();
                                   },
                                   false},
                      StoreFactory{"rocksdb",
                                   [](const std::string& dir) -> std::unique_ptr<Store> {
                                     auto s = RocksDbStore::Open({dir, true});
                                     EXPECT_TRUE(s.ok()) << s.status();
                                     return std::move(s).value();
                                   },
                                   true}),
    [](const ::testing::TestParamInfo<StoreFactory>& info) { return info.param.name; });

TEST(RocksDbStoreTest, ConcurrentWritersShareSyncs) {
  const std::string dir = "/tmp/store_group_commit_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  auto store = RocksDbStore::Open({dir, true});
  ASSERT_THAT(store, IsOk());
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        StoreBatch b(1);
        b[0].job = SampleJob(absl::StrFormat("%08x%08x", t, i), 1);
        absl::Notification n;
        (*store)->WhenDurable((*store)->Append(std::move(b)), [&](absl::Status) { n.Notify(); });
        n.WaitForNotification();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ((*store)->batches_committed(), 800u);
  // 16 writers waiting on each other's syncs: far fewer syncs than batches.
  EXPECT_LT((*store)->syncs(), 800u / 2);
  store->reset();
  std::filesystem::remove_all(dir);
}

// The store's format: written at the first open, kept as it is later, and a format newer than this
// schedd reads is refused without touching the store.
TEST(RocksDbStoreTest, AStoreFromANewerScheddIsRefused) {
  const std::string dir = "/tmp/store_format_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  {
    auto store = RocksDbStore::Open({dir, true});
    ASSERT_THAT(store, IsOk());
    StoreBatch b(1);
    b[0].job = SampleJob("0000000000000001", 1);
    absl::Notification n;
    (*store)->WhenDurable((*store)->Append(std::move(b)), [&](absl::Status) { n.Notify(); });
    n.WaitForNotification();
  }
  auto format = [&]() {
    rocksdb::DB* raw = nullptr;
    rocksdb::Options o;
    EXPECT_TRUE(rocksdb::DB::Open(o, dir, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string v;
    EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), "m/format", &v).ok());
    return v;
  };
  EXPECT_EQ(format(), std::to_string(RocksDbStore::kFormat));
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "m/format", "99").ok());
  }
  auto newer = RocksDbStore::Open({dir, true});
  ASSERT_FALSE(newer.ok());
  EXPECT_EQ(newer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(newer.status().message()),
              ::testing::HasSubstr("has format 99, written by a newer schedd"));
  EXPECT_EQ(format(), "99");  // untouched
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), "m/format").ok());
  }
  // A store from before formats were written is format 1, and keeps its records.
  auto old = RocksDbStore::Open({dir, true});
  ASSERT_THAT(old, IsOk());
  auto loaded = (*old)->Load();
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->jobs.size(), 1u);
  old->reset();
  EXPECT_EQ(format(), "1");
  std::filesystem::remove_all(dir);
}

TEST(RocksDbStoreTest, OpenFailsClearlyOnAFileInTheWay) {
  const std::string path = "/tmp/store_not_a_dir_" + std::to_string(::getpid());
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  auto store = RocksDbStore::Open({path, true});
  EXPECT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()), ::testing::HasSubstr(path));
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace sched
