// schedctl admin backup's server side: a running schedd copies its state into a new folder, and a
// second schedd started on that folder has every job, budget and token the first had.

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/ascii.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "sched/v1/admin_service.grpc.pb.h"
#include "sched/v1/cost_service.grpc.pb.h"
#include "sched/v1/job_service.grpc.pb.h"
#include "sched/v1/token_service.grpc.pb.h"
#include "server/daemon/daemon.h"
#include "server/store/memory_store.h"
#include "tests/testing/subprocess.h"

namespace sched {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::unique_ptr<Daemon> StartDaemon(const std::string& data_dir) {
  DaemonOptions o;
  o.data_dir = data_dir;
  o.listen = "127.0.0.1:0";
  o.metrics_listen = "";
  o.tls = "on";  // so there is a CA for the backup to carry
  o.require_tokens = true;
  absl::StatusOr<std::unique_ptr<Daemon>> d = Daemon::Start(o);
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? *std::move(d) : nullptr;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A client of `d` over its TLS, presenting its first admin token.
class Client {
 public:
  explicit Client(const Daemon& d, const std::string& ca_dir) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadFile(ca_dir + "/tls/ca.crt");
    channel_ =
        grpc::CreateChannel("localhost:" + std::to_string(d.port()), grpc::SslCredentials(ssl));
    token_ = std::string(absl::StripAsciiWhitespace(ReadFile(d.admin_token_path())));
  }
  void Prepare(grpc::ClientContext& ctx) const {
    ctx.AddMetadata("authorization", "Bearer " + token_);
  }
  std::shared_ptr<grpc::Channel> channel_;
  std::string token_;
};

TEST(BackupTest, ARunningSchedulersBackupStartsASecondOneWithEveryJob) {
  const std::string root = testing::MakeTempDir("sched_backup_");
  std::unique_ptr<Daemon> first = StartDaemon(root + "/data");
  ASSERT_NE(first, nullptr);
  Client client(*first, root + "/data");
  auto jobs = v1::JobService::NewStub(client.channel_);
  std::set<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    grpc::ClientContext ctx;
    client.Prepare(ctx);
    v1::SubmitJobRequest req;
    req.mutable_spec()->set_name("job-" + std::to_string(i));
    req.mutable_spec()->set_run("true");
    v1::SubmitJobResponse resp;
    ASSERT_TRUE(jobs->SubmitJob(&ctx, req, &resp).ok());
    ids.insert(resp.job().id());
  }
  {
    grpc::ClientContext ctx;
    client.Prepare(ctx);
    v1::SetBudgetRequest req;
    req.set_project("default");
    req.set_monthly_limit(42);
    v1::Budget budget;
    ASSERT_TRUE(v1::CostService::NewStub(client.channel_)->SetBudget(&ctx, req, &budget).ok());
  }
  auto admin = v1::AdminService::NewStub(client.channel_);
  auto backup = [&](const std::string& path, bool skip = false) {
    grpc::ClientContext ctx;
    client.Prepare(ctx);
    v1::BackupRequest req;
    req.set_path(path);
    req.set_skip_checkpoints(skip);
    v1::BackupResponse resp;
    grpc::Status s = admin->Backup(&ctx, req, &resp);
    return std::make_pair(s, resp);
  };
  const std::string copy = root + "/copy";
  auto [status, made] = backup(copy);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(made.path(), copy);
  EXPECT_EQ(made.jobs(), 50u);
  EXPECT_GT(made.store_bytes(), 0u);
  struct stat st {};
  ASSERT_EQ(stat(copy.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_TRUE(fs::exists(copy + "/tls/ca.key"));
  EXPECT_TRUE(fs::exists(copy + "/admin.token"));
  // Bad paths change nothing and say why.
  EXPECT_EQ(backup(copy).first.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(backup("relative/path").first.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  const auto missing = backup(root + "/no/such/parent");
  EXPECT_EQ(missing.first.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(missing.first.error_message(), HasSubstr("does not exist"));
  EXPECT_FALSE(fs::exists(root + "/no"));
  // The first schedd goes on, and what it does after the backup is not in the copy.
  {
    grpc::ClientContext ctx;
    client.Prepare(ctx);
    v1::SubmitJobRequest req;
    req.mutable_spec()->set_run("true");
    v1::SubmitJobResponse resp;
    ASSERT_TRUE(jobs->SubmitJob(&ctx, req, &resp).ok());
  }
  // A second schedd on the copy: every job, the budget, the same CA and admin token.
  std::unique_ptr<Daemon> second = StartDaemon(copy);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->ca_pin(), first->ca_pin());
  Client restored(*second, copy);
  EXPECT_EQ(restored.token_, client.token_);
  std::set<std::string> found;
  grpc::ClientContext ctx;
  restored.Prepare(ctx);
  v1::ListJobsRequest list;
  list.set_page_size(1000);
  v1::ListJobsResponse page;
  ASSERT_TRUE(v1::JobService::NewStub(restored.channel_)->ListJobs(&ctx, list, &page).ok());
  for (const v1::Job& job : page.jobs()) found.insert(job.id());
  EXPECT_EQ(found, ids);
  grpc::ClientContext bctx;
  restored.Prepare(bctx);
  v1::GetBudgetRequest get;
  get.set_project("default");
  v1::Budget budget;
  ASSERT_TRUE(v1::CostService::NewStub(restored.channel_)->GetBudget(&bctx, get, &budget).ok());
  EXPECT_EQ(budget.monthly_limit(), 42);
}

TEST(BackupTest, AStoreKeptInMemoryHasNothingToBackUp) {
  const std::string root = testing::MakeTempDir("sched_backup_mem_");
  MemoryStore store;
  FakeClock clock;
  DaemonOptions o;
  o.data_dir = root;
  o.listen = "127.0.0.1:0";
  o.metrics_listen = "";
  absl::StatusOr<std::unique_ptr<Daemon>> d = Daemon::Start(o, &store, &clock);
  ASSERT_TRUE(d.ok()) << d.status();
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string((*d)->port()),
                                     grpc::InsecureChannelCredentials());
  grpc::ClientContext ctx;
  v1::BackupRequest req;
  req.set_path(root + "/copy");
  v1::BackupResponse resp;
  const grpc::Status s = v1::AdminService::NewStub(channel)->Backup(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_FALSE(fs::exists(root + "/copy"));
}

}  // namespace
}  // namespace sched
