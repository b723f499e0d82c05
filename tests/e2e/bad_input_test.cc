// The bad-input catalogue, against the real schedd binary serving TLS with tokens: oversized
// messages, huge and deeply nested specs, names with "..", absolute paths and NUL bytes,
// negative and overflowing sizes, a replayed token, another agent's lease, and expired,
// wrong-CA and revoked certificates. Each is refused with the right code, and afterwards schedd
// is healthy and its state is what it was.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "sched/v1/agent_service.grpc.pb.h"
#include "sched/v1/checkpoint_service.grpc.pb.h"
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
using Code = grpc::StatusCode;

std::string Read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("sched_bad_input_e2e_");
    const int port = PickFreePort();
    address_ = absl::StrCat("127.0.0.1:", port);
    schedd_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("schedd"), "--data_dir=" + dir_ + "/schedd",
                                 absl::StrCat("--listen=0.0.0.0:", port),
                                 "--metrics_listen=", "--lease_ttl_ms=600000"},
        dir_ + "/schedd.log");
    ASSERT_TRUE(WaitForPort(port, 10'000)) << "schedd did not listen; log in " << dir_;
    ca_ = Read(dir_ + "/schedd/tls/ca.crt");
    auth::DialOptions admin;
    admin.ca_pem = ca_;
    admin.token = *auth::ReadTokenFile(dir_ + "/schedd/admin.token");
    admin_ = auth::Dial(address_, admin);
  }
  void TearDown() override {
    schedd_.reset();
    if (!HasFailure()) RunShell("rm -rf " + dir_);
  }

  std::string Token(v1::Role role, int64_t uses = 0) {
    auto stub = v1::TokenService::NewStub(admin_);
    grpc::ClientContext ctx;
    v1::CreateTokenRequest req;
    req.set_role(role);
    if (role == v1::ROLE_MEMBER) req.add_projects("alpha");
    req.set_uses(uses);
    v1::CreateTokenResponse resp;
    EXPECT_TRUE(stub->CreateToken(&ctx, req, &resp).ok());
    return resp.secret();
  }

  std::shared_ptr<grpc::Channel> As(const std::string& token) {
    auth::DialOptions o;
    o.ca_pem = ca_;
    o.token = token;
    grpc::ChannelArguments args;
    args.SetInt("sched.test.channel", ++channels_);
    return auth::Dial(address_, o, args);
  }

  // Joins as `node`: a channel presenting its certificate.
  std::shared_ptr<grpc::Channel> Node(const std::string& node) {
    absl::StatusOr<auth::KeyAndRequest> kr = auth::MakeNodeKeyAndRequest(node);
    auto stub = v1::AgentService::NewStub(As(Token(v1::ROLE_AGENT, 1)));
    grpc::ClientContext ctx;
    v1::JoinRequest req;
    req.set_node_name(node);
    req.set_csr_pem(kr->csr_pem);
    v1::NodeCertificate cert;
    EXPECT_TRUE(stub->Join(&ctx, req, &cert).ok());
    keys_[node] = kr->key_pem;
    return WithCertificate(node, kr->key_pem, cert.certificate_pem());
  }

  std::shared_ptr<grpc::Channel> WithCertificate(const std::string& name, const std::string& key,
                                                 const std::string& cert) {
    const fs::path d = fs::path(dir_) / "certs" / name;
    fs::create_directories(d);
    std::ofstream(d / "node.key") << key;
    std::ofstream(d / "node.crt") << cert;
    std::ofstream(d / "ca.crt") << ca_;
    auth::DialOptions o;
    o.cert_file = (d / "node.crt").string();
    o.key_file = (d / "node.key").string();
    o.ca_file = (d / "ca.crt").string();
    grpc::ChannelArguments args;
    args.SetInt("sched.test.channel", ++channels_);
    return auth::Dial(address_, o, args);
  }

  std::string dir_, address_, ca_;
  std::unique_ptr<Subprocess> schedd_;
  std::shared_ptr<grpc::Channel> admin_;
  std::map<std::string, std::string> keys_;
  int channels_ = 0;
};

grpc::Status Submit(const std::shared_ptr<grpc::Channel>& ch, const v1::JobSpec& spec,
                    v1::SubmitJobResponse* resp = nullptr) {
  auto stub = v1::JobService::NewStub(ch);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  v1::SubmitJobRequest req;
  *req.mutable_spec() = spec;
  v1::SubmitJobResponse ignored;
  return stub->SubmitJob(&ctx, req, resp != nullptr ? resp : &ignored);
}

v1::JobSpec Spec(const std::string& run) {
  v1::JobSpec s;
  s.set_name("j");
  s.set_project("alpha");
  s.set_run(run);
  return s;
}

TEST_F(BadInputTest, EveryBadInputIsRefusedAndSchedLivesOn) {
  // The state to keep: node-1 connected, running job A, with a checkpoint-free lease.
  std::shared_ptr<grpc::Channel> node1 = Node("node-1");
  auto agent = v1::AgentService::NewStub(node1);
  grpc::ClientContext stream_ctx;
  auto stream = agent->Connect(&stream_ctx);
  v1::AgentMessage reg;
  reg.mutable_register_()->set_node_name("node-1");
  reg.mutable_register_()->mutable_capabilities()->set_cpus(4);
  reg.mutable_register_()->mutable_capabilities()->set_memory_bytes(int64_t{8} << 30);
  ASSERT_TRUE(stream->Write(reg));
  v1::ServerMessage msg;
  ASSERT_TRUE(stream->Read(&msg));
  ASSERT_TRUE(msg.has_register_ack());
  v1::SubmitJobResponse job_a;
  ASSERT_TRUE(Submit(admin_, Spec("sleep 600"), &job_a).ok());
  uint64_t epoch = 0;
  while (epoch == 0 && stream->Read(&msg)) {
    if (msg.has_assignment() && msg.assignment().job().id() == job_a.job().id()) {
      epoch = msg.assignment().epoch();
    }
  }
  ASSERT_GT(epoch, 0u);
  v1::AgentMessage running;
  running.mutable_update()->set_job_id(job_a.job().id());
  running.mutable_update()->set_epoch(epoch);
  running.mutable_update()->set_state(v1::JOB_STATE_RUNNING);
  ASSERT_TRUE(stream->Write(running));

  // 1. Oversized message: over schedd's 16 MiB cap.
  EXPECT_EQ(Submit(admin_, Spec(std::string(17 << 20, 'x'))).error_code(),
            Code::RESOURCE_EXHAUSTED);
  // 2. A huge spec under the message cap, and one with a huge field count.
  grpc::Status s = Submit(admin_, Spec(std::string(2 << 20, 'x')));
  EXPECT_EQ(s.error_code(), Code::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("--max_spec_bytes"));
  v1::JobSpec many = Spec("true");
  for (int i = 0; i < 100'000; ++i) (*many.mutable_labels())[absl::StrCat("k", i)] = "v";
  EXPECT_EQ(Submit(admin_, many).error_code(), Code::INVALID_ARGUMENT);
  // 3. Deeply nested bytes: 100,000 open groups, sent raw. The same call with the bytes of a
  // good request is accepted, so the refusal is the nesting's.
  {
    grpc::GenericStub generic(admin_);
    auto raw = [&](const std::string& bytes) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
      grpc::Slice slice(bytes);
      grpc::ByteBuffer request(&slice, 1), response;
      std::promise<grpc::Status> done;
      generic.UnaryCall(&ctx, "/sched.v1.JobService/SubmitJob", grpc::StubOptions(), &request,
                        &response, [&](grpc::Status st) { done.set_value(st); });
      return done.get_future().get();
    };
    v1::SubmitJobRequest good;
    *good.mutable_spec() = Spec("true");
    const grpc::Status accepted = raw(good.SerializeAsString());
    EXPECT_TRUE(accepted.ok()) << accepted.error_code() << " " << accepted.error_message();
    std::string nested;
    for (int i = 0; i < 100'000; ++i) nested += static_cast<char>((15 << 3) | 3);  // start group
    // gRPC's server refuses a request that does not parse before any handler runs; for the
    // callback API that is UNIMPLEMENTED.
    const grpc::Status st = raw(nested);
    EXPECT_EQ(st.error_code(), Code::UNIMPLEMENTED) << st.error_message();
  }
  // 4. Negative and overflowing sizes.
  v1::JobSpec negative = Spec("true");
  negative.mutable_resources()->set_gpu_memory_bytes(-1);
  EXPECT_EQ(Submit(admin_, negative).error_code(), Code::INVALID_ARGUMENT);
  v1::JobSpec gpus = Spec("true");
  gpus.mutable_resources()->set_gpus(4'000'000'000u);
  EXPECT_EQ(Submit(admin_, gpus).error_code(), Code::INVALID_ARGUMENT);
  v1::JobSpec cpus = Spec("true");
  cpus.mutable_resources()->set_cpus(-2);
  EXPECT_EQ(Submit(admin_, cpus).error_code(), Code::INVALID_ARGUMENT);
  {
    auto tokens = v1::TokenService::NewStub(admin_);
    grpc::ClientContext ctx;
    v1::CreateTokenRequest req;
    req.set_role(v1::ROLE_VIEWER);
    req.mutable_ttl()->set_seconds(-1);
    v1::CreateTokenResponse resp;
    EXPECT_EQ(tokens->CreateToken(&ctx, req, &resp).error_code(), Code::INVALID_ARGUMENT);
  }
  // 5. Checkpoint names and paths: "..", absolute, NUL, and sizes that do not add up.
  auto ks = v1::CheckpointService::NewStub(node1);
  auto commit = [&](const std::string& name, const std::string& path, uint64_t size) {
    grpc::ClientContext ctx;
    v1::CommitCheckpointRequest req;
    req.mutable_uploader()->set_job_id(job_a.job().id());
    req.mutable_uploader()->set_epoch(epoch);
    req.mutable_uploader()->set_node_name("node-1");
    req.set_name(name);
    req.set_is_dir(true);
    v1::CheckpointFile* f = req.add_files();
    f->set_path(path);
    f->set_size_bytes(size);
    f->add_chunks(std::string(64, 'a'));
    v1::Checkpoint resp;
    return ks->CommitCheckpoint(&ctx, req, &resp).error_code();
  };
  EXPECT_EQ(commit("step-1", "../../etc/passwd", 10), Code::INVALID_ARGUMENT);
  EXPECT_EQ(commit("step-1", "/etc/passwd", 10), Code::INVALID_ARGUMENT);
  EXPECT_EQ(commit("step-1", std::string("a\0b", 3), 10), Code::INVALID_ARGUMENT);
  EXPECT_EQ(commit("..", "w.bin", 10), Code::INVALID_ARGUMENT);
  EXPECT_EQ(commit("step-1", "w.bin", UINT64_MAX), Code::INVALID_ARGUMENT);
  {
    grpc::ClientContext ctx;
    v1::FindMissingChunksRequest req;
    req.mutable_uploader()->set_job_id(job_a.job().id());
    req.mutable_uploader()->set_epoch(epoch);
    req.mutable_uploader()->set_node_name("node-1");
    req.add_chunks("../../../../etc/shadow");
    v1::FindMissingChunksResponse resp;
    EXPECT_EQ(ks->FindMissingChunks(&ctx, req, &resp).error_code(), Code::INVALID_ARGUMENT);
  }
  // 6. Another agent's lease: node-2 naming node-1, and node-2 as itself.
  std::shared_ptr<grpc::Channel> node2 = Node("node-2");
  auto ks2 = v1::CheckpointService::NewStub(node2);
  for (const char* as : {"node-1", "node-2"}) {
    grpc::ClientContext ctx;
    v1::FindMissingChunksRequest req;
    req.mutable_uploader()->set_job_id(job_a.job().id());
    req.mutable_uploader()->set_epoch(epoch);
    req.mutable_uploader()->set_node_name(as);
    v1::FindMissingChunksResponse resp;
    EXPECT_EQ(ks2->FindMissingChunks(&ctx, req, &resp).error_code(),
              std::string(as) == "node-1" ? Code::PERMISSION_DENIED : Code::FAILED_PRECONDITION)
        << as;
  }
  // Nor may it download the checkpoint of a job it does not hold, also when it claims to want
  // it as the input of a job (one it does not hold, which has no such input).
  for (const std::string& for_job : {std::string(), job_a.job().id()}) {
    grpc::ClientContext ctx;
    v1::GetCheckpointRequest req;
    req.set_job_id(job_a.job().id());
    req.set_for_job(for_job);
    auto reader = ks2->GetCheckpoint(&ctx, req);
    v1::CheckpointPiece piece;
    while (reader->Read(&piece)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), Code::PERMISSION_DENIED) << for_job;
  }
  // A secret's value is never written to schedd's own log or its audit log.
  v1::JobSpec with_secret = Spec("true");
  v1::EnvVar* secret = with_secret.add_env();
  secret->set_name("HF_TOKEN");
  secret->set_value("hf_topsecret42");
  secret->set_secret(true);
  ASSERT_TRUE(Submit(admin_, with_secret).ok());
  // 7. A replayed token: a one-join token used twice, and a revoked one.
  {
    const std::string once = Token(v1::ROLE_AGENT, 1);
    absl::StatusOr<auth::KeyAndRequest> kr = auth::MakeNodeKeyAndRequest("node-3");
    for (Code want : {Code::OK, Code::UNAUTHENTICATED}) {
      auto stub = v1::AgentService::NewStub(As(once));
      grpc::ClientContext ctx;
      v1::JoinRequest req;
      req.set_node_name(want == Code::OK ? "node-3" : "node-4");
      req.set_csr_pem(kr->csr_pem);
      v1::NodeCertificate cert;
      EXPECT_EQ(stub->Join(&ctx, req, &cert).error_code(), want);
    }
    const std::string member = Token(v1::ROLE_MEMBER);
    EXPECT_TRUE(Submit(As(member), Spec("true")).ok());
    auto tokens = v1::TokenService::NewStub(admin_);
    grpc::ClientContext ctx;
    v1::RevokeTokenRequest req;
    req.set_id(member.substr(0, 16));
    v1::Token t;
    ASSERT_TRUE(tokens->RevokeToken(&ctx, req, &t).ok());
    EXPECT_EQ(Submit(As(member), Spec("true")).error_code(), Code::UNAUTHENTICATED);
  }
  // 8. Certificates: expired, from another CA, and revoked.
  auto list = [](const std::shared_ptr<grpc::Channel>& ch) {
    auto stub = v1::CheckpointService::NewStub(ch);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::FindMissingChunksResponse resp;
    return stub->FindMissingChunks(&ctx, v1::FindMissingChunksRequest(), &resp).error_code();
  };
  absl::StatusOr<auth::KeyAndRequest> kr = auth::MakeNodeKeyAndRequest("node-2");
  absl::StatusOr<std::string> expired =
      auth::SignNodeCertificate(dir_ + "/schedd/tls", kr->csr_pem, "node-2", absl::ZeroDuration());
  ASSERT_TRUE(expired.ok());
  EXPECT_EQ(list(WithCertificate("expired", kr->key_pem, *expired)), Code::UNAVAILABLE);
  auth::TlsOptions stranger;
  stranger.dir = dir_ + "/stranger";
  ASSERT_TRUE(auth::LoadOrCreateServerTls(stranger).ok());
  absl::StatusOr<std::string> foreign =
      auth::SignNodeCertificate(stranger.dir, kr->csr_pem, "node-2");
  EXPECT_EQ(list(WithCertificate("foreign", kr->key_pem, *foreign)), Code::UNAVAILABLE);
  {
    auto nodes = v1::NodeService::NewStub(admin_);
    grpc::ClientContext ctx;
    v1::RevokeNodeRequest req;
    req.set_name("node-2");
    v1::RevokeNodeResponse resp;
    ASSERT_TRUE(nodes->RevokeNode(&ctx, req, &resp).ok());
  }
  EXPECT_EQ(list(node2), Code::UNAUTHENTICATED);

  // Afterwards: schedd answers, and the state is as it was.
  auto jobs = v1::JobService::NewStub(admin_);
  grpc::ClientContext ctx;
  v1::GetJobRequest get;
  get.set_job_id(job_a.job().id());
  v1::Job a;
  ASSERT_TRUE(jobs->GetJob(&ctx, get, &a).ok());
  EXPECT_EQ(a.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(a.epoch(), epoch);
  EXPECT_EQ(a.node(), "node-1");
  grpc::ClientContext list_ctx;
  v1::ListJobsResponse all;
  ASSERT_TRUE(jobs->ListJobs(&list_ctx, v1::ListJobsRequest(), &all).ok());
  EXPECT_EQ(all.jobs_size(), 4)
      << "job A, the secret one, the member's one good submit and the good raw request";
  // node-1's stream is still up: a heartbeat is answered.
  v1::AgentMessage hb;
  hb.mutable_heartbeat()->add_running()->set_job_id(job_a.job().id());
  hb.mutable_heartbeat()->mutable_running(0)->set_epoch(epoch);
  ASSERT_TRUE(stream->Write(hb));
  bool acked = false;
  while (!acked && stream->Read(&msg)) acked = msg.has_heartbeat_ack();
  EXPECT_TRUE(acked);
  EXPECT_TRUE(schedd_->running());
  stream_ctx.TryCancel();
  schedd_.reset();  // its logs are whole
  EXPECT_EQ(Read(dir_ + "/schedd.log").find("hf_topsecret42"), std::string::npos);
  const std::string audit = Read(dir_ + "/schedd/audit.log");
  EXPECT_THAT(audit, HasSubstr("\"action\":\"submit\""));
  EXPECT_EQ(audit.find("hf_topsecret42"), std::string::npos);
}

}  // namespace
}  // namespace sched
