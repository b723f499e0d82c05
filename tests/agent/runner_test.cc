// JobRunner against the real /bin/sh.

#include "agent/runner.h"

#include <signal.h>

#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/test_util.h"
#include "tests/testing/status_matchers.h"

namespace sched::agent {
namespace {

using ::sched::agent::testing::IsAlive;
using ::sched::agent::testing::MakeTempDir;
using ::sched::agent::testing::ReadPid;
using ::sched::agent::testing::TimeToDeath;
using ::sched::testing::StatusIs;
using ::testing::Each;
using ::testing::HasSubstr;
using ::testing::Le;

constexpr absl::Duration kTimeout = absl::Seconds(5);

// Everything a runner reported, safe to read while it runs.
struct Outcome {
  absl::Mutex mu;
  std::string out ABSL_GUARDED_BY(mu);
  std::string err ABSL_GUARDED_BY(mu);
  std::vector<size_t> chunk_sizes ABSL_GUARDED_BY(mu);
  int started ABSL_GUARDED_BY(mu) = 0;
  std::optional<absl::StatusOr<ExitStatus>> exit ABSL_GUARDED_BY(mu);

  bool WaitExit() {
    absl::MutexLock lock(&mu);
    return mu.AwaitWithTimeout(absl::Condition(
                                   +[](Outcome* o) { return o->exit.has_value(); }, this),
                               kTimeout);
  }
  bool WaitStdout(const std::string& text) {
    absl::MutexLock lock(&mu);
    auto has = [&] {
      mu.AssertHeld();
      return out.find(text) != std::string::npos;
    };
    return mu.AwaitWithTimeout(absl::Condition(&has), kTimeout);
  }
};

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    work_dir_ = MakeTempDir("runner_test");
    ASSERT_FALSE(work_dir_.empty());
  }
  void TearDown() override { std::filesystem::remove_all(work_dir_); }

  RunRequest Request(std::string run, std::string setup = "") {
    RunRequest r;
    r.job_id = "0123456789abcdef";
    r.attempt = 2;
    r.job_name = "train";
    r.project = "nlp";
    r.run = std::move(run);
    r.setup = std::move(setup);
    r.work_dir = work_dir_;
    return r;
  }

  std::string Folder() const { return JobFolder(work_dir_, "0123456789abcdef", 2); }

  std::unique_ptr<JobRunner> Start(RunRequest request) {
    JobRunner::Callbacks cb;
    cb.started = [this](pid_t) {
      absl::MutexLock lock(&outcome_.mu);
      outcome_.started++;
    };
    cb.output = [this](OutputStream stream, std::string data) {
      absl::MutexLock lock(&outcome_.mu);
      outcome_.chunk_sizes.push_back(data.size());
      (stream == OutputStream::kStdout ? outcome_.out : outcome_.err) += data;
    };
    cb.exited = [this](absl::StatusOr<ExitStatus> exit) {
      absl::MutexLock lock(&outcome_.mu);
      outcome_.exit = std::move(exit);
    };
    return JobRunner::Start(std::move(request), std::move(cb));
  }

  // Runs the request to its end; its exit status.
  ExitStatus RunToEnd(RunRequest request) {
    std::unique_ptr<JobRunner> runner = Start(std::move(request));
    EXPECT_TRUE(outcome_.WaitExit());
    absl::MutexLock lock(&outcome_.mu);
    EXPECT_TRUE(outcome_.exit.has_value() && outcome_.exit->ok());
    return outcome_.exit.has_value() && outcome_.exit->ok() ? **outcome_.exit : ExitStatus{-1, -1};
  }

  std::string Out() {
    absl::MutexLock lock(&outcome_.mu);
    return outcome_.out;
  }
  std::string Err() {
    absl::MutexLock lock(&outcome_.mu);
    return outcome_.err;
  }
  pid_t JobPid(const std::string& file) { return ReadPid(Folder() + "/" + file); }

  std::string work_dir_;
  Outcome outcome_;
};

TEST_F(RunnerTest, ExitCodeZero) {
  ExitStatus exit = RunToEnd(Request("exit 0"));
  EXPECT_EQ(exit.exit_code, 0);
  EXPECT_EQ(exit.signal, 0);
  absl::MutexLock lock(&outcome_.mu);
  EXPECT_EQ(outcome_.started, 1);
}

TEST_F(RunnerTest, ExitCodeThree) {
  ExitStatus exit = RunToEnd(Request("echo bye; exit 3"));
  EXPECT_EQ(exit.exit_code, 3);
  EXPECT_EQ(exit.signal, 0);
  EXPECT_EQ(Out(), "bye\n");
}

TEST_F(RunnerTest, Environment) {
  RunRequest r = Request(
      "echo \"$SCHED_JOB_ID $SCHED_ATTEMPT $SCHED_JOB_NAME $SCHED_PROJECT "
      "[$CUDA_VISIBLE_DEVICES] $CUDA_DEVICE_ORDER $FOO $BAR\"");
  r.env = {{"FOO", "foo value"}, {"BAR", "1"}};
  r.gpu_indexes = {0, 2};
  EXPECT_EQ(RunToEnd(std::move(r)).exit_code, 0);
  EXPECT_EQ(Out(), "0123456789abcdef 2 train nlp [0,2] PCI_BUS_ID foo value 1\n");
}

TEST_F(RunnerTest, NoGpuMeansEmptyCudaVisibleDevices) {
  EXPECT_EQ(RunToEnd(Request("echo \"[${CUDA_VISIBLE_DEVICES-unset}]\"")).exit_code, 0);
  EXPECT_EQ(Out(), "[]\n");
}

TEST_F(RunnerTest, MetricsFileIsAnAbsolutePathInTheJobFolderNotCreated) {
  // A relative work_dir too: the job runs in its own folder, where a relative path would be
  // wrong.
  RunRequest r = Request("cd /; echo \"$SCHED_METRICS_FILE\"; ls -A \"$OLDPWD\"");
  r.work_dir = std::filesystem::relative(work_dir_).string();
  ASSERT_NE(r.work_dir[0], '/');
  r.env = {{"SCHED_METRICS_FILE", "/tmp/not-this"}};
  EXPECT_EQ(RunToEnd(std::move(r)).exit_code, 0);
  EXPECT_EQ(Out(), Folder() + "/.sched-metrics\ncheckpoints\n");
  EXPECT_EQ(MetricsFilePath(work_dir_, "0123456789abcdef", 2), Folder() + "/.sched-metrics");
}

TEST_F(RunnerTest, CheckpointFolderIsAnAbsolutePathWhateverTheWorkDir) {
  RunRequest r = Request("cd /; echo \"$SCHED_CHECKPOINT_DIR\"; test -d \"$SCHED_CHECKPOINT_DIR\"");
  r.work_dir = std::filesystem::relative(work_dir_).string();
  ASSERT_NE(r.work_dir[0], '/');
  EXPECT_EQ(RunToEnd(std::move(r)).exit_code, 0);
  EXPECT_EQ(Out(), Folder() + "/checkpoints\n");
}

TEST_F(RunnerTest, StdoutAndStderrApart) {
  EXPECT_EQ(RunToEnd(Request("echo to-out; echo to-err >&2; echo more-out")).exit_code, 0);
  EXPECT_EQ(Out(), "to-out\nmore-out\n");
  EXPECT_EQ(Err(), "to-err\n");
}

TEST_F(RunnerTest, RunsInItsJobFolder) {
  EXPECT_EQ(RunToEnd(Request("pwd -P; echo x > made-here")).exit_code, 0);
  EXPECT_EQ(Out(), Folder() + "\n");
  EXPECT_EQ(Folder(), work_dir_ + "/jobs/0123456789abcdef-2");
  EXPECT_TRUE(std::filesystem::exists(Folder() + "/made-here"));
}

TEST_F(RunnerTest, FailingSetupSkipsRun) {
  ExitStatus exit = RunToEnd(Request("touch ran", "echo setting up; test -e no-such-file"));
  EXPECT_EQ(exit.exit_code, 1);
  EXPECT_EQ(Out(), "setting up\n");
  EXPECT_THAT(Err(), HasSubstr("setup failed with exit code 1"));
  EXPECT_FALSE(std::filesystem::exists(Folder() + "/ran"));
}

TEST_F(RunnerTest, SetupSharesTheShellWithRun) {
  ExitStatus exit = RunToEnd(Request("echo \"$GREETING $(basename \"$PWD\") $#\"",
                                     "export GREETING=hello; mkdir -p sub && cd sub"));
  EXPECT_EQ(exit.exit_code, 0);
  EXPECT_EQ(Out(), "hello sub 0\n");
}

TEST_F(RunnerTest, LargeOutputComesInBoundedChunks) {
  EXPECT_EQ(RunToEnd(Request("head -c 300000 /dev/zero | tr '\\0' a")).exit_code, 0);
  EXPECT_EQ(Out(), std::string(300000, 'a'));
  absl::MutexLock lock(&outcome_.mu);
  EXPECT_THAT(outcome_.chunk_sizes, Each(Le(JobRunner::kMaxChunkBytes)));
}

TEST_F(RunnerTest, KillReachesTheScriptsChildren) {
  std::unique_ptr<JobRunner> runner =
      Start(Request("sleep 30 & echo $! > child.pid; echo ready; wait"));
  ASSERT_TRUE(outcome_.WaitStdout("ready"));
  const pid_t child = JobPid("child.pid");
  ASSERT_GT(child, 0);
  ASSERT_TRUE(IsAlive(child));
  runner->Kill(absl::Seconds(2));
  ASSERT_TRUE(outcome_.WaitExit());
  {
    absl::MutexLock lock(&outcome_.mu);
    ASSERT_TRUE(outcome_.exit->ok());
    EXPECT_EQ((*outcome_.exit)->signal, SIGTERM);
  }
  EXPECT_TRUE(TimeToDeath(child, absl::Seconds(2)).has_value());
}

TEST_F(RunnerTest, TermIgnoredGetsKillAfterGrace) {
  std::unique_ptr<JobRunner> runner =
      Start(Request("trap 'echo got TERM' TERM; echo ready; while true; do sleep 0.05; done"));
  ASSERT_TRUE(outcome_.WaitStdout("ready"));
  const absl::Time killed_at = absl::Now();
  runner->Kill(absl::Milliseconds(300));
  ASSERT_TRUE(outcome_.WaitExit());
  EXPECT_GE(absl::Now() - killed_at, absl::Milliseconds(300));
  absl::MutexLock lock(&outcome_.mu);
  ASSERT_TRUE(outcome_.exit->ok());
  EXPECT_EQ((*outcome_.exit)->signal, SIGKILL);
  EXPECT_THAT(outcome_.out, HasSubstr("got TERM"));
}

TEST_F(RunnerTest, LeftoversAreKilledWhenTheScriptExits) {
  const absl::Time start = absl::Now();
  ExitStatus exit = RunToEnd(Request("sleep 30 & echo $! > child.pid; exit 0"));
  EXPECT_EQ(exit.exit_code, 0);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  const pid_t child = JobPid("child.pid");
  ASSERT_GT(child, 0);
  EXPECT_TRUE(TimeToDeath(child, absl::Seconds(2)).has_value());
}

TEST_F(RunnerTest, BadJobIdNeverStarts) {
  RunRequest r = Request("exit 0");
  r.job_id = "../escape";
  std::unique_ptr<JobRunner> runner = Start(std::move(r));
  ASSERT_TRUE(outcome_.WaitExit());
  absl::MutexLock lock(&outcome_.mu);
  EXPECT_EQ(outcome_.started, 0);
  EXPECT_THAT(*outcome_.exit,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cannot name a folder")));
}

}  // namespace
}  // namespace sched::agent
