// The real binaries across TLS: schedd listening beyond loopback makes its CA and requires
// tokens; an agent given only a join token and the CA pin joins, gets a node certificate, runs
// jobs with it, renews it before it runs out, comes back after a restart with the certificate
// alone, and is cut off at once when the node is revoked. A wrong pin stops the agent before it
// sends its token.
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "sched/v1/job_service.grpc.pb.h"
#include "sched/v1/node_service.grpc.pb.h"
#include "sched/v1/token_service.grpc.pb.h"
#include "server/auth/channel.h"
#include "server/auth/tls.h"
#include "tests/testing/subprocess.h"

namespace sched {
namespace {

namespace fs = std::filesystem;
using ::sched::testing::BinaryPath;
using ::sched::testing::MakeTempDir;
using ::sched::testing::PickFreePort;
using ::sched::testing::RunShell;
using ::sched::testing::Subprocess;
using ::sched::testing::WaitForPort;
using ::testing::HasSubstr;

std::string Read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class SecureJoinTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("sched_secure_join_e2e_");
    port_ = PickFreePort();
    address_ = absl::StrCat("127.0.0.1:", port_);
    schedd_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("schedd"), "--data_dir=" + dir_ + "/schedd",
                                 absl::StrCat("--listen=0.0.0.0:", port_), "--metrics_listen=",
                                 "--node_cert_lifetime=24s", "--lease_ttl_ms=3000"},
        dir_ + "/schedd.log");
    ASSERT_TRUE(WaitForPort(port_, 10'000)) << "schedd did not listen; log in " << dir_;
    const std::string ca = Read(dir_ + "/schedd/tls/ca.crt");
    ASSERT_FALSE(ca.empty());
    absl::StatusOr<std::string> pin = auth::CertificatePin(ca);
    ASSERT_TRUE(pin.ok());
    pin_ = *pin;
    auth::DialOptions admin;
    admin.ca_pem = ca;
    admin.token = *auth::ReadTokenFile(dir_ + "/schedd/admin.token");
    admin_ = auth::Dial(address_, admin);
  }

  void TearDown() override {
    agent_.reset();
    schedd_.reset();
    if (!HasFailure()) RunShell("rm -rf " + dir_);
  }

  // A join token for one join, in a file.
  std::string JoinTokenFile() {
    auto stub = v1::TokenService::NewStub(admin_);
    grpc::ClientContext ctx;
    v1::CreateTokenRequest req;
    req.set_role(v1::ROLE_AGENT);
    req.set_uses(1);
    req.mutable_ttl()->set_seconds(3600);
    v1::CreateTokenResponse resp;
    const grpc::Status s = stub->CreateToken(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.ca_pin(), pin_);
    const std::string path = dir_ + "/join.token";
    std::ofstream(path) << resp.secret() << "\n";
    return path;
  }

  std::unique_ptr<Subprocess> StartAgent(const std::vector<std::string>& extra,
                                         const std::string& log,
                                         const std::string& name = "gpu-1") {
    std::vector<std::string> argv = {BinaryPath("sched-agent"),
                                     "--server=" + address_,
                                     "--name=" + name,
                                     "--work_dir=" + dir_ + "/" + (name == "gpu-1" ? "agent" : name),
                                     "--metrics_listen=",
                                     "--renew_check_ms=500"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<Subprocess>(argv, dir_ + "/" + log);
  }

  v1::NodeState NodeState(const std::string& name = "gpu-1") {
    auto stub = v1::NodeService::NewStub(admin_);
    grpc::ClientContext ctx;
    v1::GetNodeRequest req;
    req.set_name(name);
    v1::Node node;
    if (!stub->GetNode(&ctx, req, &node).ok()) return v1::NODE_STATE_UNSPECIFIED;
    return node.state();
  }

  bool WaitForNode(v1::NodeState want, int ms, const std::string& name = "gpu-1") {
    for (int i = 0; i < ms / 50; ++i) {
      if (NodeState(name) == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  // Submits `run` as admin and waits up to `ms` for it to end: its final state.
  v1::JobState Run(const std::string& run, int ms = 20'000) {
    v1::JobSpec spec;
    spec.set_name("hello");
    spec.set_run(run);
    return RunSpec(spec, ms).state();
  }
  v1::Job RunSpec(const v1::JobSpec& spec, int ms = 20'000) {
    auto stub = v1::JobService::NewStub(admin_);
    grpc::ClientContext ctx;
    v1::SubmitJobRequest req;
    *req.mutable_spec() = spec;
    v1::SubmitJobResponse resp;
    const grpc::Status s = stub->SubmitJob(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    v1::Job job;
    for (int i = 0; i < ms / 50; ++i) {
      grpc::ClientContext get;
      v1::GetJobRequest g;
      g.set_job_id(resp.job().id());
      if (stub->GetJob(&get, g, &job).ok() &&
          (job.state() == v1::JOB_STATE_SUCCEEDED || job.state() == v1::JOB_STATE_FAILED)) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return job;
  }

  std::string dir_, address_, pin_;
  int port_ = 0;
  std::unique_ptr<Subprocess> schedd_, agent_;
  std::shared_ptr<grpc::Channel> admin_;
};

TEST_F(SecureJoinTest, AnAgentJoinsWithATokenAndThePinThenLivesOnItsCertificate) {
  agent_ = StartAgent({"--ca_pin=" + pin_, "--token_file=" + JoinTokenFile()}, "agent.log");
  ASSERT_TRUE(WaitForNode(v1::NODE_STATE_READY, 20'000)) << "logs in " << dir_;
  EXPECT_EQ(Run("echo hello over mTLS"), v1::JOB_STATE_SUCCEEDED);
  const fs::path identity = dir_ + "/agent/identity";
  struct stat st;
  ASSERT_EQ(stat((identity / "node.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat(identity.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  absl::StatusOr<auth::CertificateInfo> first = auth::ReadCertificate(Read(identity / "node.crt"));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->common_name, "node:gpu-1");

  // With a third of its 24 s left the agent renews it, and goes on working with the new one.
  std::string serial = first->serial_hex;
  for (int i = 0; i < 400 && serial == first->serial_hex; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    absl::StatusOr<auth::CertificateInfo> now = auth::ReadCertificate(Read(identity / "node.crt"));
    if (now.ok()) serial = now->serial_hex;
  }
  EXPECT_NE(serial, first->serial_hex) << "not renewed; logs in " << dir_;
  EXPECT_THAT(Read(dir_ + "/agent.log"), HasSubstr("renewed the node certificate"));
  EXPECT_EQ(Run("echo after renewal"), v1::JOB_STATE_SUCCEEDED);

  // Restarted without any token (the join token is used up anyway): the certificate is enough.
  agent_.reset();
  agent_ = StartAgent({"--ca_pin=" + pin_}, "agent2.log");
  ASSERT_TRUE(WaitForNode(v1::NODE_STATE_READY, 20'000)) << "logs in " << dir_;
  EXPECT_EQ(Run("echo back"), v1::JOB_STATE_SUCCEEDED);

  // Revoked: cut off at once; the agent's certificate is refused from then on.
  auto nodes = v1::NodeService::NewStub(admin_);
  grpc::ClientContext ctx;
  v1::RevokeNodeRequest req;
  req.set_name("gpu-1");
  v1::RevokeNodeResponse resp;
  ASSERT_TRUE(nodes->RevokeNode(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.streams_closed(), 1u);
  ASSERT_TRUE(WaitForNode(v1::NODE_STATE_DOWN, 10'000)) << "logs in " << dir_;
  EXPECT_NE(Run("echo never", 3'000), v1::JOB_STATE_SUCCEEDED);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_THAT(Read(dir_ + "/agent2.log"), HasSubstr("revoked"));
}

TEST_F(SecureJoinTest, AWrongPinStopsTheAgentBeforeItSendsTheToken) {
  const std::string token_file = JoinTokenFile();
  agent_ = StartAgent({"--ca_pin=sha256:" + std::string(64, '0'), "--token_file=" + token_file},
                      "agent.log");
  const int status = agent_->Wait(20'000);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_THAT(Read(dir_ + "/agent.log"), HasSubstr("has the pin sha256:0000"));
  // The token was not spent: with the right pin it still joins.
  agent_ = StartAgent({"--ca_pin=" + pin_, "--token_file=" + token_file}, "agent2.log");
  EXPECT_TRUE(WaitForNode(v1::NODE_STATE_READY, 20'000)) << "logs in " << dir_;
}

}  // namespace
}  // namespace sched

namespace sched {
namespace {

// Over mTLS, a job's outputs reach a job on another node that has them as an input: that node
// may fetch them only for the job it holds that lists them.
TEST_F(SecureJoinTest, AnInputMadeOnOneNodeIsFetchedByAnotherForTheJobThatNamesIt) {
  agent_ = StartAgent({"--ca_pin=" + pin_, "--token_file=" + JoinTokenFile()}, "agent.log");
  ASSERT_TRUE(WaitForNode(v1::NODE_STATE_READY, 20'000)) << "logs in " << dir_;
  v1::JobSpec make;
  make.set_name("make");
  make.set_run("echo made on $(hostname) > out.txt");
  make.add_outputs("out.txt");
  const v1::Job made = RunSpec(make);
  ASSERT_EQ(made.state(), v1::JOB_STATE_SUCCEEDED) << made.DebugString();
  EXPECT_EQ(made.node(), "gpu-1");
  // gpu-1 goes; gpu-2 joins with a token of its own and runs the job that reads it.
  agent_.reset();
  std::unique_ptr<Subprocess> second =
      StartAgent({"--ca_pin=" + pin_, "--token_file=" + JoinTokenFile()}, "agent-2.log", "gpu-2");
  ASSERT_TRUE(WaitForNode(v1::NODE_STATE_READY, 20'000, "gpu-2")) << "logs in " << dir_;
  v1::JobSpec use;
  use.set_name("use");
  use.set_run("cat \"$SCHED_INPUTS_DIR/made/out.txt\"");
  v1::Dependency* after = use.add_after();
  after->set_job_id(made.id());
  after->set_when("success");
  v1::JobInput* input = use.add_inputs();
  input->set_name("made");
  input->set_job_id(made.id());
  const v1::Job used = RunSpec(use);
  EXPECT_EQ(used.state(), v1::JOB_STATE_SUCCEEDED) << used.DebugString() << " logs in " << dir_;
  EXPECT_EQ(used.node(), "gpu-2");
  auto jobs = v1::JobService::NewStub(admin_);
  grpc::ClientContext ctx;
  v1::GetJobLogsRequest req;
  req.set_job_id(used.id());
  auto reader = jobs->GetJobLogs(&ctx, req);
  std::string logs;
  v1::LogChunk chunk;
  while (reader->Read(&chunk)) logs += chunk.data();
  EXPECT_THAT(logs, HasSubstr("made on "));
  EXPECT_THAT(logs, HasSubstr("sched-agent: input made: checkpoint outputs-1 of job " + made.id()));
  second.reset();
}

}  // namespace
}  // namespace sched
