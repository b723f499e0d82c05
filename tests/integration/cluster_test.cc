// An in-process cluster: schedd (Daemon on a RocksDB store) and real Agents that run real
// processes, all on loopback port 0.
#include <filesystem>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "agent/agent.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "sched/v1/job_service.grpc.pb.h"
#include "server/daemon/daemon.h"
#include "tests/testing/subprocess.h"

namespace sched {
namespace {

using ::testing::HasSubstr;

class Cluster : public ::testing::Test {
 protected:
  // A 1 s lease, so loss is noticed quickly.
  DaemonOptions Options(const std::string& listen) const {
    DaemonOptions o;
    o.data_dir = dir_ + "/schedd";
    o.listen = listen;
    o.metrics_listen = "";
    o.lease_ttl_ms = 1000;
    o.heartbeat_interval_ms = 200;
    o.restart_grace_ms = 500;
    o.tick_interval_ms = 50;
    return o;
  }

  void SetUp() override {
    dir_ = testing::MakeTempDir("sched_cluster_");
    auto d = Daemon::Start(Options("127.0.0.1:0"));
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    address_ = absl::StrCat("127.0.0.1:", daemon_->port());
    jobs_ = v1::JobService::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    for (auto& a : agents_) a.agent->Shutdown();
    for (auto& a : agents_) a.thread.join();
    agents_.clear();
    daemon_.reset();
    std::filesystem::remove_all(dir_);
  }

  agent::Agent* StartAgent(const std::string& name) {
    agent::Agent::Options o;
    o.server = address_;
    o.node_name = name;
    o.work_dir = dir_ + "/" + name;
    o.kill_grace_ms = 200;
    o.capabilities.set_cpus(2);
    o.capabilities.set_memory_bytes(int64_t{4} << 30);
    o.capabilities.set_provider("local");
    RunningAgent a;
    a.agent = std::make_unique<agent::Agent>(o);
    agent::Agent* raw = a.agent.get();
    a.thread = std::thread([raw] { EXPECT_TRUE(raw->Run().ok()); });
    agents_.push_back(std::move(a));
    return raw;
  }

  // Waits until `n` nodes are READY.
  void WaitForNodes(size_t n) {
    for (int i = 0; i < 500; ++i) {
      size_t ready = 0;
      for (const Node& node : daemon_->scheduler()->ListNodes()) {
        if (node.state() == NodeState::kReady) ready++;
      }
      if (ready >= n) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL() << "nodes did not become ready";
  }

  std::string Submit(const std::string& run) {
    grpc::ClientContext ctx;
    v1::SubmitJobRequest req;
    req.mutable_spec()->set_name("it");
    req.mutable_spec()->set_run(run);
    v1::SubmitJobResponse resp;
    grpc::Status s = jobs_->SubmitJob(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.job().id();
  }

  // Polls until the job ends or `timeout` passes.
  v1::Job WaitForEnd(const std::string& id, absl::Duration timeout = absl::Seconds(20)) {
    const absl::Time give_up = absl::Now() + timeout;
    v1::Job job;
    while (absl::Now() < give_up) {
      grpc::ClientContext ctx;
      v1::GetJobRequest req;
      req.set_job_id(id);
      EXPECT_TRUE(jobs_->GetJob(&ctx, req, &job).ok());
      if (job.state() >= v1::JOB_STATE_SUCCEEDED) return job;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "job " << id << " did not end; state " << job.state();
    return job;
  }

  std::string Logs(const std::string& id) {
    grpc::ClientContext ctx;
    v1::GetJobLogsRequest req;
    req.set_job_id(id);
    auto reader = jobs_->GetJobLogs(&ctx, req);
    std::string out;
    v1::LogChunk chunk;
    while (reader->Read(&chunk)) out += chunk.data();
    EXPECT_TRUE(reader->Finish().ok());
    return out;
  }

  struct RunningAgent {
    std::unique_ptr<agent::Agent> agent;
    std::thread thread;
  };
  std::string dir_;
  std::unique_ptr<Daemon> daemon_;
  std::string address_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::vector<RunningAgent> agents_;
};

TEST_F(Cluster, JobRunsWithItsEnvironmentAndItsOutputIsKept) {
  StartAgent("a1");
  WaitForNodes(1);
  const std::string id =
      Submit("echo \"id=$SCHED_JOB_ID attempt=$SCHED_ATTEMPT gpus=[$CUDA_VISIBLE_DEVICES]\"; "
             "echo oops >&2; exit 0");
  v1::Job job = WaitForEnd(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job.exit_code(), 0);
  EXPECT_EQ(job.node(), "a1");
  const std::string logs = Logs(id);
  EXPECT_THAT(logs, HasSubstr(absl::StrCat("id=", id, " attempt=1 gpus=[]")));
  EXPECT_THAT(logs, HasSubstr("oops"));
}

TEST_F(Cluster, NonZeroExitFails) {
  StartAgent("a1");
  WaitForNodes(1);
  v1::Job job = WaitForEnd(Submit("exit 3"));
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(job.exit_code(), 3);
}

TEST_F(Cluster, CancelStopsTheProcess) {
  StartAgent("a1");
  WaitForNodes(1);
  const std::string id = Submit("echo started; sleep 30");
  for (int i = 0; i < 200 && Logs(id).empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  grpc::ClientContext ctx;
  v1::CancelJobRequest req;
  req.set_job_id(id);
  v1::Job resp;
  ASSERT_TRUE(jobs_->CancelJob(&ctx, req, &resp).ok());
  v1::Job job = WaitForEnd(id, absl::Seconds(5));
  EXPECT_EQ(job.state(), v1::JOB_STATE_CANCELLED);
}

TEST_F(Cluster, LostAgentsJobIsRerunElsewhereAfterTheLease) {
  agent::Agent* first = StartAgent("a1");
  WaitForNodes(1);
  // The first attempt hangs; a later attempt succeeds.
  const std::string id = Submit(
      "if [ \"$SCHED_ATTEMPT\" = 1 ]; then echo first; sleep 30; else echo rerun; fi");
  for (int i = 0; i < 200 && Logs(id).empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_THAT(Logs(id), HasSubstr("first"));
  StartAgent("a2");
  WaitForNodes(2);
  const absl::Time lost_at = absl::Now();
  first->Shutdown();  // a1 goes away without a word about the job
  v1::Job job = WaitForEnd(id);
  const absl::Duration took = absl::Now() - lost_at;
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job.attempt(), 2u);
  EXPECT_EQ(job.node(), "a2");
  EXPECT_THAT(Logs(id), HasSubstr("rerun"));
  // Re-queued once the 1 s lease ran out, not before.
  EXPECT_GE(took, absl::Milliseconds(900));
  EXPECT_LT(took, absl::Seconds(5));
}

TEST_F(Cluster, DrainedThenUncordonedNodeTakesWorkAgain) {
  StartAgent("a1");
  WaitForNodes(1);
  Scheduler* s = daemon_->scheduler();
  absl::Notification drained;
  s->Drain("a1", [&](absl::StatusOr<Node> n) {
    EXPECT_TRUE(n.ok());
    drained.Notify();
  });
  drained.WaitForNotification();
  const std::string held = Submit("echo held");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(s->GetJob(held)->state, JobState::kPending);
  absl::Notification uncordoned;
  s->Cordon("a1", false, [&](absl::StatusOr<Node> n) {
    EXPECT_TRUE(n.ok());
    uncordoned.Notify();
  });
  uncordoned.WaitForNotification();
  v1::Job job = WaitForEnd(held, absl::Seconds(5));
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job.attempt(), 1u);
}

TEST_F(Cluster, RestartedSchedulerKeepsRunningJobs) {
  StartAgent("a1");
  WaitForNodes(1);
  const std::string id = Submit("sleep 1.5; echo survived");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // Restart schedd on the same port and data; the agent reconnects and reports.
  const int port = daemon_->port();
  daemon_.reset();
  DaemonOptions o = Options(absl::StrCat("127.0.0.1:", port));
  o.restart_grace_ms = 2000;
  auto d = Daemon::Start(o);
  ASSERT_TRUE(d.ok()) << d.status();
  daemon_ = std::move(*d);
  v1::Job job = WaitForEnd(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job.attempt(), 1u);
  EXPECT_THAT(Logs(id), HasSubstr("survived"));
}

}  // namespace
}  // namespace sched
