// The cost brain with the real binaries: schedd with the shipped catalog, a workstation with an
// RTX 4090 priced from its power draw, and two rented nodes advertised by agents on this
// GPU-less machine (a RunPod A100 on demand, a Vast.ai H100 on spot). schedctl estimate ranks
// them, a job too big for home goes to the cheapest cloud node and describe says why, a job
// without a deadline waits for the busy workstation while one with a deadline bursts, and
// cost advise weighs upgrades against what the too-big job cost; a job whose deadline leaves
// room waits for a workstation's cheap window.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "sched/v1/job_service.pb.h"
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
using ::testing::HasSubstr;
using ::testing::StartsWith;


// 13B parameters, LoRA in bf16: about 41 GiB of GPU memory, more than the RTX 4090's 24.
constexpr char kBigJob[] = R"(name: finetune-13b
project: llm
run: sleep 1
resources: {gpus: 1, cpus: 0.1}
model: {parameters: 13B, method: lora, precision: bf16}
runtime: {duration: 6h, gpu_model: a100}
)";

class CostBrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("sched_cost_brain_e2e_");
    const int port = PickFreePort();
    address_ = absl::StrCat("127.0.0.1:", port);
    procs_.push_back(std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("schedd"), "--data_dir=" + dir_ + "/schedd",
                                 "--listen=" + address_, "--metrics_listen=",
                                 std::string("--catalog=") + SCHED_SOURCE_DIR +
                                     "/deploy/catalog/catalog.yaml"},
        dir_ + "/schedd.log"));
    ASSERT_TRUE(WaitForPort(port, 10'000)) << "schedd did not listen; log in " << dir_;
    Agent("ws", {"--advertise_gpus=NVIDIA GeForce RTX 4090:24GB", "--provider=local",
                 "--power_watts=550", "--electricity_per_kwh=0.30"});
    Agent("rp-a100", {"--advertise_gpus=NVIDIA A100-SXM4-80GB:80GB", "--provider=runpod",
                      "--price_per_hour=1.59"});
    Agent("vast-h100", {"--advertise_gpus=NVIDIA H100 80GB HBM3:80GB", "--provider=vastai",
                        "--price_per_hour=1.80", "--spot=true"});
    for (int i = 0; i < 200; ++i) {
      const ShellOutput r = Ctl("get nodes");
      if (r.exit_code == 0 && Count(r.text, "READY") == 3) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "the agents did not register; logs in " << dir_;
  }

  void TearDown() override {
    while (!procs_.empty()) procs_.pop_back();  // agents first, schedd last
    if (!HasFailure()) RunShell("rm -rf " + dir_);
  }

  void Agent(const std::string& name, std::vector<std::string> flags) {
    std::vector<std::string> argv = {BinaryPath("sched-agent"), "--server=" + address_,
                                     "--name=" + name, "--work_dir=" + dir_ + "/" + name,
                                     "--metrics_listen="};
    argv.insert(argv.end(), flags.begin(), flags.end());
    procs_.push_back(std::make_unique<Subprocess>(argv, dir_ + "/" + name + ".log"));
  }

  static int Count(const std::string& text, const std::string& word) {
    int n = 0;
    for (size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) n++;
    return n;
  }

  ShellOutput Ctl(const std::string& args) {
    return RunShell(absl::StrCat(BinaryPath("schedctl"), " --server ", address_, " ", args));
  }

  std::string File(const std::string& name, const std::string& yaml) {
    const std::string path = dir_ + "/" + name + ".yaml";
    std::ofstream(path) << yaml;
    return path;
  }

  std::string Submit(const std::string& name, const std::string& yaml) {
    const ShellOutput r = Ctl("submit -f " + File(name, yaml));
    EXPECT_EQ(r.exit_code, 0) << r.text;
    if (!absl::StartsWith(r.text, "job/") || r.text.size() < 20) return "";
    return r.text.substr(4, 16);
  }

  v1::Job GetJob(const std::string& id) {
    v1::Job job;
    const ShellOutput r = Ctl("get job " + id + " -o json");
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(r.text, &job).ok()) << r.text;
    return job;
  }

  // Polls until `done(job)` or about 10 s.
  template <typename Pred>
  v1::Job WaitFor(const std::string& id, Pred done) {
    v1::Job job;
    for (int i = 0; i < 400; ++i) {
      job = GetJob(id);
      if (done(job)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return job;
  }

  std::string dir_;
  std::string address_;
  std::vector<std::unique_ptr<Subprocess>> procs_;
};

TEST_F(CostBrainTest, EstimateRanksEveryNodeWithItsFigures) {
  const ShellOutput table = Ctl("estimate -f " + File("big", kBigJob));
  ASSERT_EQ(table.exit_code, 0) << table.text;
  // 6 h on an A100 is 3 h on an H100 (throughput 2.0); Vast.ai spot loses (e^0.24 - 1)/0.08 =
  // 3.39 h to expected preemptions: $6.10 against the A100's 6 h x $1.59 = $9.54.
  EXPECT_THAT(table.text, StartsWith("Would start now on vast-h100 (vastai, spot): expected to "
                                     "finish "));
  EXPECT_THAT(table.text, HasSubstr("about $6.10; no local machine can hold it\n"));
  const std::vector<std::string> lines = absl::StrSplit(table.text, '\n');
  ASSERT_GE(lines.size(), 6u) << table.text;
  EXPECT_THAT(lines[2], StartsWith("NODE        WHERE         START   FINISH   RUNTIME   PRICE/H   "
                                   "COST    VERDICT     WHY"));
  EXPECT_THAT(lines[3], StartsWith("vast-h100   vastai spot   now     +3h23m   3h23m     $1.80     "
                                   "$6.10   chosen"));
  EXPECT_THAT(lines[4], StartsWith("rp-a100     runpod        now     +6h      6h        $1.59     "
                                   "$9.54   dearer      about $9.54: $3.44 more than vast-h100"));
  EXPECT_THAT(lines[5], HasSubstr("too-small   needs 41 GiB of GPU memory, the largest GPU has "
                                  "24 GiB"));
  v1::EstimateJobResponse json;
  const ShellOutput j = Ctl("estimate -o json -f " + File("big", kBigJob));
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(j.text, &json).ok()) << j.text;
  EXPECT_TRUE(json.decision().placed());
  EXPECT_EQ(json.decision().local_blocker(), "too-small");
  ASSERT_EQ(json.decision().options_size(), 3);
  EXPECT_EQ(json.decision().options(0).node(), "vast-h100");
  // Nothing was queued.
  EXPECT_EQ(Ctl("get jobs").text, "ID   NAME   PROJECT   STATE   NODE   ATTEMPT   AGE\n");
  // A spec the server refuses is refused here too.
  const ShellOutput bad = Ctl("estimate -f " + File("bad", "name: x\nrun: x\ndeadline: -1h\n"));
  EXPECT_NE(bad.exit_code, 0);
}

TEST_F(CostBrainTest, TooBigForHomeGoesToTheCheapestCloudNodeAndSaysWhy) {
  const std::string id = Submit("big", kBigJob);
  ASSERT_FALSE(id.empty());
  const v1::Job done =
      WaitFor(id, [](const v1::Job& j) { return j.state() == v1::JOB_STATE_SUCCEEDED; });
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.DebugString();
  EXPECT_EQ(done.node(), "vast-h100");
  const ShellOutput describe = Ctl("describe job " + id);
  EXPECT_THAT(describe.text, HasSubstr("Decision:\n  Decided:"));
  EXPECT_THAT(describe.text, HasSubstr("  Outcome:     placed\n"));
  EXPECT_THAT(describe.text, HasSubstr("  Why:         on vast-h100 (vastai, spot): expected"));
  EXPECT_THAT(describe.text, HasSubstr("    vast-h100   vastai spot   now"));
  EXPECT_THAT(describe.text, HasSubstr("too-small   needs 41 GiB of GPU memory"));

  // The upgrade advice sees the cloud run the workstation was too small for.
  const ShellOutput advise = Ctl("cost advise --days 7");
  ASSERT_EQ(advise.exit_code, 0) << advise.text;
  EXPECT_THAT(advise.text, HasSubstr("of it because no local machine was big enough (1 run)"))
      << advise.text;
  EXPECT_THAT(advise.text, HasSubstr("Upgrading ws")) << advise.text;
}

TEST_F(CostBrainTest, WithoutADeadlineItWaitsForHomeWithOneItBursts) {
  const std::string busy = Submit("busy", R"(name: busy
run: sleep 30
resources: {gpus: 1, cpus: 0.1}
runtime: {duration: 2h, gpu_model: rtx4090}
)");
  ASSERT_EQ(WaitFor(busy, [](const v1::Job& j) { return !j.node().empty(); }).node(), "ws");
  const std::string patient = Submit("patient", R"(name: eval
run: sleep 1
resources: {gpus: 1, gpu_memory: 16GB, cpus: 0.1}
runtime: {duration: 1h, gpu_model: a100}
)");
  const std::string urgent = Submit("urgent", R"(name: eval-urgent
run: sleep 1
resources: {gpus: 1, gpu_memory: 16GB, cpus: 0.1}
runtime: {duration: 1h, gpu_model: a100}
deadline: 2h
)");
  const v1::Job burst =
      WaitFor(urgent, [](const v1::Job& j) { return j.state() == v1::JOB_STATE_SUCCEEDED; });
  EXPECT_EQ(burst.node(), "vast-h100") << burst.DebugString();
  EXPECT_EQ(burst.decision().local_blocker(), "deadline");
  const v1::Job waiting = GetJob(patient);
  EXPECT_EQ(waiting.state(), v1::JOB_STATE_PENDING) << waiting.DebugString();
  EXPECT_THAT(waiting.message(), StartsWith("waiting for ws (local): room expected in 1h59m"));
  EXPECT_EQ(Ctl("cancel " + patient).exit_code, 0);
  EXPECT_EQ(Ctl("cancel " + busy).exit_code, 0);
}

TEST_F(CostBrainTest, ADeadlineThatLeavesRoomWaitsForTheCheapWindow) {
  // A second workstation whose power is nearly free from 3 h from now, for 3 h.
  const absl::CivilHour from = absl::ToCivilHour(absl::Now(), absl::UTCTimeZone()) + 3;
  const std::string window = absl::StrFormat("UTC+00:00; %02d:00-%02d:00=0.01", from.hour(),
                                             (from + 3).hour());
  Agent("ws-night", {"--advertise_gpus=NVIDIA GeForce RTX 4090:24GB", "--provider=local",
                     "--power_watts=550", "--electricity_per_kwh=0.30",
                     "--price_schedule=" + window});
  for (int i = 0; i < 200 && Count(Ctl("get nodes").text, "READY") < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const std::string job = File("nightly", R"(name: nightly
run: sleep 1
resources: {gpus: 1, gpu_memory: 16GB, cpus: 0.1}
runtime: {duration: 1h, gpu_model: rtx4090}
deadline: 8h
)");
  const ShellOutput table = Ctl("estimate -f " + job);
  ASSERT_EQ(table.exit_code, 0) << table.text;
  // 1 h now at $0.165/h on either workstation, or $0.01 in the window.
  EXPECT_THAT(table.text, StartsWith("Would wait for the cheaper window on ws-night (local): start "))
      << table.text;
  EXPECT_THAT(table.text, HasSubstr("about $0.01, saving $0.1"))  // $0.155: rounds either way
      << table.text;
  EXPECT_THAT(table.text, HasSubstr("ws-night    local         +")) << table.text;
  // Without a deadline there is nothing to wait for: it starts at once.
  const ShellOutput now_table = Ctl("estimate -f " + File("nightly-now", R"(name: nightly
run: sleep 1
resources: {gpus: 1, gpu_memory: 16GB, cpus: 0.1}
runtime: {duration: 1h, gpu_model: rtx4090}
)"));
  EXPECT_THAT(now_table.text, StartsWith("Would start now on ws")) << now_table.text;
}

}  // namespace
}  // namespace sched
