// The Agent against a fake schedd on a loopback port.

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/agent.h"
#include "agent/metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "tests/agent/fake_agent_service.h"
#include "tests/agent/test_util.h"
#include "tests/testing/status_matchers.h"

namespace sched::agent {
namespace {

using ::sched::agent::testing::IsAlive;
using ::sched::agent::testing::MakeTempDir;
using ::sched::agent::testing::MetricValue;
using ::sched::agent::testing::ReadPid;
using ::sched::agent::testing::TimeToDeath;
using ::sched::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;
using Received = FakeAgentService::Received;

constexpr char kJobId[] = "00000000000000a1";
constexpr uint64_t kEpoch = 7;

v1::ServerMessage Assignment(const std::string& run) {
  v1::ServerMessage msg;
  v1::Job* job = msg.mutable_assignment()->mutable_job();
  job->set_id(kJobId);
  job->set_attempt(1);
  job->set_epoch(kEpoch);
  job->mutable_spec()->set_name("hello");
  job->mutable_spec()->set_run(run);
  msg.mutable_assignment()->set_epoch(kEpoch);
  return msg;
}

FakeAgentService::Predicate IsRegister(int session) {
  return [session](const Received& r) { return r.session == session && r.msg.has_register_(); };
}

FakeAgentService::Predicate IsUpdate(v1::JobState state, int session = 0) {
  return [state, session](const Received& r) {
    return (session == 0 || r.session == session) && r.msg.has_update() &&
           r.msg.update().job_id() == kJobId && r.msg.update().state() == state;
  };
}

FakeAgentService::Predicate IsLogContaining(const std::string& text) {
  return [text](const Received& r) {
    return r.msg.has_log() && r.msg.log().data().find(text) != std::string::npos;
  };
}

class AgentServiceTest : public ::testing::Test {
 protected:
  // Starts the fake schedd and the agent.
  void Start(uint64_t lease_ttl_ms = 5'000, bool ack_heartbeats = true,
             const std::string& node_name = "node-a") {
    fake_ = std::make_unique<FakeAgentService>(lease_ttl_ms, /*heartbeat_interval_ms=*/50,
                                               ack_heartbeats);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(fake_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);

    work_dir_ = MakeTempDir("agent_service_test");
    ASSERT_FALSE(work_dir_.empty());

    Agent::Options options;
    options.server = absl::StrCat("127.0.0.1:", port);
    options.node_name = node_name;
    options.capabilities.set_cpus(4);
    options.capabilities.set_memory_bytes(8LL << 30);
    options.capabilities.set_hostname("host-a");
    options.capabilities.set_gpu_detection("none");
    options.work_dir = work_dir_;
    options.kill_grace_ms = 200;
    options.reconnect_initial_ms = 20;
    options.reconnect_max_ms = 100;
    options.shutdown_flush_ms = 200;
    agent_ = std::make_unique<Agent>(options, &metrics_);
    agent_thread_ = std::thread([this] { run_status_ = agent_->Run(); });
    ASSERT_TRUE(fake_->WaitFor(IsRegister(1)));
  }

  void TearDown() override {
    if (agent_ != nullptr) {
      agent_->Shutdown();
      agent_thread_.join();
      EXPECT_TRUE(run_status_.ok()) << run_status_;
    }
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    }
    if (!work_dir_.empty()) std::filesystem::remove_all(work_dir_);
  }

  // Assigns a job that writes its shell's pid and says "started"; returns the pid.
  pid_t StartSleeper() {
    EXPECT_TRUE(fake_->Send(Assignment("echo $$ > job.pid; echo started; sleep 30")));
    EXPECT_TRUE(fake_->WaitFor(IsLogContaining("started")));
    const pid_t pid = ReadPid(absl::StrCat(work_dir_, "/jobs/", kJobId, "-1/job.pid"));
    EXPECT_GT(pid, 0);
    return pid;
  }

  // True if no final update of the job arrives within `wait`.
  bool NoFinalUpdate(absl::Duration wait) {
    auto final_update = [](const Received& r) {
      return r.msg.has_update() && r.msg.update().state() != v1::JOB_STATE_RUNNING;
    };
    return !fake_->WaitFor(final_update, wait).has_value();
  }

  prometheus::Registry registry_;
  AgentMetrics metrics_{registry_};
  std::unique_ptr<FakeAgentService> fake_;
  std::unique_ptr<grpc::Server> server_;
  std::string work_dir_;
  std::unique_ptr<Agent> agent_;
  std::thread agent_thread_;
  absl::Status run_status_;
};

TEST_F(AgentServiceTest, RunsAJobAndResendsItsFinalUpdateUntilAcked) {
  Start();
  std::optional<v1::AgentMessage> reg = fake_->WaitFor(IsRegister(1));
  ASSERT_TRUE(reg.has_value());
  EXPECT_EQ(reg->register_().node_name(), "node-a");
  EXPECT_EQ(reg->register_().capabilities().cpus(), 4);
  EXPECT_EQ(reg->register_().capabilities().memory_bytes(), 8LL << 30);
  EXPECT_EQ(reg->register_().capabilities().hostname(), "host-a");
  EXPECT_EQ(reg->register_().running_size(), 0);

  ASSERT_TRUE(fake_->Send(Assignment("echo hi; exit 0")));
  size_t running_at = 0, log_at = 0, final_at = 0;
  ASSERT_TRUE(fake_->WaitFor(IsUpdate(v1::JOB_STATE_RUNNING), absl::Seconds(5), 0, &running_at));
  std::optional<v1::AgentMessage> log =
      fake_->WaitFor(IsLogContaining("hi"), absl::Seconds(5), 0, &log_at);
  ASSERT_TRUE(log.has_value());
  EXPECT_EQ(log->log().job_id(), kJobId);
  EXPECT_EQ(log->log().epoch(), kEpoch);
  EXPECT_EQ(log->log().stream(), v1::LOG_STREAM_STDOUT);
  EXPECT_EQ(log->log().data(), "hi\n");
  std::optional<v1::AgentMessage> done =
      fake_->WaitFor(IsUpdate(v1::JOB_STATE_SUCCEEDED), absl::Seconds(5), 0, &final_at);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->update().epoch(), kEpoch);
  EXPECT_EQ(done->update().exit_code(), 0);
  EXPECT_LT(running_at, log_at);
  EXPECT_LT(log_at, final_at);

  // No UpdateAck: after a reconnect the job is still held and its final update comes again.
  fake_->Break();
  reg = fake_->WaitFor(IsRegister(2));
  ASSERT_TRUE(reg.has_value());
  ASSERT_EQ(reg->register_().running_size(), 1);
  EXPECT_EQ(reg->register_().running(0).job_id(), kJobId);
  EXPECT_EQ(reg->register_().running(0).epoch(), kEpoch);
  done = fake_->WaitFor(IsUpdate(v1::JOB_STATE_SUCCEEDED, 2));
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->update().exit_code(), 0);

  // Acked: forgotten, so the next Register holds nothing and nothing is sent again.
  v1::ServerMessage ack;
  ack.mutable_update_ack()->set_job_id(kJobId);
  ack.mutable_update_ack()->set_epoch(kEpoch);
  ack.mutable_update_ack()->set_state(v1::JOB_STATE_SUCCEEDED);
  ASSERT_TRUE(fake_->Send(ack));
  auto empty_heartbeat = [](const Received& r) {
    return r.session == 2 && r.msg.has_heartbeat() && r.msg.heartbeat().running_size() == 0;
  };
  ASSERT_TRUE(fake_->WaitFor(empty_heartbeat));
  fake_->Break();
  reg = fake_->WaitFor(IsRegister(3));
  ASSERT_TRUE(reg.has_value());
  EXPECT_EQ(reg->register_().running_size(), 0);
  EXPECT_FALSE(fake_->WaitFor(IsUpdate(v1::JOB_STATE_SUCCEEDED, 3), absl::Milliseconds(200)));

  EXPECT_EQ(MetricValue(registry_, "sched_agent_jobs_started_total"), 1);
  EXPECT_EQ(MetricValue(registry_, "sched_agent_jobs_finished_total", {{"result", "succeeded"}}),
            1);
  EXPECT_EQ(MetricValue(registry_, "sched_agent_running_jobs"), 0);
  EXPECT_EQ(MetricValue(registry_, "sched_agent_connected"), 1);
}

TEST_F(AgentServiceTest, OutputWhileCutOffIsSentBeforeTheFinalUpdate) {
  Start();
  ASSERT_TRUE(fake_->Send(Assignment("echo early; sleep 0.2; echo late; exit 0")));
  ASSERT_TRUE(fake_->WaitFor(IsLogContaining("early")));
  // Cut off, and the next stream is not registered until the job has ended.
  fake_->HoldRegisterAcks(true);
  fake_->Break();
  ASSERT_TRUE(fake_->WaitFor(IsRegister(2)));
  absl::SleepFor(absl::Milliseconds(400));
  EXPECT_FALSE(fake_->WaitFor(IsLogContaining("late"), absl::ZeroDuration()));
  ASSERT_TRUE(fake_->SendRegisterAck());
  size_t log_at = 0, final_at = 0;
  std::optional<v1::AgentMessage> log =
      fake_->WaitFor(IsLogContaining("late"), absl::Seconds(5), 0, &log_at);
  ASSERT_TRUE(log.has_value());
  EXPECT_EQ(log->log().data(), "late\n");
  ASSERT_TRUE(fake_->WaitFor(IsUpdate(v1::JOB_STATE_SUCCEEDED, 2), absl::Seconds(5), 0, &final_at));
  EXPECT_LT(log_at, final_at);
  EXPECT_EQ(fake_->received()[log_at].session, 2);
}

TEST_F(AgentServiceTest, RefusedRegistrationEndsRun) {
  Start(5'000, true, "bad name");
  agent_thread_.join();
  EXPECT_THAT(run_status_, StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("refused to register this node: node_name")));
  agent_.reset();
}

TEST_F(AgentServiceTest, FailingJobReportsExitCode) {
  Start();
  ASSERT_TRUE(fake_->Send(Assignment("echo oops >&2; exit 3")));
  std::optional<v1::AgentMessage> done = fake_->WaitFor(IsUpdate(v1::JOB_STATE_FAILED));
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->update().exit_code(), 3);
  EXPECT_EQ(done->update().message(), "exit code 3");
  std::optional<v1::AgentMessage> log = fake_->WaitFor(IsLogContaining("oops"));
  ASSERT_TRUE(log.has_value());
  EXPECT_EQ(log->log().stream(), v1::LOG_STREAM_STDERR);
}

TEST_F(AgentServiceTest, HeartbeatsListTheRunningJob) {
  Start();
  StartSleeper();
  auto lists_job = [](const Received& r) {
    return r.msg.has_heartbeat() && r.msg.heartbeat().running_size() == 1 &&
           r.msg.heartbeat().running(0).job_id() == kJobId &&
           r.msg.heartbeat().running(0).epoch() == kEpoch;
  };
  EXPECT_TRUE(fake_->WaitFor(lists_job));
}

TEST_F(AgentServiceTest, CancelEndsCancelled) {
  Start();
  const pid_t pid = StartSleeper();
  v1::ServerMessage cancel;
  cancel.mutable_cancel()->set_job_id(kJobId);
  cancel.mutable_cancel()->set_epoch(kEpoch);
  ASSERT_TRUE(fake_->Send(cancel));
  std::optional<v1::AgentMessage> done = fake_->WaitFor(IsUpdate(v1::JOB_STATE_CANCELLED));
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->update().exit_code(), 128 + SIGTERM);
  EXPECT_EQ(done->update().message(), "cancelled: killed by signal 15");
  EXPECT_FALSE(IsAlive(pid));
  EXPECT_EQ(MetricValue(registry_, "sched_agent_jobs_finished_total", {{"result", "cancelled"}}),
            1);
}

TEST_F(AgentServiceTest, StopJobKillsAndReportsNothing) {
  Start();
  const pid_t pid = StartSleeper();
  v1::ServerMessage stop;
  stop.mutable_stop()->set_job_id(kJobId);
  stop.mutable_stop()->set_epoch(kEpoch);
  stop.mutable_stop()->set_reason("lease lost");
  const size_t sent_at = fake_->received_count();
  ASSERT_TRUE(fake_->Send(stop));
  EXPECT_TRUE(TimeToDeath(pid, absl::Seconds(2)).has_value());
  EXPECT_TRUE(NoFinalUpdate(absl::Milliseconds(300)));
  auto empty_heartbeat = [](const Received& r) {
    return r.msg.has_heartbeat() && r.msg.heartbeat().running_size() == 0;
  };
  EXPECT_TRUE(fake_->WaitFor(empty_heartbeat, absl::Seconds(2), sent_at));
  EXPECT_EQ(MetricValue(registry_, "sched_agent_running_jobs"), 0);
}

TEST_F(AgentServiceTest, StopWithAnotherEpochIsIgnored) {
  Start();
  const pid_t pid = StartSleeper();
  v1::ServerMessage stop;
  stop.mutable_stop()->set_job_id(kJobId);
  stop.mutable_stop()->set_epoch(kEpoch - 1);
  ASSERT_TRUE(fake_->Send(stop));
  EXPECT_FALSE(TimeToDeath(pid, absl::Milliseconds(300)).has_value());
}

TEST_F(AgentServiceTest, RejectedFailedPreconditionKillsTheJob) {
  Start();
  const pid_t pid = StartSleeper();
  v1::ServerMessage rejected;
  rejected.mutable_rejected()->set_job_id(kJobId);
  rejected.mutable_rejected()->set_epoch(kEpoch);
  rejected.mutable_rejected()->set_code(9);
  rejected.mutable_rejected()->set_message("stale epoch");
  ASSERT_TRUE(fake_->Send(rejected));
  EXPECT_TRUE(TimeToDeath(pid, absl::Seconds(2)).has_value());
  EXPECT_TRUE(NoFinalUpdate(absl::Milliseconds(300)));
}

TEST_F(AgentServiceTest, RejectedUnavailableKeepsTheJob) {
  Start();
  const pid_t pid = StartSleeper();
  v1::ServerMessage rejected;
  rejected.mutable_rejected()->set_job_id(kJobId);
  rejected.mutable_rejected()->set_epoch(kEpoch);
  rejected.mutable_rejected()->set_code(14);
  ASSERT_TRUE(fake_->Send(rejected));
  EXPECT_FALSE(TimeToDeath(pid, absl::Milliseconds(300)).has_value());
}

TEST_F(AgentServiceTest, KillsItsJobWhenHeartbeatsAreNotAcked) {
  Start(/*lease_ttl_ms=*/300, /*ack_heartbeats=*/false);
  const absl::Time assigned = absl::Now();
  const pid_t pid = StartSleeper();
  ASSERT_TRUE(TimeToDeath(pid, absl::Seconds(2)).has_value());
  const absl::Duration lived = absl::Now() - assigned;
  EXPECT_GE(lived, absl::Milliseconds(250));
  EXPECT_LE(lived, absl::Seconds(2));
  EXPECT_TRUE(NoFinalUpdate(absl::Milliseconds(200)));
  // The silent stream is dropped and dialled again.
  EXPECT_TRUE(fake_->WaitFor(IsRegister(2)));
}

// The points of every AgentMetrics of the job received before position `before`, in order.
std::vector<std::tuple<int64_t, std::string, double>> MetricsBefore(
    const std::vector<Received>& received, size_t before) {
  std::vector<std::tuple<int64_t, std::string, double>> points;
  for (size_t i = 0; i < before && i < received.size(); ++i) {
    const v1::AgentMessage& m = received[i].msg;
    if (!m.has_metrics()) continue;
    EXPECT_EQ(m.metrics().job_id(), kJobId);
    EXPECT_EQ(m.metrics().epoch(), kEpoch);
    for (const v1::MetricPoint& p : m.metrics().points()) {
      points.emplace_back(p.step(), p.name(), p.value());
    }
  }
  return points;
}

TEST_F(AgentServiceTest, MetricsTheJobAppendsComeBeforeItsFinalUpdate) {
  Start();
  ASSERT_TRUE(
      fake_->Send(Assignment("echo \"step=1 loss=0.5\" >> \"$SCHED_METRICS_FILE\"; "
                             "echo \"step=2 loss=0.25 acc=0.9\" >> \"$SCHED_METRICS_FILE\"")));
  size_t final_at = 0;
  ASSERT_TRUE(fake_->WaitFor(IsUpdate(v1::JOB_STATE_SUCCEEDED), absl::Seconds(5), 0, &final_at));
  const std::vector<Received> received = fake_->received();
  EXPECT_THAT(MetricsBefore(received, final_at),
              ElementsAre(std::make_tuple(1, "loss", 0.5), std::make_tuple(2, "loss", 0.25),
                          std::make_tuple(2, "acc", 0.9)));
  // Nothing is sent twice.
  EXPECT_THAT(MetricsBefore(received, received.size()), SizeIs(3));
}

TEST_F(AgentServiceTest, MetricsAreSentWhileTheJobRuns) {
  Start();
  ASSERT_TRUE(fake_->Send(
      Assignment("echo \"step=1 loss=0.5\" >> \"$SCHED_METRICS_FILE\"; echo started; sleep 30")));
  std::optional<v1::AgentMessage> metrics =
      fake_->WaitFor([](const Received& r) { return r.msg.has_metrics(); }, absl::Seconds(2));
  ASSERT_TRUE(metrics.has_value());
  EXPECT_EQ(metrics->metrics().job_id(), kJobId);
  EXPECT_EQ(metrics->metrics().epoch(), kEpoch);
  ASSERT_EQ(metrics->metrics().points_size(), 1);
  EXPECT_EQ(metrics->metrics().points(0).step(), 1);
  EXPECT_EQ(metrics->metrics().points(0).name(), "loss");
  EXPECT_EQ(metrics->metrics().points(0).value(), 0.5);
  EXPECT_TRUE(NoFinalUpdate(absl::ZeroDuration()));
}

TEST_F(AgentServiceTest, BadMetricsLinesAreNotedOnStderrAndALastPartialLineIsRead) {
  Start();
  v1::ServerMessage msg = Assignment(
      "printf 'step=1 tok=%s\\nstep=2 loss=0.5\\nstep=3 loss=0.25' \"$HF_TOKEN\" "
      ">> \"$SCHED_METRICS_FILE\"");
  v1::EnvVar* secret = msg.mutable_assignment()->mutable_job()->mutable_spec()->add_env();
  secret->set_name("HF_TOKEN");
  secret->set_value("hf_abcdef99");
  secret->set_secret(true);
  ASSERT_TRUE(fake_->Send(msg));
  size_t final_at = 0;
  ASSERT_TRUE(fake_->WaitFor(IsUpdate(v1::JOB_STATE_SUCCEEDED), absl::Seconds(5), 0, &final_at));
  const std::vector<Received> received = fake_->received();
  EXPECT_THAT(MetricsBefore(received, final_at),
              ElementsAre(std::make_tuple(2, "loss", 0.5), std::make_tuple(3, "loss", 0.25)));
  std::string err;
  for (size_t i = 0; i < final_at; ++i) {
    if (received[i].msg.has_log() && received[i].msg.log().stream() == v1::LOG_STREAM_STDERR) {
      err += received[i].msg.log().data();
    }
  }
  EXPECT_EQ(err,
            "[sched-agent: metrics line 1 ignored: tok=[secret HF_TOKEN] is not a finite "
            "number]\n");
}

TEST_F(AgentServiceTest, MetricsOfAStoppedJobAreDropped) {
  Start();
  ASSERT_TRUE(fake_->Send(Assignment(
      "trap 'echo \"step=9 loss=1\" >> \"$SCHED_METRICS_FILE\"; exit 1' TERM; echo started; "
      "sleep 30 & wait")));
  ASSERT_TRUE(fake_->WaitFor(IsLogContaining("started")));
  v1::ServerMessage stop;
  stop.mutable_stop()->set_job_id(kJobId);
  stop.mutable_stop()->set_epoch(kEpoch);
  stop.mutable_stop()->set_reason("lease lost");
  ASSERT_TRUE(fake_->Send(stop));
  const std::string file = absl::StrCat(work_dir_, "/jobs/", kJobId, "-1/.sched-metrics");
  const absl::Time give_up = absl::Now() + absl::Seconds(2);
  while (!std::filesystem::exists(file) && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(std::filesystem::exists(file));
  EXPECT_FALSE(fake_->WaitFor([](const Received& r) { return r.msg.has_metrics(); },
                              absl::Milliseconds(600)));
}

// Placement is schedd's: after a drain it sends nothing until the node is uncordoned, and an
// assignment after that must run (the agent must not stay deaf until it reconnects).
TEST_F(AgentServiceTest, AssignmentAfterDrainStillRuns) {
  Start();
  v1::ServerMessage drain;
  drain.mutable_drain();
  ASSERT_TRUE(fake_->Send(drain));
  ASSERT_TRUE(fake_->Send(Assignment("echo hi")));
  EXPECT_TRUE(fake_->WaitFor(IsUpdate(v1::JOB_STATE_RUNNING), absl::Seconds(2)));
}

}  // namespace
}  // namespace sched::agent

namespace sched::agent {
namespace {

TEST_F(AgentServiceTest, ASecretValueNeverReachesTheLogs) {
  Start();
  ASSERT_TRUE(fake_->WaitFor(IsRegister(1)).has_value());
  v1::ServerMessage msg = Assignment(
      "echo \"key=$HF_TOKEN\"; printf '%s' \"$HF_TOKEN\" | cut -c1-6; echo; "
      "printf 'split: hf_ab'; sleep 0.2; printf 'cdef99 end\\n' >&1; echo \"pub=$PUBLIC\"");
  v1::EnvVar* secret = msg.mutable_assignment()->mutable_job()->mutable_spec()->add_env();
  secret->set_name("HF_TOKEN");
  secret->set_value("hf_abcdef99");
  secret->set_secret(true);
  v1::EnvVar* plain = msg.mutable_assignment()->mutable_job()->mutable_spec()->add_env();
  plain->set_name("PUBLIC");
  plain->set_value("visible");
  ASSERT_TRUE(fake_->Send(msg));
  ASSERT_TRUE(fake_->WaitFor(IsUpdate(v1::JOB_STATE_SUCCEEDED), absl::Seconds(5)).has_value());
  std::string out;
  for (const Received& r : fake_->received()) {
    if (r.msg.has_log()) out += r.msg.log().data();
  }
  EXPECT_EQ(out, "key=[secret HF_TOKEN]\nhf_abc\n\nsplit: [secret HF_TOKEN] end\npub=visible\n");
  EXPECT_EQ(out.find("hf_abcdef99"), std::string::npos);
}

}  // namespace
}  // namespace sched::agent
