// The real binaries: schedd and two sched-agents as processes. kill -9 of the agent running a
// job: the job is re-run on the other agent once the lease runs out, and only once.
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
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

TEST(AgentLossTest, KilledAgentsJobRunsAgainElsewhereAfterTheLease) {
  const std::string dir = MakeTempDir("sched_agent_loss_");
  const int port = PickFreePort();
  const std::string address = absl::StrCat("127.0.0.1:", port);
  Subprocess schedd({BinaryPath("schedd"), "--data_dir=" + dir + "/schedd",
                     "--listen=" + address, "--metrics_listen=", "--lease_ttl_ms=1500",
                     "--heartbeat_interval_ms=300"},
                    dir + "/schedd.log");
  ASSERT_TRUE(WaitForPort(port, 10'000));
  auto agent = [&](const std::string& name) {
    return std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("sched-agent"), "--server=" + address,
                                 "--name=" + name, "--work_dir=" + dir + "/" + name,
                                 "--metrics_listen=", "--gpu_detection=none"},
        dir + "/" + name + ".log");
  };
  auto a1 = agent("a1");
  auto a2 = agent("a2");
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto jobs = v1::JobService::NewStub(channel);
  auto nodes = v1::NodeService::NewStub(channel);
  for (int i = 0; i < 500; ++i) {
    grpc::ClientContext ctx;
    v1::ListNodesResponse resp;
    nodes->ListNodes(&ctx, v1::ListNodesRequest(), &resp);
    int ready = 0;
    for (const auto& n : resp.nodes()) ready += n.state() == v1::NODE_STATE_READY;
    if (ready == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  // Attempt 1 writes a marker and hangs; later attempts finish at once.
  const std::string marker = dir + "/attempts";
  grpc::ClientContext sctx;
  v1::SubmitJobRequest req;
  req.mutable_spec()->set_name("survivor");
  req.mutable_spec()->set_run(absl::StrCat(
      "echo \"$SCHED_ATTEMPT $(hostname)\" >> ", marker, "; if [ \"$SCHED_ATTEMPT\" = 1 ]; then echo $$ > ",
      dir, "/orphan.pid; exec sleep 20; fi; echo finished"));
  req.mutable_spec()->mutable_resources()->set_cpus(0.5);
  v1::SubmitJobResponse submitted;
  ASSERT_TRUE(jobs->SubmitJob(&sctx, req, &submitted).ok());
  const std::string id = submitted.job().id();

  auto get = [&] {
    grpc::ClientContext ctx;
    v1::GetJobRequest g;
    g.set_job_id(id);
    v1::Job job;
    EXPECT_TRUE(jobs->GetJob(&ctx, g, &job).ok());
    return job;
  };
  v1::Job job;
  for (int i = 0; i < 500; ++i) {
    job = get();
    if (job.state() == v1::JOB_STATE_RUNNING) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  const std::string first_node = job.node();
  Subprocess& victim = first_node == "a1" ? *a1 : *a2;
  const absl::Time killed_at = absl::Now();
  victim.Signal(SIGKILL);

  for (int i = 0; i < 1000; ++i) {
    job = get();
    if (job.state() == v1::JOB_STATE_SUCCEEDED || job.state() == v1::JOB_STATE_FAILED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const absl::Duration took = absl::Now() - killed_at;
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job.attempt(), 2u);
  EXPECT_NE(job.node(), first_node);
  EXPECT_GE(took, absl::Milliseconds(1400)) << "re-queued before the lease ran out";
  EXPECT_LT(took, absl::Seconds(6));
  std::printf("job re-run on %s %.0f ms after kill -9 of %s (lease 1500 ms)\n",
              job.node().c_str(), absl::ToDoubleMilliseconds(took), first_node.c_str());

  // The killed agent's orphaned process is the only other run: no third attempt.
  std::ifstream in(marker);
  std::string line;
  int runs = 0;
  while (std::getline(in, line)) runs++;
  EXPECT_EQ(runs, 2);

  // The killed agent's first attempt is still running, orphaned. The agent restarted on the
  // same folder kills it before it dials schedd.
  pid_t orphan = 0;
  std::ifstream(dir + "/orphan.pid") >> orphan;
  ASSERT_GT(orphan, 1);
  auto alive = [](pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string pid_field, comm, state;
    return static_cast<bool>(stat >> pid_field >> comm >> state) && state != "Z";
  };
  EXPECT_TRUE(alive(orphan));
  auto restarted = agent(first_node);
  bool gone = false;
  for (int i = 0; i < 300 && !gone; ++i) {
    gone = !alive(orphan);
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(gone) << "the orphaned attempt " << orphan << " survived the agent's restart";
  if (!gone) kill(orphan, SIGKILL);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sched
