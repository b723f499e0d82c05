// The real binaries: schedd and two sched-agents as processes, running the example training job
// (deploy/examples/checkpoint_train.py). The agent running it is killed with the job mid-run,
// as when a machine vanishes without notice; the job is re-queued once the lease runs out and
// resumes on the other agent from the newest checkpoint that reached schedd, to the same result
// as a run never interrupted.
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "sched/v1/checkpoint_service.grpc.pb.h"
#include "sched/v1/job_service.grpc.pb.h"
#include "sched/v1/node_service.grpc.pb.h"
#include "tests/testing/subprocess.h"

namespace sched {
namespace {

using ::sched::testing::BinaryPath;
using ::sched::testing::MakeTempDir;
using ::sched::testing::PickFreePort;
using ::sched::testing::Subprocess;
using ::sched::testing::WaitForPort;
using ::testing::HasSubstr;

constexpr int kSteps = 200;
constexpr int kEvery = 20;  // steps per checkpoint

const std::string& Script() {
  static const std::string path =
      std::string(SCHED_SOURCE_DIR) + "/deploy/examples/checkpoint_train.py";
  return path;
}

// The lines of `text` that start with `prefix`.
std::vector<std::string> LinesStarting(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) out.push_back(line);
  }
  return out;
}

// The step in a checkpoint's name, step-NNNNNN.
int StepOf(const std::string& name) {
  int step = -1;
  if (name.size() > 5) absl::SimpleAtoi(name.substr(5), &step);
  return step;
}

// What a command prints, stdout and stderr.
std::string RunCommand(const std::string& cmd) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  while (p != nullptr && fgets(buf, sizeof buf, p) != nullptr) out += buf;
  if (p != nullptr) pclose(p);
  return out;
}

// What the script prints when nothing interrupts it.
std::string UninterruptedResult() {
  const std::string cmd =
      absl::StrCat("env -u SCHED_CHECKPOINT_DIR -u SCHED_RESUME_FROM python3 ", Script(),
                   " --steps ", kSteps, " --checkpoint-every ", kEvery);
  std::vector<std::string> result = LinesStarting(RunCommand(cmd), "result:");
  return result.empty() ? "" : result.back();
}

class CheckpointResumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("sched_checkpoint_resume_");
    const int port = PickFreePort();
    address_ = absl::StrCat("127.0.0.1:", port);
    schedd_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("schedd"), "--data_dir=" + dir_ + "/schedd",
                                 "--listen=" + address_, "--metrics_listen=", "--lease_ttl_ms=1500",
                                 "--heartbeat_interval_ms=300"},
        dir_ + "/schedd.log");
    ASSERT_TRUE(WaitForPort(port, 10'000));
    // The agents move checkpoints on one thread and on three: either may upload and the
    // other download.
    for (const auto& [name, threads] : {std::pair<std::string, int>{"a1", 1}, {"a2", 3}}) {
      agents_[name] = std::make_unique<Subprocess>(
          std::vector<std::string>{
              BinaryPath("sched-agent"), "--server=" + address_, "--name=" + name,
              "--work_dir=" + dir_ + "/" + name, "--metrics_listen=", "--gpu_detection=none",
              "--checkpoint_poll_ms=50", absl::StrCat("--checkpoint_threads=", threads),
              "--spot=true", "--provider=vastai", "--price_per_hour=0.5",
              "--preemption_notice=sigterm", "--sigterm_notice_seconds=5"},
          dir_ + "/" + name + ".log");
    }
    auto channel = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    jobs_ = v1::JobService::NewStub(channel);
    nodes_ = v1::NodeService::NewStub(channel);
    checkpoints_ = v1::CheckpointService::NewStub(channel);
    for (int i = 0; i < 500; ++i) {
      grpc::ClientContext ctx;
      v1::ListNodesResponse resp;
      nodes_->ListNodes(&ctx, v1::ListNodesRequest(), &resp);
      int ready = 0;
      for (const auto& n : resp.nodes()) ready += n.state() == v1::NODE_STATE_READY;
      if (ready == 2) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  void TearDown() override {
    agents_.clear();
    schedd_.reset();
    std::filesystem::remove_all(dir_);
  }

  v1::Job Get(const std::string& id) {
    grpc::ClientContext ctx;
    v1::GetJobRequest g;
    g.set_job_id(id);
    v1::Job job;
    EXPECT_TRUE(jobs_->GetJob(&ctx, g, &job).ok());
    return job;
  }

  std::vector<v1::Checkpoint> List(const std::string& id) {
    grpc::ClientContext ctx;
    v1::ListCheckpointsRequest req;
    req.set_job_id(id);
    v1::ListCheckpointsResponse resp;
    EXPECT_TRUE(checkpoints_->ListCheckpoints(&ctx, req, &resp).ok());
    return {resp.checkpoints().begin(), resp.checkpoints().end()};
  }

  std::string Logs(const std::string& id, uint32_t attempt) {
    grpc::ClientContext ctx;
    v1::GetJobLogsRequest req;
    req.set_job_id(id);
    req.set_attempt(attempt);
    auto reader = jobs_->GetJobLogs(&ctx, req);
    std::string out;
    v1::LogChunk chunk;
    while (reader->Read(&chunk)) out += chunk.data();
    reader->Finish();
    return out;
  }

  std::string dir_, address_;
  std::unique_ptr<Subprocess> schedd_;
  std::map<std::string, std::unique_ptr<Subprocess>> agents_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::NodeService::Stub> nodes_;
  std::unique_ptr<v1::CheckpointService::Stub> checkpoints_;
};

TEST_F(CheckpointResumeTest, AgentKilledWithItsJobResumesFromTheNewestCheckpointElsewhere) {
  const std::string expected = UninterruptedResult();
  ASSERT_THAT(expected, HasSubstr("result: steps=200"));

  // The job leads its own process group; it notes its pid so the test can kill it with its
  // agent, as a machine that vanishes takes both.
  grpc::ClientContext sctx;
  v1::SubmitJobRequest req;
  req.mutable_spec()->set_name("train");
  req.mutable_spec()->set_run(absl::StrCat("echo $$ > ", dir_, "/pid-$SCHED_ATTEMPT; exec python3 ",
                                           Script(), " --steps ", kSteps, " --checkpoint-every ",
                                           kEvery, " --step-seconds 0.02"));
  req.mutable_spec()->mutable_resources()->set_cpus(0.5);
  v1::SubmitJobResponse submitted;
  ASSERT_TRUE(jobs_->SubmitJob(&sctx, req, &submitted).ok());
  const std::string id = submitted.job().id();

  // Two checkpoints in schedd, then kill at once: the job is a few steps past the newest.
  std::vector<v1::Checkpoint> before;
  for (int i = 0; i < 1000 && before.size() < 2; ++i) {
    before = List(id);
    if (before.size() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_GE(before.size(), 2u) << "no checkpoints reached schedd";
  const v1::Job running = Get(id);
  ASSERT_EQ(running.state(), v1::JOB_STATE_RUNNING);
  const std::string first_node = running.node();
  pid_t job_pid = 0;
  std::ifstream(dir_ + "/pid-1") >> job_pid;
  ASSERT_GT(job_pid, 1);
  agents_[first_node]->Signal(SIGKILL);
  kill(-job_pid, SIGKILL);
  const absl::Time killed_at = absl::Now();
  // Nothing of attempt 1 can arrive now: the newest checkpoint schedd has is what it resumes from.
  const std::vector<v1::Checkpoint> at_kill = List(id);
  ASSERT_FALSE(at_kill.empty());
  const v1::Checkpoint& newest = at_kill.back();
  EXPECT_EQ(newest.attempt(), 1u);
  EXPECT_EQ(newest.node(), first_node);
  EXPECT_TRUE(newest.is_dir());
  const int newest_step = StepOf(newest.name());
  ASSERT_GT(newest_step, 0);

  v1::Job job;
  for (int i = 0; i < 3000; ++i) {
    job = Get(id);
    if (job.state() == v1::JOB_STATE_SUCCEEDED || job.state() == v1::JOB_STATE_FAILED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.message();
  EXPECT_EQ(job.attempt(), 2u);
  EXPECT_NE(job.node(), first_node);

  const std::string second = Logs(id, 2);
  EXPECT_THAT(second, HasSubstr(absl::StrCat("resuming from checkpoint ", newest.name())));
  EXPECT_THAT(second, HasSubstr(absl::StrCat("resumed from step ", newest_step, "\n")));
  const std::vector<std::string> result = LinesStarting(second, "result:");
  ASSERT_EQ(result.size(), 1u) << second;
  EXPECT_EQ(result[0], expected);
  // Work redone: attempt 1 had published at most one checkpoint beyond the one resumed from,
  // so what it ran past that checkpoint is under one interval, plus the one not yet uploaded.
  const std::vector<std::string> published = LinesStarting(Logs(id, 1), "checkpoint step-");
  ASSERT_FALSE(published.empty());
  const int last_published = StepOf(published.back().substr(11, 11));
  EXPECT_LE(last_published - newest_step, kEvery) << published.back();
  // Attempt 2 did not start from zero: it ran only the steps after the checkpoint.
  const std::vector<std::string> redone = LinesStarting(second, "checkpoint step-");
  ASSERT_FALSE(redone.empty());
  EXPECT_EQ(StepOf(redone.front().substr(11, 11)), newest_step + kEvery);
  std::printf(
      "resumed on %s from %s (step %d; attempt 1 had published step %d), %.1f s after "
      "the kill\n",
      job.node().c_str(), newest.name().c_str(), newest_step, last_published,
      absl::ToDoubleSeconds(absl::Now() - killed_at));

  // schedd kept the newest 3 (the default), attempt 2's among them.
  const std::vector<v1::Checkpoint> after = List(id);
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after.back().attempt(), 2u);
  EXPECT_EQ(after.back().name(), absl::StrCat("step-000", kSteps));

  // schedctl lists them and brings the final one home, whole.
  const std::string schedctl = absl::StrCat(BinaryPath("schedctl"), " --server=", address_);
  const std::string listed = RunCommand(absl::StrCat(schedctl, " checkpoints ", id.substr(0, 6)));
  EXPECT_THAT(listed, HasSubstr("step-000200"));
  EXPECT_THAT(listed, HasSubstr(job.node()));
  const std::string got =
      RunCommand(absl::StrCat(schedctl, " checkpoint get ", id, " --to ", dir_, "/home"));
  EXPECT_THAT(got, HasSubstr("step-000200"));
  std::ifstream state(dir_ + "/home/step-000200/state.json");
  std::string json((std::istreambuf_iterator<char>(state)), std::istreambuf_iterator<char>());
  EXPECT_THAT(json, HasSubstr("\"step\": 200")) << got;
}

TEST_F(CheckpointResumeTest, PreemptionNoticeSavesTheStepUnderWayAndResumesElsewhereAtOnce) {
  const std::string expected = UninterruptedResult();
  ASSERT_THAT(expected, HasSubstr("result: steps=200"));
  grpc::ClientContext sctx;
  v1::SubmitJobRequest req;
  req.mutable_spec()->set_name("train");
  req.mutable_spec()->set_run(absl::StrCat("exec python3 ", Script(), " --steps ", kSteps,
                                           " --checkpoint-every ", kEvery, " --step-seconds 0.02"));
  req.mutable_spec()->mutable_resources()->set_cpus(0.5);
  v1::SubmitJobResponse submitted;
  ASSERT_TRUE(jobs_->SubmitJob(&sctx, req, &submitted).ok());
  const std::string id = submitted.job().id();
  std::vector<v1::Checkpoint> before;
  for (int i = 0; i < 1000 && before.empty(); ++i) {
    before = List(id);
    if (before.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_FALSE(before.empty()) << "no checkpoint reached schedd";
  const v1::Job running = Get(id);
  ASSERT_EQ(running.state(), v1::JOB_STATE_RUNNING);
  const std::string first_node = running.node();
  // The spot host's notice: SIGTERM to the agent.
  const absl::Time noticed_at = absl::Now();
  agents_[first_node]->Signal(SIGTERM);
  // Back in the queue and running elsewhere well before a lease (1.5 s) could have run out.
  v1::Job job;
  absl::Duration to_running = absl::InfiniteDuration();
  for (int i = 0; i < 3000; ++i) {
    job = Get(id);
    if (job.attempt() == 2 && job.state() == v1::JOB_STATE_RUNNING &&
        to_running == absl::InfiniteDuration()) {
      to_running = absl::Now() - noticed_at;
    }
    if (job.state() == v1::JOB_STATE_SUCCEEDED || job.state() == v1::JOB_STATE_FAILED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.message();
  EXPECT_EQ(job.attempt(), 2u);
  EXPECT_EQ(job.preemptions(), 1u);
  EXPECT_NE(job.node(), first_node);
  EXPECT_LT(to_running, absl::Seconds(2)) << "requeued by the lease, not by the report";
  ASSERT_EQ(job.attempts_size(), 2);
  EXPECT_TRUE(job.attempts(0).preempted());
  EXPECT_THAT(job.attempts(0).end_reason(), HasSubstr("sigterm preemption notice"));
  EXPECT_EQ(job.attempts(0).node(), first_node);
  EXPECT_FALSE(job.attempts(1).preempted());
  EXPECT_EQ(job.attempts(1).end_reason(), "succeeded");
  // The step under way at the notice was saved, uploaded, and is where attempt 2 began: no
  // step ran twice.
  const std::string first = Logs(id, 1);
  const std::vector<std::string> stopped = LinesStarting(first, "stopped at step ");
  ASSERT_EQ(stopped.size(), 1u) << first;
  int stopped_step = -1;
  ASSERT_TRUE(absl::SimpleAtoi(stopped[0].substr(16, stopped[0].find(' ', 16) - 16), &stopped_step))
      << stopped[0];
  EXPECT_EQ(job.attempts(1).resumed_from(), absl::StrFormat("step-%06d", stopped_step));
  const std::string second = Logs(id, 2);
  EXPECT_THAT(second, HasSubstr(absl::StrCat("resumed from step ", stopped_step, "\n")));
  const std::vector<std::string> result = LinesStarting(second, "result:");
  ASSERT_EQ(result.size(), 1u) << second;
  EXPECT_EQ(result[0], expected);
  // describe tells the story.
  const std::string described = RunCommand(
      absl::StrCat(BinaryPath("schedctl"), " --server=", address_, " describe job ", id));
  EXPECT_THAT(described, HasSubstr("Attempt:      2 (1 lost to preemption"));
  EXPECT_THAT(described, HasSubstr("sigterm preemption notice"));
  EXPECT_THAT(described, HasSubstr(absl::StrFormat("step-%06d (#", stopped_step)));
  // The agent, told its machine is going, reported and stopped by itself.
  EXPECT_EQ(agents_[first_node]->Wait(10'000), 0);
  std::printf("preempted on %s at step %d; running on %s %.0f ms after the notice\n",
              first_node.c_str(), stopped_step, job.node().c_str(),
              absl::ToDoubleMilliseconds(to_running));
}

}  // namespace
}  // namespace sched
