// The real handlers over loopback: JobService, NodeService, AgentService, health, reflection.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <filesystem>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "gtest/gtest.h"
#include "reflection_subset.pb.h"
#include "sched/v1/agent_service.grpc.pb.h"
#include "sched/v1/cost_service.grpc.pb.h"
#include "sched/v1/job_service.grpc.pb.h"
#include "sched/v1/node_service.grpc.pb.h"
#include "server/auth/channel.h"
#include "server/daemon/daemon.h"
#include "server/store/memory_store.h"
#include "tests/testing/test_data_dir.h"

namespace sched {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

// An agent speaking the raw protocol, so tests control every message.
class RawAgent {
 public:
  explicit RawAgent(std::shared_ptr<grpc::Channel> channel)
      : stub_(v1::AgentService::NewStub(channel)), stream_(stub_->Connect(&ctx_)) {}
  ~RawAgent() {
    if (finished_) return;
    ctx_.TryCancel();
    v1::ServerMessage drop;
    while (stream_->Read(&drop)) {
    }
    stream_->Finish();
  }

  bool Register(const std::string& name, int cpus = 4, double price_per_hour = 0,
                const std::string& provider = "") {
    v1::AgentMessage m;
    m.mutable_register_()->set_node_name(name);
    m.mutable_register_()->mutable_capabilities()->set_cpus(cpus);
    m.mutable_register_()->mutable_capabilities()->set_price_per_hour(price_per_hour);
    m.mutable_register_()->mutable_capabilities()->set_provider(provider);
    m.mutable_register_()->mutable_capabilities()->set_memory_bytes(int64_t{8} << 30);
    return stream_->Write(m);
  }
  bool Send(const v1::AgentMessage& m) { return stream_->Write(m); }
  bool Update(const std::string& id, uint64_t epoch, v1::JobState state, int exit_code = 0) {
    v1::AgentMessage m;
    v1::JobUpdate* u = m.mutable_update();
    u->set_job_id(id);
    u->set_epoch(epoch);
    u->set_state(state);
    u->set_exit_code(exit_code);
    return stream_->Write(m);
  }
  bool Log(const std::string& id, uint64_t epoch, const std::string& data) {
    v1::AgentMessage m;
    m.mutable_log()->set_job_id(id);
    m.mutable_log()->set_epoch(epoch);
    m.mutable_log()->set_stream(v1::LOG_STREAM_STDOUT);
    m.mutable_log()->set_data(data);
    return stream_->Write(m);
  }
  // Next message that is not a heartbeat ack.
  std::optional<v1::ServerMessage> Next() {
    v1::ServerMessage m;
    while (stream_->Read(&m)) {
      if (!m.has_heartbeat_ack()) return m;
    }
    return std::nullopt;
  }
  grpc::Status Finish() {
    finished_ = true;
    return stream_->Finish();
  }

 private:
  bool finished_ = false;
  grpc::ClientContext ctx_;
  std::unique_ptr<v1::AgentService::Stub> stub_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::ServerMessage>> stream_;
};

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DaemonOptions o;
    o.data_dir = testing::TestDataDir();  // checkpoint chunks go there
    o.listen = "127.0.0.1:0";
    o.metrics_listen = "";
    auto d = Daemon::Start(o, &store_, &clock_);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(daemon_->port()),
                                   grpc::InsecureChannelCredentials());
    jobs_ = v1::JobService::NewStub(channel_);
    nodes_ = v1::NodeService::NewStub(channel_);
  }

  v1::SubmitJobResponse Submit(const std::string& name, const std::string& request_id = "",
                               grpc::Status* status_out = nullptr) {
    grpc::ClientContext ctx;
    v1::SubmitJobRequest req;
    req.mutable_spec()->set_name(name);
    req.mutable_spec()->set_run("echo " + name);
    req.set_request_id(request_id);
    v1::SubmitJobResponse resp;
    grpc::Status s = jobs_->SubmitJob(&ctx, req, &resp);
    if (status_out)
      *status_out = s;
    else
      EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  v1::Job GetJob(const std::string& id) {
    grpc::ClientContext ctx;
    v1::GetJobRequest req;
    req.set_job_id(id);
    v1::Job job;
    EXPECT_TRUE(jobs_->GetJob(&ctx, req, &job).ok());
    return job;
  }

  FakeClock clock_;
  MemoryStore store_;
  std::unique_ptr<Daemon> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::NodeService::Stub> nodes_;
};

TEST_F(ServiceTest, SubmitGetAndRetriedSubmit) {
  v1::SubmitJobResponse a = Submit("train", "req-1");
  EXPECT_EQ(a.job().state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(a.job().spec().project(), "default");
  EXPECT_FALSE(a.existing());
  v1::SubmitJobResponse again = Submit("train", "req-1");
  EXPECT_TRUE(again.existing());
  EXPECT_EQ(again.job().id(), a.job().id());
  EXPECT_EQ(GetJob(a.job().id().substr(0, 8)).id(), a.job().id());
}

TEST_F(ServiceTest, BadInputGetsTheRightCodeAndAMessage) {
  grpc::Status s;
  Submit("has space", "", &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("name"));

  grpc::ClientContext c1;
  v1::SubmitJobRequest nan_cpu;
  nan_cpu.mutable_spec()->set_run("x");
  nan_cpu.mutable_spec()->mutable_resources()->set_cpus(std::numeric_limits<double>::infinity());
  v1::SubmitJobResponse r1;
  s = jobs_->SubmitJob(&c1, nan_cpu, &r1);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("resources.cpus"));

  grpc::ClientContext c2;
  v1::GetJobRequest get;
  get.set_job_id("0123456789abcdef");
  v1::Job job;
  s = jobs_->GetJob(&c2, get, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);

  grpc::ClientContext c3;
  v1::ListJobsRequest list;
  list.set_page_token("garbage");
  v1::ListJobsResponse lr;
  s = jobs_->ListJobs(&c3, list, &lr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("page_token"));

  grpc::ClientContext c4;
  v1::ListJobsRequest bad_state;
  bad_state.add_states(static_cast<v1::JobState>(42));
  s = jobs_->ListJobs(&c4, bad_state, &lr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  grpc::ClientContext c5;
  v1::CordonRequest cordon;
  cordon.set_name("nope");
  v1::Node node;
  s = nodes_->Cordon(&c5, cordon, &node);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServiceTest, ListJobsPagesThroughEverything) {
  for (int i = 0; i < 7; ++i) Submit("j" + std::to_string(i));
  std::vector<std::string> names;
  std::string token;
  int pages = 0;
  do {
    grpc::ClientContext ctx;
    v1::ListJobsRequest req;
    req.set_page_size(3);
    req.set_page_token(token);
    v1::ListJobsResponse resp;
    ASSERT_TRUE(jobs_->ListJobs(&ctx, req, &resp).ok());
    for (const auto& j : resp.jobs()) names.push_back(j.spec().name());
    token = resp.next_page_token();
    pages++;
  } while (!token.empty());
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(names, ::testing::ElementsAre("j0", "j1", "j2", "j3", "j4", "j5", "j6"));
}

TEST_F(ServiceTest, BudgetsAndCostReports) {
  auto costs = v1::CostService::NewStub(channel_);
  auto set = [&](const std::string& project, double limit, std::vector<int> alerts,
                 v1::Budget* out) {
    grpc::ClientContext ctx;
    v1::SetBudgetRequest req;
    req.set_project(project);
    req.set_monthly_limit(limit);
    for (int a : alerts) req.add_alert_percents(a);
    return costs->SetBudget(&ctx, req, out);
  };
  v1::Budget budget;
  grpc::Status s = set("llm", -1, {}, &budget);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("monthly_limit"));
  s = set("llm", 50, {80, 50}, &budget);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("alert_percents"));
  {
    grpc::ClientContext ctx;
    v1::GetBudgetRequest req;
    req.set_project("llm");
    EXPECT_EQ(costs->GetBudget(&ctx, req, &budget).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  ASSERT_TRUE(set("llm", 50, {}, &budget).ok());
  EXPECT_THAT(budget.alert_percents(), ::testing::ElementsAre(50, 80, 100));
  EXPECT_TRUE(budget.hard_cap());
  EXPECT_DOUBLE_EQ(budget.spent_this_month(), 0);

  // A job holds a $3/h node for 20 minutes.
  RawAgent agent(channel_);
  ASSERT_TRUE(agent.Register("rented", 4, 3.0, "runpod"));
  ASSERT_TRUE(agent.Next().has_value());
  grpc::ClientContext submit_ctx;
  v1::SubmitJobRequest submit;
  submit.mutable_spec()->set_run("train");
  submit.mutable_spec()->set_project("llm");
  v1::SubmitJobResponse submitted;
  ASSERT_TRUE(jobs_->SubmitJob(&submit_ctx, submit, &submitted).ok());
  auto assign = agent.Next();
  ASSERT_TRUE(assign && assign->has_assignment());
  clock_.Advance(absl::Minutes(20));
  ASSERT_TRUE(
      agent.Update(submitted.job().id(), assign->assignment().epoch(), v1::JOB_STATE_SUCCEEDED));
  ASSERT_TRUE(agent.Next().has_value());  // the update ack

  grpc::ClientContext get_ctx;
  v1::GetBudgetRequest get;
  get.set_project("llm");
  ASSERT_TRUE(costs->GetBudget(&get_ctx, get, &budget).ok());
  EXPECT_DOUBLE_EQ(budget.spent_this_month(), 1.0);

  grpc::ClientContext report_ctx;
  v1::GetCostReportRequest report_req;
  report_req.set_group_by(v1::COST_GROUP_PROVIDER);
  report_req.mutable_since()->set_seconds(absl::ToUnixSeconds(clock_.Now() - absl::Hours(1)));
  v1::CostReport report;
  ASSERT_TRUE(costs->GetCostReport(&report_ctx, report_req, &report).ok());
  ASSERT_EQ(report.lines_size(), 1);
  EXPECT_EQ(report.lines(0).key(), "runpod");
  EXPECT_DOUBLE_EQ(report.lines(0).dollars(), 1.0);
  EXPECT_NEAR(report.lines(0).hours(), 1.0 / 3, 1e-9);
  EXPECT_EQ(report.lines(0).leases(), 1u);
  EXPECT_DOUBLE_EQ(report.total_dollars(), 1.0);

  grpc::ClientContext bad_ctx;
  report_req.set_group_by(static_cast<v1::CostGroup>(42));
  EXPECT_EQ(costs->GetCostReport(&bad_ctx, report_req, &report).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServiceTest, AgentRunsAJobEndToEndOverTheStream) {
  RawAgent agent(channel_);
  ASSERT_TRUE(agent.Register("ws"));
  auto ack = agent.Next();
  ASSERT_TRUE(ack && ack->has_register_ack());
  EXPECT_EQ(ack->register_ack().lease_ttl_ms(), 10'000u);

  // A log follower opened before the job runs.
  v1::SubmitJobResponse sub = Submit("hello");
  const std::string id = sub.job().id();
  auto assign = agent.Next();
  ASSERT_TRUE(assign && assign->has_assignment());
  EXPECT_EQ(assign->assignment().job().id(), id);
  const uint64_t epoch = assign->assignment().epoch();
  EXPECT_GT(epoch, 0u);

  grpc::ClientContext follow_ctx;
  v1::GetJobLogsRequest follow_req;
  follow_req.set_job_id(id);
  follow_req.set_follow(true);
  auto follower = jobs_->GetJobLogs(&follow_ctx, follow_req);

  // A stale epoch is refused with FAILED_PRECONDITION and the stream stays open.
  ASSERT_TRUE(agent.Update(id, epoch + 1, v1::JOB_STATE_SUCCEEDED));
  auto rejected = agent.Next();
  ASSERT_TRUE(rejected && rejected->has_rejected());
  EXPECT_EQ(rejected->rejected().code(), static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION));
  EXPECT_THAT(rejected->rejected().message(), HasSubstr("stale epoch"));

  ASSERT_TRUE(agent.Update(id, epoch, v1::JOB_STATE_RUNNING));
  ASSERT_TRUE(agent.Log(id, epoch, "hello\n"));
  ASSERT_TRUE(agent.Log(id, epoch, "world\n"));
  ASSERT_TRUE(agent.Update(id, epoch, v1::JOB_STATE_SUCCEEDED, 0));
  auto update_ack = agent.Next();
  ASSERT_TRUE(update_ack && update_ack->has_update_ack());
  EXPECT_EQ(update_ack->update_ack().state(), v1::JOB_STATE_SUCCEEDED);

  std::string followed;
  v1::LogChunk chunk;
  while (follower->Read(&chunk)) followed += chunk.data();
  EXPECT_TRUE(follower->Finish().ok());
  EXPECT_EQ(followed, "hello\nworld\n");

  v1::Job done = GetJob(id);
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.node(), "ws");
  EXPECT_TRUE(done.has_finish_time());

  grpc::ClientContext ln_ctx;
  v1::ListNodesResponse nodes;
  ASSERT_TRUE(nodes_->ListNodes(&ln_ctx, v1::ListNodesRequest(), &nodes).ok());
  ASSERT_THAT(nodes.nodes(), SizeIs(1));
  EXPECT_EQ(nodes.nodes(0).state(), v1::NODE_STATE_READY);
  EXPECT_DOUBLE_EQ(nodes.nodes(0).capabilities().cpus(), 4);
}

TEST_F(ServiceTest, FirstMessageMustBeRegister) {
  RawAgent agent(channel_);
  v1::AgentMessage hb;
  hb.mutable_heartbeat();
  agent.Send(hb);
  EXPECT_FALSE(agent.Next().has_value());
  grpc::Status s = agent.Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("register"));
}

TEST_F(ServiceTest, CancelReachesTheAgentAndWatchSeesEveryState) {
  grpc::ClientContext watch_ctx;
  v1::WatchJobsRequest watch_req;
  auto watch = jobs_->WatchJobs(&watch_ctx, watch_req);

  RawAgent agent(channel_);
  ASSERT_TRUE(agent.Register("ws"));
  ASSERT_TRUE(agent.Next()->has_register_ack());
  const std::string id = Submit("long").job().id();
  auto assign = agent.Next();
  ASSERT_TRUE(assign && assign->has_assignment());
  const uint64_t epoch = assign->assignment().epoch();
  ASSERT_TRUE(agent.Update(id, epoch, v1::JOB_STATE_RUNNING));

  grpc::ClientContext cancel_ctx;
  v1::CancelJobRequest cancel;
  cancel.set_job_id(id);
  v1::Job cancelled;
  // RUNNING may not be stored yet; either way the cancel is recorded.
  ASSERT_TRUE(jobs_->CancelJob(&cancel_ctx, cancel, &cancelled).ok());
  EXPECT_TRUE(cancelled.cancel_requested());
  auto cancel_msg = agent.Next();
  ASSERT_TRUE(cancel_msg && cancel_msg->has_cancel());
  EXPECT_EQ(cancel_msg->cancel().job_id(), id);
  ASSERT_TRUE(agent.Update(id, epoch, v1::JOB_STATE_CANCELLED, 143));
  ASSERT_TRUE(agent.Next()->has_update_ack());

  std::vector<v1::JobState> states;
  v1::WatchJobsResponse ev;
  while (watch->Read(&ev)) {
    if (ev.job().id() != id) continue;
    if (states.empty() || states.back() != ev.job().state()) states.push_back(ev.job().state());
    if (ev.job().state() == v1::JOB_STATE_CANCELLED) break;
  }
  watch_ctx.TryCancel();
  EXPECT_THAT(states, ::testing::ElementsAre(v1::JOB_STATE_PENDING, v1::JOB_STATE_ASSIGNED,
                                             v1::JOB_STATE_RUNNING, v1::JOB_STATE_CANCELLED));

  grpc::ClientContext again_ctx;
  v1::Job again;
  grpc::Status s = jobs_->CancelJob(&again_ctx, cancel, &again);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(ServiceTest, HealthCheckAnswersServing) {
  grpc::ClientContext ctx;
  // grpc.health.v1.Health/Check with an empty service name, spoken as raw bytes so the test
  // needs no health proto: an empty request, and a reply whose field 1 is SERVING (1).
  grpc::GenericStub generic(channel_);
  grpc::ByteBuffer request;
  grpc::Slice empty;
  request = grpc::ByteBuffer(&empty, 1);
  grpc::ByteBuffer response;
  absl::Notification done;
  grpc::Status status;
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) {
                      status = s;
                      done.Notify();
                    });
  done.WaitForNotification();
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
}

// Speaks grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo through the generic
// stub with messages of the same wire format.
class ReflectionCall {
 public:
  explicit ReflectionCall(std::shared_ptr<grpc::Channel> channel) : stub_(channel) {
    call_ = stub_.PrepareCall(
        &ctx_, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq_);
    call_->StartCall(Tag(1));
    Await(1);
  }
  ~ReflectionCall() {
    call_->WritesDone(Tag(4));
    Await(4);
    grpc::Status status;
    call_->Finish(&status, Tag(5));
    Await(5);
    cq_.Shutdown();
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) {
    }
  }
  bool Ask(const schedtest::reflection::ServerReflectionRequest& req,
           schedtest::reflection::ServerReflectionResponse* resp) {
    std::string bytes = req.SerializeAsString();
    grpc::Slice slice(bytes);
    grpc::ByteBuffer out(&slice, 1);
    call_->Write(out, Tag(2));
    if (!Await(2)) return false;
    grpc::ByteBuffer in;
    call_->Read(&in, Tag(3));
    if (!Await(3)) return false;
    std::vector<grpc::Slice> slices;
    if (!in.Dump(&slices).ok()) return false;
    std::string got;
    for (auto& s : slices) got.append(reinterpret_cast<const char*>(s.begin()), s.size());
    return resp->ParseFromString(got);
  }

 private:
  static void* Tag(intptr_t i) { return reinterpret_cast<void*>(i); }
  bool Await(intptr_t want) {
    void* tag;
    bool ok = false;
    EXPECT_TRUE(cq_.Next(&tag, &ok));
    EXPECT_EQ(tag, Tag(want));
    return ok;
  }
  grpc::GenericStub stub_;
  grpc::ClientContext ctx_;
  grpc::CompletionQueue cq_;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_;
};

TEST_F(ServiceTest, ReflectionListsEveryService) {
  ReflectionCall call(channel_);
  schedtest::reflection::ServerReflectionRequest req;
  req.set_list_services("");
  schedtest::reflection::ServerReflectionResponse resp;
  ASSERT_TRUE(call.Ask(req, &resp));
  std::vector<std::string> names;
  for (const auto& s : resp.list_services_response().service()) names.push_back(s.name());
  EXPECT_THAT(names, ::testing::IsSupersetOf({"sched.v1.JobService", "sched.v1.AgentService",
                                              "sched.v1.NodeService", "sched.v1.CostService",
                                              "grpc.health.v1.Health"}));
  // And the descriptors behind a service, which grpcurl needs to build requests.
  req.set_file_containing_symbol("sched.v1.JobService");
  ASSERT_TRUE(call.Ask(req, &resp));
  EXPECT_GT(resp.file_descriptor_response().file_descriptor_proto_size(), 0);
}

// GET /metrics over a plain socket; returns the body.
std::string Scrape(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string req = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  EXPECT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  std::string resp;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) resp.append(buf, n);
  close(fd);
  return resp;
}

TEST(DaemonCatalogTest, LoadsTheShippedCatalogAndRefusesABadOne) {
  FakeClock clock;
  MemoryStore store;
  DaemonOptions o;
  o.data_dir = testing::TestDataDir();  // checkpoint chunks go there
  o.listen = "127.0.0.1:0";
  o.metrics_listen = "";
  o.catalog_path = SCHED_SOURCE_DIR "/deploy/catalog/catalog.yaml";
  auto good = Daemon::Start(o, &store, &clock);
  EXPECT_TRUE(good.ok()) << good.status();
  good->reset();
  o.catalog_path = "/nonexistent/catalog.yaml";
  auto bad = Daemon::Start(o, &store, &clock);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("catalog: /nonexistent/catalog.yaml: cannot open the catalog file"));
}

TEST(MetricsTest, SchedulerAndRpcSeriesAreExported) {
  FakeClock clock;
  MemoryStore store;
  DaemonOptions o;
  o.data_dir = testing::TestDataDir();  // checkpoint chunks go there
  o.listen = "127.0.0.1:0";
  o.metrics_listen = "127.0.0.1:0";
  auto d = Daemon::Start(o, &store, &clock);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_GT((*d)->metrics_port(), 0);
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string((*d)->port()),
                                     grpc::InsecureChannelCredentials());
  RawAgent agent(channel);
  ASSERT_TRUE(agent.Register("ws", 1, 2.0, "vastai"));
  ASSERT_TRUE(agent.Next()->has_register_ack());
  {
    grpc::ClientContext ctx;
    v1::SetBudgetRequest req;
    req.set_project("default");
    req.set_monthly_limit(10);
    v1::Budget budget;
    ASSERT_TRUE(v1::CostService::NewStub(channel)->SetBudget(&ctx, req, &budget).ok());
  }
  auto jobs = v1::JobService::NewStub(channel);
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext ctx;
    v1::SubmitJobRequest req;
    req.mutable_spec()->set_run("true");
    v1::SubmitJobResponse resp;
    ASSERT_TRUE(jobs->SubmitJob(&ctx, req, &resp).ok());
  }
  const std::string body = Scrape((*d)->metrics_port());
  EXPECT_THAT(body, HasSubstr("sched_job_submits_total 2"));
  EXPECT_THAT(body, HasSubstr("sched_jobs{state=\"assigned\"} 1"));
  EXPECT_THAT(body, HasSubstr("sched_jobs{state=\"pending\"} 1"));
  EXPECT_THAT(body, HasSubstr("sched_job_assignments_total 1"));
  EXPECT_THAT(body, HasSubstr("sched_agents_connected 1"));
  EXPECT_THAT(body, HasSubstr("sched_lease_expiries_total 0"));
  // The first job was weighed and placed; the second found no node with room to weigh.
  EXPECT_THAT(body, HasSubstr("sched_decisions_total 1\n"));
  EXPECT_THAT(body, HasSubstr("sched_decisions_skipped_total 0\n"));
  EXPECT_THAT(body, ::testing::ContainsRegex(
                        "sched_rpc_duration_seconds_count\\{[^}]*method=\"/sched.v1.JobService/"
                        "SubmitJob\"[^}]*\\} 2"));
  EXPECT_THAT(body, Not(HasSubstr("job_id")));

  // The running job has held the $2/h node for half an hour. (Should the ticker expire its
  // lease meanwhile, the lease ends at this same clock reading: still one dollar.)
  clock.Advance(absl::Minutes(30));
  const std::string money = Scrape((*d)->metrics_port());
  EXPECT_THAT(money, HasSubstr("sched_project_spend_dollars{project=\"default\"} 1\n"));
  EXPECT_THAT(money, HasSubstr("sched_project_budget_dollars{project=\"default\"} 10\n"));
  EXPECT_THAT(money, HasSubstr("sched_project_budget_used_ratio{project=\"default\"} 0.1\n"));
  // Its thresholds (the defaults 50, 80, 100) and its cap, the spend by provider, the queue's
  // oldest job, each node, the store's disk and checkpoint uploads.
  EXPECT_THAT(money, HasSubstr("sched_project_budget_threshold_ratio{project=\"default\","
                               "threshold=\"80\"} 0.8\n"));
  EXPECT_THAT(money, HasSubstr("sched_project_budget_hard_cap{project=\"default\"} 1\n"));
  EXPECT_THAT(money, HasSubstr("sched_provider_spend_dollars{provider=\"vastai\"} 1\n"));
  EXPECT_THAT(money, HasSubstr("sched_pending_jobs_oldest_age_seconds{project=\"default\"} 1800\n"));
  EXPECT_THAT(money, HasSubstr("sched_node_up{node=\"ws\",provider=\"vastai\"} 1\n"));
  EXPECT_THAT(money,
              HasSubstr("sched_node_price_dollars_per_hour{node=\"ws\",provider=\"vastai\"} 2\n"));
  EXPECT_THAT(money, HasSubstr("sched_checkpoint_uploads_total{result=\"ok\"} 0\n"));
  EXPECT_THAT(money, HasSubstr("sched_checkpoint_uploads_total{result=\"failed\"} 0\n"));
  EXPECT_THAT(money, ::testing::ContainsRegex("sched_store_disk_free_bytes [1-9][0-9]*"));
  EXPECT_THAT(money, ::testing::ContainsRegex("sched_store_disk_size_bytes [1-9][0-9]*"));
}

v1::AgentMessage RegisterWithGpu(const std::string& name, const std::string& provider,
                                 double price_per_hour, const std::string& gpu,
                                 int64_t gpu_memory_bytes) {
  v1::AgentMessage m;
  m.mutable_register_()->set_node_name(name);
  v1::Capabilities* caps = m.mutable_register_()->mutable_capabilities();
  caps->set_cpus(8);
  caps->set_memory_bytes(int64_t{32} << 30);
  caps->set_provider(provider);
  caps->set_price_per_hour(price_per_hour);
  v1::GpuInfo* g = caps->add_gpus();
  g->set_model(gpu);
  g->set_memory_bytes(gpu_memory_bytes);
  return m;
}

// schedd on a loopback port, with the shipped catalog or none.
DaemonOptions LoopbackOptions(bool catalog) {
  DaemonOptions o;
  o.data_dir = testing::TestDataDir();  // checkpoint chunks go there
  o.listen = "127.0.0.1:0";
  o.metrics_listen = "";
  if (catalog) o.catalog_path = SCHED_SOURCE_DIR "/deploy/catalog/catalog.yaml";
  return o;
}

TEST(CostAdviceTest, NeedsACatalogAndALocalMachine) {
  FakeClock clock;
  MemoryStore store;
  auto plain = Daemon::Start(LoopbackOptions(false), &store, &clock);
  ASSERT_TRUE(plain.ok()) << plain.status();
  auto advice_from = [](const Daemon& d, const std::string& node, v1::CostAdvice* out) {
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(d.port()),
                                       grpc::InsecureChannelCredentials());
    grpc::ClientContext ctx;
    v1::GetCostAdviceRequest req;
    req.set_node(node);
    return v1::CostService::NewStub(channel)->GetCostAdvice(&ctx, req, out);
  };
  v1::CostAdvice advice;
  grpc::Status s = advice_from(**plain, "", &advice);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("no catalog loaded"));
  plain->reset();

  auto d = Daemon::Start(LoopbackOptions(true), &store, &clock);
  ASSERT_TRUE(d.ok()) << d.status();
  s = advice_from(**d, "", &advice);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("no local machine"));
  s = advice_from(**d, "nope", &advice);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
}

// A job asking 20 GB of GPU memory cannot run on the user's RTX 3080 and runs on a rented A100
// for 20 minutes at $3/h; the advice counts that dollar as too small locally and proposes cards
// with room for it.
TEST(CostAdviceTest, TheCloudRunOfAJobTooBigForHomeIsWeighedAgainstUpgrades) {
  FakeClock clock;
  MemoryStore store;
  auto d = Daemon::Start(LoopbackOptions(true), &store, &clock);
  ASSERT_TRUE(d.ok()) << d.status();
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string((*d)->port()),
                                     grpc::InsecureChannelCredentials());
  RawAgent home(channel);
  ASSERT_TRUE(home.Send(RegisterWithGpu("ws", "", 0, "NVIDIA GeForce RTX 3080", 10240LL << 20)));
  ASSERT_TRUE(home.Next().has_value());
  RawAgent rented(channel);
  ASSERT_TRUE(rented.Send(
      RegisterWithGpu("rented", "runpod", 3.0, "NVIDIA A100-SXM4-80GB", int64_t{80} << 30)));
  ASSERT_TRUE(rented.Next().has_value());

  grpc::ClientContext submit_ctx;
  v1::SubmitJobRequest submit;
  submit.mutable_spec()->set_name("finetune");
  submit.mutable_spec()->set_run("train");
  submit.mutable_spec()->mutable_resources()->set_gpus(1);
  submit.mutable_spec()->mutable_resources()->set_gpu_memory_bytes(int64_t{20} << 30);
  v1::SubmitJobResponse submitted;
  ASSERT_TRUE(v1::JobService::NewStub(channel)->SubmitJob(&submit_ctx, submit, &submitted).ok());
  auto assign = rented.Next();
  ASSERT_TRUE(assign && assign->has_assignment());
  clock.Advance(absl::Minutes(20));
  ASSERT_TRUE(
      rented.Update(submitted.job().id(), assign->assignment().epoch(), v1::JOB_STATE_SUCCEEDED));
  ASSERT_TRUE(rented.Next().has_value());  // the update ack

  grpc::ClientContext ctx;
  v1::GetCostAdviceRequest req;
  req.set_days(7);
  v1::CostAdvice advice;
  grpc::Status s = v1::CostService::NewStub(channel)->GetCostAdvice(&ctx, req, &advice);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(advice.node(), "ws");
  EXPECT_EQ(advice.days(), 7u);
  EXPECT_EQ(advice.until().seconds() - advice.since().seconds(), 7 * 24 * 3600);
  EXPECT_EQ(advice.gpus(), 1u);
  EXPECT_EQ(advice.catalog_as_of(), "2026-11");
  EXPECT_DOUBLE_EQ(advice.cloud_dollars(), 1.0);
  EXPECT_DOUBLE_EQ(advice.too_small_dollars(), 1.0);
  EXPECT_EQ(advice.too_small_runs(), 1u);
  ASSERT_GT(advice.upgrades_size(), 0);
  for (const v1::UpgradeAdvice& u : advice.upgrades()) {
    EXPECT_THAT(u.job_ids(), ::testing::ElementsAre(submitted.job().id())) << u.description();
    EXPECT_GE(u.gpu_memory_bytes(), int64_t{20} << 30) << u.description();
  }
  // The cheapest card with room for 20 GiB: a used RTX 3090 (24 GiB, $800).
  EXPECT_EQ(advice.upgrades(0).description(), "RTX 3090 in place of RTX 3080");
  EXPECT_DOUBLE_EQ(advice.upgrades(0).price(), 800);
  EXPECT_TRUE(advice.upgrades(0).pays_back());
}

}  // namespace
}  // namespace sched

namespace sched {
namespace {

TEST(SafeByDefaultTest, OnlyLoopbackAddressesCountAsLocal) {
  for (const char* local : {"127.0.0.1:7070", "127.0.0.1:0", "127.1.2.3:80", "localhost:7070",
                            "[::1]:7070", "unix:/run/sched.sock", "ipv4:127.0.0.1:7070"}) {
    EXPECT_TRUE(IsLoopbackAddress(local)) << local;
  }
  for (const char* remote :
       {"0.0.0.0:7070", "[::]:7070", "10.0.0.5:7070", "sched.example.com:7070", "128.0.0.1:7070",
        "127.0.0.1.example.com:7070", "127.0.0:7070", "127.0.0.256:7070", ":7070", "[::2]:7070"}) {
    EXPECT_FALSE(IsLoopbackAddress(remote)) << remote;
  }
}

TEST(SafeByDefaultTest, ARemoteAddressWithoutTlsIsRefusedUnlessTheRiskIsAccepted) {
  FakeClock clock;
  MemoryStore store;
  DaemonOptions o;
  o.data_dir = testing::TestDataDir();
  o.listen = "0.0.0.0:0";
  o.metrics_listen = "";
  o.tls = "off";
  auto refused = Daemon::Start(o, &store, &clock);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("--insecure_remote_no_tls_no_auth"));
  o.insecure_remote = true;
  auto accepted = Daemon::Start(o, &store, &clock);
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_GT((*accepted)->port(), 0);
  EXPECT_EQ((*accepted)->ca_pin(), "");
  accepted->reset();
  o.insecure_remote = false;
  o.listen = "localhost:0";
  auto local = Daemon::Start(o, &store, &clock);
  EXPECT_TRUE(local.ok()) << local.status();
  local->reset();
  o.tls = "sometimes";
  EXPECT_EQ(Daemon::Start(o, &store, &clock).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SafeByDefaultTest, ARemoteAddressGetsTlsAndTokensByDefault) {
  FakeClock clock;
  MemoryStore store;
  DaemonOptions o;
  o.data_dir = testing::TestDataDir() + "/remote";
  o.listen = "0.0.0.0:0";
  o.metrics_listen = "";
  auto d = Daemon::Start(o, &store, &clock);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT((*d)->ca_pin(), ::testing::StartsWith("sha256:"));
  EXPECT_TRUE(std::filesystem::exists((*d)->tls_dir() + "/ca.key"));
  EXPECT_TRUE(std::filesystem::exists((*d)->admin_token_path()));
  const std::string address = absl::StrCat("127.0.0.1:", (*d)->port());
  v1::ListNodesRequest req;
  v1::ListNodesResponse resp;
  // Plaintext is not understood at all.
  {
    auto stub =
        v1::NodeService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    EXPECT_EQ(stub->ListNodes(&ctx, req, &resp).error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  auth::DialOptions dial;
  dial.ca_pem = (*d)->ca_pem();
  // TLS that trusts schedd's CA, without a token: refused.
  {
    auto stub = v1::NodeService::NewStub(auth::Dial(address, dial));
    grpc::ClientContext ctx;
    EXPECT_EQ(stub->ListNodes(&ctx, req, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  // With the first admin token: served.
  {
    dial.token = *auth::ReadTokenFile((*d)->admin_token_path());
    auto stub = v1::NodeService::NewStub(auth::Dial(address, dial));
    grpc::ClientContext ctx;
    const grpc::Status s = stub->ListNodes(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
}

}  // namespace
}  // namespace sched

namespace sched {
namespace {

TEST(ParseFairShare, ReadsWeightsAndNamesTheBadItem) {
  absl::StatusOr<std::map<std::string, double>> w = ParseFairShare(" ml=2, research = 0.5 ");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->size(), 2u);
  EXPECT_EQ(w->at("ml"), 2);
  EXPECT_EQ(w->at("research"), 0.5);
  EXPECT_TRUE(ParseFairShare("").ok());
  for (const char* bad : {"ml", "ml=0", "ml=-1", "ml=x", "../x=1", "ml=1,ml=2", "ml=1e9"}) {
    const absl::Status st = ParseFairShare(bad).status();
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(st.message(), HasSubstr("fair_share")) << bad;
  }
}

}  // namespace
}  // namespace sched
