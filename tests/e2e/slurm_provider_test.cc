// The slurm provider end to end against real Slurm (Debian's slurm-wlm, one node on this
// machine, started by tests/bench/slurm_local.sh): a job no connected node can take makes schedd
// submit sched-agent as a Slurm job; the agent joins from inside the allocation, runs the job,
// sits idle and is cancelled with scancel, the node ending GONE and the Slurm job gone.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "sched/v1/node_service.pb.h"
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

class SlurmProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "starting slurmctld and slurmd here needs root";
    dir_ = MakeTempDir("sched_slurm_e2e_");
    const ShellOutput slurm =
        RunShell(absl::StrCat("SLURM_BENCH_DIR=", dir_, "/slurm ", SCHED_SOURCE_DIR,
                              "/tests/bench/slurm_local.sh start"));
    ASSERT_EQ(slurm.exit_code, 0) << slurm.text;
    slurm_conf_ = std::string(absl::StripAsciiWhitespace(slurm.text));
    slurm_conf_ = slurm_conf_.substr(slurm_conf_.rfind('\n') + 1);
    setenv("SLURM_CONF", slurm_conf_.c_str(), 1);
    const int port = PickFreePort();
    address_ = absl::StrCat("127.0.0.1:", port);
    const std::string config = dir_ + "/autoscale.yaml";
    std::ofstream(config) << absl::StrCat(
        "interval: 200ms\n"
        "idle_timeout: 3s\n"
        "provisioning_timeout: 60s\n"
        "status_interval: 500ms\n"
        "providers:\n"
        "  - name: slurm\n"
        "    program: ",
        SCHED_SOURCE_DIR, "/deploy/providers/sched-provider-slurm\n",
        "    config:\n"
        "      agent: ",
        BinaryPath("sched-agent"), "\n      work_dir: ", dir_, "/nodes/{node_name}\n",
        "      price_per_hour: 0.5\n"
        "      provisioning_seconds: 5\n"
        "      extra_agent_args: [--gpu_detection=none]\n");
    schedd_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("schedd"), "--data_dir=" + dir_ + "/schedd",
                                 "--listen=" + address_,
                                 "--metrics_listen=", "--autoscale_config=" + config},
        dir_ + "/schedd.log");
    ASSERT_TRUE(WaitForPort(port, 10'000)) << "schedd did not listen; log in " << dir_;
  }

  void TearDown() override {
    if (dir_.empty()) return;
    schedd_.reset();
    RunShell("scancel --name-prefix=sched- 2>/dev/null; scancel -u root 2>/dev/null");
    RunShell(absl::StrCat(SCHED_SOURCE_DIR, "/tests/bench/slurm_local.sh stop"));
    if (!HasFailure()) RunShell("rm -rf " + dir_);
  }

  ShellOutput Ctl(const std::string& args) {
    return RunShell(absl::StrCat(BinaryPath("schedctl"), " --server ", address_, " ", args));
  }

  std::optional<v1::Node> RentedNode() {
    const ShellOutput r = Ctl("get nodes -o json");
    v1::ListNodesResponse list;
    if (r.exit_code != 0 || !google::protobuf::util::JsonStringToMessage(r.text, &list).ok()) {
      return std::nullopt;
    }
    for (const v1::Node& n : list.nodes()) {
      if (n.has_rental()) return n;
    }
    return std::nullopt;
  }

  template <typename Pred>
  std::optional<v1::Node> WaitForNode(Pred pred, absl::Duration timeout) {
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      std::optional<v1::Node> n = RentedNode();
      if (n && pred(*n)) return n;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return std::nullopt;
  }

  std::string dir_, address_, slurm_conf_;
  std::unique_ptr<Subprocess> schedd_;
};

TEST_F(SlurmProviderTest, AnAgentRunsAsASlurmJobTakesTheWorkAndIsCancelledWhenIdle) {
  const std::string spec = dir_ + "/job.yaml";
  std::ofstream(spec) << "name: on-slurm\nproject: lab\nrun: echo ran inside $SLURM_JOB_ID\n"
                         "resources:\n  cpus: 1\nruntime: 1m\n";
  const ShellOutput submitted = Ctl("submit -f " + spec);
  ASSERT_EQ(submitted.exit_code, 0) << submitted.text;
  const std::string id = submitted.text.substr(4, 16);
  // Rented from the cluster's own shape (sinfo), and submitted with sbatch.
  auto rented = WaitForNode([](const v1::Node&) { return true; }, absl::Seconds(20));
  ASSERT_TRUE(rented.has_value()) << "nothing was rented; log in " << dir_;
  EXPECT_EQ(rented->rental().provider(), "slurm");
  auto running = WaitForNode([](const v1::Node& n) { return n.state() == v1::NODE_STATE_READY; },
                             absl::Seconds(60));
  ASSERT_TRUE(running.has_value()) << "the agent did not join from Slurm; log in " << dir_;
  const std::string slurm_job = running->rental().instance_id();
  ASSERT_FALSE(slurm_job.empty());
  const ShellOutput squeue = RunShell("squeue -h -j " + slurm_job + " -o '%T %j'");
  EXPECT_THAT(squeue.text, HasSubstr("RUNNING sched-" + running->name())) << squeue.text;
  EXPECT_EQ(running->capabilities().provider(), "slurm");
  // The job runs on it, inside the Slurm allocation.
  v1::Job job;
  for (int i = 0; i < 300; ++i) {
    const ShellOutput r = Ctl("get job " + id + " -o json");
    if (r.exit_code == 0 && google::protobuf::util::JsonStringToMessage(r.text, &job).ok() &&
        job.state() == v1::JOB_STATE_SUCCEEDED) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.DebugString();
  EXPECT_EQ(job.node(), running->name());
  EXPECT_THAT(Ctl("logs " + id).text, HasSubstr("ran inside " + slurm_job));
  // Idle, then cancelled: GONE here, and no longer in Slurm's queue.
  auto gone = WaitForNode([](const v1::Node& n) { return n.state() == v1::NODE_STATE_GONE; },
                          absl::Seconds(30));
  ASSERT_TRUE(gone.has_value()) << "the idle node was not given back; log in " << dir_;
  const ShellOutput after = RunShell("squeue -h -j " + slurm_job + " -o %T 2>/dev/null");
  EXPECT_THAT(after.text, ::testing::Not(HasSubstr("RUNNING"))) << after.text;
  const double life =
      (gone->rental().end_time().seconds() - gone->rental().create_time().seconds()) +
      (gone->rental().end_time().nanos() - gone->rental().create_time().nanos()) / 1e9;
  EXPECT_NEAR(gone->rental().cost_so_far(), 0.5 * life / 3600, 1e-6);
}

}  // namespace
}  // namespace sched
