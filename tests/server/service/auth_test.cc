// Tokens and roles on a live schedd (in process, over loopback, tokens required): every RPC
// method of every sched.v1 service × every role, the project scoping of members and viewers,
// and the tokens that must not work (none, malformed, wrong secret, revoked, expired, joins
// used up).
#include "server/auth/auth.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "sched/v1/admin_service.grpc.pb.h"
#include "sched/v1/agent_service.grpc.pb.h"
#include "sched/v1/checkpoint_service.grpc.pb.h"
#include "sched/v1/cost_service.grpc.pb.h"
#include "sched/v1/job_service.grpc.pb.h"
#include "sched/v1/node_service.grpc.pb.h"
#include "sched/v1/token_service.grpc.pb.h"
#include "server/auth/channel.h"
#include "server/auth/tls.h"
#include "server/daemon/daemon.h"
#include "server/store/memory_store.h"
#include "tests/testing/subprocess.h"

namespace sched {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A call of one method with an empty (or minimal) request, over `channel`: its status.
using Call = std::function<grpc::Status(const std::shared_ptr<grpc::Channel>&)>;

void ShortDeadline(grpc::ClientContext& ctx) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
}

template <typename Service, typename Req, typename Resp>
Call Unary(grpc::Status (Service::Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
           std::function<void(Req&)> fill = nullptr) {
  return [method, fill](const std::shared_ptr<grpc::Channel>& ch) {
    auto stub = Service::NewStub(ch);
    grpc::ClientContext ctx;
    ShortDeadline(ctx);
    Req req;
    if (fill) fill(req);
    Resp resp;
    return ((*stub).*method)(&ctx, req, &resp);
  };
}

template <typename Service, typename Req, typename Resp>
Call ServerStream(std::unique_ptr<grpc::ClientReader<Resp>> (Service::Stub::*method)(
                      grpc::ClientContext*, const Req&),
                  std::function<void(Req&)> fill = nullptr) {
  return [method, fill](const std::shared_ptr<grpc::Channel>& ch) {
    auto stub = Service::NewStub(ch);
    grpc::ClientContext ctx;
    ShortDeadline(ctx);
    Req req;
    if (fill) fill(req);
    auto reader = ((*stub).*method)(&ctx, req);
    Resp resp;
    while (reader->Read(&resp)) {
    }
    return reader->Finish();
  };
}

// Who calls: a token of each role, or (over TLS) an agent with its node certificate.
enum class Who { kAdmin, kMember, kViewer, kAgent, kNode };
constexpr Who kEveryone[] = {Who::kAdmin, Who::kMember, Who::kViewer, Who::kAgent, Who::kNode};

std::string Name(Who w) {
  switch (w) {
    case Who::kAdmin:
      return "admin";
    case Who::kMember:
      return "member";
    case Who::kViewer:
      return "viewer";
    case Who::kAgent:
      return "agent";
    case Who::kNode:
      return "node";
  }
  return "?";
}

// Method full name ("sched.v1.JobService/SubmitJob") → how to call it, and who may: without
// TLS, and over TLS (where agents work with their node certificate, not their token).
struct MethodCase {
  Call call;
  std::set<Who> allowed;
  std::optional<std::set<Who>> tls_allowed;  // unset: the same as `allowed`
};

const std::set<Who> kAll = {Who::kAdmin, Who::kMember, Who::kViewer};
const std::set<Who> kWriters = {Who::kAdmin, Who::kMember};
const std::set<Who> kAdmin = {Who::kAdmin};
const std::set<Who> kAgents = {Who::kAdmin, Who::kAgent};
const std::set<Who> kNodes = {Who::kAdmin, Who::kNode};

std::map<std::string, MethodCase> Methods() {
  using JS = v1::JobService;
  using NS = v1::NodeService;
  using CS = v1::CostService;
  using KS = v1::CheckpointService;
  using TS = v1::TokenService;
  auto in_alpha = [](v1::SubmitJobRequest& r) {
    r.mutable_spec()->set_name("x");
    r.mutable_spec()->set_project("alpha");
    r.mutable_spec()->set_run("true");
  };
  auto estimate_alpha = [](v1::EstimateJobRequest& r) {
    r.mutable_spec()->set_name("x");
    r.mutable_spec()->set_project("alpha");
    r.mutable_spec()->set_run("true");
  };
  std::map<std::string, MethodCase> m;
  m["sched.v1.JobService/SubmitJob"] = {Unary<JS>(&JS::Stub::SubmitJob, {in_alpha}), kWriters};
  m["sched.v1.JobService/GetJob"] = {Unary<JS>(&JS::Stub::GetJob), kAll};
  m["sched.v1.JobService/ListJobs"] = {Unary<JS>(&JS::Stub::ListJobs), kAll};
  m["sched.v1.JobService/CancelJob"] = {Unary<JS>(&JS::Stub::CancelJob), kWriters};
  m["sched.v1.JobService/WatchJobs"] = {ServerStream<JS>(&JS::Stub::WatchJobs), kAll};
  m["sched.v1.JobService/GetJobLogs"] = {ServerStream<JS>(&JS::Stub::GetJobLogs), kAll};
  m["sched.v1.JobService/EstimateJob"] = {Unary<JS>(&JS::Stub::EstimateJob, {estimate_alpha}),
                                          kAll};
  m["sched.v1.JobService/GetSweep"] = {Unary<JS>(&JS::Stub::GetSweep), kAll};
  m["sched.v1.NodeService/ListNodes"] = {Unary<NS>(&NS::Stub::ListNodes), kAll};
  m["sched.v1.NodeService/GetNode"] = {Unary<NS>(&NS::Stub::GetNode), kAll};
  m["sched.v1.NodeService/Cordon"] = {Unary<NS>(&NS::Stub::Cordon), kAdmin};
  m["sched.v1.NodeService/Drain"] = {Unary<NS>(&NS::Stub::Drain), kAdmin};
  m["sched.v1.CostService/SetBudget"] = {Unary<CS>(&CS::Stub::SetBudget), kAdmin};
  m["sched.v1.CostService/GetBudget"] = {Unary<CS>(&CS::Stub::GetBudget), kAll};
  m["sched.v1.CostService/ListBudgets"] = {Unary<CS>(&CS::Stub::ListBudgets), kAll};
  m["sched.v1.CostService/GetCostReport"] = {Unary<CS>(&CS::Stub::GetCostReport), kAll};
  m["sched.v1.CostService/GetCostAdvice"] = {Unary<CS>(&CS::Stub::GetCostAdvice), kAll};
  m["sched.v1.CheckpointService/FindMissingChunks"] = {Unary<KS>(&KS::Stub::FindMissingChunks),
                                                       kAgents, kNodes};
  m["sched.v1.CheckpointService/PutChunks"] = {[](const std::shared_ptr<grpc::Channel>& ch) {
                                                 auto stub = KS::NewStub(ch);
                                                 grpc::ClientContext ctx;
                                                 ShortDeadline(ctx);
                                                 v1::PutChunksResponse resp;
                                                 auto writer = stub->PutChunks(&ctx, &resp);
                                                 writer->WritesDone();
                                                 return writer->Finish();
                                               },
                                               kAgents, kNodes};
  m["sched.v1.CheckpointService/CommitCheckpoint"] = {Unary<KS>(&KS::Stub::CommitCheckpoint),
                                                      kAgents, kNodes};
  m["sched.v1.CheckpointService/ListCheckpoints"] = {Unary<KS>(&KS::Stub::ListCheckpoints), kAll};
  m["sched.v1.CheckpointService/GetCheckpoint"] = {
      ServerStream<KS>(&KS::Stub::GetCheckpoint),
      {Who::kAdmin, Who::kMember, Who::kViewer, Who::kAgent},
      std::set<Who>{Who::kAdmin, Who::kMember, Who::kViewer, Who::kNode}};
  m["sched.v1.AgentService/Connect"] = {[](const std::shared_ptr<grpc::Channel>& ch) {
                                          auto stub = v1::AgentService::NewStub(ch);
                                          grpc::ClientContext ctx;
                                          ShortDeadline(ctx);
                                          auto stream = stub->Connect(&ctx);
                                          stream->WritesDone();
                                          v1::ServerMessage msg;
                                          while (stream->Read(&msg)) {
                                          }
                                          return stream->Finish();
                                        },
                                        kAgents, kNodes};
  auto join = [](v1::JoinRequest& r) { r.set_node_name("node-x"); };
  m["sched.v1.AgentService/Join"] = {Unary<v1::AgentService>(&v1::AgentService::Stub::Join, {join}),
                                     kAgents, std::set<Who>{Who::kAdmin, Who::kAgent}};
  m["sched.v1.AgentService/RenewCertificate"] = {
      Unary<v1::AgentService>(&v1::AgentService::Stub::RenewCertificate), kAgents,
      std::set<Who>{Who::kNode}};
  m["sched.v1.NodeService/RevokeNode"] = {Unary<NS>(&NS::Stub::RevokeNode), kAdmin};
  m["sched.v1.TokenService/CreateToken"] = {
      Unary<TS>(&TS::Stub::CreateToken,
                {[](v1::CreateTokenRequest& r) { r.set_role(v1::ROLE_VIEWER); }}),
      kAdmin};
  m["sched.v1.TokenService/ListTokens"] = {Unary<TS>(&TS::Stub::ListTokens), kAdmin};
  m["sched.v1.TokenService/RevokeToken"] = {Unary<TS>(&TS::Stub::RevokeToken), kAdmin};
  m["sched.v1.AdminService/Backup"] = {
      Unary<v1::AdminService>(&v1::AdminService::Stub::Backup), kAdmin};
  return m;
}

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool IsAuthCode(grpc::StatusCode c) {
  return c == grpc::StatusCode::UNAUTHENTICATED || c == grpc::StatusCode::PERMISSION_DENIED;
}

// Run without TLS (loopback, tokens required) and with TLS (agents join for certificates).
class AuthTest : public ::testing::TestWithParam<bool> {
 protected:
  bool tls() const { return GetParam(); }

  void SetUp() override {
    dir_ = testing::MakeTempDir("sched_auth_");
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    absl::StatusOr<std::string> admin = auth::ReadTokenFile(daemon_->admin_token_path());
    ASSERT_TRUE(admin.ok()) << admin.status();
    tokens_[v1::ROLE_ADMIN] = *admin;
    tokens_[v1::ROLE_MEMBER] = Make(v1::ROLE_MEMBER, {"alpha"});
    tokens_[v1::ROLE_VIEWER] = Make(v1::ROLE_VIEWER, {});
    tokens_[v1::ROLE_AGENT] = Make(v1::ROLE_AGENT, {});
    if (tls()) ASSERT_NO_FATAL_FAILURE(node_ = JoinAs("node-1", tokens_[v1::ROLE_AGENT]));
  }

  // Joins as `node` with `token` and writes the node's key, certificate and CA bundle under
  // dir_/<node>: a channel that presents them.
  std::shared_ptr<grpc::Channel> JoinAs(const std::string& node, const std::string& token,
                                        grpc::StatusCode want = grpc::StatusCode::OK) {
    absl::StatusOr<auth::KeyAndRequest> kr = auth::MakeNodeKeyAndRequest(node);
    EXPECT_TRUE(kr.ok());
    auto stub = v1::AgentService::NewStub(As(token));
    grpc::ClientContext ctx;
    v1::JoinRequest req;
    req.set_node_name(node);
    req.set_csr_pem(kr->csr_pem);
    v1::NodeCertificate cert;
    const grpc::Status s = stub->Join(&ctx, req, &cert);
    EXPECT_EQ(s.error_code(), want) << s.error_message();
    if (!s.ok()) return nullptr;
    return WithCertificate(node, kr->key_pem, cert.certificate_pem(), cert.ca_pem());
  }

  std::shared_ptr<grpc::Channel> WithCertificate(const std::string& name, const std::string& key,
                                                 const std::string& cert, const std::string& ca) {
    const fs::path d = fs::path(dir_) / name;
    fs::create_directories(d);
    std::ofstream(d / "node.key") << key;
    std::ofstream(d / "node.crt") << cert;
    std::ofstream(d / "ca.crt") << ca;
    auth::DialOptions o;
    o.cert_file = (d / "node.crt").string();
    o.key_file = (d / "node.key").string();
    o.ca_file = (d / "ca.crt").string();
    grpc::ChannelArguments args;
    args.SetInt("sched.test.channel", ++channels_);  // a connection of its own
    return auth::Dial(address_, o, args);
  }

  std::shared_ptr<grpc::Channel> Caller(Who who) {
    switch (who) {
      case Who::kAdmin:
        return As(tokens_[v1::ROLE_ADMIN]);
      case Who::kMember:
        return As(tokens_[v1::ROLE_MEMBER]);
      case Who::kViewer:
        return As(tokens_[v1::ROLE_VIEWER]);
      case Who::kAgent:
        return As(tokens_[v1::ROLE_AGENT]);
      case Who::kNode:
        return node_;
    }
    return nullptr;
  }
  void TearDown() override {
    daemon_.reset();
    fs::remove_all(dir_);
  }

  void StartDaemon(bool rotate_ca = false) {
    DaemonOptions o;
    o.listen = "127.0.0.1:0";
    o.metrics_listen = "";
    o.data_dir = dir_ + "/schedd";
    o.require_tokens = true;
    o.tls = tls() ? "on" : "off";
    o.rotate_ca = rotate_ca;
    auto d = Daemon::Start(o, &store_, &clock_);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    address_ = absl::StrCat("127.0.0.1:", daemon_->port());
  }

  std::string Make(v1::Role role, std::vector<std::string> projects, int64_t uses = 0,
                   absl::Duration ttl = absl::ZeroDuration()) {
    v1::CreateTokenRequest req;
    req.set_role(role);
    for (auto& p : projects) req.add_projects(p);
    req.set_uses(uses);
    req.mutable_ttl()->set_seconds(absl::ToInt64Seconds(ttl));
    auto made = daemon_->tokens()->Create(req, "test");
    EXPECT_TRUE(made.ok()) << made.status();
    return made.ok() ? made->secret() : "";
  }

  std::shared_ptr<grpc::Channel> As(const std::string& token) {
    auth::DialOptions o;
    o.token = token;
    if (tls()) o.ca_pem = daemon_->ca_pem();
    grpc::ChannelArguments args;
    args.SetInt("sched.test.channel", ++channels_);
    return auth::Dial(address_, o, args);
  }

  // A job in `project`, submitted as admin.
  std::string Submit(const std::string& project) {
    auto stub = v1::JobService::NewStub(As(tokens_[v1::ROLE_ADMIN]));
    grpc::ClientContext ctx;
    v1::SubmitJobRequest req;
    req.mutable_spec()->set_name("j");
    req.mutable_spec()->set_project(project);
    req.mutable_spec()->set_run("true");
    v1::SubmitJobResponse resp;
    const grpc::Status s = stub->SubmitJob(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.job().id();
  }

  std::string dir_;
  MemoryStore store_;
  FakeClock clock_;
  std::unique_ptr<Daemon> daemon_;
  std::string address_;
  std::map<v1::Role, std::string> tokens_;
  std::shared_ptr<grpc::Channel> node_;  // over TLS: node-1's certificate
  int channels_ = 0;
};

INSTANTIATE_TEST_SUITE_P(PlainAndTls, AuthTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? "Tls" : "Plain";
                         });

// The table covers every method sched.v1 has: a method added without a line here fails.
TEST_P(AuthTest, TheTableNamesEveryMethodOfEveryService) {
  const std::map<std::string, MethodCase> methods = Methods();
  std::set<std::string> in_protos;
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const auto& entry : fs::directory_iterator(fs::path(SCHED_SOURCE_DIR) / "proto/sched/v1")) {
    if (entry.path().extension() != ".proto") continue;
    const auto* file = pool->FindFileByName("sched/v1/" + entry.path().filename().string());
    ASSERT_NE(file, nullptr) << entry.path();
    for (int i = 0; i < file->service_count(); ++i) {
      for (int j = 0; j < file->service(i)->method_count(); ++j) {
        const auto* m = file->service(i)->method(j);
        in_protos.insert(absl::StrCat(file->service(i)->full_name(), "/", m->name()));
      }
    }
  }
  std::set<std::string> in_table;
  for (const auto& [name, c] : methods) in_table.insert(name);
  EXPECT_EQ(in_table, in_protos);
  EXPECT_EQ(in_protos.size(), 30u);
}

TEST_P(AuthTest, EveryMethodTimesEveryRole) {
  int checked = 0;
  const std::map<std::string, MethodCase> methods = Methods();
  for (const auto& [name, c] : methods) {
    const std::set<Who>& allowed = tls() && c.tls_allowed ? *c.tls_allowed : c.allowed;
    for (Who who : kEveryone) {
      if (who == Who::kNode && !tls()) continue;
      const grpc::Status s = c.call(Caller(who));
      if (allowed.count(who) > 0) {
        EXPECT_FALSE(IsAuthCode(s.error_code()))
            << name << " as " << Name(who) << ": " << s.error_code() << " " << s.error_message();
      } else {
        EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
            << name << " as " << Name(who) << ": " << s.error_message();
        EXPECT_THAT(s.error_message(), HasSubstr(who == Who::kNode ? "node-1" : "")) << name;
      }
      ++checked;
    }
    // No token, and a token schedd never made: refused before anything else.
    const grpc::Status none = c.call(As(""));
    EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED) << name;
    const grpc::Status forged = c.call(As(std::string(16, 'a') + "." + std::string(64, 'b')));
    EXPECT_EQ(forged.error_code(), grpc::StatusCode::UNAUTHENTICATED) << name;
  }
  EXPECT_EQ(checked, static_cast<int>(methods.size()) * (tls() ? 5 : 4));
}

TEST_P(AuthTest, MembersAndScopedViewersActOnlyInTheirProjects) {
  const std::string alpha = Submit("alpha");
  const std::string beta = Submit("beta");
  const std::string viewer_beta = Make(v1::ROLE_VIEWER, {"beta"});
  auto member = v1::JobService::NewStub(As(tokens_[v1::ROLE_MEMBER]));
  {
    grpc::ClientContext ctx;
    v1::SubmitJobRequest req;
    req.mutable_spec()->set_name("j");
    req.mutable_spec()->set_project("beta");
    req.mutable_spec()->set_run("true");
    v1::SubmitJobResponse resp;
    const grpc::Status s = member->SubmitJob(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_THAT(s.error_message(), HasSubstr("in project beta"));
  }
  {
    grpc::ClientContext ctx;
    v1::GetJobRequest req;
    req.set_job_id(beta);
    v1::Job job;
    EXPECT_EQ(member->GetJob(&ctx, req, &job).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext ctx;
    v1::GetJobRequest req;
    req.set_job_id(alpha);
    v1::Job job;
    EXPECT_TRUE(member->GetJob(&ctx, req, &job).ok());
    EXPECT_EQ(job.id(), alpha);
  }
  {
    grpc::ClientContext ctx;
    v1::CancelJobRequest req;
    req.set_job_id(beta);
    v1::Job job;
    EXPECT_EQ(member->CancelJob(&ctx, req, &job).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext ctx;
    v1::GetJobLogsRequest req;
    req.set_job_id(beta);
    auto reader = member->GetJobLogs(&ctx, req);
    v1::LogChunk chunk;
    while (reader->Read(&chunk)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  // Listing: only the caller's projects, whatever it asks for.
  auto ids = [&](const std::string& token, const std::string& project) {
    auto stub = v1::JobService::NewStub(As(token));
    grpc::ClientContext ctx;
    v1::ListJobsRequest req;
    req.set_project(project);
    v1::ListJobsResponse resp;
    const grpc::Status s = stub->ListJobs(&ctx, req, &resp);
    std::set<std::string> out;
    for (const auto& j : resp.jobs()) out.insert(j.id());
    return std::make_pair(s.error_code(), out);
  };
  EXPECT_EQ(ids(tokens_[v1::ROLE_MEMBER], ""),
            std::make_pair(grpc::StatusCode::OK, std::set<std::string>{alpha}));
  EXPECT_EQ(ids(tokens_[v1::ROLE_MEMBER], "beta").first, grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(ids(viewer_beta, ""),
            std::make_pair(grpc::StatusCode::OK, std::set<std::string>{beta}));
  EXPECT_EQ(ids(tokens_[v1::ROLE_VIEWER], ""),
            std::make_pair(grpc::StatusCode::OK, std::set<std::string>{alpha, beta}));
  // Nothing was cancelled by the refused calls.
  auto admin = v1::JobService::NewStub(As(tokens_[v1::ROLE_ADMIN]));
  grpc::ClientContext ctx;
  v1::GetJobRequest req;
  req.set_job_id(beta);
  v1::Job job;
  ASSERT_TRUE(admin->GetJob(&ctx, req, &job).ok());
  EXPECT_NE(job.state(), v1::JOB_STATE_CANCELLED);
}

TEST_P(AuthTest, RevokedExpiredAndUsedUpTokensStopWorking) {
  auto list = [&](const std::string& token) {
    auto stub = v1::NodeService::NewStub(As(token));
    grpc::ClientContext ctx;
    v1::ListNodesResponse resp;
    return stub->ListNodes(&ctx, v1::ListNodesRequest(), &resp).error_code();
  };
  const std::string viewer = Make(v1::ROLE_VIEWER, {});
  EXPECT_EQ(list(viewer), grpc::StatusCode::OK);
  {
    auto stub = v1::TokenService::NewStub(As(tokens_[v1::ROLE_ADMIN]));
    grpc::ClientContext ctx;
    v1::RevokeTokenRequest req;
    req.set_id(viewer.substr(0, viewer.find('.')));
    v1::Token t;
    ASSERT_TRUE(stub->RevokeToken(&ctx, req, &t).ok());
    EXPECT_TRUE(t.revoked());
  }
  EXPECT_EQ(list(viewer), grpc::StatusCode::UNAUTHENTICATED);

  const std::string brief = Make(v1::ROLE_VIEWER, {}, 0, absl::Hours(1));
  EXPECT_EQ(list(brief), grpc::StatusCode::OK);
  clock_.Advance(absl::Hours(1));
  EXPECT_EQ(list(brief), grpc::StatusCode::UNAUTHENTICATED);

  // The right id with a wrong secret.
  std::string wrong = tokens_[v1::ROLE_ADMIN];
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  EXPECT_EQ(list(wrong), grpc::StatusCode::UNAUTHENTICATED);

  // An agent token good for one join (over TLS; without it joins are not counted): a refused
  // join costs nothing, the second real one is refused.
  const std::string once = Make(v1::ROLE_AGENT, {}, 1);
  if (tls()) {
    EXPECT_EQ(JoinAs("bad name!", once, grpc::StatusCode::INVALID_ARGUMENT), nullptr);
    {
      auto stub = v1::AgentService::NewStub(As(once));
      grpc::ClientContext ctx;
      v1::JoinRequest req;
      req.set_node_name("node-7");
      req.set_csr_pem("not a request");
      v1::NodeCertificate cert;
      EXPECT_EQ(stub->Join(&ctx, req, &cert).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    }
    EXPECT_NE(JoinAs("node-7", once), nullptr);
    EXPECT_EQ(JoinAs("node-8", once, grpc::StatusCode::UNAUTHENTICATED), nullptr);
  } else {
    const Call connect = Methods()["sched.v1.AgentService/Connect"].call;
    EXPECT_FALSE(IsAuthCode(connect(As(once)).error_code()));
    EXPECT_FALSE(IsAuthCode(connect(As(once)).error_code()));
  }
}

TEST_P(AuthTest, TokensSurviveARestartAndOnlyTheirHashIsKept) {
  const std::string member = Make(v1::ROLE_MEMBER, {"alpha"});
  const std::string secret = member.substr(member.find('.') + 1);
  auto rows = store_.ScanRecords("a/t/");
  ASSERT_TRUE(rows.ok());
  for (const auto& [key, value] : *rows) EXPECT_EQ(value.find(secret), std::string::npos) << key;
  daemon_.reset();
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  auto stub = v1::JobService::NewStub(As(member));
  grpc::ClientContext ctx;
  v1::ListJobsResponse resp;
  EXPECT_TRUE(stub->ListJobs(&ctx, v1::ListJobsRequest(), &resp).ok());
  // The first admin token was made once: the file still holds a working one.
  EXPECT_EQ(*auth::ReadTokenFile(daemon_->admin_token_path()), tokens_[v1::ROLE_ADMIN]);
  EXPECT_EQ(fs::status(daemon_->admin_token_path()).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
}

TEST_P(AuthTest, BadTokenRequestsAreRefusedAndMakeNothing) {
  auto stub = v1::TokenService::NewStub(As(tokens_[v1::ROLE_ADMIN]));
  auto create = [&](std::function<void(v1::CreateTokenRequest&)> fill) {
    grpc::ClientContext ctx;
    v1::CreateTokenRequest req;
    fill(req);
    v1::CreateTokenResponse resp;
    return stub->CreateToken(&ctx, req, &resp);
  };
  const size_t before = daemon_->tokens()->List().size();
  EXPECT_EQ(create([](auto& r) {}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(create([](auto& r) { r.set_role(static_cast<v1::Role>(99)); }).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(create([](auto& r) { r.set_role(v1::ROLE_MEMBER); }).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(create([](auto& r) {
              r.set_role(v1::ROLE_VIEWER);
              r.mutable_ttl()->set_seconds(-5);
            }).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(create([](auto& r) {
              r.set_role(v1::ROLE_AGENT);
              r.set_uses(-1);
            }).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Found by fuzzing: a ttl past what a time can hold made a token expired from the start.
  EXPECT_EQ(create([](auto& r) {
              r.set_role(v1::ROLE_VIEWER);
              r.mutable_ttl()->set_seconds(int64_t{1} << 50);
            }).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(create([](auto& r) {
              r.set_role(v1::ROLE_VIEWER);
              r.add_projects(std::string("bad\0name", 8));
            }).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(create([](auto& r) {
              r.set_role(v1::ROLE_VIEWER);
              (*r.mutable_labels())["gpu"] = "h100";
            }).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(daemon_->tokens()->List().size(), before);
  grpc::ClientContext ctx;
  v1::RevokeTokenRequest req;
  req.set_id("../../etc");
  v1::Token t;
  EXPECT_EQ(stub->RevokeToken(&ctx, req, &t).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_P(AuthTest, SecretValuesAreNeverShownBack) {
  auto stub = v1::JobService::NewStub(As(tokens_[v1::ROLE_ADMIN]));
  v1::SubmitJobRequest req;
  req.mutable_spec()->set_name("j");
  req.mutable_spec()->set_run("true");
  req.mutable_spec()->set_project("alpha");
  v1::EnvVar* secret = req.mutable_spec()->add_env();
  secret->set_name("HF_TOKEN");
  secret->set_value("hf_abcdef99");
  secret->set_secret(true);
  v1::EnvVar* plain = req.mutable_spec()->add_env();
  plain->set_name("PUBLIC");
  plain->set_value("visible");
  auto check = [](const v1::Job& job, const std::string& where) {
    ASSERT_EQ(job.spec().env_size(), 2) << where;
    EXPECT_EQ(job.spec().env(0).name(), "HF_TOKEN") << where;
    EXPECT_TRUE(job.spec().env(0).secret()) << where;
    EXPECT_EQ(job.spec().env(0).value(), "") << where;
    EXPECT_EQ(job.spec().env(1).value(), "visible") << where;
    EXPECT_EQ(job.DebugString().find("hf_abcdef99"), std::string::npos) << where;
  };
  v1::SubmitJobResponse submitted;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->SubmitJob(&ctx, req, &submitted).ok());
  }
  check(submitted.job(), "SubmitJob");
  {
    grpc::ClientContext ctx;
    v1::GetJobRequest get;
    get.set_job_id(submitted.job().id());
    v1::Job job;
    ASSERT_TRUE(stub->GetJob(&ctx, get, &job).ok());
    check(job, "GetJob");
  }
  {
    grpc::ClientContext ctx;
    v1::ListJobsResponse list;
    ASSERT_TRUE(stub->ListJobs(&ctx, v1::ListJobsRequest(), &list).ok());
    ASSERT_EQ(list.jobs_size(), 1);
    check(list.jobs(0), "ListJobs");
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::WatchJobsRequest watch;
    auto reader = stub->WatchJobs(&ctx, watch);
    v1::WatchJobsResponse first;
    ASSERT_TRUE(reader->Read(&first));
    check(first.job(), "WatchJobs");
    ctx.TryCancel();
    reader->Finish().ok();
  }
  // schedd itself keeps the value: it is what the agent that runs the job is given.
  absl::StatusOr<Job> kept = daemon_->scheduler()->GetJob(submitted.job().id());
  ASSERT_TRUE(kept.ok());
  ASSERT_EQ(kept->spec.env.size(), 2u);
  EXPECT_EQ(kept->spec.env[0].second, "hf_abcdef99");
  EXPECT_EQ(kept->spec.secret_env, std::vector<std::string>{"HF_TOKEN"});
}

TEST_P(AuthTest, TheAuditLogSaysWhoDidWhatAndNeverASecret) {
  const std::string member_id = tokens_[v1::ROLE_MEMBER].substr(0, 16);
  auto member = v1::JobService::NewStub(As(tokens_[v1::ROLE_MEMBER]));
  std::string job_id;
  {
    grpc::ClientContext ctx;
    v1::SubmitJobRequest req;
    req.mutable_spec()->set_name("j");
    req.mutable_spec()->set_project("alpha");
    req.mutable_spec()->set_run("true");
    v1::EnvVar* secret = req.mutable_spec()->add_env();
    secret->set_name("HF_TOKEN");
    secret->set_value("hf_abcdef99");
    secret->set_secret(true);
    v1::SubmitJobResponse resp;
    ASSERT_TRUE(member->SubmitJob(&ctx, req, &resp).ok());
    job_id = resp.job().id();
  }
  {
    grpc::ClientContext ctx;
    v1::CancelJobRequest req;
    req.set_job_id(job_id);
    v1::Job job;
    ASSERT_TRUE(member->CancelJob(&ctx, req, &job).ok());
  }
  // Refused: a viewer submitting, and a caller with no token.
  Methods()["sched.v1.JobService/SubmitJob"].call(As(tokens_[v1::ROLE_VIEWER]));
  Methods()["sched.v1.NodeService/ListNodes"].call(As(""));
  // Tokens made and revoked, a budget set.
  auto tokens = v1::TokenService::NewStub(As(tokens_[v1::ROLE_ADMIN]));
  v1::CreateTokenResponse made;
  {
    grpc::ClientContext ctx;
    v1::CreateTokenRequest req;
    req.set_role(v1::ROLE_VIEWER);
    ASSERT_TRUE(tokens->CreateToken(&ctx, req, &made).ok());
  }
  {
    grpc::ClientContext ctx;
    v1::RevokeTokenRequest req;
    req.set_id(made.token().id());
    v1::Token t;
    ASSERT_TRUE(tokens->RevokeToken(&ctx, req, &t).ok());
  }
  {
    auto cost = v1::CostService::NewStub(As(tokens_[v1::ROLE_ADMIN]));
    grpc::ClientContext ctx;
    v1::SetBudgetRequest req;
    req.set_project("alpha");
    req.set_monthly_limit(250);
    v1::Budget b;
    ASSERT_TRUE(cost->SetBudget(&ctx, req, &b).ok());
  }
  daemon_->audit()->Flush();
  std::ifstream in(dir_ + "/schedd/audit.log");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    EXPECT_THAT(line, ::testing::StartsWith("{\"time\":\"")) << line;
    EXPECT_THAT(line, ::testing::EndsWith("}")) << line;
    EXPECT_THAT(line, HasSubstr("\"peer\":\"ipv")) << line;
    lines.push_back(line);
  }
  auto has = [&](const std::vector<std::string>& parts) {
    for (const std::string& line : lines) {
      bool all = true;
      for (const std::string& p : parts) all = all && line.find(p) != std::string::npos;
      if (all) return true;
    }
    return false;
  };
  const std::string member_who = absl::StrCat("\"who\":\"token ", member_id, " (member)\"");
  EXPECT_TRUE(has({member_who, "\"action\":\"token_used\""}));
  EXPECT_TRUE(has({member_who, "\"action\":\"submit\"", "\"target\":\"job " + job_id,
                   "\"project\":\"alpha\"", "\"result\":\"ok\""}));
  EXPECT_TRUE(has({member_who, "\"action\":\"cancel\"", "\"target\":\"job " + job_id}));
  EXPECT_TRUE(has({"(viewer)", "\"action\":\"denied: submit\"", "PERMISSION_DENIED"}));
  EXPECT_TRUE(
      has({"\"who\":\"unauthenticated\"", "\"action\":\"denied: read\"", "UNAUTHENTICATED"}));
  EXPECT_TRUE(has({"(admin)", "\"action\":\"token_create viewer\"",
                   "\"target\":\"token " + made.token().id()}));
  EXPECT_TRUE(
      has({"(admin)", "\"action\":\"token_revoke\"", "\"target\":\"token " + made.token().id()}));
  EXPECT_TRUE(has({"(admin)", "\"action\":\"budget_set 250\"", "\"project\":\"alpha\""}));
  for (const std::string& line : lines) {
    EXPECT_EQ(line.find("hf_abcdef99"), std::string::npos) << line;
    EXPECT_EQ(line.find(made.secret().substr(17)), std::string::npos) << line;
  }
  struct stat st;
  ASSERT_EQ(stat((dir_ + "/schedd/audit.log").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

}  // namespace
}  // namespace sched

namespace sched {
namespace {

// Over TLS: an agent's certificate binds it to its node; revoking the node cuts it off at once;
// certificates from another CA, expired ones, and ones schedd did not issue are refused.
class NodeIdentityTest : public AuthTest {};

INSTANTIATE_TEST_SUITE_P(Tls, NodeIdentityTest, ::testing::Values(true));

// Opens a Connect stream as `name` and waits for the register ack: the stream, or null.
struct Connected {
  std::unique_ptr<grpc::ClientContext> ctx;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::ServerMessage>> stream;
  std::unique_ptr<v1::AgentService::Stub> stub;
};

Connected Register(const std::shared_ptr<grpc::Channel>& ch, const std::string& name) {
  Connected c;
  c.stub = v1::AgentService::NewStub(ch);
  c.ctx = std::make_unique<grpc::ClientContext>();
  c.ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  c.stream = c.stub->Connect(c.ctx.get());
  v1::AgentMessage reg;
  reg.mutable_register_()->set_node_name(name);
  reg.mutable_register_()->mutable_capabilities()->set_cpus(1);
  reg.mutable_register_()->mutable_capabilities()->set_memory_bytes(int64_t{1} << 30);
  c.stream->Write(reg);
  return c;
}

TEST_P(NodeIdentityTest, AnAgentActsOnlyAsTheNodeItsCertificateNames) {
  // As another node: the stream is refused.
  Connected other = Register(node_, "node-2");
  v1::ServerMessage msg;
  EXPECT_FALSE(other.stream->Read(&msg));
  grpc::Status s = other.stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("may not act as node node-2"));
  // As itself: registered.
  Connected self = Register(node_, "node-1");
  ASSERT_TRUE(self.stream->Read(&msg));
  EXPECT_TRUE(msg.has_register_ack());
  // A checkpoint upload naming another node: refused before the lease is even looked at.
  auto ks = v1::CheckpointService::NewStub(node_);
  grpc::ClientContext ctx;
  v1::FindMissingChunksRequest ask;
  ask.mutable_uploader()->set_job_id("j");
  ask.mutable_uploader()->set_epoch(1);
  ask.mutable_uploader()->set_node_name("node-2");
  v1::FindMissingChunksResponse missing;
  s = ks->FindMissingChunks(&ctx, ask, &missing);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  self.ctx->TryCancel();
}

TEST_P(NodeIdentityTest, RevokingANodeCutsItOffAtOnceAndAnOldTokenCannotBringItBack) {
  Connected live = Register(node_, "node-1");
  v1::ServerMessage msg;
  ASSERT_TRUE(live.stream->Read(&msg));
  auto ns = v1::NodeService::NewStub(As(tokens_[v1::ROLE_ADMIN]));
  {
    grpc::ClientContext ctx;
    v1::RevokeNodeRequest req;
    req.set_name("node-1");
    v1::RevokeNodeResponse resp;
    const grpc::Status s = ns->RevokeNode(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.streams_closed(), 1u);
  }
  // The open stream ends at once, with the reason.
  while (live.stream->Read(&msg)) {
  }
  const grpc::Status ended = live.stream->Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(ended.error_message(), HasSubstr("revoked"));
  // Its certificate no longer works for anything.
  Connected again = Register(node_, "node-1");
  EXPECT_FALSE(again.stream->Read(&msg));
  EXPECT_EQ(again.stream->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // The token it joined with was made before the revocation: no way back with it.
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(JoinAs("node-1", tokens_[v1::ROLE_AGENT], grpc::StatusCode::PERMISSION_DENIED),
            nullptr);
  // Another node may still join with it; node-1 comes back with a new token.
  EXPECT_NE(JoinAs("node-3", tokens_[v1::ROLE_AGENT]), nullptr);
  auto back = JoinAs("node-1", Make(v1::ROLE_AGENT, {}));
  ASSERT_NE(back, nullptr);
  Connected fresh = Register(back, "node-1");
  ASSERT_TRUE(fresh.stream->Read(&msg));
  EXPECT_TRUE(msg.has_register_ack());
  fresh.ctx->TryCancel();
  // An unknown node is NOT_FOUND.
  grpc::ClientContext ctx;
  v1::RevokeNodeRequest req;
  req.set_name("nobody");
  v1::RevokeNodeResponse resp;
  EXPECT_EQ(ns->RevokeNode(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_P(NodeIdentityTest, ForeignExpiredAndUnissuedCertificatesAreRefused) {
  auto list = [](const std::shared_ptr<grpc::Channel>& ch) {
    auto ks = v1::CheckpointService::NewStub(ch);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::FindMissingChunksRequest ask;
    v1::FindMissingChunksResponse missing;
    return ks->FindMissingChunks(&ctx, ask, &missing).error_code();
  };
  // The real one is accepted (and then the empty request is refused on its merits).
  EXPECT_EQ(list(node_), grpc::StatusCode::INVALID_ARGUMENT);
  const std::string ca = daemon_->ca_pem();
  absl::StatusOr<auth::KeyAndRequest> kr = auth::MakeNodeKeyAndRequest("node-1");
  ASSERT_TRUE(kr.ok());
  // From another CA: the handshake fails.
  auth::TlsOptions stranger;
  stranger.dir = dir_ + "/stranger";
  ASSERT_TRUE(auth::LoadOrCreateServerTls(stranger).ok());
  absl::StatusOr<std::string> foreign =
      auth::SignNodeCertificate(stranger.dir, kr->csr_pem, "node-1");
  ASSERT_TRUE(foreign.ok());
  EXPECT_EQ(list(WithCertificate("foreign", kr->key_pem, *foreign, ca)),
            grpc::StatusCode::UNAVAILABLE);
  // Signed by schedd's CA but expired: the handshake fails.
  absl::StatusOr<std::string> expired =
      auth::SignNodeCertificate(daemon_->tls_dir(), kr->csr_pem, "node-1", absl::ZeroDuration());
  ASSERT_TRUE(expired.ok());
  EXPECT_EQ(list(WithCertificate("expired", kr->key_pem, *expired, ca)),
            grpc::StatusCode::UNAVAILABLE);
  // Signed by schedd's CA, valid, but never issued through a join (a copied CA key, a restored
  // backup): refused by schedd.
  absl::StatusOr<std::string> unissued =
      auth::SignNodeCertificate(daemon_->tls_dir(), kr->csr_pem, "node-1");
  ASSERT_TRUE(unissued.ok());
  EXPECT_EQ(list(WithCertificate("unissued", kr->key_pem, *unissued, ca)),
            grpc::StatusCode::UNAUTHENTICATED);
  // The server is unharmed: the real node still works.
  EXPECT_EQ(list(node_), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(NodeIdentityTest, ANodeRenewsItsCertificateWithTheOldOne) {
  absl::StatusOr<auth::KeyAndRequest> kr = auth::MakeNodeKeyAndRequest("node-1");
  ASSERT_TRUE(kr.ok());
  auto stub = v1::AgentService::NewStub(node_);
  grpc::ClientContext ctx;
  v1::RenewCertificateRequest req;
  req.set_csr_pem(kr->csr_pem);
  v1::NodeCertificate cert;
  const grpc::Status s = stub->RenewCertificate(&ctx, req, &cert);
  ASSERT_TRUE(s.ok()) << s.error_message();
  absl::StatusOr<auth::CertificateInfo> info = auth::ReadCertificate(cert.certificate_pem());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->common_name, "node:node-1");
  EXPECT_GT(absl::FromUnixSeconds(cert.expire_time().seconds()),
            absl::Now() + auth::kNodeCertLifetime - absl::Hours(24));
  // The renewed certificate works.
  auto renewed = WithCertificate("renewed", kr->key_pem, cert.certificate_pem(), cert.ca_pem());
  Connected c = Register(renewed, "node-1");
  v1::ServerMessage msg;
  ASSERT_TRUE(c.stream->Read(&msg));
  EXPECT_TRUE(msg.has_register_ack());
  c.ctx->TryCancel();
}

}  // namespace
}  // namespace sched

namespace sched::auth {
namespace {

TEST(AuditLogTest, LinesAreJsonWhateverTheNamesHoldAndGoOutInOrder) {
  AuditEntry e;
  e.who = "token \"x\" (admin)";
  e.action = "submit";
  e.target = "job a\nb\\c\x01";
  e.result = "ok";
  EXPECT_EQ(AuditLog::Format(e, absl::FromUnixMillis(1'764'164'401'123)),
            "{\"time\":\"2025-11-26T13:40:01.123Z\",\"who\":\"token \\\"x\\\" (admin)\","
            "\"action\":\"submit\",\"target\":\"job a\\nb\\\\c\\u0001\",\"result\":\"ok\"}");
  const std::string path = ::testing::TempDir() + "/audit_order.log";
  std::filesystem::remove(path);
  {
    absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(path);
    ASSERT_TRUE(log.ok());
    for (int i = 0; i < 1000; ++i) {
      AuditEntry n;
      n.who = "local";
      n.action = absl::StrCat("a", i);
      n.result = "ok";
      (*log)->Record(n);
    }
  }  // closing writes everything
  std::ifstream in(path);
  int i = 0;
  for (std::string line; std::getline(in, line); ++i) {
    EXPECT_THAT(line, HasSubstr(absl::StrCat("\"action\":\"a", i, "\""))) << line;
  }
  EXPECT_EQ(i, 1000);
}

}  // namespace
}  // namespace sched::auth

namespace sched {
namespace {

TEST_P(NodeIdentityTest, NoOneJoinsUnderALiveNodesNameAndTokenLabelsGoToTheNode) {
  // node-1 joined in SetUp and holds a live certificate: a second join under its name is refused
  // (it would take over its jobs) and costs the token nothing.
  const std::string once = Make(v1::ROLE_AGENT, {}, 1);
  EXPECT_EQ(JoinAs("node-1", once, grpc::StatusCode::ALREADY_EXISTS), nullptr);
  // The labels a join token carries are the node's, whatever the agent says of itself.
  v1::CreateTokenRequest req;
  req.set_role(v1::ROLE_AGENT);
  (*req.mutable_labels())["pool"] = "rented";
  auto made = daemon_->tokens()->Create(req, "test");
  ASSERT_TRUE(made.ok());
  auto labelled = JoinAs("node-9", made->secret());
  ASSERT_NE(labelled, nullptr);
  Connected c = Register(labelled, "node-9");
  v1::ServerMessage msg;
  ASSERT_TRUE(c.stream->Read(&msg));
  auto nodes = v1::NodeService::NewStub(As(tokens_[v1::ROLE_ADMIN]));
  grpc::ClientContext ctx;
  v1::GetNodeRequest get;
  get.set_name("node-9");
  v1::Node node;
  ASSERT_TRUE(nodes->GetNode(&ctx, get, &node).ok());
  EXPECT_EQ(node.capabilities().labels().at("pool"), "rented");
  c.ctx->TryCancel();
  // The one-join token is still good for a free name.
  EXPECT_NE(JoinAs("node-10", once), nullptr);
}

}  // namespace
}  // namespace sched

namespace sched {
namespace {

TEST_P(NodeIdentityTest, AfterACaRotationNodesAndClientsThatTrustTheOldCaKeepWorking) {
  const std::string old_ca = daemon_->ca_pem();
  const std::string old_pin = daemon_->ca_pin();
  daemon_.reset();
  ASSERT_NO_FATAL_FAILURE(StartDaemon(/*rotate_ca=*/true));
  EXPECT_NE(daemon_->ca_pin(), old_pin);
  // node-1, with its certificate from the old CA and trusting only the old CA: both ways work.
  auth::DialOptions node;
  node.cert_file = dir_ + "/node-1/node.crt";
  node.key_file = dir_ + "/node-1/node.key";
  node.ca_file = dir_ + "/node-1/ca.crt";
  ASSERT_EQ(Read(node.ca_file), old_ca);
  Connected c = Register(auth::Dial(address_, node), "node-1");
  v1::ServerMessage msg;
  ASSERT_TRUE(c.stream->Read(&msg)) << c.stream->Finish().error_message();
  EXPECT_TRUE(msg.has_register_ack());
  c.ctx->TryCancel();
  // Renewing brings the new CA: the bundle it returns trusts both.
  absl::StatusOr<auth::KeyAndRequest> kr = auth::MakeNodeKeyAndRequest("node-1");
  auto stub = v1::AgentService::NewStub(auth::Dial(address_, node));
  grpc::ClientContext ctx;
  v1::RenewCertificateRequest req;
  req.set_csr_pem(kr->csr_pem);
  v1::NodeCertificate cert;
  ASSERT_TRUE(stub->RenewCertificate(&ctx, req, &cert).ok());
  EXPECT_EQ(*auth::CertificatePin(cert.ca_pem()), daemon_->ca_pin());
  EXPECT_TRUE(auth::VerifyCertificate(cert.certificate_pem(), cert.ca_pem(), absl::Now()).ok());
  // A client holding the old ca.crt still reaches it.
  auth::DialOptions client;
  client.ca_pem = old_ca;
  client.token = tokens_[v1::ROLE_ADMIN];
  auto nodes = v1::NodeService::NewStub(auth::Dial(address_, client));
  grpc::ClientContext list_ctx;
  v1::ListNodesResponse resp;
  EXPECT_TRUE(nodes->ListNodes(&list_ctx, v1::ListNodesRequest(), &resp).ok());
}

}  // namespace
}  // namespace sched

namespace sched {
namespace {

TEST_P(NodeIdentityTest, TheAuditLogRecordsJoinsRenewalsCordonsDrainsAndRevocations) {
  std::shared_ptr<grpc::Channel> five = JoinAs("node-5", tokens_[v1::ROLE_AGENT]);
  ASSERT_NE(five, nullptr);
  Connected live = Register(five, "node-5");
  v1::ServerMessage msg;
  ASSERT_TRUE(live.stream->Read(&msg));
  {
    absl::StatusOr<auth::KeyAndRequest> kr = auth::MakeNodeKeyAndRequest("node-1");
    ASSERT_TRUE(kr.ok());
    auto stub = v1::AgentService::NewStub(node_);
    grpc::ClientContext ctx;
    v1::RenewCertificateRequest req;
    req.set_csr_pem(kr->csr_pem);
    v1::NodeCertificate cert;
    ASSERT_TRUE(stub->RenewCertificate(&ctx, req, &cert).ok());
  }
  auto ns = v1::NodeService::NewStub(As(tokens_[v1::ROLE_ADMIN]));
  {
    grpc::ClientContext ctx;
    v1::CordonRequest req;
    req.set_name("node-5");
    v1::Node node;
    ASSERT_TRUE(ns->Cordon(&ctx, req, &node).ok());
  }
  {
    grpc::ClientContext ctx;
    v1::DrainRequest req;
    req.set_name("node-5");
    v1::Node node;
    ASSERT_TRUE(ns->Drain(&ctx, req, &node).ok());
  }
  {
    grpc::ClientContext ctx;
    v1::RevokeNodeRequest req;
    req.set_name("node-5");
    v1::RevokeNodeResponse resp;
    ASSERT_TRUE(ns->RevokeNode(&ctx, req, &resp).ok());
  }
  while (live.stream->Read(&msg)) {
  }
  live.stream->Finish();
  daemon_->audit()->Flush();
  std::ifstream in(dir_ + "/schedd/audit.log");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  // The line of `action` on `target`, by `who`, with `result`: found once, in this order.
  size_t at = 0;
  auto next = [&](const std::string& who, const std::string& action, const std::string& target) {
    for (; at < lines.size(); ++at) {
      const std::string& l = lines[at];
      if (l.find("\"action\":\"" + action + "\"") != std::string::npos &&
          l.find("\"target\":\"" + target + "\"") != std::string::npos &&
          l.find(who) != std::string::npos && l.find("\"result\":\"ok\"") != std::string::npos) {
        return true;
      }
    }
    return false;
  };
  EXPECT_TRUE(next("(agent)", "node_join", "node node-5"));
  EXPECT_TRUE(next("\"who\":\"node node-1 (agent)\"", "node_renew", "node node-1"));
  EXPECT_TRUE(next("(admin)", "cordon", "node node-5"));
  EXPECT_TRUE(next("(admin)", "drain", "node node-5"));
  EXPECT_TRUE(next("(admin)", "node_revoke", "node node-5"));
}

}  // namespace
}  // namespace sched
