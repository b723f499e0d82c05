// WatchJobs never shows a state the disk does not hold yet. Found by the crash loop: the snapshot
// was read from memory and sent at once, so a job submitted and changed while the WAL sync was in
// flight was shown in its newest state, then its durable changes arrived after it and the job
// went backwards on the stream (and a crash before the sync would have taken the shown state
// back).
#include <atomic>
#include <deque>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "sched/v1/job_service.grpc.pb.h"
#include "server/common/clock.h"
#include "server/daemon/daemon.h"
#include "server/store/memory_store.h"
#include "tests/testing/test_data_dir.h"

namespace sched {
namespace {

// A MemoryStore whose batches stop becoming durable while held, like a WAL sync that has not
// returned yet.
class GatedStore final : public Store {
 public:
  absl::StatusOr<LoadedState> Load() override { return inner_.Load(); }
  uint64_t Append(StoreBatch batch) override { return inner_.Append(std::move(batch)); }
  void WhenDurable(uint64_t ticket, absl::AnyInvocable<void(absl::Status)> done) override {
    {
      absl::MutexLock lock(&mu_);
      if (holding_ && ticket > durable_) {
        waiting_.push_back(std::move(done));
        return;
      }
    }
    done(absl::OkStatus());
  }
  absl::StatusOr<uint64_t> AppendLog(const std::string& job_id, LogRecord record) override {
    return inner_.AppendLog(job_id, std::move(record));
  }
  absl::StatusOr<std::vector<LogRecord>> ReadLogs(const std::string& job_id, uint64_t from_index,
                                                  size_t max) override {
    return inner_.ReadLogs(job_id, from_index, max);
  }

  void Hold() {
    absl::MutexLock lock(&mu_);
    holding_ = true;
    durable_ = inner_.appended();
  }
  void Release() {
    std::deque<absl::AnyInvocable<void(absl::Status)>> ready;
    {
      absl::MutexLock lock(&mu_);
      holding_ = false;
      ready.swap(waiting_);
    }
    for (auto& done : ready) done(absl::OkStatus());
  }

 private:
  MemoryStore inner_;
  absl::Mutex mu_;
  bool holding_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t durable_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<absl::AnyInvocable<void(absl::Status)>> waiting_ ABSL_GUARDED_BY(mu_);
};

std::vector<v1::Job> ListJobs(v1::JobService::Stub& stub) {
  grpc::ClientContext ctx;
  v1::ListJobsResponse resp;
  EXPECT_TRUE(stub.ListJobs(&ctx, v1::ListJobsRequest(), &resp).ok());
  return {resp.jobs().begin(), resp.jobs().end()};
}

TEST(WatchDurabilityTest, SnapshotWaitsForTheDiskAndNeverGoesBackwards) {
  FakeClock clock;
  GatedStore store;
  DaemonOptions options;
  options.data_dir = testing::TestDataDir();  // checkpoint chunks go there
  options.listen = "127.0.0.1:0";
  options.metrics_listen = "";
  auto daemon = Daemon::Start(options, &store, &clock);
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  auto stub = v1::JobService::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string((*daemon)->port()), grpc::InsecureChannelCredentials()));

  // A job submitted and cancelled while the disk holds neither change: both calls wait.
  store.Hold();
  std::thread submit([&] {
    grpc::ClientContext ctx;
    v1::SubmitJobRequest req;
    req.mutable_spec()->set_name("held");
    req.mutable_spec()->set_run("true");
    v1::SubmitJobResponse resp;
    EXPECT_TRUE(stub->SubmitJob(&ctx, req, &resp).ok());
  });
  std::string id;
  for (int i = 0; i < 500 && id.empty(); ++i) {
    std::vector<v1::Job> jobs = ListJobs(*stub);
    if (!jobs.empty()) id = jobs[0].id();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_FALSE(id.empty());
  clock.Advance(absl::Seconds(1));
  std::thread cancel([&] {
    grpc::ClientContext ctx;
    v1::CancelJobRequest req;
    req.set_job_id(id);
    v1::Job resp;
    EXPECT_TRUE(stub->CancelJob(&ctx, req, &resp).ok());
  });
  for (int i = 0; i < 500 && ListJobs(*stub)[0].state() != v1::JOB_STATE_CANCELLED; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  absl::Mutex mu;
  std::vector<v1::WatchJobsResponse> seen;
  grpc::ClientContext watch_ctx;
  std::thread watch([&] {
    auto reader = stub->WatchJobs(&watch_ctx, v1::WatchJobsRequest());
    v1::WatchJobsResponse resp;
    while (reader->Read(&resp)) {
      absl::MutexLock lock(&mu);
      seen.push_back(resp);
    }
    reader->Finish();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  {
    absl::MutexLock lock(&mu);
    EXPECT_THAT(seen, ::testing::IsEmpty()) << "the snapshot showed a state not yet on disk";
  }

  store.Release();
  submit.join();
  cancel.join();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  watch_ctx.TryCancel();
  watch.join();
  // The durable PENDING and CANCELLED changes were published after the snapshot had shown
  // CANCELLED: the stream shows CANCELLED once and never the older PENDING after it.
  std::vector<std::pair<v1::JobState, bool>> states;
  for (const v1::WatchJobsResponse& r : seen) states.emplace_back(r.job().state(), r.initial());
  EXPECT_THAT(states, ::testing::ElementsAre(std::make_pair(v1::JOB_STATE_CANCELLED, true)));
}

}  // namespace
}  // namespace sched
