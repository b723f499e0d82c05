// The caps no caller can push schedd past: a project's submit rate, a spec's size, streams open
// at once, and the checkpoint bytes a project keeps. Each refusal is RESOURCE_EXHAUSTED (or
// INVALID_ARGUMENT for a spec) naming its flag, and leaves the state as it was.
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "sched/v1/job_service.grpc.pb.h"
#include "server/checkpoint/checkpoint_files.h"
#include "server/checkpoint/checkpoint_store.h"
#include "server/daemon/daemon.h"
#include "server/store/memory_store.h"
#include "tests/testing/subprocess.h"

namespace sched {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class LimitsTest : public ::testing::Test {
 protected:
  void Start(DaemonOptions o) {
    dir_ = testing::MakeTempDir("sched_limits_");
    o.listen = "127.0.0.1:0";
    o.metrics_listen = "";
    o.data_dir = dir_ + "/schedd";
    auto d = Daemon::Start(o, &store_, &clock_);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    stub_ = v1::JobService::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", daemon_->port()),
                                                        grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    daemon_.reset();
    fs::remove_all(dir_);
  }

  grpc::Status Submit(const std::string& project, const std::string& run = "true") {
    grpc::ClientContext ctx;
    v1::SubmitJobRequest req;
    req.mutable_spec()->set_name("j");
    req.mutable_spec()->set_project(project);
    req.mutable_spec()->set_run(run);
    v1::SubmitJobResponse resp;
    return stub_->SubmitJob(&ctx, req, &resp);
  }

  int Jobs() {
    grpc::ClientContext ctx;
    v1::ListJobsResponse resp;
    EXPECT_TRUE(stub_->ListJobs(&ctx, v1::ListJobsRequest(), &resp).ok());
    return resp.jobs_size();
  }

  std::string dir_;
  MemoryStore store_;
  FakeClock clock_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<v1::JobService::Stub> stub_;
};

TEST_F(LimitsTest, AProjectSubmittingFasterThanItsQuotaIsToldToComeBack) {
  DaemonOptions o;
  o.submit_rate_per_project = 5;
  Start(o);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Submit("alpha").ok()) << i;
  const grpc::Status over = Submit("alpha");
  EXPECT_EQ(over.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(over.error_message(), HasSubstr("project alpha submits faster than its quota of 5"));
  EXPECT_THAT(over.error_message(), HasSubstr("--submit_rate_per_project"));
  EXPECT_THAT(over.error_message(), HasSubstr("retry in 200 ms"));
  EXPECT_EQ(Jobs(), 5);
  // Another project has its own quota; time refills this one.
  EXPECT_TRUE(Submit("beta").ok());
  clock_.Advance(absl::Milliseconds(400));
  EXPECT_TRUE(Submit("alpha").ok());
  EXPECT_TRUE(Submit("alpha").ok());
  EXPECT_EQ(Submit("alpha").error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Jobs(), 8);
}

TEST_F(LimitsTest, ASpecOverTheSizeCapIsRefusedAndNothingIsQueued) {
  DaemonOptions o;
  o.max_spec_bytes = 4096;
  Start(o);
  EXPECT_TRUE(Submit("alpha", std::string(3000, 'x')).ok());
  const grpc::Status big = Submit("alpha", std::string(5000, 'x'));
  EXPECT_EQ(big.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(big.error_message(), HasSubstr("over the limit of 4096 (--max_spec_bytes)"));
  EXPECT_EQ(Jobs(), 1);
}

TEST_F(LimitsTest, StreamsPastTheCapAreRefusedUntilOneCloses) {
  DaemonOptions o;
  o.max_open_streams = 2;
  Start(o);
  struct Watch {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<v1::WatchJobsResponse>> reader;
  };
  auto open = [&](Watch& w) {
    w.ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    w.reader = stub_->WatchJobs(&w.ctx, v1::WatchJobsRequest());
  };
  // With one job queued, a watch that is open has sent its snapshot of that job: reading it
  // shows the server holds the stream (a change sent before it was held would never arrive).
  ASSERT_TRUE(Submit("alpha").ok());
  Watch a, b, c;
  open(a);
  open(b);
  v1::WatchJobsResponse msg;
  ASSERT_TRUE(a.reader->Read(&msg));
  ASSERT_TRUE(b.reader->Read(&msg));
  open(c);
  EXPECT_FALSE(c.reader->Read(&msg));
  const grpc::Status refused = c.reader->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("--max_open_streams"));
  a.ctx.TryCancel();
  a.reader->Finish().ok();
  // Its place is given back when the server sees the end.
  bool reopened = false;
  for (int i = 0; i < 100 && !reopened; ++i) {
    Watch d;
    open(d);
    reopened = d.reader->Read(&msg);
    d.ctx.TryCancel();
    d.reader->Finish().ok();
  }
  EXPECT_TRUE(reopened);
  b.ctx.TryCancel();
  b.reader->Finish().ok();
}

// Checkpoints as the store keeps them: each project's total, at full size, under its cap.
TEST(CheckpointProjectCapTest, AProjectCannotKeepMoreThanItsCap) {
  const std::string dir = testing::MakeTempDir("sched_checkpoint_cap_");
  MemoryStore store;
  CheckpointStoreOptions o;
  o.root = dir + "/checkpoints";
  o.keep_per_job = 1;
  o.max_project_bytes = 2500;
  auto cs = CheckpointStore::Open(o, &store);
  ASSERT_TRUE(cs.ok()) << cs.status();
  int n = 0;
  // A checkpoint of 1000 new bytes for `job` in `project`.
  auto commit = [&](const std::string& job, const std::string& project) {
    const fs::path published = fs::path(dir) / absl::StrCat("step-", ++n);
    fs::create_directories(published);
    std::ofstream(published / "w.bin") << std::string(1000, static_cast<char>('a' + n));
    std::vector<checkpoint::LocalChunk> chunks;
    absl::StatusOr<v1::Checkpoint> m = checkpoint::Describe(published.string(), &chunks);
    EXPECT_TRUE(m.ok());
    for (const auto& c : chunks) {
      EXPECT_TRUE((*cs)->PutChunk(c.sha256, *checkpoint::ReadChunk(c)).ok());
    }
    m->set_job_id(job);
    m->set_project(project);
    return (*cs)->Commit(*m).status();
  };
  EXPECT_TRUE(commit("job-a", "alpha").ok());
  EXPECT_TRUE(commit("job-b", "alpha").ok());
  const absl::Status over = commit("job-c", "alpha");
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(over.message(), HasSubstr("project alpha would keep 3000 bytes"));
  EXPECT_TRUE((*cs)->List("job-c").empty());
  // Another project is not counted; a job replacing its own (keep 1) stays within.
  EXPECT_TRUE(commit("job-c", "beta").ok());
  EXPECT_TRUE(commit("job-a", "alpha").ok());
  EXPECT_EQ((*cs)->List("job-a").size(), 1u);
  // Reopened from the records, the totals are the same.
  cs->reset();
  cs = CheckpointStore::Open(o, &store);
  ASSERT_TRUE(cs.ok());
  EXPECT_EQ(commit("job-d", "alpha").code(), absl::StatusCode::kResourceExhausted);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace sched
