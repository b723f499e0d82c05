// schedctl run in-process against fake JobService, NodeService, CheckpointService and
// TokenService on a loopback port, plaintext or (SchedctlTlsTest) TLS with a CA of its own.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "client/job_spec_yaml.h"
#include "client/schedctl.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "sched/v1/checkpoint_service.grpc.pb.h"
#include "sched/v1/job_service.grpc.pb.h"
#include "sched/v1/node_service.grpc.pb.h"
#include "sched/v1/token_service.grpc.pb.h"
#include "server/auth/tls.h"
#include "server/checkpoint/checkpoint_files.h"
#include "tests/client/sample_resources.h"
#include "yaml-cpp/yaml.h"

namespace sched::client {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using namespace sched::v1;  // NOLINT: the test speaks the API's types throughout.

Job MakeJob(const std::string& id, JobState state) {
  Job job = testing::RunningJob();
  job.set_id(id);
  job.set_state(state);
  return job;
}

// Answers from what a test put in; records every request. Thread-safe.
class FakeJobService final : public JobService::Service {
 public:
  grpc::Status SubmitJob(grpc::ServerContext*, const SubmitJobRequest* request,
                         SubmitJobResponse* response) override {
    absl::MutexLock lock(&mu_);
    submits_.push_back(*request);
    if (submit_failures_left_ > 0) {
      --submit_failures_left_;
      return submit_error_;
    }
    Job& job = *response->mutable_job();
    job.set_id("00000000000000a1");
    *job.mutable_spec() = request->spec();
    job.set_request_id(request->request_id());
    response->set_existing(existing_);
    return grpc::Status::OK;
  }

  grpc::Status GetJob(grpc::ServerContext*, const GetJobRequest* request, Job* job) override {
    absl::MutexLock lock(&mu_);
    for (const ListJobsResponse& page : pages_) {
      for (const Job& j : page.jobs()) {
        if (j.id().rfind(request->job_id(), 0) == 0) {
          *job = j;
          return grpc::Status::OK;
        }
      }
    }
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "job " + request->job_id() + " not found");
  }

  // Page i answers page token "" (i = 0) or "p<i>".
  grpc::Status ListJobs(grpc::ServerContext*, const ListJobsRequest* request,
                        ListJobsResponse* response) override {
    absl::MutexLock lock(&mu_);
    list_requests_.push_back(*request);
    for (size_t i = 0; i < pages_.size(); ++i) {
      if (request->page_token() == (i == 0 ? "" : "p" + std::to_string(i))) {
        *response = pages_[i];
        if (i + 1 < pages_.size()) response->set_next_page_token("p" + std::to_string(i + 1));
        return grpc::Status::OK;
      }
    }
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad page token");
  }

  grpc::Status CancelJob(grpc::ServerContext*, const CancelJobRequest* request, Job* job) override {
    absl::MutexLock lock(&mu_);
    cancels_.push_back(*request);
    *job = MakeJob("abc1234500000000", JOB_STATE_CANCELLED);
    return grpc::Status::OK;
  }

  grpc::Status WatchJobs(grpc::ServerContext*, const WatchJobsRequest* request,
                         grpc::ServerWriter<WatchJobsResponse>* writer) override {
    return Replay(*request, watches_, changes_, *writer);
  }

  grpc::Status GetJobLogs(grpc::ServerContext*, const GetJobLogsRequest* request,
                          grpc::ServerWriter<LogChunk>* writer) override {
    return Replay(*request, log_requests_, chunks_, *writer);
  }

  // Records `request` and writes the canned `messages`, then ends the stream OK.
  template <typename Request, typename Response>
  grpc::Status Replay(const Request& request, std::vector<Request>& requests,
                      const std::vector<Response>& messages, grpc::ServerWriter<Response>& writer) {
    std::vector<Response> copy;
    {
      absl::MutexLock lock(&mu_);
      requests.push_back(request);
      copy = messages;
    }
    for (const Response& message : copy) writer.Write(message);
    return grpc::Status::OK;
  }

  mutable absl::Mutex mu_;
  int submit_failures_left_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::Status submit_error_ ABSL_GUARDED_BY(mu_){grpc::StatusCode::UNAVAILABLE, "try again"};
  bool existing_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<ListJobsResponse> pages_ ABSL_GUARDED_BY(mu_);
  std::vector<WatchJobsResponse> changes_ ABSL_GUARDED_BY(mu_);
  std::vector<LogChunk> chunks_ ABSL_GUARDED_BY(mu_);
  std::vector<SubmitJobRequest> submits_ ABSL_GUARDED_BY(mu_);
  std::vector<ListJobsRequest> list_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<CancelJobRequest> cancels_ ABSL_GUARDED_BY(mu_);
  std::vector<WatchJobsRequest> watches_ ABSL_GUARDED_BY(mu_);
  std::vector<GetJobLogsRequest> log_requests_ ABSL_GUARDED_BY(mu_);
};

class FakeNodeService final : public NodeService::Service {
 public:
  grpc::Status ListNodes(grpc::ServerContext*, const ListNodesRequest*,
                         ListNodesResponse* response) override {
    *response->add_nodes() = testing::CloudNode();
    *response->add_nodes() = testing::LocalNode();
    return grpc::Status::OK;
  }
  grpc::Status GetNode(grpc::ServerContext*, const GetNodeRequest* request, Node* node) override {
    if (request->name() != "vast-1") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "node " + request->name() + " not found");
    }
    *node = testing::CloudNode();
    return grpc::Status::OK;
  }
  grpc::Status Cordon(grpc::ServerContext*, const CordonRequest* request, Node* node) override {
    absl::MutexLock lock(&mu_);
    cordons_.push_back(*request);
    node->set_name(request->name());
    return grpc::Status::OK;
  }
  grpc::Status Drain(grpc::ServerContext*, const DrainRequest* request, Node* node) override {
    absl::MutexLock lock(&mu_);
    drains_.push_back(*request);
    node->set_name(request->name());
    return grpc::Status::OK;
  }
  // Knows the nodes in `streams_`, each with the agent streams it has open.
  grpc::Status RevokeNode(grpc::ServerContext*, const RevokeNodeRequest* request,
                          RevokeNodeResponse* response) override {
    absl::MutexLock lock(&mu_);
    revokes_.push_back(*request);
    const auto it = streams_.find(request->name());
    if (it == streams_.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "node " + request->name() + " not found");
    }
    response->set_name(request->name());
    response->set_streams_closed(it->second);
    it->second = 0;
    return grpc::Status::OK;
  }

  absl::Mutex mu_;
  std::vector<CordonRequest> cordons_ ABSL_GUARDED_BY(mu_);
  std::vector<DrainRequest> drains_ ABSL_GUARDED_BY(mu_);
  std::vector<RevokeNodeRequest> revokes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint32_t> streams_ ABSL_GUARDED_BY(mu_);
};

// Knows job abc1234500000000 (any prefix of it). Lists `list_`; serves one checkpoint read from a
// folder on disk, as schedd would stream it: the manifest, then every chunk in order.
class FakeCheckpointService final : public CheckpointService::Service {
 public:
  static constexpr char kJobId[] = "abc1234500000000";

  grpc::Status ListCheckpoints(grpc::ServerContext*, const ListCheckpointsRequest* request,
                               ListCheckpointsResponse* response) override {
    absl::MutexLock lock(&mu_);
    list_requests_.push_back(*request);
    if (!IsJob(request->job_id())) return UnknownJob(request->job_id());
    *response = list_;
    return grpc::Status::OK;
  }

  grpc::Status GetCheckpoint(grpc::ServerContext*, const GetCheckpointRequest* request,
                             grpc::ServerWriter<CheckpointPiece>* writer) override {
    Checkpoint manifest;
    std::vector<std::string> data;
    {
      absl::MutexLock lock(&mu_);
      get_requests_.push_back(*request);
      if (!IsJob(request->job_id())) return UnknownJob(request->job_id());
      if (!served_ || (request->seq() != 0 && request->seq() != served_->seq())) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND,
                            std::string("job ") + kJobId + " has no checkpoint");
      }
      manifest = *served_;
      data = chunks_;
    }
    CheckpointPiece piece;
    *piece.mutable_manifest() = manifest;
    writer->Write(piece);
    for (const std::string& d : data) {
      piece.set_data(d);
      writer->Write(piece);
    }
    return grpc::Status::OK;
  }

  // Serves the checkpoint published at `path` as number `seq`.
  void Serve(const std::string& path, uint64_t seq) {
    std::vector<checkpoint::LocalChunk> local;
    absl::StatusOr<Checkpoint> manifest = checkpoint::Describe(path, &local);
    ASSERT_TRUE(manifest.ok()) << manifest.status();
    manifest->set_job_id(kJobId);
    manifest->set_seq(seq);
    absl::MutexLock lock(&mu_);
    served_ = *manifest;
    chunks_.clear();
    for (const checkpoint::LocalChunk& c : local) {
      absl::StatusOr<std::string> bytes = checkpoint::ReadChunk(c);
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      chunks_.push_back(*bytes);
    }
  }

  absl::Mutex mu_;
  ListCheckpointsResponse list_ ABSL_GUARDED_BY(mu_);
  std::optional<Checkpoint> served_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> chunks_ ABSL_GUARDED_BY(mu_);  // what GetCheckpoint streams after it
  std::vector<ListCheckpointsRequest> list_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<GetCheckpointRequest> get_requests_ ABSL_GUARDED_BY(mu_);

 private:
  static bool IsJob(const std::string& id) {
    return !id.empty() && std::string(kJobId).rfind(id, 0) == 0;
  }
  static grpc::Status UnknownJob(const std::string& id) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "job " + id + " not found");
  }
};

// Makes token 3f9c0a1b2c3d4e5f as asked (its create time kNow); lists `list_`; revokes the ids
// in `list_`. Records every request and the `authorization` metadata of every call ("" when a
// call has none).
class FakeTokenService final : public TokenService::Service {
 public:
  static constexpr char kId[] = "3f9c0a1b2c3d4e5f";
  static constexpr char kSecret[] = "3f9c0a1b2c3d4e5f.8c1e55d0b7a94f2e9d3c6b1a0f7e4d2c";

  grpc::Status CreateToken(grpc::ServerContext* ctx, const CreateTokenRequest* request,
                           CreateTokenResponse* response) override {
    absl::MutexLock lock(&mu_);
    Record(*ctx);
    creates_.push_back(*request);
    Token& t = *response->mutable_token();
    t.set_id(kId);
    t.set_role(request->role());
    *t.mutable_projects() = request->projects();
    *t.mutable_labels() = request->labels();
    t.set_description(request->description());
    t.mutable_create_time()->set_seconds(absl::ToUnixSeconds(testing::kNow));
    if (request->ttl().seconds() > 0) {
      t.mutable_expire_time()->set_seconds(absl::ToUnixSeconds(testing::kNow) +
                                           request->ttl().seconds());
    }
    t.set_uses_left(request->uses() > 0 ? request->uses() : -1);
    t.set_created_by("local");
    response->set_secret(kSecret);
    response->set_ca_pin(ca_pin_);
    return grpc::Status::OK;
  }

  grpc::Status ListTokens(grpc::ServerContext* ctx, const ListTokensRequest*,
                          ListTokensResponse* response) override {
    absl::MutexLock lock(&mu_);
    Record(*ctx);
    *response = list_;
    return grpc::Status::OK;
  }

  grpc::Status RevokeToken(grpc::ServerContext* ctx, const RevokeTokenRequest* request,
                           Token* token) override {
    absl::MutexLock lock(&mu_);
    Record(*ctx);
    revokes_.push_back(*request);
    for (const Token& t : list_.tokens()) {
      if (t.id() == request->id()) {
        *token = t;
        token->set_revoked(true);
        return grpc::Status::OK;
      }
    }
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "token " + request->id() + " not found");
  }

  absl::Mutex mu_;
  std::string ca_pin_ ABSL_GUARDED_BY(mu_);  // sent with each new token
  ListTokensResponse list_ ABSL_GUARDED_BY(mu_);
  std::vector<CreateTokenRequest> creates_ ABSL_GUARDED_BY(mu_);
  std::vector<RevokeTokenRequest> revokes_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> authorizations_ ABSL_GUARDED_BY(mu_);

 private:
  void Record(const grpc::ServerContext& ctx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const auto& metadata = ctx.client_metadata();
    const auto it = metadata.find("authorization");
    authorizations_.push_back(
        it == metadata.end() ? "" : std::string(it->second.data(), it->second.size()));
  }
};

// An admin token, a member's that expires, a revoked agent's with joins left, an unscoped
// viewer's that has expired.
ListTokensResponse FourTokens() {
  ListTokensResponse list;
  const int64_t now = absl::ToUnixSeconds(testing::kNow);
  Token* t = list.add_tokens();
  t->set_id("0a1b2c3d4e5f6071");
  t->set_role(ROLE_ADMIN);
  t->set_uses_left(-1);
  t->set_created_by("bootstrap");
  t->set_description("first admin");
  t = list.add_tokens();
  t->set_id("1b2c3d4e5f607182");
  t->set_role(ROLE_MEMBER);
  t->add_projects("llm");
  t->add_projects("cv");
  t->mutable_expire_time()->set_seconds(now + 3600);
  t->set_uses_left(-1);
  t->set_created_by("0a1b2c3d4e5f6071");
  t = list.add_tokens();
  t->set_id("2c3d4e5f60718293");
  t->set_role(ROLE_AGENT);
  (*t->mutable_labels())["zone"] = "eu";
  t->set_uses_left(4);
  t->set_revoked(true);
  t->set_created_by("0a1b2c3d4e5f6071");
  t->set_description("ws2 join");
  t = list.add_tokens();
  t->set_id("3d4e5f60718293a4");
  t->set_role(ROLE_VIEWER);
  t->mutable_expire_time()->set_seconds(now - 2 * 3600);
  t->set_uses_left(-1);
  t->set_created_by("0a1b2c3d4e5f6071");
  t->set_description("grafana");
  return list;
}

struct Result {
  int exit_code;
  std::string out;
  std::string err;
};

class SchedctlServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", ServerCredentials(), &port);
    builder.RegisterService(&jobs_);
    builder.RegisterService(&nodes_);
    builder.RegisterService(&checkpoints_);
    builder.RegisterService(&tokens_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    address_ = "127.0.0.1:" + std::to_string(port);
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  virtual std::shared_ptr<grpc::ServerCredentials> ServerCredentials() {
    return grpc::InsecureServerCredentials();
  }

  // The server address comes from $SCHED_SERVER, as a user would set it; other variables from
  // env_.
  Result Run(const std::vector<std::string>& args, const std::string& stdin_text = "") {
    std::istringstream in(stdin_text);
    SchedctlEnv env;
    env.in = &in;
    env.clock = &clock_;
    env.getenv = [this](const std::string& name) -> std::optional<std::string> {
      if (name == kServerEnvVar) return address_;
      if (auto it = env_.find(name); it != env_.end()) return it->second;
      return std::nullopt;
    };
    env.submit_retry.max_attempts = 3;
    env.submit_retry.initial_backoff = absl::Milliseconds(1);
    std::ostringstream out, err;
    const int code = RunSchedctl(args, out, err, env);
    return {code, out.str(), err.str()};
  }

  std::string WriteFile(const std::string& name, const std::string& text) {
    const std::string path = ::testing::TempDir() + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  // Three pages of 2, 2 and 1 jobs.
  std::vector<Job> SetThreePages() {
    const std::vector<Job> jobs = {MakeJob("1000000000000001", JOB_STATE_RUNNING),
                                   MakeJob("1000000000000002", JOB_STATE_PENDING),
                                   MakeJob("1000000000000003", JOB_STATE_SUCCEEDED),
                                   MakeJob("1000000000000004", JOB_STATE_FAILED),
                                   MakeJob("1000000000000005", JOB_STATE_CANCELLED)};
    absl::MutexLock lock(&jobs_.mu_);
    jobs_.pages_.resize(3);
    for (size_t i = 0; i < jobs.size(); ++i) *jobs_.pages_[i / 2].add_jobs() = jobs[i];
    return jobs;
  }

  // An empty folder of this test's own under the test temp dir.
  std::string FreshDir(const std::string& name) {
    const std::filesystem::path dir =
        std::filesystem::path(::testing::TempDir()) / "schedctl_service_test" /
        ::testing::UnitTest::GetInstance()->current_test_info()->name() / name;
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir.string();
  }

  FakeJobService jobs_;
  FakeNodeService nodes_;
  FakeCheckpointService checkpoints_;
  FakeTokenService tokens_;
  std::map<std::string, std::string> env_;
  FakeClock clock_{testing::kNow};
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

constexpr char kSpec[] = R"(name: train
project: llm
run: python train.py
resources: {gpus: 1, gpu_memory: 24GB, gpu_model: H100, memory: 8GB}
env: {EPOCHS: 3}
)";

const std::regex kUuidV4("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");

TEST_F(SchedctlServiceTest, SubmitSendsTheParsedSpecAndAFreshRequestId) {
  const Result r = Run({"submit", "-f", WriteFile("job.yaml", kSpec)});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "job/00000000000000a1 submitted\n");
  EXPECT_THAT(r.err, IsEmpty());
  absl::MutexLock lock(&jobs_.mu_);
  ASSERT_THAT(jobs_.submits_, SizeIs(1));
  const SubmitJobRequest& sent = jobs_.submits_[0];
  const absl::StatusOr<JobSpec> expected = ParseJobSpecYaml(kSpec);
  ASSERT_TRUE(expected.ok());
  EXPECT_TRUE(MessageDifferencer::Equals(sent.spec(), *expected)) << sent.spec().DebugString();
  EXPECT_EQ(sent.spec().resources().gpu_memory_bytes(), 24'000'000'000);
  EXPECT_TRUE(std::regex_match(sent.request_id(), kUuidV4)) << sent.request_id();
}

TEST_F(SchedctlServiceTest, TwoSubmitsGetDifferentRequestIds) {
  const std::string path = WriteFile("job.yaml", kSpec);
  ASSERT_EQ(Run({"submit", "-f", path}).exit_code, 0);
  ASSERT_EQ(Run({"submit", "-f", path}).exit_code, 0);
  absl::MutexLock lock(&jobs_.mu_);
  ASSERT_THAT(jobs_.submits_, SizeIs(2));
  EXPECT_NE(jobs_.submits_[0].request_id(), jobs_.submits_[1].request_id());
}

TEST_F(SchedctlServiceTest, SubmitFromStdinWithRequestIdSaysExisting) {
  {
    absl::MutexLock lock(&jobs_.mu_);
    jobs_.existing_ = true;
  }
  const Result r = Run({"submit", "-f", "-", "--request-id", "my-key"}, "run: echo hi\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "job/00000000000000a1 submitted (existing)\n");
  absl::MutexLock lock(&jobs_.mu_);
  ASSERT_THAT(jobs_.submits_, SizeIs(1));
  EXPECT_EQ(jobs_.submits_[0].request_id(), "my-key");
  EXPECT_EQ(jobs_.submits_[0].spec().run(), "echo hi");
}

TEST_F(SchedctlServiceTest, SubmitRetriesUnavailableWithTheSameRequestId) {
  {
    absl::MutexLock lock(&jobs_.mu_);
    jobs_.submit_failures_left_ = 2;
  }
  const Result r = Run({"submit", "-f", "-"}, "run: echo hi\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "job/00000000000000a1 submitted\n");
  absl::MutexLock lock(&jobs_.mu_);
  ASSERT_THAT(jobs_.submits_, SizeIs(3));
  EXPECT_TRUE(std::regex_match(jobs_.submits_[0].request_id(), kUuidV4));
  EXPECT_EQ(jobs_.submits_[1].request_id(), jobs_.submits_[0].request_id());
  EXPECT_EQ(jobs_.submits_[2].request_id(), jobs_.submits_[0].request_id());
}

TEST_F(SchedctlServiceTest, SubmitGivesUpAfterTheLastAttempt) {
  {
    absl::MutexLock lock(&jobs_.mu_);
    jobs_.submit_failures_left_ = 100;
    jobs_.submit_error_ = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "slow disk");
  }
  const Result r = Run({"submit", "-f", "-"}, "run: echo hi\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "error: DEADLINE_EXCEEDED: slow disk\n");
  EXPECT_THAT(r.out, IsEmpty());
  absl::MutexLock lock(&jobs_.mu_);
  EXPECT_THAT(jobs_.submits_, SizeIs(3));
}

TEST_F(SchedctlServiceTest, SubmitDoesNotRetryARejectedSpec) {
  {
    absl::MutexLock lock(&jobs_.mu_);
    jobs_.submit_failures_left_ = 1;
    jobs_.submit_error_ =
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "name: must be 1-63 characters");
  }
  const Result r = Run({"submit", "-f", "-"}, "name: \"a b\"\nrun: echo hi\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "error: INVALID_ARGUMENT: name: must be 1-63 characters\n");
  absl::MutexLock lock(&jobs_.mu_);
  EXPECT_THAT(jobs_.submits_, SizeIs(1));
}

TEST_F(SchedctlServiceTest, SubmitOfABadSpecSendsNothing) {
  const Result r = Run({"submit", "-f", WriteFile("bad.yaml", "run: x\nresources: {gpus: two}\n")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: INVALID_ARGUMENT: "));
  EXPECT_THAT(r.err, HasSubstr("bad.yaml: resources.gpus: expected a non-negative integer, got "
                               "\"two\"\n"));
  const Result missing = Run({"submit", "-f", "/nonexistent/job.yaml"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.err,
            "error: NOT_FOUND: cannot open /nonexistent/job.yaml: No such file or directory\n");
  absl::MutexLock lock(&jobs_.mu_);
  EXPECT_THAT(jobs_.submits_, IsEmpty());
}

TEST_F(SchedctlServiceTest, GetJobsFollowsEveryPage) {
  SetThreePages();
  const Result r = Run({"get", "jobs", "--state", "running", "--project", "llm"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "ID                 NAME    PROJECT   STATE       NODE   ATTEMPT   AGE\n"
            "1000000000000001   train   llm       RUNNING     ws1    1         5m30s\n"
            "1000000000000002   train   llm       PENDING     ws1    1         5m30s\n"
            "1000000000000003   train   llm       SUCCEEDED   ws1    1         5m30s\n"
            "1000000000000004   train   llm       FAILED      ws1    1         5m30s\n"
            "1000000000000005   train   llm       CANCELLED   ws1    1         5m30s\n");
  absl::MutexLock lock(&jobs_.mu_);
  ASSERT_THAT(jobs_.list_requests_, SizeIs(3));
  EXPECT_EQ(jobs_.list_requests_[0].page_token(), "");
  EXPECT_EQ(jobs_.list_requests_[1].page_token(), "p1");
  EXPECT_EQ(jobs_.list_requests_[2].page_token(), "p2");
  for (const ListJobsRequest& request : jobs_.list_requests_) {
    EXPECT_THAT(request.states(), ElementsAre(JOB_STATE_RUNNING));
    EXPECT_EQ(request.project(), "llm");
    EXPECT_EQ(request.page_size(), 0u);
  }
}

TEST_F(SchedctlServiceTest, GetJobsLimitStopsEarly) {
  SetThreePages();
  const Result r = Run({"get", "jobs", "--limit", "3"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("1000000000000003"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("1000000000000004")));
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 4);  // header and three rows
  absl::MutexLock lock(&jobs_.mu_);
  ASSERT_THAT(jobs_.list_requests_, SizeIs(2));
  EXPECT_EQ(jobs_.list_requests_[0].page_size(), 3u);
  EXPECT_EQ(jobs_.list_requests_[1].page_size(), 1u);
  EXPECT_EQ(jobs_.list_requests_[1].page_token(), "p1");
}

TEST_F(SchedctlServiceTest, GetJobsJsonParsesBackToEveryJob) {
  const std::vector<Job> jobs = SetThreePages();
  const Result r = Run({"get", "jobs", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ListJobsResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok()) << r.out;
  ListJobsResponse expected;
  for (const Job& job : jobs) *expected.add_jobs() = job;
  EXPECT_TRUE(MessageDifferencer::Equals(parsed, expected)) << r.out;
  EXPECT_EQ(parsed.next_page_token(), "");
}

TEST_F(SchedctlServiceTest, GetJobAsJsonIsTheJob) {
  const std::vector<Job> jobs = SetThreePages();
  const Result r = Run({"get", "job", "1000000000000004", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Job parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok()) << r.out;
  EXPECT_TRUE(MessageDifferencer::Equals(parsed, jobs[3])) << r.out;
}

TEST_F(SchedctlServiceTest, GetNodesAsYamlAndAsTable) {
  const Result yaml = Run({"get", "nodes", "-o", "yaml"});
  ASSERT_EQ(yaml.exit_code, 0) << yaml.err;
  const YAML::Node doc = YAML::Load(yaml.out);
  ASSERT_EQ(doc["nodes"].size(), 2u);
  EXPECT_EQ(doc["nodes"][0]["name"].as<std::string>(), "vast-1");
  EXPECT_EQ(doc["nodes"][1]["capabilities"]["gpus"][0]["model"].as<std::string>(),
            "NVIDIA GeForce RTX 3080");

  const Result table = Run({"get", "node", "vast-1"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_EQ(table.out,
            "NAME     STATE   CPUS   MEMORY   GPUS          PROVIDER   PRICE/H   COST   JOBS   AGE\n"
            "vast-1   READY   16     64GiB    2xH100 80GB   vastai     $0.40     -      1      120m\n");
}

TEST_F(SchedctlServiceTest, ServerErrorExitsOneWithTheMessage) {
  const Result r = Run({"get", "job", "abc"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "error: NOT_FOUND: job abc not found\n");
  EXPECT_THAT(r.out, IsEmpty());

  const Result node = Run({"describe", "node", "nope"});
  EXPECT_EQ(node.exit_code, 1);
  EXPECT_EQ(node.err, "error: NOT_FOUND: node nope not found\n");
}

TEST_F(SchedctlServiceTest, UnreachableServerIsUnavailable) {
  const Result r = Run({"--server", "127.0.0.1:1", "--timeout", "2s", "get", "nodes"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, ::testing::StartsWith("error: UNAVAILABLE: "));
}

TEST_F(SchedctlServiceTest, ServerFlagBeatsTheEnvironment) {
  // Run() points $SCHED_SERVER at the fake; --server must win and fail to connect.
  const Result r = Run({"get", "nodes", "--server", "127.0.0.1:1"});
  EXPECT_EQ(r.exit_code, 1);
  const Result from_env = Run({"get", "nodes"});
  EXPECT_EQ(from_env.exit_code, 0) << from_env.err;
}

TEST_F(SchedctlServiceTest, LogsPrintsChunkDataInOrder) {
  {
    absl::MutexLock lock(&jobs_.mu_);
    for (auto [stream, data] : {std::pair{LOG_STREAM_STDOUT, "epoch 1\n"},
                                std::pair{LOG_STREAM_STDERR, "warning: slow\n"},
                                std::pair{LOG_STREAM_STDOUT, "epoch 2\n"}}) {
      LogChunk& chunk = jobs_.chunks_.emplace_back();
      chunk.set_job_id("abc1234500000000");
      chunk.set_attempt(2);
      chunk.set_stream(stream);
      chunk.set_data(data);
    }
  }
  const Result r = Run({"logs", "-f", "abc", "--attempt", "2"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "epoch 1\nwarning: slow\nepoch 2\n");
  absl::MutexLock lock(&jobs_.mu_);
  ASSERT_THAT(jobs_.log_requests_, SizeIs(1));
  EXPECT_EQ(jobs_.log_requests_[0].job_id(), "abc");
  EXPECT_TRUE(jobs_.log_requests_[0].follow());
  EXPECT_EQ(jobs_.log_requests_[0].attempt(), 2u);
}

TEST_F(SchedctlServiceTest, CancelPassesTheIdPrefixThrough) {
  const Result r = Run({"cancel", "abc", "--reason", "wrong data"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "job/abc1234500000000 cancelled\n");
  absl::MutexLock lock(&jobs_.mu_);
  ASSERT_THAT(jobs_.cancels_, SizeIs(1));
  EXPECT_EQ(jobs_.cancels_[0].job_id(), "abc");
  EXPECT_EQ(jobs_.cancels_[0].reason(), "wrong data");
}

TEST_F(SchedctlServiceTest, WatchPrintsARowPerChange) {
  {
    absl::MutexLock lock(&jobs_.mu_);
    for (JobState state : {JOB_STATE_PENDING, JOB_STATE_RUNNING, JOB_STATE_SUCCEEDED}) {
      WatchJobsResponse& change = jobs_.changes_.emplace_back();
      *change.mutable_job() = MakeJob("1000000000000001", state);
      change.set_initial(state == JOB_STATE_PENDING);
    }
  }
  const Result r = Run({"get", "jobs", "-w", "--project", "llm"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "ID                 NAME                   PROJECT        STATE       NODE           "
            "ATTEMPT   AGE\n"
            "1000000000000001   train                  llm            PENDING     ws1            "
            "1         5m30s\n"
            "1000000000000001   train                  llm            RUNNING     ws1            "
            "1         5m30s\n"
            "1000000000000001   train                  llm            SUCCEEDED   ws1            "
            "1         5m30s\n");
  absl::MutexLock lock(&jobs_.mu_);
  ASSERT_THAT(jobs_.watches_, SizeIs(1));
  EXPECT_EQ(jobs_.watches_[0].project(), "llm");
  EXPECT_EQ(jobs_.watches_[0].job_id(), "");
}

TEST_F(SchedctlServiceTest, NodeCommandsSendTheName) {
  EXPECT_EQ(Run({"cordon", "ws1"}).out, "node/ws1 cordoned\n");
  EXPECT_EQ(Run({"uncordon", "ws1"}).out, "node/ws1 uncordoned\n");
  EXPECT_EQ(Run({"drain", "ws2"}).out, "node/ws2 draining\n");
  absl::MutexLock lock(&nodes_.mu_);
  ASSERT_THAT(nodes_.cordons_, SizeIs(2));
  EXPECT_EQ(nodes_.cordons_[0].name(), "ws1");
  EXPECT_FALSE(nodes_.cordons_[0].uncordon());
  EXPECT_TRUE(nodes_.cordons_[1].uncordon());
  ASSERT_THAT(nodes_.drains_, SizeIs(1));
  EXPECT_EQ(nodes_.drains_[0].name(), "ws2");
}

TEST_F(SchedctlServiceTest, DescribeJobShowsTheSpecInHumanSizes) {
  SetThreePages();
  const Result r = Run({"describe", "job", "1000000000000002"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("ID:           1000000000000002\n"));
  EXPECT_THAT(r.out, HasSubstr("State:        PENDING\n"));
  EXPECT_THAT(r.out, HasSubstr("  GPU Memory:  24GB\n"));
}

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST_F(SchedctlServiceTest, CheckpointsListsThemAsATable) {
  {
    absl::MutexLock lock(&checkpoints_.mu_);
    checkpoints_.list_ = testing::TwoCheckpoints();
  }
  const Result r = Run({"checkpoints", "abc"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "SEQ   NAME          ATTEMPT   NODE     SIZE     FILES   AGE\n"
            "4     step-000240   1         vast-1   13.4KB   1       3m10s\n"
            "5     step-000260   2         ws1      4MiB     2       3h20m\n");
  EXPECT_THAT(r.err, IsEmpty());
  absl::MutexLock lock(&checkpoints_.mu_);
  ASSERT_THAT(checkpoints_.list_requests_, SizeIs(1));
  EXPECT_EQ(checkpoints_.list_requests_[0].job_id(), "abc");
}

TEST_F(SchedctlServiceTest, CheckpointsAsJsonAndYamlAreTheListResponse) {
  {
    absl::MutexLock lock(&checkpoints_.mu_);
    checkpoints_.list_ = testing::TwoCheckpoints();
  }
  const Result json = Run({"checkpoints", "abc", "-o", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  ListCheckpointsResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.out, &parsed).ok()) << json.out;
  EXPECT_TRUE(MessageDifferencer::Equals(parsed, testing::TwoCheckpoints())) << json.out;

  const Result yaml = Run({"checkpoints", "abc", "-o", "yaml"});
  ASSERT_EQ(yaml.exit_code, 0) << yaml.err;
  const YAML::Node doc = YAML::Load(yaml.out);
  ASSERT_EQ(doc["checkpoints"].size(), 2u);
  EXPECT_EQ(doc["checkpoints"][1]["name"].as<std::string>(), "step-000260");
  EXPECT_EQ(doc["checkpoints"][1]["seq"].as<std::string>(), "5");
  EXPECT_EQ(doc["checkpoints"][1]["files"][0]["path"].as<std::string>(), "model.pt");
}

TEST_F(SchedctlServiceTest, CheckpointsOfAJobWithoutAnySaysSo) {
  const Result r = Run({"checkpoints", "abc"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "No checkpoints for job abc. A job publishes them in $SCHED_CHECKPOINT_DIR "
            "(docs/checkpoints.md).\n");
  const Result json = Run({"checkpoints", "abc", "-o", "json"});
  EXPECT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(json.out, "{}\n");
}

TEST_F(SchedctlServiceTest, CheckpointsOfAnUnknownJobIsNotFound) {
  const Result r = Run({"checkpoints", "fff"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "error: NOT_FOUND: job fff not found\n");
  EXPECT_THAT(r.out, IsEmpty());
}

TEST_F(SchedctlServiceTest, CheckpointGetDownloadsTheNewestIntoTo) {
  const std::string published = FreshDir("published") + "/step-000120";
  std::filesystem::create_directories(published + "/opt");
  const std::string model(5 << 20, 'm');  // two chunks
  std::ofstream(published + "/model.pt", std::ios::binary) << model;
  std::ofstream(published + "/opt/state.json") << "{\"step\": 120}\n";
  checkpoints_.Serve(published, 3);
  const std::string to = FreshDir("to");

  const Result r = Run({"checkpoint", "get", "abc", "--to", to});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "checkpoint step-000120 (#3, 5.2MB, 2 files) -> " + to + "/step-000120\n");
  EXPECT_THAT(r.err, IsEmpty());
  EXPECT_THAT(Entries(to), ElementsAre("step-000120"));
  EXPECT_EQ(ReadAll(to + "/step-000120/model.pt"), model);
  EXPECT_EQ(ReadAll(to + "/step-000120/opt/state.json"), "{\"step\": 120}\n");
  absl::MutexLock lock(&checkpoints_.mu_);
  ASSERT_THAT(checkpoints_.get_requests_, SizeIs(1));
  EXPECT_EQ(checkpoints_.get_requests_[0].job_id(), "abc");
  EXPECT_EQ(checkpoints_.get_requests_[0].seq(), 0u);
}

TEST_F(SchedctlServiceTest, CheckpointGetOfASeqIntoTheCurrentFolder) {
  const std::string published = FreshDir("published") + "/state.json";
  std::ofstream(published) << "{\"step\": 7}\n";
  checkpoints_.Serve(published, 2);
  const std::string to = FreshDir("cwd");
  const std::filesystem::path before = std::filesystem::current_path();
  std::filesystem::current_path(to);
  const Result r = Run({"checkpoint", "get", "abc", "2"});
  std::filesystem::current_path(before);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "checkpoint state.json (#2, 12B, 1 file) -> ./state.json\n");
  EXPECT_EQ(ReadAll(to + "/state.json"), "{\"step\": 7}\n");
  absl::MutexLock lock(&checkpoints_.mu_);
  ASSERT_THAT(checkpoints_.get_requests_, SizeIs(1));
  EXPECT_EQ(checkpoints_.get_requests_[0].seq(), 2u);
}

TEST_F(SchedctlServiceTest, CheckpointGetRefusesAnExistingFolderAndSuggestsTo) {
  const std::string published = FreshDir("published") + "/step-000120";
  std::filesystem::create_directories(published);
  std::ofstream(published + "/model.pt") << "new";
  checkpoints_.Serve(published, 3);
  const std::string to = FreshDir("to");
  std::filesystem::create_directories(to + "/step-000120");
  std::ofstream(to + "/step-000120/mine.txt") << "keep me";

  const Result r = Run({"checkpoint", "get", "abc", "--to", to});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "error: ALREADY_EXISTS: " + to +
                       "/step-000120 already exists; remove it, or download elsewhere with --to "
                       "DIR\n");
  EXPECT_THAT(r.out, IsEmpty());
  EXPECT_THAT(Entries(to), ElementsAre("step-000120"));
  EXPECT_THAT(Entries(to + "/step-000120"), ElementsAre("mine.txt"));
  EXPECT_EQ(ReadAll(to + "/step-000120/mine.txt"), "keep me");
}

TEST_F(SchedctlServiceTest, CheckpointGetOfAJobWithoutOneIsNotFound) {
  const std::string to = FreshDir("to");
  const Result r = Run({"checkpoint", "get", "abc", "--to", to});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "error: NOT_FOUND: job abc1234500000000 has no checkpoint\n");
  EXPECT_THAT(r.out, IsEmpty());
  EXPECT_THAT(Entries(to), IsEmpty());
}

TEST_F(SchedctlServiceTest, CheckpointGetLeavesNothingWhenABitIsWrong) {
  const std::string published = FreshDir("published") + "/step-000120";
  std::filesystem::create_directories(published);
  std::ofstream(published + "/model.pt") << "weights";
  checkpoints_.Serve(published, 3);
  {
    absl::MutexLock lock(&checkpoints_.mu_);
    checkpoints_.chunks_[0][0] ^= 1;
  }
  const std::string to = FreshDir("to");
  const Result r = Run({"checkpoint", "get", "abc", "--to", to});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, ::testing::StartsWith("error: DATA_LOSS: "));
  EXPECT_THAT(r.out, IsEmpty());
  EXPECT_THAT(Entries(to), IsEmpty());
}

TEST_F(SchedctlServiceTest, TokenCreatePrintsTheTokenOnceAndSendsWhatWasAsked) {
  const Result r =
      Run({"token", "create", "--role", "agent", "--ttl", "1h", "--uses", "5", "--label", "zone=eu",
           "--label", "gpu=rtx4090", "--description", "ws2 join"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "3f9c0a1b2c3d4e5f.8c1e55d0b7a94f2e9d3c6b1a0f7e4d2c\n"
            "token 3f9c0a1b2c3d4e5f created: role agent, expires 2023-11-14T23:13:20Z (in 60m), 5 "
            "joins; the line above is the token, shown only this once\n");
  EXPECT_THAT(r.err, IsEmpty());
  absl::MutexLock lock(&tokens_.mu_);
  ASSERT_THAT(tokens_.creates_, SizeIs(1));
  const CreateTokenRequest& sent = tokens_.creates_[0];
  EXPECT_EQ(sent.role(), ROLE_AGENT);
  EXPECT_EQ(sent.ttl().seconds(), 3600);
  EXPECT_EQ(sent.ttl().nanos(), 0);
  EXPECT_EQ(sent.uses(), 5);
  EXPECT_THAT(sent.projects(), IsEmpty());
  ASSERT_EQ(sent.labels().size(), 2u);
  EXPECT_EQ(sent.labels().at("zone"), "eu");
  EXPECT_EQ(sent.labels().at("gpu"), "rtx4090");
  EXPECT_EQ(sent.description(), "ws2 join");
}

TEST_F(SchedctlServiceTest, TokenCreateForAMemberSendsItsProjects) {
  const Result r =
      Run({"token", "create", "--role", "MEMBER", "--project", "llm", "--project", "cv,nlp"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "3f9c0a1b2c3d4e5f.8c1e55d0b7a94f2e9d3c6b1a0f7e4d2c\n"
            "token 3f9c0a1b2c3d4e5f created: role member, projects llm,cv,nlp, does not expire; "
            "the line above is the token, shown only this once\n");
  absl::MutexLock lock(&tokens_.mu_);
  ASSERT_THAT(tokens_.creates_, SizeIs(1));
  const CreateTokenRequest& sent = tokens_.creates_[0];
  EXPECT_EQ(sent.role(), ROLE_MEMBER);
  EXPECT_THAT(sent.projects(), ElementsAre("llm", "cv", "nlp"));
  EXPECT_FALSE(sent.has_ttl());
  EXPECT_EQ(sent.uses(), 0);
  EXPECT_TRUE(sent.labels().empty());
}

TEST_F(SchedctlServiceTest, TokenCreateAsJsonIsTheWholeResponse) {
  const Result r = Run({"token", "create", "--role", "viewer", "--ttl", "7d", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  CreateTokenResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok()) << r.out;
  EXPECT_EQ(parsed.secret(), FakeTokenService::kSecret);
  EXPECT_EQ(parsed.token().id(), FakeTokenService::kId);
  EXPECT_EQ(parsed.token().role(), ROLE_VIEWER);
  EXPECT_EQ(parsed.token().expire_time().seconds(),
            absl::ToUnixSeconds(testing::kNow + absl::Hours(24 * 7)));
  EXPECT_THAT(r.out, HasSubstr("\"role\": \"ROLE_VIEWER\""));
}

TEST_F(SchedctlServiceTest, TokenCreateRefusesAnUnknownRoleWithoutCallingTheServer) {
  const Result r = Run({"token", "create", "--role", "owner"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, ::testing::StartsWith(
                         "error: --role: unknown role \"owner\" (expected admin, member, viewer "
                         "or agent)\nusage: schedctl token create --role "
                         "admin|member|viewer|agent "));
  EXPECT_THAT(r.out, IsEmpty());
  absl::MutexLock lock(&tokens_.mu_);
  EXPECT_THAT(tokens_.creates_, IsEmpty());
  EXPECT_THAT(tokens_.authorizations_, IsEmpty());
}

TEST_F(SchedctlServiceTest, TokenListPrintsATableAndNoSecret) {
  {
    absl::MutexLock lock(&tokens_.mu_);
    tokens_.list_ = FourTokens();
  }
  const std::string table =
      "ID                 ROLE     PROJECTS   USES-LEFT   EXPIRES    CREATED-BY         REVOKED   "
      "DESCRIPTION\n"
      "0a1b2c3d4e5f6071   admin    -          -           never      bootstrap          no        "
      "first admin\n"
      "1b2c3d4e5f607182   member   llm,cv     -           in 60m     0a1b2c3d4e5f6071   no        "
      "<none>\n"
      "2c3d4e5f60718293   agent    -          4           never      0a1b2c3d4e5f6071   yes       "
      "ws2 join\n"
      "3d4e5f60718293a4   viewer   all        -           120m ago   0a1b2c3d4e5f6071   no        "
      "grafana\n";
  const Result r = Run({"token", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, table);
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("8c1e55d0")));
  EXPECT_THAT(r.err, IsEmpty());

  const Result get = Run({"get", "tokens"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, table);
}

TEST_F(SchedctlServiceTest, TokenListAsYamlAndGetOneToken) {
  {
    absl::MutexLock lock(&tokens_.mu_);
    tokens_.list_ = FourTokens();
  }
  const Result yaml = Run({"token", "list", "-o", "yaml"});
  ASSERT_EQ(yaml.exit_code, 0) << yaml.err;
  const YAML::Node doc = YAML::Load(yaml.out);
  ASSERT_EQ(doc["tokens"].size(), 4u);
  EXPECT_EQ(doc["tokens"][1]["role"].as<std::string>(), "ROLE_MEMBER");
  EXPECT_EQ(doc["tokens"][2]["labels"]["zone"].as<std::string>(), "eu");

  const Result one = Run({"get", "token", "2c3d4e5f60718293"});
  EXPECT_EQ(one.exit_code, 0) << one.err;
  EXPECT_THAT(one.out, HasSubstr("\n2c3d4e5f60718293   agent "));
  EXPECT_EQ(std::count(one.out.begin(), one.out.end(), '\n'), 2);  // header and the row

  const Result json = Run({"get", "token", "2c3d4e5f60718293", "-o", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  Token parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.out, &parsed).ok()) << json.out;
  EXPECT_TRUE(MessageDifferencer::Equals(parsed, FourTokens().tokens(2))) << json.out;

  const Result missing = Run({"get", "token", "ffffffffffffffff"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.err, "error: NOT_FOUND: token ffffffffffffffff not found\n");
}

TEST_F(SchedctlServiceTest, TokenListWithNoneSaysHowToMakeOne) {
  const Result r = Run({"token", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "No tokens. Make one with: schedctl token create --role ROLE\n");
}

TEST_F(SchedctlServiceTest, TokenRevokePrintsTheLine) {
  {
    absl::MutexLock lock(&tokens_.mu_);
    tokens_.list_ = FourTokens();
  }
  const Result r = Run({"token", "revoke", "1b2c3d4e5f607182"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "token 1b2c3d4e5f607182 revoked\n");
  EXPECT_THAT(r.err, IsEmpty());

  const Result unknown = Run({"token", "revoke", "ffffffffffffffff"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_EQ(unknown.err, "error: NOT_FOUND: token ffffffffffffffff not found\n");
  EXPECT_THAT(unknown.out, IsEmpty());
  absl::MutexLock lock(&tokens_.mu_);
  ASSERT_THAT(tokens_.revokes_, SizeIs(2));
  EXPECT_EQ(tokens_.revokes_[0].id(), "1b2c3d4e5f607182");
}

TEST_F(SchedctlServiceTest, TokenFlagIsSentAsBearerMetadata) {
  ASSERT_EQ(Run({"--token", "0a1b2c3d4e5f6071.s3cret", "token", "list"}).exit_code, 0);
  ASSERT_EQ(Run({"token", "list"}).exit_code, 0);
  absl::MutexLock lock(&tokens_.mu_);
  EXPECT_THAT(tokens_.authorizations_, ElementsAre("Bearer 0a1b2c3d4e5f6071.s3cret", ""));
}

TEST_F(SchedctlServiceTest, TokenComesFromFlagsBeforeTheEnvironmentAndTokensBeforeFiles) {
  const std::string flag_file = WriteFile("flag.token", "  from.flagfile \n");
  const std::string env_file = WriteFile("env.token", "from.envfile\nsecond line ignored\n");
  const auto sent = [&](const std::vector<std::string>& args) {
    const Result r = Run(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    absl::MutexLock lock(&tokens_.mu_);
    return tokens_.authorizations_.empty() ? std::string("<no call>")
                                           : tokens_.authorizations_.back();
  };
  env_[kTokenFileEnvVar] = env_file;
  EXPECT_EQ(sent({"token", "list"}), "Bearer from.envfile");
  env_[kTokenEnvVar] = " from.env\n";
  EXPECT_EQ(sent({"token", "list"}), "Bearer from.env");
  EXPECT_EQ(sent({"token", "list", "--token_file", flag_file}), "Bearer from.flagfile");
  EXPECT_EQ(sent({"--token", "from.flag", "token", "list", "--token_file", flag_file}),
            "Bearer from.flag");
}

TEST_F(SchedctlServiceTest, UnreadableTokenFileIsNotFoundAndCallsNothing) {
  const Result flag = Run({"--token_file", "/nonexistent/sched.token", "token", "list"});
  EXPECT_EQ(flag.exit_code, 1);
  EXPECT_EQ(flag.err, "error: NOT_FOUND: cannot read the token file /nonexistent/sched.token\n");
  EXPECT_THAT(flag.out, IsEmpty());

  env_[kTokenFileEnvVar] = "/nonexistent/env.token";
  const Result env = Run({"get", "jobs"});
  EXPECT_EQ(env.exit_code, 1);
  EXPECT_EQ(env.err, "error: NOT_FOUND: cannot read the token file /nonexistent/env.token\n");

  const Result empty = Run({"--token_file", WriteFile("empty.token", "\n"), "token", "list"});
  EXPECT_EQ(empty.exit_code, 1);
  EXPECT_THAT(empty.err, ::testing::StartsWith("error: INVALID_ARGUMENT: "));
  EXPECT_THAT(empty.err, HasSubstr("holds no token"));

  absl::MutexLock lock(&tokens_.mu_);
  EXPECT_THAT(tokens_.authorizations_, IsEmpty());
  absl::MutexLock jobs_lock(&jobs_.mu_);
  EXPECT_THAT(jobs_.list_requests_, IsEmpty());
}

TEST_F(SchedctlServiceTest, UsageErrorExitsTwoWithoutCallingTheServer) {
  const Result r = Run({"get", "pods"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("usage: schedctl get "));
  absl::MutexLock lock(&jobs_.mu_);
  EXPECT_THAT(jobs_.list_requests_, IsEmpty());
}

TEST_F(SchedctlServiceTest, NodeRevokeSaysHowManyAgentStreamsItClosed) {
  {
    absl::MutexLock lock(&nodes_.mu_);
    nodes_.streams_ = {{"ws1", 1}, {"ws2", 0}, {"ws3", 2}};
  }
  const Result r = Run({"node", "revoke", "ws1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "node ws1 revoked (1 agent stream closed)\n");
  EXPECT_THAT(r.err, IsEmpty());
  EXPECT_EQ(Run({"node", "revoke", "ws2"}).out, "node ws2 revoked (0 agent streams closed)\n");
  EXPECT_EQ(Run({"node", "revoke", "ws3"}).out, "node ws3 revoked (2 agent streams closed)\n");
  absl::MutexLock lock(&nodes_.mu_);
  ASSERT_THAT(nodes_.revokes_, SizeIs(3));
  EXPECT_EQ(nodes_.revokes_[0].name(), "ws1");
  EXPECT_EQ(nodes_.revokes_[1].name(), "ws2");
  EXPECT_EQ(nodes_.revokes_[2].name(), "ws3");
  EXPECT_THAT(nodes_.cordons_, IsEmpty());
  EXPECT_THAT(nodes_.drains_, IsEmpty());
}

TEST_F(SchedctlServiceTest, NodeRevokeOfAnUnknownNodeIsNotFound) {
  const Result r = Run({"node", "revoke", "ws9"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "error: NOT_FOUND: node ws9 not found\n");
  EXPECT_THAT(r.out, IsEmpty());
  absl::MutexLock lock(&nodes_.mu_);
  ASSERT_THAT(nodes_.revokes_, SizeIs(1));
  EXPECT_EQ(nodes_.revokes_[0].name(), "ws9");
}

constexpr char kPin[] = "sha256:5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76b9719d911017c592";

TEST_F(SchedctlServiceTest, TokenCreatePrintsTheCaPinAfterTheToken) {
  {
    absl::MutexLock lock(&tokens_.mu_);
    tokens_.ca_pin_ = kPin;
  }
  const Result r = Run({"token", "create", "--role", "agent", "--uses", "1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, std::string("3f9c0a1b2c3d4e5f.8c1e55d0b7a94f2e9d3c6b1a0f7e4d2c\n"
                               "token 3f9c0a1b2c3d4e5f created: role agent, does not expire, 1 "
                               "join; the line above is the token, shown only this once\n"
                               "ca pin: ") +
                       kPin + "\n");

  const Result json = Run({"token", "create", "--role", "agent", "-o", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  CreateTokenResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.out, &parsed).ok()) << json.out;
  EXPECT_EQ(parsed.ca_pin(), kPin);
}

TEST_F(SchedctlServiceTest, UnreadableCaFileOrBadPinFailsBeforeAnyCall) {
  const Result flag = Run({"--ca_file", "/nonexistent/ca.crt", "token", "list"});
  EXPECT_EQ(flag.exit_code, 1);
  EXPECT_EQ(flag.err, "error: NOT_FOUND: cannot read the CA file /nonexistent/ca.crt\n");
  EXPECT_THAT(flag.out, IsEmpty());

  const std::string not_pem = WriteFile("not.pem", "hello\n");
  const Result empty = Run({"token", "list", "--ca-file", not_pem});
  EXPECT_EQ(empty.exit_code, 1);
  EXPECT_EQ(empty.err, "error: INVALID_ARGUMENT: " + not_pem + " holds no PEM certificate\n");

  env_[kCaPinEnvVar] = "sha256:abc";
  const Result pin = Run({"get", "jobs"});
  EXPECT_EQ(pin.exit_code, 1);
  EXPECT_EQ(pin.err,
            "error: INVALID_ARGUMENT: $SCHED_CA_PIN: expected sha256: and 64 hex digits, got "
            "\"sha256:abc\"\n");

  env_[kCaFileEnvVar] = "/nonexistent/env-ca.crt";
  const Result env = Run({"get", "jobs"});
  EXPECT_EQ(env.exit_code, 1);
  EXPECT_EQ(env.err, "error: NOT_FOUND: cannot read the CA file /nonexistent/env-ca.crt\n");

  absl::MutexLock lock(&tokens_.mu_);
  EXPECT_THAT(tokens_.authorizations_, IsEmpty());
  absl::MutexLock jobs_lock(&jobs_.mu_);
  EXPECT_THAT(jobs_.list_requests_, IsEmpty());
}

TEST_F(SchedctlServiceTest, PinAgainstAPlaintextServerIsUnavailable) {
  const Result r = Run({"--timeout", "2s", "--ca_pin", kPin, "token", "list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, ::testing::StartsWith("error: UNAVAILABLE: "));
  absl::MutexLock lock(&tokens_.mu_);
  EXPECT_THAT(tokens_.authorizations_, IsEmpty());
}

// A CA and a server certificate for localhost and 127.0.0.1 in `dir`, made as schedd makes its
// own.
absl::StatusOr<auth::ServerTls> MakeServerTls(const std::string& dir) {
  auth::TlsOptions options;
  options.dir = dir;
  return auth::LoadOrCreateServerTls(options);
}

// The fakes behind TLS with a CA of their own.
class SchedctlTlsTest : public SchedctlServiceTest {
 protected:
  void SetUp() override {
    absl::StatusOr<auth::ServerTls> tls = MakeServerTls(FreshDir("tls"));
    ASSERT_TRUE(tls.ok()) << tls.status();
    tls_ = *std::move(tls);
    SchedctlServiceTest::SetUp();
  }

  std::shared_ptr<grpc::ServerCredentials> ServerCredentials() override {
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({tls_.key_pem, tls_.cert_chain_pem});
    return grpc::SslServerCredentials(ssl);
  }

  // `token list` and how it ended: 0 when it reached the TokenService.
  int TokenList(const std::vector<std::string>& options) {
    std::vector<std::string> args = options;
    args.insert(args.end(), {"token", "list"});
    const Result r = Run(args);
    EXPECT_EQ(r.exit_code == 0, r.err.empty()) << r.err;
    return r.exit_code;
  }

  // The calls the TokenService answered, by the authorization each carried.
  std::vector<std::string> Calls() {
    absl::MutexLock lock(&tokens_.mu_);
    return tokens_.authorizations_;
  }

  static std::string ZeroPin() { return "sha256:" + std::string(64, '0'); }

  auth::ServerTls tls_;
};

TEST_F(SchedctlTlsTest, PinTrustsTheCaTheServerPresents) {
  ASSERT_THAT(tls_.pin, ::testing::StartsWith("sha256:"));
  const Result r =
      Run({"--ca_pin", tls_.pin, "--token", "0a1b2c3d4e5f6071.s3cret", "token", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "No tokens. Make one with: schedctl token create --role ROLE\n");
  env_[kCaPinEnvVar] = tls_.pin;
  EXPECT_EQ(TokenList({}), 0);
  EXPECT_THAT(Calls(), ElementsAre("Bearer 0a1b2c3d4e5f6071.s3cret", ""));
}

TEST_F(SchedctlTlsTest, PinThatMatchesNothingIsUnauthenticatedAndSendsNothing) {
  const Result r =
      Run({"--token", "0a1b2c3d4e5f6071.s3cret", "--ca_pin", ZeroPin(), "token", "list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "error: UNAUTHENTICATED: no certificate schedd presented has the pin " +
                       ZeroPin() + ": the address reaches something else, or the pin is wrong\n");
  EXPECT_THAT(r.out, IsEmpty());
  env_[kCaPinEnvVar] = ZeroPin();
  const Result env = Run({"token", "list"});
  EXPECT_EQ(env.exit_code, 1);
  EXPECT_THAT(env.err, ::testing::StartsWith("error: UNAUTHENTICATED: "));
  EXPECT_THAT(Calls(), IsEmpty());
}

TEST_F(SchedctlTlsTest, CaFileTrustsItsCertificates) {
  const std::string ca = WriteFile("tls_ca.crt", tls_.ca_pem);
  EXPECT_EQ(TokenList({"--ca_file", ca}), 0);
  env_[kCaFileEnvVar] = ca;
  EXPECT_EQ(TokenList({}), 0);
  EXPECT_THAT(Calls(), SizeIs(2));
}

TEST_F(SchedctlTlsTest, FlagsBeatTheEnvironmentAndAFileBeatsAPin) {
  const std::string ca = WriteFile("tls_ca.crt", tls_.ca_pem);
  env_[kCaPinEnvVar] = ZeroPin();
  EXPECT_EQ(TokenList({"--ca_file", ca}), 0);
  EXPECT_EQ(TokenList({"--ca_file", ca, "--ca_pin", ZeroPin()}), 0);
  env_[kCaFileEnvVar] = "/nonexistent/ca.crt";
  EXPECT_EQ(TokenList({"--ca_pin", tls_.pin}), 0);
  EXPECT_EQ(TokenList({}), 1);  // $SCHED_CA_FILE before $SCHED_CA_PIN: the file is missing
  env_[kCaFileEnvVar] = ca;
  EXPECT_EQ(TokenList({}), 0);
  EXPECT_THAT(Calls(), SizeIs(4));
}

TEST_F(SchedctlTlsTest, PlaintextOrAnotherCaDoesNotReachIt) {
  const Result plain = Run({"--timeout", "2s", "token", "list"});
  EXPECT_EQ(plain.exit_code, 1);
  EXPECT_THAT(plain.err, ::testing::StartsWith("error: UNAVAILABLE: "));

  absl::StatusOr<auth::ServerTls> other = MakeServerTls(FreshDir("other"));
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_NE(other->pin, tls_.pin);
  const Result wrong_ca = Run(
      {"--timeout", "2s", "--ca_file", WriteFile("other_ca.crt", other->ca_pem), "token", "list"});
  EXPECT_EQ(wrong_ca.exit_code, 1);
  EXPECT_THAT(wrong_ca.err, ::testing::StartsWith("error: UNAVAILABLE: "));
  EXPECT_THAT(Calls(), IsEmpty());
}

}  // namespace
}  // namespace sched::client

namespace sched::client {
namespace {

TEST_F(SchedctlServiceTest, SecretsTakeTheirValuesFromTheEnvironmentAndDescribeHidesThem) {
  const std::string file = WriteFile("secret.yaml", "run: echo hi\nsecrets: [HF_TOKEN]\n");
  // Not set here: refused before anything is sent.
  Result r = Run({"submit", "-f", file});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("secrets: HF_TOKEN is not set in this environment"));
  {
    absl::MutexLock lock(&jobs_.mu_);
    EXPECT_THAT(jobs_.submits_, IsEmpty());
  }
  env_["HF_TOKEN"] = "hf_abcdef99";
  r = Run({"submit", "-f", file});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  absl::MutexLock lock(&jobs_.mu_);
  ASSERT_THAT(jobs_.submits_, SizeIs(1));
  const auto& env = jobs_.submits_[0].spec().env();
  ASSERT_EQ(env.size(), 1);
  EXPECT_EQ(env[0].name(), "HF_TOKEN");
  EXPECT_EQ(env[0].value(), "hf_abcdef99");
  EXPECT_TRUE(env[0].secret());
}

}  // namespace
}  // namespace sched::client
