// Tokens and roles on a live schedd (in process, over loopback, tokens required): every RPC
// method of every sched.v1 service × every role, the project scoping of members and viewers,
// and the tokens that must not work (none, malformed, wrong secret, revoked, expired, joins
// used up).
#include "server/auth/auth.h"

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "sched/v1/agent_service.grpc.pb.h"
#include "sched/v1/checkpoint_service.grpc.pb.h"
#include "sched/v1/cost_service.grpc.pb.h"
#include "sched/v1/job_service.grpc.pb.h"
#include "sched/v1/node_service.grpc.pb.h"
#include "sched/v1/token_service.grpc.pb.h"
#include "server/auth/channel.h"
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

// Method full name ("sched.v1.JobService/SubmitJob") → how to call it, and the roles allowed.
struct MethodCase {
  Call call;
  std::set<v1::Role> allowed;
};

const std::set<v1::Role> kAll = {v1::ROLE_ADMIN, v1::ROLE_MEMBER, v1::ROLE_VIEWER};
const std::set<v1::Role> kWriters = {v1::ROLE_ADMIN, v1::ROLE_MEMBER};
const std::set<v1::Role> kAdmin = {v1::ROLE_ADMIN};
const std::set<v1::Role> kAgents = {v1::ROLE_ADMIN, v1::ROLE_AGENT};

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
                                                       kAgents};
  m["sched.v1.CheckpointService/PutChunks"] = {[](const std::shared_ptr<grpc::Channel>& ch) {
                                                 auto stub = KS::NewStub(ch);
                                                 grpc::ClientContext ctx;
                                                 ShortDeadline(ctx);
                                                 v1::PutChunksResponse resp;
                                                 auto writer = stub->PutChunks(&ctx, &resp);
                                                 writer->WritesDone();
                                                 return writer->Finish();
                                               },
                                               kAgents};
  m["sched.v1.CheckpointService/CommitCheckpoint"] = {Unary<KS>(&KS::Stub::CommitCheckpoint),
                                                      kAgents};
  m["sched.v1.CheckpointService/ListCheckpoints"] = {Unary<KS>(&KS::Stub::ListCheckpoints), kAll};
  m["sched.v1.CheckpointService/GetCheckpoint"] = {
      ServerStream<KS>(&KS::Stub::GetCheckpoint),
      {v1::ROLE_ADMIN, v1::ROLE_MEMBER, v1::ROLE_VIEWER, v1::ROLE_AGENT}};
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
                                        kAgents};
  m["sched.v1.TokenService/CreateToken"] = {
      Unary<TS>(&TS::Stub::CreateToken,
                {[](v1::CreateTokenRequest& r) { r.set_role(v1::ROLE_VIEWER); }}),
      kAdmin};
  m["sched.v1.TokenService/ListTokens"] = {Unary<TS>(&TS::Stub::ListTokens), kAdmin};
  m["sched.v1.TokenService/RevokeToken"] = {Unary<TS>(&TS::Stub::RevokeToken), kAdmin};
  return m;
}

bool IsAuthCode(grpc::StatusCode c) {
  return c == grpc::StatusCode::UNAUTHENTICATED || c == grpc::StatusCode::PERMISSION_DENIED;
}

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("sched_auth_");
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    absl::StatusOr<std::string> admin = auth::ReadTokenFile(daemon_->admin_token_path());
    ASSERT_TRUE(admin.ok()) << admin.status();
    tokens_[v1::ROLE_ADMIN] = *admin;
    tokens_[v1::ROLE_MEMBER] = Make(v1::ROLE_MEMBER, {"alpha"});
    tokens_[v1::ROLE_VIEWER] = Make(v1::ROLE_VIEWER, {});
    tokens_[v1::ROLE_AGENT] = Make(v1::ROLE_AGENT, {});
  }
  void TearDown() override {
    daemon_.reset();
    fs::remove_all(dir_);
  }

  void StartDaemon() {
    DaemonOptions o;
    o.listen = "127.0.0.1:0";
    o.metrics_listen = "";
    o.data_dir = dir_ + "/schedd";
    o.require_tokens = true;
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
    return auth::Dial(address_, auth::DialOptions{token});
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
};

// The table covers every method sched.v1 has: a method added without a line here fails.
TEST_F(AuthTest, TheTableNamesEveryMethodOfEveryService) {
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
  EXPECT_EQ(in_protos.size(), 25u);
}

TEST_F(AuthTest, EveryMethodTimesEveryRole) {
  int checked = 0;
  for (const auto& [name, c] : Methods()) {
    for (v1::Role role : {v1::ROLE_ADMIN, v1::ROLE_MEMBER, v1::ROLE_VIEWER, v1::ROLE_AGENT}) {
      const grpc::Status s = c.call(As(tokens_[role]));
      if (c.allowed.count(role) > 0) {
        EXPECT_FALSE(IsAuthCode(s.error_code())) << name << " as " << auth::RoleName(role) << ": "
                                                 << s.error_code() << " " << s.error_message();
      } else {
        EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
            << name << " as " << auth::RoleName(role) << ": " << s.error_message();
        EXPECT_THAT(s.error_message(), HasSubstr(absl::StrCat("(", auth::RoleName(role), ")")));
      }
      ++checked;
    }
    // No token, and a token schedd never made: refused before anything else.
    const grpc::Status none = c.call(As(""));
    EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED) << name;
    const grpc::Status forged = c.call(As(std::string(16, 'a') + "." + std::string(64, 'b')));
    EXPECT_EQ(forged.error_code(), grpc::StatusCode::UNAUTHENTICATED) << name;
  }
  EXPECT_EQ(checked, 25 * 4);
}

TEST_F(AuthTest, MembersAndScopedViewersActOnlyInTheirProjects) {
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

TEST_F(AuthTest, RevokedExpiredAndUsedUpTokensStopWorking) {
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

  // An agent token good for one join: the second Connect is refused.
  const std::string once = Make(v1::ROLE_AGENT, {}, 1);
  const Call connect = Methods()["sched.v1.AgentService/Connect"].call;
  EXPECT_FALSE(IsAuthCode(connect(As(once)).error_code()));
  EXPECT_EQ(connect(As(once)).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(AuthTest, TokensSurviveARestartAndOnlyTheirHashIsKept) {
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

TEST_F(AuthTest, BadTokenRequestsAreRefusedAndMakeNothing) {
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

}  // namespace
}  // namespace sched
