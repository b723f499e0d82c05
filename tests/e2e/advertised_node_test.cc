// The real binaries: a sched-agent on this GPU-less machine advertises two RTX 4090s as a
// Vast.ai spot node at $0.40/h; schedctl shows them marked, a job that fits gets an advertised
// GPU through CUDA_VISIBLE_DEVICES, and a job asking more memory per GPU than they have waits.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "sched/v1/types.pb.h"
#include "tests/testing/subprocess.h"

namespace sched {
namespace {

using ::sched::testing::BinaryPath;
using ::sched::testing::MakeTempDir;
using ::sched::testing::PickFreePort;
using ::sched::testing::RunShell;
using ::sched::testing::ShellOutput;
using ::sched::testing::Subprocess;
using ::sched::testing::WaitForPort;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kNode[] = "demo-4090";


class AdvertisedNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("sched_advertised_e2e_");
    const int port = PickFreePort();
    address_ = absl::StrCat("127.0.0.1:", port);
    schedd_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("schedd"), "--data_dir=" + dir_ + "/schedd",
                                 "--listen=" + address_, "--metrics_listen="},
        dir_ + "/schedd.log");
    ASSERT_TRUE(WaitForPort(port, 10'000)) << "schedd did not listen; log in " << dir_;
    std::vector<std::string> agent = {BinaryPath("sched-agent"), "--server=" + address_,
                                      std::string("--name=") + kNode,
                                      "--work_dir=" + dir_ + "/agent", "--metrics_listen="};
    for (std::string& flag : AgentFlags()) agent.push_back(std::move(flag));
    agent_ = std::make_unique<Subprocess>(agent, dir_ + "/agent.log");
    for (int i = 0; i < 200; ++i) {
      v1::Node node;
      const ShellOutput r = Ctl(absl::StrCat("get node ", kNode, " -o json"));
      if (r.exit_code == 0 && google::protobuf::util::JsonStringToMessage(r.text, &node).ok() &&
          node.state() == v1::NODE_STATE_READY) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "the agent did not register; logs in " << dir_;
  }

  // What the node is: by default a Vast.ai spot node with two advertised RTX 4090s.
  virtual std::vector<std::string> AgentFlags() {
    return {"--advertise_gpus=2x NVIDIA GeForce RTX 4090:24GB", "--price_per_hour=0.40",
            "--spot=true", "--provider=vastai"};
  }

  void TearDown() override {
    agent_.reset();
    schedd_.reset();
    if (!HasFailure()) RunShell("rm -rf " + dir_);
  }

  ShellOutput Ctl(const std::string& args) {
    return RunShell(absl::StrCat(BinaryPath("schedctl"), " --server ", address_, " ", args));
  }

  std::string Submit(const std::string& name, const std::string& yaml) {
    const std::string path = dir_ + "/" + name + ".yaml";
    std::ofstream(path) << yaml;
    const ShellOutput r = Ctl("submit -f " + path);
    EXPECT_EQ(r.exit_code, 0) << r.text;
    const std::string prefix = "job/";
    if (!absl::StartsWith(r.text, prefix) || r.text.size() < prefix.size() + 16) return "";
    return r.text.substr(prefix.size(), 16);
  }

  v1::Job GetJob(const std::string& id) {
    v1::Job job;
    const ShellOutput r = Ctl("get job " + id + " -o json");
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(r.text, &job).ok()) << r.text;
    return job;
  }

  v1::Job WaitForEnd(const std::string& id) {
    v1::Job job;
    for (int i = 0; i < 400; ++i) {
      job = GetJob(id);
      if (job.state() >= v1::JOB_STATE_SUCCEEDED) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return job;
  }

  std::string dir_;
  std::string address_;
  std::unique_ptr<Subprocess> schedd_;
  std::unique_ptr<Subprocess> agent_;
};

TEST_F(AdvertisedNodeTest, ListedMarkedAndGivenToAJobThatFits) {
  const ShellOutput wide = Ctl("get nodes -o wide");
  ASSERT_EQ(wide.exit_code, 0) << wide.text;
  // NAME STATE CPUS MEMORY GPUS PROVIDER PRICE/H COST JOBS AGE SPOT ...
  EXPECT_THAT(wide.text, HasSubstr("   2xRTX4090 24GB*   vastai*    $0.40     -      0      "))
      << wide.text;
  EXPECT_THAT(wide.text, HasSubstr("SPOT   REGION   INSTANCE-TYPE")) << wide.text;
  EXPECT_THAT(wide.text, HasSubstr("   yes    -        -               ")) << wide.text;
  EXPECT_THAT(wide.text, HasSubstr("\n* advertised: given to the agent")) << wide.text;

  const ShellOutput describe = Ctl(absl::StrCat("describe node ", kNode));
  EXPECT_THAT(describe.text, HasSubstr("Provider:        vastai (advertised)\n")) << describe.text;
  EXPECT_THAT(describe.text, HasSubstr("GPUs (advertised):\n")) << describe.text;

  v1::Node node;
  const ShellOutput json = Ctl(absl::StrCat("get node ", kNode, " -o json"));
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.text, &node).ok()) << json.text;
  EXPECT_TRUE(node.capabilities().spot());
  EXPECT_EQ(node.capabilities().gpu_detection(), "advertised");
  EXPECT_THAT(node.capabilities().advertised(), ElementsAre("gpus", "provider"));

  // Asks more memory per GPU than an RTX 4090 has: submitted first, never placed.
  const std::string too_big = Submit("too-big", R"(name: too-big
run: echo should not run
resources: {gpus: 1, gpu_memory: 48GB, cpus: 0.1}
)");
  const std::string fits = Submit("fits", R"(name: fits
run: echo "gpus=[$CUDA_VISIBLE_DEVICES]"
resources: {gpus: 1, gpu_memory: 20GB, cpus: 0.1}
)");
  ASSERT_FALSE(too_big.empty());
  ASSERT_FALSE(fits.empty());
  const v1::Job done = WaitForEnd(fits);
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.DebugString();
  EXPECT_EQ(done.node(), kNode);
  ASSERT_EQ(done.gpu_indexes_size(), 1);
  const ShellOutput logs = Ctl("logs " + fits);
  EXPECT_EQ(logs.text, absl::StrCat("gpus=[", done.gpu_indexes(0), "]\n"));

  const v1::Job waiting = GetJob(too_big);
  EXPECT_EQ(waiting.state(), v1::JOB_STATE_PENDING) << waiting.DebugString();
  EXPECT_EQ(waiting.epoch(), 0u) << waiting.DebugString();  // never assigned
  EXPECT_EQ(waiting.node(), "") << waiting.DebugString();
  EXPECT_EQ(Ctl("cancel " + too_big).exit_code, 0);
}

}  // namespace
}  // namespace sched

namespace sched {
namespace {

// Two small jobs that share a GPU run at the same time on the same card, while a job that holds
// a whole GPU gets the other card. Each of the three waits until it sees the other two started, so
// all three hold their cards at once whatever order they are placed in.
TEST_F(AdvertisedNodeTest, TwoSmallJobsShareOneCardAtOnce) {
  auto spec = [&](const std::string& me, const std::string& resources) {
    return absl::StrCat(R"(run: |
  echo "gpu $CUDA_VISIBLE_DEVICES"
  touch "$DIR/$ME"
  for i in $(seq 200); do
    [ -e "$DIR/a" ] && [ -e "$DIR/b" ] && [ -e "$DIR/whole" ] && exit 0
    sleep 0.05
  done
  exit 1
resources: )",
                        resources, R"(
env: {DIR: ")", dir_, R"(", ME: )", me, "}\n");
  };
  const std::string shared = "{gpus: 1, gpu_memory: 10GB, share_gpu: true, cpus: 0.1}";
  const std::string a = Submit("share-a", spec("a", shared));
  const std::string b = Submit("share-b", spec("b", shared));
  const std::string whole = Submit("whole", spec("whole", "{gpus: 1, cpus: 0.1}"));
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  ASSERT_FALSE(whole.empty());
  for (const std::string& id : {a, b, whole}) {
    const v1::Job job = WaitForEnd(id);
    EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.DebugString();
  }
  const v1::Job ja = GetJob(a), jb = GetJob(b), jw = GetJob(whole);
  ASSERT_EQ(ja.gpu_indexes_size(), 1);
  ASSERT_EQ(jb.gpu_indexes_size(), 1);
  ASSERT_EQ(jw.gpu_indexes_size(), 1);
  EXPECT_EQ(ja.gpu_indexes(0), jb.gpu_indexes(0));
  EXPECT_NE(jw.gpu_indexes(0), ja.gpu_indexes(0));
  EXPECT_EQ(Ctl("logs " + a).text, absl::StrCat("gpu ", ja.gpu_indexes(0), "\n"));
  EXPECT_EQ(Ctl("logs " + b).text, absl::StrCat("gpu ", ja.gpu_indexes(0), "\n"));
}

}  // namespace
}  // namespace sched

namespace sched {
namespace {

// The user's own workstation with one (advertised) GPU, whose processes the agent reads from a
// file the test writes in place of NVML: the test plays the owner.
class OwnerFirstTest : public AdvertisedNodeTest {
 protected:
  std::vector<std::string> AgentFlags() override {
    return {"--advertise_gpus=1x NVIDIA GeForce RTX 4090:24GB", "--provider=local",
            "--owner_processes_file=" + dir_ + "/gpu-processes", "--owner_idle_seconds=2",
            "--owner_poll_ms=100", "--kill_grace_ms=5000"};
  }
  void SetOwner(const std::string& lines) {
    std::ofstream(dir_ + "/gpu-processes.new") << lines;
    std::rename((dir_ + "/gpu-processes.new").c_str(), (dir_ + "/gpu-processes").c_str());
  }
  template <typename Pred>
  v1::Job WaitFor(const std::string& id, Pred pred) {
    v1::Job job;
    for (int i = 0; i < 400; ++i) {
      job = GetJob(id);
      if (pred(job)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return job;
  }
};

// A job on the workstation's GPU steps aside (SIGTERM: it saves its place) when a process the
// agent did not start begins to use the GPU, waits while the owner uses it, and resumes from its
// checkpoint once the GPU has been idle for the set time; no retry is used up.
TEST_F(OwnerFirstTest, AJobStepsAsideForTheOwnersProcessAndResumesWhenTheGpuIsIdle) {
  const ShellOutput owner = RunShell("sleep 120 >/dev/null 2>&1 & echo $!");
  const std::string owner_pid(absl::StripAsciiWhitespace(owner.text));
  ASSERT_FALSE(owner_pid.empty());
  const std::string id = Submit("train", absl::StrCat(R"(run: |
  step=0
  [ -n "$SCHED_RESUME_FROM" ] && step=$(cat "$SCHED_RESUME_FROM")
  trap 'echo $step > "$SCHED_CHECKPOINT_DIR/.tmp" && mv "$SCHED_CHECKPOINT_DIR/.tmp" "$SCHED_CHECKPOINT_DIR/step-$step"; echo "stopped at $step"; exit 143' TERM
  echo "attempt $SCHED_ATTEMPT from $step on gpu $CUDA_VISIBLE_DEVICES"
  while [ $step -lt 40 ]; do step=$((step+1)); sleep 0.1; done
  echo "done at $step"
resources: {gpus: 1, cpus: 0.1}
placement: local-only
)"));
  ASSERT_FALSE(id.empty());
  v1::Job job = WaitFor(id, [](const v1::Job& j) { return j.state() == v1::JOB_STATE_RUNNING; });
  ASSERT_EQ(job.state(), v1::JOB_STATE_RUNNING) << job.DebugString();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  SetOwner(absl::StrCat("# gpu pid\n0 ", owner_pid, "\n"));
  // It steps aside and waits: the GPU is the owner's.
  job = WaitFor(id, [](const v1::Job& j) { return j.attempt() == 2; });
  EXPECT_EQ(job.state(), v1::JOB_STATE_PENDING) << job.DebugString();
  ASSERT_GE(job.attempts_size(), 1);
  const v1::JobAttempt& first = job.attempts(0);
  EXPECT_TRUE(first.preempted());
  EXPECT_THAT(first.end_reason(),
              HasSubstr(absl::StrCat("stepped aside for the machine's owner, who is using GPU 0 "
                                     "(GPU 0: pid ", owner_pid, " (sleep))")));
  v1::Node node;
  ShellOutput json = Ctl(absl::StrCat("get node ", kNode, " -o json"));
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.text, &node).ok()) << json.text;
  EXPECT_THAT(node.owner_gpu_indexes(), ElementsAre(0u));
  const ShellOutput describe = Ctl(absl::StrCat("describe node ", kNode));
  EXPECT_THAT(describe.text,
              HasSubstr(absl::StrCat("Owner's GPUs:  0 (GPU 0: pid ", owner_pid, " (sleep))")))
      << describe.text;
  // The owner keeps using it for 3 s: the job stays out.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_EQ(GetJob(id).state(), v1::JOB_STATE_PENDING);
  // The owner's process ends; 2 s later the GPU is the jobs' again and the job resumes.
  RunShell("kill " + owner_pid);
  SetOwner("");
  const auto gone = std::chrono::steady_clock::now();
  job = WaitFor(id, [](const v1::Job& j) { return j.state() == v1::JOB_STATE_RUNNING; });
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - gone).count();
  EXPECT_GE(waited, 1.5);
  job = WaitForEnd(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.DebugString();
  EXPECT_EQ(job.attempt(), 2u);
  EXPECT_EQ(job.preemptions(), 1u);
  EXPECT_EQ(job.restarts(), 0u);
  const std::string logs = Ctl("logs " + id).text;
  EXPECT_THAT(logs, HasSubstr("attempt 1 from 0 on gpu 0\n"));
  EXPECT_THAT(logs, HasSubstr("done at 40\n"));
  // The second attempt began where the first stopped, not from 0.
  const size_t stopped = logs.find("stopped at ");
  ASSERT_NE(stopped, std::string::npos) << logs;
  const std::string step = logs.substr(stopped + 11, logs.find('\n', stopped) - stopped - 11);
  EXPECT_NE(step, "0");
  EXPECT_THAT(logs, HasSubstr(absl::StrCat("attempt 2 from ", step, " on gpu 0\n"))) << logs;
  json = Ctl(absl::StrCat("get node ", kNode, " -o json"));
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.text, &node).ok()) << json.text;
  EXPECT_EQ(node.owner_gpu_indexes_size(), 0);
}

}  // namespace
}  // namespace sched

namespace sched {
namespace {

// Two machines: the user's workstation "ws" (no GPU, free) and the rented RTX 4090 node. A
// pipeline's stages go where their placement sends them, and what one stage leaves reaches the
// next through schedd.
class PipelineTest : public AdvertisedNodeTest {
 protected:
  void SetUp() override {
    AdvertisedNodeTest::SetUp();
    if (HasFatalFailure()) return;
    ws_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("sched-agent"), "--server=" + address_, "--name=ws",
                                 "--work_dir=" + dir_ + "/ws", "--metrics_listen=",
                                 "--gpu_detection=none", "--provider=local"},
        dir_ + "/ws.log");
    for (int i = 0; i < 200; ++i) {
      v1::Node node;
      const ShellOutput r = Ctl("get node ws -o json");
      if (r.exit_code == 0 && google::protobuf::util::JsonStringToMessage(r.text, &node).ok() &&
          node.state() == v1::NODE_STATE_READY) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "ws did not register; logs in " << dir_;
  }
  void TearDown() override {
    ws_.reset();
    AdvertisedNodeTest::TearDown();
  }
  // Submits a pipeline file; the stages' job ids by name.
  std::map<std::string, std::string> SubmitPipeline(const std::string& yaml,
                                                    const std::string& first_line) {
    const std::string path = dir_ + "/pipeline.yaml";
    std::ofstream(path) << yaml;
    const ShellOutput r = Ctl("submit -f " + path);
    EXPECT_EQ(r.exit_code, 0) << r.text;
    EXPECT_TRUE(absl::StartsWith(r.text, first_line)) << r.text;
    std::map<std::string, std::string> ids;
    for (absl::string_view line : absl::StrSplit(r.text, '\n', absl::SkipEmpty())) {
      const size_t job = line.find(": job/");
      if (line.substr(0, 2) != "  " || job == absl::string_view::npos) continue;
      ids[std::string(line.substr(2, job - 2))] = std::string(line.substr(job + 6, 16));
    }
    return ids;
  }
  std::unique_ptr<Subprocess> ws_;
};

// Stage 1 on the workstation writes a data folder; stage 2, on the cheapest GPU with 24 GB (the
// rented node), reads it and writes a model; stage 3, on a GPU too, reads stage 1's data (made
// on the other machine) and stage 2's model.
TEST_F(PipelineTest, ThreeStagesCarryTheirOutputsAcrossNodesThroughSchedd) {
  const std::map<std::string, std::string> ids = SubmitPipeline(R"yaml(pipeline: finetune
stages:
  - name: prepare
    placement: local-only
    resources: {cpus: 0.1}
    run: |
      mkdir -p data/shards
      printf 'alpha\nbeta\ngamma\n' > data/train.txt
      echo shard-0 > data/shards/0
    outputs: [data/]
  - name: train
    placement: cheapest
    resources: {gpus: 1, gpu_memory: 24GB, cpus: 0.1}
    inputs: [prepare]
    run: |
      mkdir -p model
      wc -l < "$SCHED_INPUTS_DIR/prepare/data/train.txt" | tr -d ' ' > model/weights
      echo "trained on $(cat "$SCHED_INPUTS_DIR/prepare/data/shards/0")"
    outputs: [model/weights]
  - name: evaluate
    placement: cheapest
    resources: {gpus: 1, gpu_memory: 10GB, cpus: 0.1}
    inputs: [prepare, train]
    run: |
      echo "data: $(head -1 "$SCHED_INPUTS_DIR/prepare/data/train.txt")"
      echo "weights: $(cat "$SCHED_INPUTS_DIR/train/model/weights")"
)yaml",
                                                                "pipeline/finetune submitted: 3 stages\n");
  ASSERT_EQ(ids.size(), 3u);
  const v1::Job prepare = WaitForEnd(ids.at("prepare"));
  const v1::Job train = WaitForEnd(ids.at("train"));
  const v1::Job evaluate = WaitForEnd(ids.at("evaluate"));
  ASSERT_EQ(prepare.state(), v1::JOB_STATE_SUCCEEDED) << prepare.DebugString();
  ASSERT_EQ(train.state(), v1::JOB_STATE_SUCCEEDED) << train.DebugString();
  ASSERT_EQ(evaluate.state(), v1::JOB_STATE_SUCCEEDED) << evaluate.DebugString();
  EXPECT_EQ(prepare.node(), "ws");
  EXPECT_EQ(train.node(), kNode);
  EXPECT_EQ(evaluate.node(), kNode);
  EXPECT_EQ(prepare.spec().labels().at("pipeline"), "finetune");
  EXPECT_EQ(evaluate.spec().labels().at("stage"), "evaluate");
  // The stages ran after one another, as the inputs imply.
  ASSERT_EQ(evaluate.spec().after_size(), 2);
  EXPECT_EQ(evaluate.spec().after(0).job_id(), ids.at("train"));
  EXPECT_EQ(evaluate.spec().after(1).job_id(), ids.at("prepare"));
  // The outputs went through schedd as each stage's last checkpoint.
  EXPECT_THAT(Ctl("checkpoints " + ids.at("prepare")).text, HasSubstr("outputs-1"));
  EXPECT_THAT(Ctl("logs " + ids.at("train")).text, HasSubstr("trained on shard-0\n"));
  const std::string logs = Ctl("logs " + ids.at("evaluate")).text;
  EXPECT_THAT(logs, HasSubstr("data: alpha\n"));
  EXPECT_THAT(logs, HasSubstr("weights: 3\n"));
  EXPECT_THAT(logs, HasSubstr(absl::StrCat("sched-agent: input prepare: checkpoint outputs-1 of job ",
                                           ids.at("prepare"))));
}

// A stage that fails stops the stages after it, each saying why; one whose declared output is
// missing fails, though its command succeeded.
TEST_F(PipelineTest, AFailedStageStopsTheStagesAfterItWithTheReason) {
  const std::map<std::string, std::string> ids = SubmitPipeline(R"yaml(stages:
  - name: prepare
    placement: local-only
    resources: {cpus: 0.1}
    run: echo forgot to write it
    outputs: [data/]
  - name: train
    resources: {cpus: 0.1}
    inputs: [prepare]
    run: echo should not run
  - name: evaluate
    resources: {cpus: 0.1}
    run: echo should not run either
)yaml",
                                                                "pipeline submitted: 3 stages\n");
  ASSERT_EQ(ids.size(), 3u);
  const v1::Job prepare = WaitForEnd(ids.at("prepare"));
  EXPECT_EQ(prepare.state(), v1::JOB_STATE_FAILED) << prepare.DebugString();
  EXPECT_THAT(prepare.message(), HasSubstr("declared output data/ was not written"));
  const v1::Job train = WaitForEnd(ids.at("train"));
  const v1::Job evaluate = WaitForEnd(ids.at("evaluate"));
  EXPECT_EQ(train.state(), v1::JOB_STATE_CANCELLED) << train.DebugString();
  EXPECT_THAT(train.message(), HasSubstr(absl::StrCat("job ", ids.at("prepare"), " ended FAILED")));
  EXPECT_EQ(evaluate.state(), v1::JOB_STATE_CANCELLED) << evaluate.DebugString();
  EXPECT_THAT(evaluate.message(), HasSubstr(absl::StrCat("job ", ids.at("train"), " ended CANCELLED")));
}

}  // namespace
}  // namespace sched
