// The autoscaler end to end with the real binaries and the `local` provider program: a job
// needing a GPU no node has gets a node rented for it, which joins, runs the job, sits idle and
// is given back, the ledger charging exactly its lifetime; an offer whose node never joins is
// given back at the provisioning timeout and the next offer tried; a provider whose create hangs
// is killed at its timeout; a budget that cannot afford any offer rents nothing and says why.
#include <chrono>
#include <cmath>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
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

constexpr char kH100Job[] = R"(name: big
project: alpha
run: echo trained on $CUDA_VISIBLE_DEVICES
resources:
  gpus: 1
  gpu_model: H100
runtime: 1m
)";

std::string Offer(const std::string& id, double price, const std::string& behavior,
                  int provisioning_seconds = 0) {
  return absl::StrCat("        - {id: ", id,
                      ", gpu: \"NVIDIA H100 80GB HBM3\", gpu_count: 1, gpu_memory_gib: 80, "
                      "cpus: 2, memory_gib: 4, price_per_hour: ",
                      price, ", provisioning_seconds: ", provisioning_seconds,
                      ", behavior: ", behavior, "}\n");
}

class AutoscaleTest : public ::testing::Test {
 protected:
  void Start(const std::string& offers, const std::string& provider_extra = "") {
    dir_ = MakeTempDir("sched_autoscale_e2e_");
    const int port = PickFreePort();
    address_ = absl::StrCat("127.0.0.1:", port);
    const std::string config = dir_ + "/autoscale.yaml";
    std::ofstream(config) << absl::StrCat(
        "interval: 200ms\n"
        "idle_timeout: 3s\n"
        "provisioning_timeout: 8s\n"
        "status_interval: 300ms\n"
        "backoff_base: 1s\n"
        "max_nodes: 4\n"
        "max_dollars_per_hour: 50\n"
        "providers:\n"
        "  - name: local\n"
        "    program: ",
        SCHED_SOURCE_DIR, "/deploy/providers/sched-provider-local\n", provider_extra,
        "    config:\n"
        "      agent: ",
        BinaryPath("sched-agent"), "\n      state_dir: ", dir_, "/provider\n      offers:\n",
        offers);
    metrics_port_ = PickFreePort();
    schedd_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("schedd"), "--data_dir=" + dir_ + "/schedd",
                                 "--listen=" + address_,
                                 absl::StrCat("--metrics_listen=127.0.0.1:", metrics_port_),
                                 "--autoscale_config=" + config},
        dir_ + "/schedd.log");
    ASSERT_TRUE(WaitForPort(port, 10'000)) << "schedd did not listen; log in " << dir_;
  }

  std::string Metrics() {
    return RunShell(absl::StrCat("curl -s http://127.0.0.1:", metrics_port_, "/metrics")).text;
  }

  void TearDown() override {
    schedd_.reset();
    // Agents the provider started outlive schedd unless given back: stop any left over.
    RunShell("pkill -f -- '--work_dir=" + dir_ + "' 2>/dev/null");
    if (!HasFailure()) RunShell("rm -rf " + dir_);
  }

  ShellOutput Ctl(const std::string& args) {
    return RunShell(absl::StrCat(BinaryPath("schedctl"), " --server ", address_, " ", args));
  }

  std::string Submit(const std::string& yaml) {
    const std::string path = dir_ + "/job-" + std::to_string(++jobs_) + ".yaml";
    std::ofstream(path) << yaml;
    const ShellOutput r = Ctl("submit -f " + path);
    EXPECT_EQ(r.exit_code, 0) << r.text;
    if (!absl::StartsWith(r.text, "job/") || r.text.size() < 20) return "";
    return r.text.substr(4, 16);
  }

  std::vector<v1::Node> Nodes() {
    const ShellOutput r = Ctl("get nodes -o json");
    v1::ListNodesResponse list;
    EXPECT_EQ(r.exit_code, 0) << r.text;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(r.text, &list).ok()) << r.text;
    return {list.nodes().begin(), list.nodes().end()};
  }

  // The rented node of `offer`, once `pred` holds for it (within `timeout`).
  template <typename Pred>
  std::optional<v1::Node> WaitForNode(const std::string& offer, Pred pred,
                                      absl::Duration timeout = absl::Seconds(30)) {
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      for (const v1::Node& n : Nodes()) {
        if (n.has_rental() && n.rental().offer_id() == offer && pred(n)) return n;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return std::nullopt;
  }

  v1::Job GetJob(const std::string& id) {
    v1::Job job;
    const ShellOutput r = Ctl("get job " + id + " -o json");
    EXPECT_EQ(r.exit_code, 0) << r.text;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(r.text, &job).ok()) << r.text;
    return job;
  }

  v1::Job WaitForJob(const std::string& id, v1::JobState state) {
    v1::Job job;
    for (int i = 0; i < 300; ++i) {
      job = GetJob(id);
      if (job.state() == state) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return job;
  }

  static double Seconds(const google::protobuf::Timestamp& t) {
    return static_cast<double>(t.seconds()) + t.nanos() / 1e9;
  }

  std::string dir_, address_;
  int metrics_port_ = 0;
  std::unique_ptr<Subprocess> schedd_;
  int jobs_ = 0;
};

auto IsState(v1::NodeState s) {
  return [s](const v1::Node& n) { return n.state() == s; };
}

TEST_F(AutoscaleTest, RentsANodeForTheJobRunsItAndGivesItBackChargingItsLifetime) {
  // The cheaper offer's node never joins: given back at 8 s, and the next offer rented.
  Start(Offer("h100-stuck", 1.0, "never-joins") + Offer("h100", 3.6, "normal", 1));
  const std::string id = Submit(kH100Job);
  ASSERT_FALSE(id.empty());
  auto stuck = WaitForNode("h100-stuck", [](const v1::Node&) { return true; });
  ASSERT_TRUE(stuck.has_value()) << "no node was rented; logs in " << dir_;
  EXPECT_THAT(GetJob(id).message(), HasSubstr("waiting for "));
  EXPECT_THAT(GetJob(id).message(), HasSubstr("h100-stuck"));
  stuck = WaitForNode("h100-stuck", IsState(v1::NODE_STATE_GONE));
  ASSERT_TRUE(stuck.has_value()) << "the stuck node was not given back; logs in " << dir_;
  bool said = false;
  for (const v1::RentalEvent& e : stuck->rental().events()) {
    said |= absl::StrContains(e.message(), "did not join within 8s");
  }
  EXPECT_TRUE(said) << stuck->DebugString();
  // Paid from the create request to its end, nothing more.
  EXPECT_NEAR(
      stuck->rental().cost_so_far(),
      1.0 * (Seconds(stuck->rental().end_time()) - Seconds(stuck->rental().create_time())) / 3600,
      1e-6);
  // The next offer: a node that joins and runs the job.
  auto ready = WaitForNode("h100", IsState(v1::NODE_STATE_READY));
  ASSERT_TRUE(ready.has_value()) << "no node of the next offer joined; logs in " << dir_;
  EXPECT_EQ(ready->capabilities().provider(), "local-rented");
  EXPECT_EQ(ready->capabilities().gpus(0).model(), "NVIDIA H100 80GB HBM3");
  const v1::Job done = WaitForJob(id, v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.DebugString();
  EXPECT_EQ(done.node(), ready->name());
  // Idle for 3 s, then given back; its agent is gone with it.
  auto gone = WaitForNode("h100", IsState(v1::NODE_STATE_GONE));
  ASSERT_TRUE(gone.has_value()) << "the idle node was not given back; logs in " << dir_;
  const v1::Rental& r = gone->rental();
  const double life = Seconds(r.end_time()) - Seconds(r.create_time());
  EXPECT_NEAR(r.cost_so_far(), 3.6 * life / 3600, 1e-6);
  // ("[-]-name" matches the agent's "--name=" but not this shell's own command line.)
  EXPECT_EQ(RunShell("pgrep -f -- '[-]-name=" + gone->name() + "'").exit_code, 1)
      << "the agent of a node given back still runs";
  // The ledger, grouped by node, says the same.
  const ShellOutput cost = Ctl("cost report --by node -o json");
  ASSERT_EQ(cost.exit_code, 0) << cost.text;
  EXPECT_THAT(cost.text, HasSubstr(gone->name()));
  EXPECT_THAT(cost.text, HasSubstr(stuck->name()));
  // And the phases it went through, as events.
  std::vector<std::string> phases;
  for (const v1::RentalEvent& e : r.events()) phases.push_back(v1::RentalPhase_Name(e.phase()));
  EXPECT_THAT(phases, ::testing::IsSupersetOf({"RENTAL_PHASE_PROVISIONING", "RENTAL_PHASE_READY",
                                               "RENTAL_PHASE_TERMINATING", "RENTAL_PHASE_GONE"}));
  const ShellOutput table = Ctl("get nodes");
  EXPECT_THAT(table.text, HasSubstr("GONE"));
  // Each transition is counted, and each provider call with its result.
  const std::string metrics = Metrics();
  EXPECT_THAT(metrics, HasSubstr("sched_rented_node_transitions_total{phase=\"GONE\","
                                 "provider=\"local\"} 2"));
  EXPECT_THAT(metrics, HasSubstr("sched_rented_node_transitions_total{phase=\"READY\","
                                 "provider=\"local\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("sched_provider_calls_total{op=\"create\",provider=\"local\","
                                 "result=\"ok\"} 2"));
  EXPECT_THAT(metrics, HasSubstr("sched_rented_nodes{phase=\"READY\"} 0"));
}

TEST_F(AutoscaleTest, AProviderWhoseCreateHangsIsKilledAndTheNextOfferTried) {
  Start(Offer("h100-hangs", 1.0, "hang-create") + Offer("h100", 3.6, "normal"),
        "    timeouts: {create: 2s}\n");
  const std::string id = Submit(kH100Job);
  auto hung = WaitForNode("h100-hangs", IsState(v1::NODE_STATE_GONE));
  ASSERT_TRUE(hung.has_value()) << "the hung create was not given up; logs in " << dir_;
  bool said = false;
  for (const v1::RentalEvent& e : hung->rental().events()) {
    said |= absl::StrContains(e.message(), "no answer within 2s");
  }
  EXPECT_TRUE(said) << hung->DebugString();
  const v1::Job done = WaitForJob(id, v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.DebugString();
  auto used = WaitForNode("h100", [](const v1::Node&) { return true; });
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(done.node(), used->name());
}

TEST_F(AutoscaleTest, ABudgetThatCannotAffordAnyOfferRentsNothingAndTheJobSaysWhy) {
  Start(Offer("h100", 3.6, "normal"));
  ASSERT_EQ(Ctl("budget set alpha --monthly 0.01").exit_code, 0);
  const std::string id = Submit(kH100Job);
  std::string message;
  for (int i = 0; i < 100 && !absl::StrContains(message, "budget"); ++i) {
    message = GetJob(id).message();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_THAT(message, HasSubstr("renting local/h100 would pass project alpha's budget of $0.01"));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  for (const v1::Node& n : Nodes()) EXPECT_FALSE(n.has_rental()) << n.name();
  EXPECT_EQ(GetJob(id).state(), v1::JOB_STATE_PENDING);
}

}  // namespace
}  // namespace sched
