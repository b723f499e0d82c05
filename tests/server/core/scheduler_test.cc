#include "server/core/scheduler.h"

#include <cmath>
#include <map>
#include <memory>
#include <random>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/store/memory_store.h"
#include "tests/server/cost/test_catalog.h"
#include "tests/testing/fake_agent_link.h"
#include "tests/testing/status_matchers.h"

namespace sched {
namespace {

using ::sched::testing::FakeAgentLink;
using ::sched::testing::IsOk;
using ::sched::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr int64_t kGiB = int64_t{1} << 30;

NodeCapabilities Caps(int cpus, int64_t mem, std::vector<GpuDevice> gpus = {}) {
  NodeCapabilities c;
  c.cpu_millis = cpus * 1000;
  c.memory_bytes = mem;
  c.gpus = std::move(gpus);
  c.provider = "local";
  return c;
}

JobSpec Spec(std::string name, int priority = 0) {
  JobSpec s;
  s.name = std::move(name);
  s.run = "echo hi";
  s.priority = priority;
  return s;
}

// Calls the asynchronous API and returns the value `done` got (the MemoryStore is durable at
// once, so `done` has always run by the time the call returns).
template <typename T, typename F>
absl::StatusOr<T> Call(F f) {
  std::optional<absl::StatusOr<T>> out;
  f([&out](absl::StatusOr<T> r) { out = std::move(r); });
  EXPECT_TRUE(out.has_value()) << "done was not called";
  return out.value_or(absl::InternalError("done was not called"));
}

class SchedulerTest : public ::testing::Test {
 protected:
  SchedulerTest() { Restart(); }

  void Restart() {
    scheduler_.reset();
    SchedulerOptions o;
    o.lease_ttl = absl::Seconds(10);
    o.heartbeat_interval = absl::Seconds(2);
    o.restart_grace = absl::Seconds(5);
    o.max_attempts = 3;
    o.max_pending_per_project = max_pending_;
    o.max_log_bytes_per_job = max_log_bytes_;
    o.seed = 42;
    o.catalog = catalog_;
    o.fair_share = fair_share_;
    auto s = Scheduler::Create(o, &store_, &clock_);
    ASSERT_THAT(s, IsOk());
    scheduler_ = std::move(*s);
  }

  absl::StatusOr<SubmitResult> Submit(JobSpec spec, std::string request_id = "") {
    return Call<SubmitResult>([&](auto done) {
      scheduler_->Submit(std::move(spec), std::move(request_id), std::move(done));
    });
  }

  // Connects an agent; returns its session.
  uint64_t Connect(const std::string& name, NodeCapabilities caps,
                   std::shared_ptr<FakeAgentLink> link, std::vector<JobRef> running = {}) {
    auto session = Call<uint64_t>([&](auto done) {
      scheduler_->ConnectAgent(name, std::move(caps), std::move(running), link, std::move(done));
    });
    EXPECT_THAT(session, IsOk());
    return session.value_or(0);
  }

  absl::StatusOr<Job> Report(const std::string& node, uint64_t session, const std::string& id,
                             uint64_t epoch, JobState state, int exit_code = 0) {
    return Call<Job>([&](auto done) {
      scheduler_->ReportJob(node, session, JobReport{id, epoch, state, exit_code, ""},
                            std::move(done));
    });
  }

  absl::StatusOr<Job> Cancel(const std::string& id) {
    return Call<Job>([&](auto done) { scheduler_->Cancel(id, "", std::move(done)); });
  }

  Job Get(const std::string& id) { return scheduler_->GetJob(id).value(); }

  FakeClock clock_;
  MemoryStore store_;
  std::shared_ptr<const cost::Catalog> catalog_;
  uint64_t max_pending_ = 1'000'000;
  uint64_t max_log_bytes_ = uint64_t{1} << 30;
  std::map<std::string, double> fair_share_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerTest, SubmitStoresPendingJobWithDefaults) {
  auto r = Submit(Spec("train"));
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->existing);
  EXPECT_EQ(r->job.state, JobState::kPending);
  EXPECT_EQ(r->job.attempt, 1u);
  EXPECT_EQ(r->job.spec.project, "default");
  EXPECT_EQ(r->job.spec.resources.cpu_millis, 1000);
  EXPECT_THAT(r->job.id, SizeIs(16));
  auto loaded = store_.Load();
  ASSERT_THAT(loaded, IsOk());
  ASSERT_THAT(loaded->jobs, SizeIs(1));
  EXPECT_EQ(loaded->jobs[0].id, r->job.id);
}

TEST_F(SchedulerTest, RetriedRequestIdReturnsTheSameJob) {
  auto first = Submit(Spec("a"), "req-1");
  auto second = Submit(Spec("a"), "req-1");
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(second, IsOk());
  EXPECT_TRUE(second->existing);
  EXPECT_EQ(first->job.id, second->job.id);
  EXPECT_THAT(scheduler_->ListJobs({}).jobs, SizeIs(1));
  Restart();
  auto third = Submit(Spec("a"), "req-1");
  ASSERT_THAT(third, IsOk());
  EXPECT_TRUE(third->existing);
  EXPECT_EQ(third->job.id, first->job.id);
}

TEST_F(SchedulerTest, BadSpecsNameTheField) {
  JobSpec no_run = Spec("x");
  no_run.run = "  ";
  EXPECT_THAT(Submit(no_run), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("run")));
  EXPECT_THAT(Submit(Spec("x", 5000)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("priority")));
  JobSpec bad_name = Spec("no spaces allowed");
  EXPECT_THAT(Submit(bad_name), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
  JobSpec reserved = Spec("x");
  reserved.env = {{"SCHED_JOB_ID", "forged"}};
  EXPECT_THAT(Submit(reserved),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("env.SCHED_JOB_ID")));
  JobSpec gpu_mem_no_gpu = Spec("x");
  gpu_mem_no_gpu.resources.gpu_memory_bytes = kGiB;
  EXPECT_THAT(Submit(gpu_mem_no_gpu),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("resources.gpu_memory")));
  JobSpec neg_cpu = Spec("x");
  neg_cpu.resources.cpu_millis = -1000;
  EXPECT_THAT(Submit(neg_cpu),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("resources.cpus")));
  EXPECT_THAT(Submit(Spec("x"), std::string(200, 'r')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("request_id")));
  EXPECT_THAT(scheduler_->ListJobs({}).jobs, SizeIs(0));
  EXPECT_EQ(store_.appended(), 0u);
}

TEST_F(SchedulerTest, BadCostFieldsNameTheField) {
  auto with = [](auto edit) {
    JobSpec s = Spec("x");
    edit(s);
    return s;
  };
  EXPECT_THAT(Submit(with([](JobSpec& s) { s.model.method = "qlora"; })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model.parameters: required")));
  EXPECT_THAT(Submit(with([](JobSpec& s) {
                s.model.parameters = 7'000'000'000;
                s.model.precision = "fp8";
              })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model.precision")));
  EXPECT_THAT(Submit(with([](JobSpec& s) {
                s.model.parameters = 7'000'000'000;
                s.model.method = "dreambooth";
              })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model.method")));
  EXPECT_THAT(Submit(with([](JobSpec& s) {
                s.model.parameters = 7'000'000'000;
                s.model.optimizer = "adamw";
              })),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("model.optimizer: only for training methods")));
  EXPECT_THAT(Submit(with([](JobSpec& s) {
                s.model.parameters = 7'000'000'000;
                s.model.method = "qlora";
                s.model.precision = "bf16";
              })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("qlora keeps the base")));
  EXPECT_THAT(Submit(with([](JobSpec& s) { s.runtime = -absl::Hours(1); })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("runtime:")));
  EXPECT_THAT(Submit(with([](JobSpec& s) { s.runtime_gpu_model = "a100"; })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("runtime.gpu_model")));
  EXPECT_THAT(Submit(with([this](JobSpec& s) { s.deadline = clock_.Now() - absl::Minutes(1); })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("deadline: already passed")));
  EXPECT_THAT(Submit(with([](JobSpec& s) { s.max_cost = -1; })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_cost")));
  EXPECT_THAT(Submit(with([](JobSpec& s) { s.max_cost = std::nan(""); })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_cost")));
  EXPECT_THAT(scheduler_->ListJobs({}).jobs, SizeIs(0));
  // A full, valid description is kept as given.
  auto ok = Submit(with([this](JobSpec& s) {
    s.model = {7'000'000'000, "int4", "qlora", "adamw-8bit", 4, 2048, true, 64};
    s.runtime = absl::Hours(3);
    s.runtime_gpu_model = "a100-80gb";
    s.deadline = clock_.Now() + absl::Hours(12);
    s.max_cost = 5;
    s.placement = PlacementPolicy::kCheapest;
    s.spot = SpotPolicy::kOnDemand;
  }));
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ(ok->job.spec.model.lora_rank, 64u);
  EXPECT_EQ(ok->job.spec.placement, PlacementPolicy::kCheapest);
  EXPECT_EQ(ok->job.spec.deadline, clock_.Now() + absl::Hours(12));
}

TEST_F(SchedulerTest, AssignsToAFittingNodeAfterDurableAndRaisesEpochs) {
  auto link = std::make_shared<FakeAgentLink>();
  Connect("ws", Caps(4, 8 * kGiB), link);
  auto a = Submit(Spec("a"));
  auto b = Submit(Spec("b"));
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(a->job.state, JobState::kAssigned);
  EXPECT_EQ(a->job.node, "ws");
  auto cmds = link->Take();
  ASSERT_THAT(cmds, SizeIs(2));
  EXPECT_EQ(cmds[0].kind, "assign");
  EXPECT_EQ(cmds[0].job_id, a->job.id);
  EXPECT_EQ(cmds[1].job_id, b->job.id);
  EXPECT_LT(cmds[0].epoch, cmds[1].epoch);
}

TEST_F(SchedulerTest, PlacementHonoursGpusModelMemoryCpuAndRam) {
  auto small = std::make_shared<FakeAgentLink>();
  auto big = std::make_shared<FakeAgentLink>();
  Connect("ws", Caps(8, 32 * kGiB, {{0, "GPU-a", "NVIDIA GeForce RTX 3080", 10 * kGiB}}), small);
  Connect("cloud", Caps(16, 128 * kGiB,
                        {{0, "GPU-b", "NVIDIA H100 80GB HBM3", 80 * kGiB},
                         {1, "GPU-c", "NVIDIA H100 80GB HBM3", 80 * kGiB}}),
          big);

  JobSpec needs_24gb = Spec("qlora");
  needs_24gb.resources.gpus = 1;
  needs_24gb.resources.gpu_memory_bytes = 24'000'000'000;
  EXPECT_EQ(Submit(needs_24gb)->job.node, "cloud");

  JobSpec fits_3080 = Spec("small");
  fits_3080.resources.gpus = 1;
  fits_3080.resources.gpu_models = {"rtx 3080"};
  auto s = Submit(fits_3080);
  EXPECT_EQ(s->job.node, "ws");
  EXPECT_THAT(s->job.gpu_indexes, ElementsAre(0u));

  JobSpec two_gpus = Spec("ddp");
  two_gpus.resources.gpus = 2;  // cloud has one H100 left
  EXPECT_EQ(Submit(two_gpus)->job.state, JobState::kPending);

  JobSpec too_much_ram = Spec("ram");
  too_much_ram.resources.memory_bytes = 200 * kGiB;
  EXPECT_EQ(Submit(too_much_ram)->job.state, JobState::kPending);

  JobSpec too_many_cpus = Spec("cpu");
  too_many_cpus.resources.cpu_millis = 64'000;
  EXPECT_EQ(Submit(too_many_cpus)->job.state, JobState::kPending);

  JobSpec wrong_model = Spec("a100");
  wrong_model.resources.gpus = 1;
  wrong_model.resources.gpu_models = {"A100"};
  EXPECT_EQ(Submit(wrong_model)->job.state, JobState::kPending);
}

TEST_F(SchedulerTest, HigherPriorityFirstThenOlder) {
  auto old_low = Submit(Spec("old-low", 0));
  auto high = Submit(Spec("high", 10));
  auto new_low = Submit(Spec("new-low", 0));
  auto link = std::make_shared<FakeAgentLink>();
  Connect("ws", Caps(2, 8 * kGiB), link);  // room for two
  EXPECT_EQ(Get(high->job.id).state, JobState::kAssigned);
  EXPECT_EQ(Get(old_low->job.id).state, JobState::kAssigned);
  EXPECT_EQ(Get(new_low->job.id).state, JobState::kPending);
}

TEST_F(SchedulerTest, RunThenSucceedFreesTheNodeForTheNextJob) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t session = Connect("ws", Caps(1, 8 * kGiB), link);
  auto a = Submit(Spec("a"));
  auto b = Submit(Spec("b"));
  EXPECT_EQ(b->job.state, JobState::kPending);
  const uint64_t epoch = a->job.epoch;
  auto running = Report("ws", session, a->job.id, epoch, JobState::kRunning);
  ASSERT_THAT(running, IsOk());
  EXPECT_EQ(running->state, JobState::kRunning);
  auto done = Report("ws", session, a->job.id, epoch, JobState::kSucceeded, 0);
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(done->state, JobState::kSucceeded);
  EXPECT_EQ(Get(b->job.id).state, JobState::kAssigned);
  // The same final report again (agent retry after reconnect) is acknowledged, not re-applied.
  EXPECT_THAT(Report("ws", session, a->job.id, epoch, JobState::kSucceeded, 0), IsOk());
  EXPECT_EQ(Get(a->job.id).state, JobState::kSucceeded);
}

TEST_F(SchedulerTest, StaleEpochReportsAreRefused) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t session = Connect("ws", Caps(1, 8 * kGiB), link);
  auto a = Submit(Spec("a"));
  EXPECT_THAT(Report("ws", session, a->job.id, a->job.epoch + 7, JobState::kSucceeded),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("stale epoch")));
  EXPECT_THAT(scheduler_->AppendLog("ws", session, {a->job.id, a->job.epoch - 1},
                                    LogStreamKind::kStdout, "zombie"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(Report("ws", session + 99, a->job.id, a->job.epoch, JobState::kRunning),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("reconnect")));
  EXPECT_THAT(Report("ws", session, "ffffffffffffffff", 1, JobState::kRunning),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(Get(a->job.id).state, JobState::kAssigned);
  EXPECT_EQ(scheduler_->Stats().stale_reports_total, 2u);
}

// Another node, on its own current session, cannot report, log or renew for a job leased to
// this one, even with the job's current epoch.
TEST_F(SchedulerTest, ANodeCannotActOnAJobLeasedToAnotherEvenAtItsEpoch) {
  auto link1 = std::make_shared<FakeAgentLink>();
  uint64_t s1 = Connect("node-1", Caps(1, 8 * kGiB), link1);
  auto a = Submit(Spec("a"));
  ASSERT_THAT(a, IsOk());
  const Job held = Get(a->job.id);
  ASSERT_EQ(held.node, "node-1");
  auto link2 = std::make_shared<FakeAgentLink>();
  uint64_t s2 = Connect("node-2", Caps(1, 8 * kGiB), link2);
  EXPECT_THAT(Report("node-2", s2, held.id, held.epoch, JobState::kSucceeded),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(Report("node-2", s2, held.id, held.epoch, JobState::kRunning),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(scheduler_->AppendLog("node-2", s2, {held.id, held.epoch}, LogStreamKind::kStdout,
                                    "forged"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(scheduler_->CheckLease("node-2", {held.id, held.epoch}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  // A heartbeat naming it renews nothing and tells node-2 to stop it.
  link2->Take();
  ASSERT_THAT(scheduler_->Heartbeat("node-2", s2, {{held.id, held.epoch}}), IsOk());
  auto cmds = link2->Take();
  ASSERT_THAT(cmds, SizeIs(1));
  EXPECT_EQ(cmds[0].kind, "stop");
  // The job is as it was, still node-1's.
  const Job after = Get(held.id);
  EXPECT_EQ(after.state, JobState::kAssigned);
  EXPECT_EQ(after.node, "node-1");
  EXPECT_EQ(after.epoch, held.epoch);
  EXPECT_THAT(scheduler_->ReadLogs(held.id, 1, 10), IsOk());
  EXPECT_THAT(*scheduler_->ReadLogs(held.id, 1, 10), SizeIs(0));
  EXPECT_THAT(Report("node-1", s1, held.id, held.epoch, JobState::kSucceeded), IsOk());
}

TEST_F(SchedulerTest, ExpiredLeaseRequeuesWithNewAttemptAndFencesTheZombie) {
  auto link1 = std::make_shared<FakeAgentLink>();
  auto link2 = std::make_shared<FakeAgentLink>();
  uint64_t s1 = Connect("n1", Caps(1, 8 * kGiB), link1);
  auto a = Submit(Spec("a"));
  ASSERT_EQ(a->job.node, "n1");
  const uint64_t old_epoch = a->job.epoch;
  link1->Take();
  // n1 renews for a while, then goes silent.
  clock_.Advance(absl::Seconds(8));
  ASSERT_THAT(scheduler_->Heartbeat("n1", s1, {{a->job.id, old_epoch}}), IsOk());
  clock_.Advance(absl::Seconds(8));
  scheduler_->Tick();
  EXPECT_EQ(Get(a->job.id).state, JobState::kAssigned) << "renewed lease must hold";
  clock_.Advance(absl::Seconds(3));
  scheduler_->Tick();
  Job requeued = Get(a->job.id);
  EXPECT_EQ(requeued.state, JobState::kPending);
  EXPECT_EQ(requeued.attempt, 2u);
  EXPECT_THAT(requeued.message, HasSubstr("lease expired on node n1"));
  EXPECT_EQ(scheduler_->Stats().lease_expiries_total, 1u);

  uint64_t s2 = Connect("n2", Caps(1, 8 * kGiB), link2);
  Job moved = Get(a->job.id);
  EXPECT_EQ(moved.node, "n2");
  EXPECT_GT(moved.epoch, old_epoch);
  // The zombie on n1 wakes up: its session is gone and its epoch is stale.
  EXPECT_THAT(Report("n1", s1, a->job.id, old_epoch, JobState::kSucceeded),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  uint64_t s1b = Connect("n1", Caps(1, 8 * kGiB), link1, {{a->job.id, old_epoch}});
  EXPECT_THAT(Report("n1", s1b, a->job.id, old_epoch, JobState::kSucceeded),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("stale epoch")));
  auto cmds = link1->Take();
  ASSERT_FALSE(cmds.empty());
  EXPECT_EQ(cmds.back().kind, "stop");
  EXPECT_EQ(cmds.back().job_id, a->job.id);
  // Exactly one outcome: the new holder's.
  EXPECT_THAT(Report("n2", s2, a->job.id, moved.epoch, JobState::kSucceeded), IsOk());
  EXPECT_EQ(Get(a->job.id).state, JobState::kSucceeded);
}

TEST_F(SchedulerTest, GivesUpAfterMaxAttempts) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("n1", Caps(1, 8 * kGiB), link);
  auto a = Submit(Spec("a"));
  // The agent stays alive but never holds the job (it keeps losing it).
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(absl::Seconds(6));
    ASSERT_THAT(scheduler_->Heartbeat("n1", s, {}), IsOk());
    clock_.Advance(absl::Seconds(5));
    scheduler_->Tick();
  }
  Job j = Get(a->job.id);
  EXPECT_EQ(j.state, JobState::kFailed);
  EXPECT_THAT(j.message, HasSubstr("gave up after 3 attempts"));
}

TEST_F(SchedulerTest, SilentAgentIsMarkedDown) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("n1", Caps(1, 8 * kGiB), link);
  uint64_t s2 = Connect("n2", Caps(1, 8 * kGiB), std::make_shared<FakeAgentLink>());
  // n2 keeps beating; n1 is silent past the lease (10 s).
  for (int i = 0; i < 11; ++i) {
    clock_.Advance(absl::Seconds(1));
    ASSERT_THAT(scheduler_->Heartbeat("n2", s2, {}), IsOk());
    scheduler_->Tick();
  }
  EXPECT_EQ(scheduler_->GetNode("n1")->state(), NodeState::kDown);
  EXPECT_EQ(scheduler_->GetNode("n2")->state(), NodeState::kReady);
  EXPECT_EQ(scheduler_->Stats().agents_connected, 1u);
  EXPECT_THAT(scheduler_->Heartbeat("n1", s, {}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  // Back with a new session, n1 is watched again from its connect.
  uint64_t s1 = Connect("n1", Caps(1, 8 * kGiB), link);
  clock_.Advance(absl::Seconds(9));
  scheduler_->Tick();
  EXPECT_EQ(scheduler_->GetNode("n1")->state(), NodeState::kReady);
  ASSERT_THAT(scheduler_->Heartbeat("n1", s1, {}), IsOk());
  clock_.Advance(absl::Seconds(11));
  scheduler_->Tick();
  EXPECT_EQ(scheduler_->GetNode("n1")->state(), NodeState::kDown);
  EXPECT_EQ(scheduler_->GetNode("n2")->state(), NodeState::kDown);
  EXPECT_EQ(scheduler_->Stats().agents_connected, 0u);
}

TEST_F(SchedulerTest, CancelPendingRunningAndFinished) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("ws", Caps(1, 8 * kGiB), link);
  auto running = Submit(Spec("running"));
  auto pending = Submit(Spec("pending"));
  link->Take();

  auto c1 = Cancel(pending->job.id);
  ASSERT_THAT(c1, IsOk());
  EXPECT_EQ(c1->state, JobState::kCancelled);

  auto c2 = Cancel(running->job.id.substr(0, 10));
  ASSERT_THAT(c2, IsOk());
  EXPECT_EQ(c2->state, JobState::kAssigned);
  EXPECT_TRUE(c2->cancel_requested);
  auto cmds = link->Take();
  ASSERT_THAT(cmds, SizeIs(1));
  EXPECT_EQ(cmds[0].kind, "cancel");
  // The agent stopped it; whatever the exit code, the job ends CANCELLED.
  auto end = Report("ws", s, running->job.id, running->job.epoch, JobState::kFailed, 143);
  ASSERT_THAT(end, IsOk());
  EXPECT_EQ(end->state, JobState::kCancelled);

  EXPECT_THAT(Cancel(running->job.id),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already ended")));
  EXPECT_THAT(Cancel("zzzz"), StatusIs(absl::StatusCode::kNotFound));
}

// Found by the simulation (seed 7): a cancel that crossed paths with its job's assignment, or
// went out on a stream that broke, was never said again, and the job ran on to its natural end.
TEST_F(SchedulerTest, CancelIsRepeatedUntilTheAgentEndsTheJob) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("ws", Caps(1, 8 * kGiB), link);
  auto job = Submit(Spec("long"));
  ASSERT_THAT(job, IsOk());
  const JobRef ref{job->job.id, Get(job->job.id).epoch};
  link->Take();
  // The agent's stream is down when the user cancels: nothing can be sent now.
  scheduler_->DisconnectAgent("ws", s);
  ASSERT_THAT(Cancel(job->job.id), IsOk());
  // Back with the job still running: the cancel goes out on the new stream...
  auto link2 = std::make_shared<FakeAgentLink>();
  uint64_t s2 = Connect("ws", Caps(1, 8 * kGiB), link2, {ref});
  auto cmds = link2->Take();
  ASSERT_THAT(cmds, SizeIs(1));
  EXPECT_EQ(cmds[0].kind, "cancel");
  EXPECT_EQ(cmds[0].job_id, ref.job_id);
  EXPECT_EQ(cmds[0].epoch, ref.epoch);
  // ...and with every heartbeat that still lists it, in case that one is lost too.
  ASSERT_THAT(scheduler_->Heartbeat("ws", s2, {ref}), IsOk());
  cmds = link2->Take();
  ASSERT_THAT(cmds, SizeIs(1));
  EXPECT_EQ(cmds[0].kind, "cancel");
  auto end = Report("ws", s2, ref.job_id, ref.epoch, JobState::kFailed, 143);
  ASSERT_THAT(end, IsOk());
  EXPECT_EQ(end->state, JobState::kCancelled);
  // A job not being cancelled gets no such repeat.
  auto other = Submit(Spec("other"));
  ASSERT_THAT(other, IsOk());
  link2->Take();
  ASSERT_THAT(scheduler_->Heartbeat("ws", s2, {{other->job.id, Get(other->job.id).epoch}}),
              IsOk());
  EXPECT_THAT(link2->Take(), SizeIs(0));
}

NodeCapabilities Priced(double dollars_per_hour, std::string provider) {
  NodeCapabilities c = Caps(1, 8 * kGiB);
  c.price_per_hour = dollars_per_hour;
  c.provider = std::move(provider);
  return c;
}

// Every second a job holds a priced node is metered, whichever way the lease ends, and the
// ledger is durable with the jobs: totals after restarts equal the sum of the intervals.
TEST_F(SchedulerTest, LedgerMetersEveryLeaseOfAPricedNodeAndSurvivesRestarts) {
  const absl::Time t0 = clock_.Now();
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("vast-1", Priced(2.0, "vastai"), link);
  JobSpec spec = Spec("train");
  spec.project = "llm";
  auto a = Submit(spec);
  ASSERT_THAT(a, IsOk());
  const uint64_t epoch_a = Get(a->job.id).epoch;
  clock_.Advance(absl::Minutes(30));
  ASSERT_THAT(Report("vast-1", s, a->job.id, epoch_a, JobState::kSucceeded), IsOk());
  // Lease 1: 30 min at $2/h.
  EXPECT_DOUBLE_EQ(scheduler_->Spent("llm", t0, clock_.Now()), 1.0);

  auto b = Submit(spec);
  ASSERT_THAT(b, IsOk());
  clock_.Advance(absl::Minutes(15));
  // An open lease counts up to now...
  EXPECT_DOUBLE_EQ(scheduler_->Spent("llm", t0, clock_.Now()), 1.5);
  // ...and keeps running across a restart of schedd: the node was still rented.
  Restart();
  EXPECT_DOUBLE_EQ(scheduler_->Spent("llm", t0, clock_.Now()), 1.5);
  // The agent never comes back: the lease ends when it expires (restart grace + TTL later).
  clock_.Advance(absl::Seconds(16));
  scheduler_->Tick();
  EXPECT_EQ(Get(b->job.id).state, JobState::kPending);
  const double b_hours = absl::ToDoubleHours(absl::Minutes(15) + absl::Seconds(16));
  EXPECT_DOUBLE_EQ(scheduler_->Spent("llm", t0, clock_.Now()), 1.0 + 2.0 * b_hours);
  Restart();
  std::vector<LedgerEntry> ledger = scheduler_->Ledger(t0);
  ASSERT_THAT(ledger, SizeIs(2));
  double sum = 0;
  for (const LedgerEntry& e : ledger) {
    EXPECT_EQ(e.project, "llm");
    EXPECT_EQ(e.node, "vast-1");
    EXPECT_EQ(e.provider, "vastai");
    EXPECT_DOUBLE_EQ(e.price_per_hour, 2.0);
    sum += e.price_per_hour * absl::ToDoubleHours(e.end - e.start);
  }
  EXPECT_DOUBLE_EQ(sum, scheduler_->Spent("llm", t0, clock_.Now()));
  // Only what falls inside a window counts toward it; other projects are apart.
  EXPECT_DOUBLE_EQ(scheduler_->Spent("llm", t0 + absl::Minutes(15), t0 + absl::Minutes(45)),
                   2.0 * 0.5);
  EXPECT_DOUBLE_EQ(scheduler_->Spent("other", t0, clock_.Now()), 0.0);
}

TEST_F(SchedulerTest, FreeNodesAreNotMetered) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("ws", Caps(1, 8 * kGiB), link);
  auto a = Submit(Spec("a"));
  ASSERT_THAT(a, IsOk());
  clock_.Advance(absl::Hours(1));
  ASSERT_THAT(Report("ws", s, a->job.id, Get(a->job.id).epoch, JobState::kSucceeded), IsOk());
  EXPECT_THAT(scheduler_->Ledger(absl::InfinitePast()), SizeIs(0));
}

TEST_F(SchedulerTest, BudgetsAreCheckedStoredAndKeptAcrossRestarts) {
  auto set = [this](Budget b) {
    return Call<Budget>([&](auto done) { scheduler_->SetBudget(std::move(b), std::move(done)); });
  };
  Budget bad;
  bad.project = "no spaces";
  EXPECT_THAT(set(bad), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("project")));
  bad.project = "llm";
  bad.monthly_limit = -5;
  EXPECT_THAT(set(bad), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("monthly_limit")));
  bad.monthly_limit = 50;
  bad.alert_percents = {80, 50};
  EXPECT_THAT(set(bad), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("alert_percents")));
  EXPECT_THAT(scheduler_->GetBudget("llm"), StatusIs(absl::StatusCode::kNotFound));

  Budget b;
  b.project = "llm";
  b.monthly_limit = 50;
  b.alert_percents = {50, 80, 100};
  b.hard_cap = true;
  ASSERT_THAT(set(b), IsOk());
  Restart();
  auto got = scheduler_->GetBudget("llm");
  ASSERT_THAT(got, IsOk());
  EXPECT_DOUBLE_EQ(got->monthly_limit, 50);
  EXPECT_THAT(got->alert_percents, ElementsAre(50, 80, 100));
  EXPECT_TRUE(got->hard_cap);
  EXPECT_EQ(got->update_time, clock_.Now());
  EXPECT_THAT(scheduler_->ListBudgets(), SizeIs(1));
}

TEST(MonthStartTest, IsTheFirstOfTheMonthInUtc) {
  EXPECT_EQ(MonthStart(absl::FromUnixSeconds(1'795'737'600 + 3600)),  // 2026-11-27T01:00Z
            absl::FromCivil(absl::CivilMonth(2026, 11), absl::UTCTimeZone()));
}

// A job that asks GPUs and describes its model but gives no gpu_memory gets the estimate, and
// placement uses it: a 7B QLoRA with gradient checkpointing fits a 10 GB card, a 7B full
// fine-tune does not.
TEST_F(SchedulerTest, GpuMemoryIsEstimatedFromTheModel) {
  auto link = std::make_shared<FakeAgentLink>();
  Connect("ws", Caps(8, 64 * kGiB, {{0, "GPU-0", "NVIDIA GeForce RTX 3080", 10 * kGiB}}), link);
  JobSpec qlora = Spec("qlora");
  qlora.resources.gpus = 1;
  qlora.model.parameters = 7'000'000'000;
  qlora.model.method = "qlora";
  qlora.model.gradient_checkpointing = true;
  auto small = Submit(qlora);
  ASSERT_THAT(small, IsOk());
  EXPECT_TRUE(small->job.spec.resources.gpu_memory_estimated);
  EXPECT_GT(small->job.spec.resources.gpu_memory_bytes, 5'000'000'000);
  EXPECT_LT(small->job.spec.resources.gpu_memory_bytes, 10'000'000'000);
  EXPECT_EQ(Get(small->job.id).state, JobState::kAssigned);

  JobSpec full = Spec("full");
  full.resources.gpus = 1;
  full.model.parameters = 7'000'000'000;
  full.model.method = "full";
  auto big = Submit(full);
  ASSERT_THAT(big, IsOk());
  EXPECT_GT(big->job.spec.resources.gpu_memory_bytes, 100'000'000'000);
  EXPECT_EQ(Get(big->job.id).state, JobState::kPending);

  // Given memory wins, and a job without GPUs gets no estimate.
  JobSpec given = qlora;
  given.resources.gpu_memory_bytes = 4 * kGiB;
  given.resources.gpu_memory_estimated = true;  // output only: ignored
  auto g = Submit(given);
  ASSERT_THAT(g, IsOk());
  EXPECT_EQ(g->job.spec.resources.gpu_memory_bytes, 4 * kGiB);
  EXPECT_FALSE(g->job.spec.resources.gpu_memory_estimated);
  JobSpec cpu = qlora;
  cpu.resources.gpus = 0;
  auto c = Submit(cpu);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->job.spec.resources.gpu_memory_bytes, 0);

  // A description that cannot run is refused, naming the model.
  JobSpec bad = full;
  bad.model.precision = "int4";
  EXPECT_THAT(Submit(bad), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model: ")));
}

class BudgetCapTest : public SchedulerTest {
 protected:
  absl::StatusOr<Budget> SetBudget(const std::string& project, double limit, bool hard = true) {
    Budget b;
    b.project = project;
    b.monthly_limit = limit;
    b.hard_cap = hard;
    return Call<Budget>([&](auto done) { scheduler_->SetBudget(b, std::move(done)); });
  }
  // A job whose deadline (half an hour past its runtime) rules out waiting an hour for a busy
  // local node: budgets, not the wait for local, decide where it goes.
  JobSpec Paid(const std::string& name, const std::string& project, absl::Duration runtime) {
    JobSpec s = Spec(name);
    s.project = project;
    s.runtime = runtime;
    s.deadline = clock_.Now() + runtime + absl::Minutes(30);
    return s;
  }
};

TEST_F(BudgetCapTest, CapBlocksACloudPlacementButNotAFreeLocalOne) {
  auto local = std::make_shared<FakeAgentLink>();
  auto cloud = std::make_shared<FakeAgentLink>();
  Connect("ws", Caps(1, 8 * kGiB), local);
  auto busy = Submit(Paid("busy", "other", absl::Hours(1)));  // fills the free node
  ASSERT_THAT(busy, IsOk());
  ASSERT_EQ(Get(busy->job.id).node, "ws");
  Connect("rented", Priced(2.0, "runpod"), cloud);
  ASSERT_THAT(SetBudget("llm", 1.0), IsOk());

  // An hour on the $2/h node would pass the $1 budget: held, and says why.
  auto a = Submit(Paid("a", "llm", absl::Hours(1)));
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(Get(a->job.id).state, JobState::kPending);
  EXPECT_THAT(Get(a->job.id).message, HasSubstr("project llm's budget of $1.00 a month would be "
                                                "passed: $0.00 spent and committed, about "
                                                "$2.00 more on rented"));
  // Another project's job takes the same node: budgets are per project.
  auto other = Submit(Paid("o", "other", absl::Hours(1)));
  ASSERT_THAT(other, IsOk());
  EXPECT_EQ(Get(other->job.id).node, "rented");
  // A larger budget lets the held job go as soon as there is room.
  ASSERT_THAT(SetBudget("llm", 5.0), IsOk());
  auto cloud2 = std::make_shared<FakeAgentLink>();
  Connect("rented-2", Priced(2.0, "runpod"), cloud2);
  EXPECT_EQ(Get(a->job.id).node, "rented-2");
}

TEST_F(BudgetCapTest, HeldJobRunsLocallyWhenTheFreeNodeFrees) {
  auto local = std::make_shared<FakeAgentLink>();
  auto cloud = std::make_shared<FakeAgentLink>();
  uint64_t ls = Connect("ws", Caps(1, 8 * kGiB), local);
  auto busy = Submit(Paid("busy", "llm", absl::Hours(1)));
  ASSERT_THAT(busy, IsOk());
  ASSERT_EQ(Get(busy->job.id).node, "ws");
  NodeCapabilities two_cpus = Priced(2.0, "runpod");
  two_cpus.cpu_millis = 2000;
  Connect("rented", two_cpus, cloud);
  ASSERT_THAT(SetBudget("llm", 3.0), IsOk());
  auto a = Submit(Paid("a", "llm", absl::Hours(1)));  // $2 of $3: goes to the cloud
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(Get(a->job.id).node, "rented");
  auto b = Submit(Paid("b", "llm", absl::Hours(1)));  // $2 committed + $2 > $3: held
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(Get(b->job.id).state, JobState::kPending);
  EXPECT_THAT(Get(b->job.id).message, HasSubstr("$2.00 spent and committed"));
  ASSERT_THAT(Report("ws", ls, busy->job.id, Get(busy->job.id).epoch, JobState::kSucceeded),
              IsOk());
  EXPECT_EQ(Get(b->job.id).node, "ws");
}

TEST_F(BudgetCapTest, SoftBudgetsAndOtherProjectsAreNotHeld) {
  auto cloud = std::make_shared<FakeAgentLink>();
  Connect("rented", Priced(2.0, "runpod"), cloud);
  ASSERT_THAT(SetBudget("llm", 0.5, /*hard=*/false), IsOk());
  auto a = Submit(Paid("a", "llm", absl::Hours(1)));
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(Get(a->job.id).node, "rented");
}

TEST_F(BudgetCapTest, MaxCostKeepsAJobOffDearNodes) {
  auto dear = std::make_shared<FakeAgentLink>();
  Connect("dear", Priced(2.0, "aws"), dear);
  JobSpec spec = Paid("a", "llm", absl::Hours(2));
  spec.max_cost = 1.5;
  auto a = Submit(spec);
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(Get(a->job.id).state, JobState::kPending);
  EXPECT_THAT(Get(a->job.id).message,
              HasSubstr("on dear it would cost about $4.00, over its max_cost $1.50"));
  // Without a runtime the job is reserved budget_reservation (1 h here): $0.50 on a $0.50/h node.
  auto cheap = std::make_shared<FakeAgentLink>();
  Connect("cheap", Priced(0.5, "vastai"), cheap);
  EXPECT_EQ(Get(a->job.id).node, "cheap");
}

TEST_F(BudgetCapTest, ANewMonthLetsHeldWorkGo) {
  // 2023-11-30T23:00Z: an hour before December.
  clock_.Set(absl::FromCivil(absl::CivilSecond(2023, 11, 30, 23, 0, 0), absl::UTCTimeZone()));
  scheduler_->Tick();
  auto cloud = std::make_shared<FakeAgentLink>();
  uint64_t cs = Connect("rented", Priced(1.0, "runpod"), cloud);
  ASSERT_THAT(SetBudget("llm", 1.0), IsOk());
  auto a = Submit(Paid("a", "llm", absl::Minutes(50)));
  ASSERT_THAT(a, IsOk());
  clock_.Advance(absl::Minutes(50));
  ASSERT_THAT(Report("rented", cs, a->job.id, Get(a->job.id).epoch, JobState::kSucceeded),
              IsOk());
  auto b = Submit(Paid("b", "llm", absl::Minutes(30)));  // $0.83 spent + $0.50 > $1
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(Get(b->job.id).state, JobState::kPending);
  clock_.Advance(absl::Minutes(11));  // December
  ASSERT_THAT(scheduler_->Heartbeat("rented", cs, {}), IsOk());
  scheduler_->Tick();
  EXPECT_EQ(Get(b->job.id).node, "rented");
}

// Whatever the order of submits, completions, budget changes and time, a project's spend in the
// month never passes its hard cap, as long as jobs keep to the runtime they declared.
// With a catalog, a runtime given for one GPU is scaled to each node's: an hour on the
// reference A100 is 3.3 h on an RTX 3080 (throughput 0.3) and half an hour on an H100 (2.0).
TEST_F(BudgetCapTest, RuntimeIsScaledToEachNodesGpuByTheCatalog) {
  auto catalog = cost::Catalog::Create(cost::testing::SmallCatalogData());
  ASSERT_THAT(catalog, IsOk());
  catalog_ = std::make_shared<const cost::Catalog>(*std::move(catalog));
  Restart();
  NodeCapabilities slow = Priced(1.0, "vastai");
  slow.gpus = {{0, "GPU-s", "NVIDIA GeForce RTX 3080", 10 * kGiB}};
  auto slow_link = std::make_shared<FakeAgentLink>();
  Connect("slow", slow, slow_link);
  ASSERT_THAT(SetBudget("llm", 2.0), IsOk());
  JobSpec spec = Paid("train", "llm", absl::Hours(1));
  spec.resources.gpus = 1;
  auto job = Submit(spec);
  ASSERT_THAT(job, IsOk());
  EXPECT_EQ(Get(job->job.id).state, JobState::kPending);
  EXPECT_THAT(Get(job->job.id).message, HasSubstr("about $3.33 more on slow"));
  NodeCapabilities fast = Priced(1.0, "runpod");
  fast.gpus = {{0, "GPU-f", "NVIDIA H100 80GB HBM3", 80 * kGiB}};
  auto fast_link = std::make_shared<FakeAgentLink>();
  Connect("fast", fast, fast_link);
  EXPECT_EQ(Get(job->job.id).node, "fast");
}

TEST_F(BudgetCapTest, NoSequenceOfPlacementsPassesACap) {
  std::mt19937_64 rng(20261126);
  auto uniform = [&](double lo, double hi) {
    return std::uniform_real_distribution<double>(lo, hi)(rng);
  };
  const std::vector<std::string> projects = {"a", "b", "c"};
  std::map<std::string, double> limit;
  for (const std::string& p : projects) {
    limit[p] = std::round(uniform(1, 20));
    ASSERT_THAT(SetBudget(p, limit[p]), IsOk());
  }
  struct Agent {
    std::string name;
    std::shared_ptr<FakeAgentLink> link;
    uint64_t session;
  };
  std::vector<Agent> agents;
  for (int i = 0; i < 6; ++i) {
    const double price = i == 0 ? 0.0 : std::round(uniform(0.2, 4.0) * 10) / 10;
    Agent a{absl::StrCat("n", i), std::make_shared<FakeAgentLink>(), 0};
    a.session = Connect(a.name, Priced(price, i == 0 ? "local" : "runpod"), a.link);
    agents.push_back(a);
  }
  struct Running {
    std::string agent;
    uint64_t session;
    uint64_t epoch;
    absl::Time end;
  };
  std::map<std::string, Running> running;
  std::map<std::string, absl::Duration> runtime;
  const absl::Time month = MonthStart(clock_.Now());
  int placed_on_priced = 0;
  int held_by_budget = 0;  // steps that ended with a job held back by its budget
  // New assignments start running; each will end within its declared runtime.
  auto collect = [&] {
    for (Agent& a : agents) {
      for (const auto& cmd : a.link->Take()) {
        if (cmd.kind != "assign") continue;
        running[cmd.job_id] = {a.name, a.session, cmd.epoch,
                               clock_.Now() + runtime[cmd.job_id] * uniform(0.3, 1.0)};
        if (a.name != "n0") placed_on_priced++;
      }
    }
  };
  // Moves time to `until`, reporting each job's end at its own moment.
  auto advance_to = [&](absl::Time until) {
    while (true) {
      auto next = running.end();
      for (auto it = running.begin(); it != running.end(); ++it) {
        if (it->second.end <= until && (next == running.end() || it->second.end < next->second.end)) {
          next = it;
        }
      }
      if (next == running.end()) break;
      clock_.Set(std::max(clock_.Now(), next->second.end));
      const Running run = next->second;
      const std::string id = next->first;
      running.erase(next);
      ASSERT_THAT(Report(run.agent, run.session, id, run.epoch, JobState::kSucceeded), IsOk());
      collect();
    }
    clock_.Set(std::max(clock_.Now(), until));
  };
  for (int step = 0; step < 400; ++step) {
    const double r = uniform(0, 1);
    if (r < 0.4) {
      JobSpec spec = Spec(absl::StrCat("j", step));
      spec.project = projects[step % projects.size()];
      if (uniform(0, 1) < 0.8) spec.runtime = absl::Minutes(std::round(uniform(5, 180)));
      // Every policy, with and without a deadline.
      spec.placement = static_cast<PlacementPolicy>(static_cast<int>(uniform(0, 4)));
      if (uniform(0, 1) < 0.7) {
        const absl::Duration r = spec.runtime > absl::ZeroDuration() ? spec.runtime : absl::Hours(1);
        spec.deadline = clock_.Now() + r * uniform(1.05, 3);
      }
      auto s = Submit(spec);
      ASSERT_THAT(s, IsOk());
      runtime[s->job.id] = spec.runtime > absl::ZeroDuration() ? spec.runtime : absl::Hours(1);
    } else if (r < 0.45) {
      // Budgets only rise here: lowering one below what runs cannot undo what was committed.
      const std::string& p = projects[step % projects.size()];
      limit[p] += std::round(uniform(0, 5));
      ASSERT_THAT(SetBudget(p, limit[p]), IsOk());
    } else {
      advance_to(clock_.Now() + absl::Minutes(std::round(uniform(1, 40))));
    }
    collect();
    // Keep the leases of what runs alive, and let time-driven work happen.
    std::map<std::string, std::vector<JobRef>> held;
    for (const auto& [id, run] : running) held[run.agent].push_back({id, run.epoch});
    for (Agent& a : agents) {
      ASSERT_THAT(scheduler_->Heartbeat(a.name, a.session, held[a.name]), IsOk());
    }
    scheduler_->Tick();
    collect();
    for (const std::string& p : projects) {
      ASSERT_LE(scheduler_->Spent(p, month, clock_.Now()), limit[p] + 1e-6)
          << "project " << p << " at step " << step;
    }
    for (const Job& job : scheduler_->ListJobs({}).jobs) {
      if (job.state == JobState::kPending && absl::StrContains(job.message, "budget")) {
        held_by_budget++;
        break;
      }
    }
  }
  EXPECT_GT(held_by_budget, 10);  // the caps were actually reached
  EXPECT_GT(placed_on_priced, 20);  // the property was tested on real cloud placements
}

TEST_F(SchedulerTest, IdPrefixesResolveUniquelyOrSayWhy) {
  auto a = Submit(Spec("a"));
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(scheduler_->GetJob(a->job.id.substr(0, 6))->id, a->job.id);
  EXPECT_THAT(scheduler_->GetJob(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(scheduler_->GetJob("nothex"), StatusIs(absl::StatusCode::kNotFound));
  // With enough jobs some share a first character.
  for (int i = 0; i < 40; ++i) ASSERT_THAT(Submit(Spec("x")), IsOk());
  int ambiguous = 0;
  for (char c : std::string("0123456789abcdef")) {
    if (absl::IsInvalidArgument(scheduler_->GetJob(std::string(1, c)).status())) ambiguous++;
  }
  EXPECT_GT(ambiguous, 0);
}

TEST_F(SchedulerTest, ListJobsFiltersAndPages) {
  for (int i = 0; i < 5; ++i) {
    JobSpec s = Spec("j");
    s.project = i % 2 == 0 ? "even" : "odd";
    ASSERT_THAT(Submit(s), IsOk());
  }
  JobQuery q;
  q.project = "even";
  q.limit = 2;
  JobPage p1 = scheduler_->ListJobs(q);
  ASSERT_THAT(p1.jobs, SizeIs(2));
  EXPECT_NE(p1.next_after_seq, 0u);
  q.after_seq = p1.next_after_seq;
  JobPage p2 = scheduler_->ListJobs(q);
  ASSERT_THAT(p2.jobs, SizeIs(1));
  EXPECT_EQ(p2.next_after_seq, 0u);
  EXPECT_LT(p1.jobs[1].seq, p2.jobs[0].seq);
  JobQuery running;
  running.states = {JobState::kRunning};
  EXPECT_THAT(scheduler_->ListJobs(running).jobs, SizeIs(0));
}

TEST_F(SchedulerTest, RestartRestoresQueueLeasesAndEpochs) {
  auto link = std::make_shared<FakeAgentLink>();
  Connect("ws", Caps(1, 8 * kGiB), link);
  auto leased = Submit(Spec("leased"));
  auto pending = Submit(Spec("pending", 5));
  const uint64_t epoch = leased->job.epoch;
  Restart();
  EXPECT_EQ(Get(pending->job.id).state, JobState::kPending);
  EXPECT_EQ(Get(leased->job.id).state, JobState::kAssigned);
  EXPECT_EQ(scheduler_->GetNode("ws")->state(), NodeState::kDown);
  EXPECT_EQ(scheduler_->GetNode("ws")->running_jobs, 1u);
  // The agent comes back still running the job: it keeps it, and nothing else fits.
  auto link2 = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("ws", Caps(1, 8 * kGiB), link2, {{leased->job.id, epoch}});
  EXPECT_EQ(Get(pending->job.id).state, JobState::kPending);
  auto done = Report("ws", s, leased->job.id, epoch, JobState::kSucceeded);
  ASSERT_THAT(done, IsOk());
  Job next = Get(pending->job.id);
  EXPECT_EQ(next.state, JobState::kAssigned);
  EXPECT_GT(next.epoch, epoch);
}

TEST_F(SchedulerTest, ReconnectWithoutTheJobRequeuesIt) {
  auto link = std::make_shared<FakeAgentLink>();
  Connect("ws", Caps(1, 8 * kGiB), link);
  auto a = Submit(Spec("a"));
  Connect("ws", Caps(1, 8 * kGiB), link, {});  // agent restarted, lost its jobs
  Job j = Get(a->job.id);
  // Requeued and, the node being free again, given a new lease.
  EXPECT_EQ(j.attempt, 2u);
  EXPECT_EQ(j.state, JobState::kAssigned);
  EXPECT_GT(j.epoch, a->job.epoch);
}

TEST_F(SchedulerTest, CordonAndDrainStopNewWork) {
  auto link = std::make_shared<FakeAgentLink>();
  Connect("ws", Caps(4, 8 * kGiB), link);
  auto cordoned = Call<Node>([&](auto d) { scheduler_->Cordon("ws", true, std::move(d)); });
  ASSERT_THAT(cordoned, IsOk());
  EXPECT_EQ(cordoned->state(), NodeState::kCordoned);
  auto a = Submit(Spec("a"));
  EXPECT_EQ(a->job.state, JobState::kPending);
  auto uncordoned = Call<Node>([&](auto d) { scheduler_->Cordon("ws", false, std::move(d)); });
  EXPECT_EQ(Get(a->job.id).state, JobState::kAssigned);
  link->Take();
  auto drained = Call<Node>([&](auto d) { scheduler_->Drain("ws", std::move(d)); });
  ASSERT_THAT(drained, IsOk());
  EXPECT_EQ(drained->state(), NodeState::kDraining);
  auto cmds = link->Take();
  ASSERT_THAT(cmds, SizeIs(1));
  EXPECT_EQ(cmds[0].kind, "drain");
  EXPECT_EQ(Submit(Spec("b"))->job.state, JobState::kPending);
  EXPECT_THAT(Call<Node>([&](auto d) { scheduler_->Drain("nope", std::move(d)); }),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(SchedulerTest, LogsAreStoredInOrderAndFeedSubscribers) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("ws", Caps(1, 8 * kGiB), link);
  auto a = Submit(Spec("a"));
  int seen = 0;
  uint64_t sub = scheduler_->SubscribeLogs([&seen](const std::string&, const LogRecord&) { ++seen; });
  ASSERT_THAT(scheduler_->AppendLog("ws", s, {a->job.id, a->job.epoch}, LogStreamKind::kStdout,
                                    "one\n"),
              IsOk());
  ASSERT_THAT(scheduler_->AppendLog("ws", s, {a->job.id, a->job.epoch}, LogStreamKind::kStderr,
                                    "two\n"),
              IsOk());
  scheduler_->Unsubscribe(sub);
  auto logs = scheduler_->ReadLogs(a->job.id, 1, 10);
  ASSERT_THAT(logs, IsOk());
  ASSERT_THAT(*logs, SizeIs(2));
  EXPECT_EQ((*logs)[0].data, "one\n");
  EXPECT_EQ((*logs)[1].stream, LogStreamKind::kStderr);
  EXPECT_EQ((*logs)[1].attempt, 1u);
  EXPECT_EQ(seen, 2);
}

TEST_F(SchedulerTest, BadAgentRegistrationIsRefused) {
  auto link = std::make_shared<FakeAgentLink>();
  auto bad_name = Call<uint64_t>([&](auto d) {
    scheduler_->ConnectAgent("bad name/..", Caps(1, kGiB), {}, link, std::move(d));
  });
  EXPECT_THAT(bad_name, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("node_name")));
  auto no_cpu = Call<uint64_t>([&](auto d) {
    scheduler_->ConnectAgent("ok", Caps(0, kGiB), {}, link, std::move(d));
  });
  EXPECT_THAT(no_cpu, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(scheduler_->ListNodes().empty());
}

// ---- The cost brain, through the Scheduler

class DecisionTest : public BudgetCapTest {
 protected:
  void UseCatalog() {
    auto catalog = cost::Catalog::Create(cost::testing::SmallCatalogData());
    ASSERT_THAT(catalog, IsOk());
    catalog_ = std::make_shared<const cost::Catalog>(*std::move(catalog));
    Restart();
  }
  static NodeCapabilities WithGpu(NodeCapabilities caps, const std::string& model, int64_t gib) {
    caps.gpus = {{0, "GPU-" + model, model, gib * kGiB}};
    return caps;
  }
  // Keeps the leases of `running` (node -> jobs) alive while the clock moves, as agents would,
  // until `d` has passed or job `until` (if any) left the queue.
  void Pass(absl::Duration d,
            const std::map<std::string, std::pair<uint64_t, std::vector<JobRef>>>& running,
            const std::string& until) {
    for (absl::Duration t;
         t < d && (until.empty() || Get(until).state == JobState::kPending);
         t += absl::Minutes(1)) {
      clock_.Advance(absl::Minutes(1));
      for (const auto& [node, held] : running) {
        ASSERT_THAT(scheduler_->Heartbeat(node, held.first, held.second), IsOk());
      }
      scheduler_->Tick();
    }
  }
};

TEST_F(DecisionTest, WaitsForTheBusyWorkstationThenBurstsWhenTheDeadlineClosesIn) {
  auto ws_link = std::make_shared<FakeAgentLink>();
  auto cloud_link = std::make_shared<FakeAgentLink>();
  const uint64_t ws = Connect("ws", Caps(1, 8 * kGiB), ws_link);
  JobSpec long_job = Spec("long");
  long_job.runtime = absl::Hours(2);
  auto busy = Submit(long_job);
  ASSERT_THAT(busy, IsOk());
  ASSERT_EQ(Get(busy->job.id).node, "ws");
  const uint64_t cloud = Connect("cloud", Priced(2.0, "runpod"), cloud_link);

  // 2 h of wait + 1 h of work meets a 3.5 h deadline, and costs nothing: it waits for ws.
  JobSpec spec = Spec("next");
  spec.runtime = absl::Hours(1);
  spec.deadline = clock_.Now() + absl::Minutes(210);
  auto job = Submit(spec);
  ASSERT_THAT(job, IsOk());
  Job waiting = Get(job->job.id);
  EXPECT_EQ(waiting.state, JobState::kPending);
  EXPECT_THAT(waiting.message, HasSubstr("waiting for ws (local): room expected in 2h"));
  EXPECT_THAT(waiting.message, HasSubstr("cloud has room now for $2.00"));
  ASSERT_THAT(waiting.decision.options, SizeIs(2));
  EXPECT_EQ(waiting.decision.options[0].node, "ws");
  EXPECT_EQ(waiting.decision.options[1].verdict, OptionVerdict::kDearer);
  EXPECT_FALSE(waiting.decision.placed);

  // The long job overruns its 2 h. Each minute past its end it is expected to need a tenth of
  // its runtime more (12 min); once that pushes the finish past the deadline, the job bursts.
  const std::map<std::string, std::pair<uint64_t, std::vector<JobRef>>> held = {
      {"ws", {ws, {{busy->job.id, Get(busy->job.id).epoch}}}}, {"cloud", {cloud, {}}}};
  const absl::Time t0 = clock_.Now();
  Pass(absl::Minutes(150), held, job->job.id);
  Job moved = Get(job->job.id);
  ASSERT_EQ(moved.state, JobState::kAssigned);
  EXPECT_EQ(moved.node, "cloud");
  EXPECT_TRUE(moved.decision.placed);
  EXPECT_EQ(moved.decision.local_blocker, LocalBlocker::kDeadline);
  // It moved after the long job's expected end, still in time for the cloud node's hour.
  EXPECT_GT(moved.decision.time, t0 + absl::Hours(2));
  EXPECT_LE(moved.decision.time, spec.deadline - absl::Hours(1));
  ASSERT_THAT(moved.decision.options, SizeIs(2));
  EXPECT_EQ(moved.decision.options[0].node, "cloud");
  EXPECT_EQ(moved.decision.options[1].node, "ws");
  EXPECT_EQ(moved.decision.options[1].verdict, OptionVerdict::kMissesDeadline);
  EXPECT_THAT(moved.decision.summary, HasSubstr("no local machine can finish by the deadline"));
}

TEST_F(DecisionTest, TheDecisionIsKeptWithTheJobAcrossRestarts) {
  UseCatalog();
  auto ws_link = std::make_shared<FakeAgentLink>();
  auto cloud_link = std::make_shared<FakeAgentLink>();
  Connect("ws", WithGpu(Caps(8, 32 * kGiB), "NVIDIA GeForce RTX 3080", 10), ws_link);
  Connect("cloud", WithGpu(Priced(1.5, "runpod"), "NVIDIA H100 80GB HBM3", 80), cloud_link);
  JobSpec spec = Spec("finetune");
  spec.resources.gpus = 1;
  spec.resources.gpu_memory_bytes = 40 * kGiB;
  spec.runtime = absl::Hours(2);  // on the reference A100: 1 h on the H100 (throughput 2.0)
  auto job = Submit(spec);
  ASSERT_THAT(job, IsOk());
  ASSERT_EQ(Get(job->job.id).node, "cloud");
  Restart();
  const Job j = Get(job->job.id);
  EXPECT_TRUE(j.decision.placed);
  EXPECT_EQ(j.decision.local_blocker, LocalBlocker::kTooSmall);
  ASSERT_THAT(j.decision.options, SizeIs(2));
  EXPECT_EQ(j.decision.options[0].node, "cloud");
  EXPECT_EQ(j.decision.options[0].runtime, absl::Hours(1));
  EXPECT_NEAR(j.decision.options[0].cost, 1.5, 1e-9);
  EXPECT_EQ(j.decision.options[1].node, "ws");
  EXPECT_EQ(j.decision.options[1].verdict, OptionVerdict::kTooSmall);
  EXPECT_EQ(j.decision.options[1].reason,
            "needs 40 GiB of GPU memory, the largest GPU has 10 GiB");
  EXPECT_THAT(j.decision.summary, HasSubstr("on cloud (runpod): expected to finish"));
  EXPECT_THAT(j.decision.summary, HasSubstr("no local machine can hold it"));
}

TEST_F(DecisionTest, RuntimesAreLearnedFromEarlierRunsAndScaledToEachGpu) {
  UseCatalog();
  auto ws_link = std::make_shared<FakeAgentLink>();
  const uint64_t ws =
      Connect("ws", WithGpu(Caps(8, 32 * kGiB), "NVIDIA GeForce RTX 3080", 10), ws_link);
  JobSpec spec = Spec("nightly");
  spec.resources.gpus = 1;
  auto first = Submit(spec);
  ASSERT_THAT(first, IsOk());
  ASSERT_EQ(Get(first->job.id).node, "ws");
  EXPECT_THAT(Get(first->job.id).decision.summary,
              HasSubstr("no runtime given or learned: 1h assumed"));
  const uint64_t epoch = Get(first->job.id).epoch;
  ASSERT_THAT(Report("ws", ws, first->job.id, epoch, JobState::kRunning), IsOk());
  clock_.Advance(absl::Hours(3));
  ASSERT_THAT(scheduler_->Heartbeat("ws", ws, {{first->job.id, epoch}}), IsOk());
  ASSERT_THAT(Report("ws", ws, first->job.id, epoch, JobState::kSucceeded), IsOk());
  auto cloud_link = std::make_shared<FakeAgentLink>();
  Connect("cloud", WithGpu(Priced(1.5, "runpod"), "NVIDIA H100 80GB HBM3", 80), cloud_link);

  // 3 h on an RTX 3080 (0.3) is 0.9 h of reference work: 27 min on an H100 (2.0).
  auto estimate = scheduler_->Estimate(spec);
  ASSERT_THAT(estimate, IsOk());
  EXPECT_THAT(estimate->summary, HasSubstr("runtime learned from earlier runs"));
  std::map<std::string, absl::Duration> runtime;
  for (const DecisionOption& o : estimate->options) runtime[o.node] = o.runtime;
  EXPECT_EQ(runtime["ws"], absl::Hours(3));
  EXPECT_EQ(runtime["cloud"], absl::Minutes(27));
  // Learned runtimes survive a restart (they are rebuilt from the stored jobs).
  Restart();
  Connect("ws", WithGpu(Caps(8, 32 * kGiB), "NVIDIA GeForce RTX 3080", 10), ws_link);
  estimate = scheduler_->Estimate(spec);
  ASSERT_THAT(estimate, IsOk());
  ASSERT_THAT(estimate->options, SizeIs(1));
  EXPECT_EQ(estimate->options[0].runtime, absl::Hours(3));
}

TEST_F(DecisionTest, ACheapWindowDefersTheJobAndTheLedgerChargesTheWindowsPrice) {
  clock_.Set(absl::FromCivil(absl::CivilSecond(2026, 11, 26, 12, 0, 0), absl::UTCTimeZone()));
  NodeCapabilities caps = Priced(0.30, "local");
  caps.price_schedule = {{{0, 6 * 60, 0.05}}, 0};  // $0.05/h from midnight to 06:00 UTC
  auto link = std::make_shared<FakeAgentLink>();
  const uint64_t ws = Connect("ws", caps, link);
  JobSpec spec = Spec("nightly");
  spec.runtime = absl::Hours(2);
  spec.deadline = clock_.Now() + absl::Hours(20);
  auto estimate = scheduler_->Estimate(spec);
  ASSERT_THAT(estimate, IsOk());
  EXPECT_THAT(estimate->summary, HasSubstr("saving $0.50 against starting at once"));
  auto job = Submit(spec);
  ASSERT_THAT(job, IsOk());
  EXPECT_EQ(Get(job->job.id).state, JobState::kPending);
  EXPECT_THAT(Get(job->job.id).message,
              HasSubstr("waiting for the cheaper window on ws (local): start 2026-11-27 00:00"));
  Pass(absl::Hours(13), {{"ws", {ws, {}}}}, job->job.id);
  Job started = Get(job->job.id);
  ASSERT_EQ(started.state, JobState::kAssigned);
  EXPECT_EQ(started.decision.time,
            absl::FromCivil(absl::CivilSecond(2026, 11, 27, 0, 0, 0), absl::UTCTimeZone()));
  ASSERT_THAT(Report("ws", ws, job->job.id, started.epoch, JobState::kRunning), IsOk());
  Pass(absl::Hours(2), {{"ws", {ws, {{job->job.id, started.epoch}}}}}, "");
  ASSERT_THAT(Report("ws", ws, job->job.id, started.epoch, JobState::kSucceeded), IsOk());
  const std::vector<LedgerEntry> ledger = scheduler_->Ledger(absl::InfinitePast());
  ASSERT_THAT(ledger, SizeIs(1));
  EXPECT_NEAR(ledger[0].Cost(), 2 * 0.05, 1e-9);
  // The ledger keeps the schedule: a restart charges the same.
  Restart();
  EXPECT_NEAR(scheduler_->Ledger(absl::InfinitePast())[0].Cost(), 0.10, 1e-9);
}

// A sweep waiting for the workstation holds it for all its runs, not only its first: a job
// behind them that would miss its deadline waiting bursts instead.
TEST_F(DecisionTest, AWaitingSweepCountsInTheWaitOfTheJobsBehindIt) {
  auto ws_link = std::make_shared<FakeAgentLink>();
  auto cloud_link = std::make_shared<FakeAgentLink>();
  Connect("ws", Caps(1, 8 * kGiB), ws_link);
  JobSpec busy = Spec("busy");
  busy.runtime = absl::Hours(1);
  ASSERT_THAT(Submit(busy), IsOk());
  Connect("cloud", Priced(2.0, "runpod"), cloud_link);
  std::vector<std::string> sweep;
  for (int i = 0; i < 3; ++i) {
    JobSpec run = Spec("sweep");
    run.runtime = absl::Hours(1);
    auto r = Submit(run);
    ASSERT_THAT(r, IsOk());
    sweep.push_back(r->job.id);
  }
  for (const std::string& id : sweep) EXPECT_EQ(Get(id).state, JobState::kPending);
  EXPECT_THAT(Get(sweep[0]).message, HasSubstr("waiting for ws (local): room expected in 1h"));
  // Behind them: 1 h for the busy job and 3 h for the sweep, then 1 h of its own: 5 h, past
  // its 3.5 h deadline, so it goes to the cloud (counting only the sweep's first run, it would
  // have waited).
  JobSpec late = Spec("late");
  late.runtime = absl::Hours(1);
  late.deadline = clock_.Now() + absl::Minutes(210);
  auto r = Submit(late);
  ASSERT_THAT(r, IsOk());
  const Job placed = Get(r->job.id);
  EXPECT_EQ(placed.node, "cloud");
  ASSERT_THAT(placed.decision.options, SizeIs(2));
  EXPECT_EQ(placed.decision.options[1].node, "ws");
  EXPECT_EQ(placed.decision.options[1].verdict, OptionVerdict::kMissesDeadline);
  EXPECT_EQ(placed.decision.options[1].start, clock_.Now() + absl::Hours(4));
}

TEST_F(DecisionTest, WhatNoNodeCanTakeIsSaidAndAnUnknownRuntimeGpuIsRefused) {
  UseCatalog();
  auto ws_link = std::make_shared<FakeAgentLink>();
  Connect("ws", WithGpu(Caps(8, 32 * kGiB), "NVIDIA GeForce RTX 3080", 10), ws_link);
  JobSpec big = Spec("big");
  big.resources.gpus = 1;
  big.resources.gpu_memory_bytes = 40 * kGiB;
  auto r = Submit(big);
  ASSERT_THAT(r, IsOk());
  const Job waiting = Get(r->job.id);
  EXPECT_EQ(waiting.state, JobState::kPending);
  EXPECT_THAT(waiting.message, HasSubstr("waiting: no node can take the job now: 1 too small"));
  ASSERT_THAT(waiting.decision.options, SizeIs(1));
  EXPECT_EQ(waiting.decision.local_blocker, LocalBlocker::kTooSmall);

  JobSpec typo = Spec("typo");
  typo.runtime = absl::Hours(1);
  typo.runtime_gpu_model = "a1000";
  EXPECT_THAT(Submit(typo), StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("runtime.gpu_model: \"a1000\" is not in the GPU "
                                               "catalog; known: rtx3080, a100-80gb, h100-80gb")));
  EXPECT_THAT(scheduler_->Estimate(typo), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(DecisionTest, EstimateRanksEveryNodeAndChangesNothing) {
  UseCatalog();
  auto a = std::make_shared<FakeAgentLink>();
  auto b = std::make_shared<FakeAgentLink>();
  auto c = std::make_shared<FakeAgentLink>();
  Connect("ws", WithGpu(Caps(8, 32 * kGiB), "NVIDIA GeForce RTX 3080", 10), a);
  NodeCapabilities spot = WithGpu(Priced(1.0, "runpod"), "NVIDIA H100 80GB HBM3", 80);
  spot.spot = true;
  Connect("spot", spot, b);
  Connect("od", WithGpu(Priced(3.0, "runpod"), "NVIDIA H100 80GB HBM3", 80), c);
  JobSpec spec = Spec("eval");
  spec.resources.gpus = 1;
  spec.resources.gpu_memory_bytes = 20 * kGiB;
  spec.runtime = absl::Hours(4);  // 2 h on an H100
  spec.placement = PlacementPolicy::kCloudOnly;
  const size_t jobs_before = scheduler_->ListJobs({}).jobs.size();
  auto d = scheduler_->Estimate(spec);
  ASSERT_THAT(d, IsOk());
  EXPECT_EQ(scheduler_->ListJobs({}).jobs.size(), jobs_before);
  EXPECT_TRUE(d->placed);
  ASSERT_THAT(d->options, SizeIs(3));
  EXPECT_EQ(d->options[0].node, "spot");  // runpod's catalog rate: 0.05 an hour
  const double hours = std::expm1(0.05 * 2) / 0.05;
  EXPECT_NEAR(absl::ToDoubleHours(d->options[0].runtime), hours, 1e-6);
  EXPECT_NEAR(d->options[0].cost, hours * 1.0, 1e-6);
  EXPECT_EQ(d->options[1].node, "od");
  EXPECT_EQ(d->options[1].verdict, OptionVerdict::kDearer);
  EXPECT_EQ(d->options[2].node, "ws");
  EXPECT_EQ(d->options[2].verdict, OptionVerdict::kTooSmall);
  // A bad spec is refused as Submit refuses it.
  spec.run.clear();
  EXPECT_THAT(scheduler_->Estimate(spec), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace sched

namespace sched {
namespace {

// A spot node taken back: its jobs go back to the queue without using up attempts, each lease is
// recorded with how it ended, and the provider's preemptions raise its spot risk.
TEST_F(SchedulerTest, APreemptedJobGoesBackToTheQueueWithoutUsingUpItsAttempts) {
  auto link = std::make_shared<FakeAgentLink>();
  NodeCapabilities spot = Caps(2, 8 * kGiB);
  spot.provider = "vastai";
  spot.spot = true;
  spot.price_per_hour = 0.5;
  uint64_t session = Connect("spot-1", spot, link);
  const double prior = scheduler_->GetNode("spot-1")->preemptions_per_hour;
  EXPECT_GT(prior, 0);
  auto submitted = Submit(Spec("train"));
  ASSERT_THAT(submitted, IsOk());
  const std::string id = submitted->job.id;
  // Three preemptions in a row: max_attempts is 3 here, yet the job is still queued after them.
  for (uint32_t round = 1; round <= 3; ++round) {
    Job job = Get(id);
    ASSERT_EQ(job.state, JobState::kAssigned) << "round " << round;
    ASSERT_EQ(job.attempt, round);
    JobReport running{id, job.epoch, JobState::kRunning, 0, ""};
    if (round > 1) {
      running.resumed_from = absl::StrCat("step-", round);
      running.resumed_from_seq = round;
    }
    ASSERT_THAT(Call<Job>([&](auto done) {
                  scheduler_->ReportJob("spot-1", session, running, std::move(done));
                }),
                IsOk());
    clock_.Advance(absl::Minutes(30));
    ASSERT_THAT(scheduler_->NotePreempting("spot-1", session, "sigterm", 5), IsOk());
    EXPECT_EQ(scheduler_->GetNode("spot-1")->state(), NodeState::kPreempting);
    // No new work goes to a node being taken back.
    auto other = Submit(Spec("other"));
    ASSERT_THAT(other, IsOk());
    EXPECT_EQ(Get(other->job.id).state, JobState::kPending);
    ASSERT_THAT(Cancel(other->job.id), IsOk());
    JobReport gone{id, job.epoch, JobState::kCancelled, 143, "aws spot notice"};
    gone.preempted = true;
    auto back = Call<Job>([&](auto done) {
      scheduler_->ReportJob("spot-1", session, gone, std::move(done));
    });
    ASSERT_THAT(back, IsOk());
    EXPECT_EQ(back->state, JobState::kPending);
    EXPECT_EQ(back->attempt, round + 1);
    EXPECT_EQ(back->preemptions, round);
    EXPECT_THAT(back->message, HasSubstr("preempted on node spot-1: aws spot notice"));
    // The machine comes back (a new connection): the job goes to it again.
    session = Connect("spot-1", spot, link);
  }
  const Job job = Get(id);
  EXPECT_EQ(job.state, JobState::kAssigned);
  ASSERT_THAT(job.attempts, SizeIs(4));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(job.attempts[i].attempt, static_cast<uint32_t>(i + 1));
    EXPECT_TRUE(job.attempts[i].preempted);
    EXPECT_EQ(job.attempts[i].node, "spot-1");
    EXPECT_EQ(job.attempts[i].provider, "vastai");
    EXPECT_TRUE(job.attempts[i].spot);
    EXPECT_EQ(job.attempts[i].end - job.attempts[i].start, absl::Minutes(30));
    EXPECT_THAT(job.attempts[i].end_reason, HasSubstr("preempted"));
  }
  EXPECT_EQ(job.attempts[0].resumed_from, "");
  EXPECT_EQ(job.attempts[2].resumed_from, "step-3");
  EXPECT_EQ(job.attempts[2].resumed_from_seq, 3u);
  EXPECT_EQ(job.attempts[3].end, absl::InfinitePast());  // running now
  // 3 preemptions in 1.5 spot hours: the rate moves from the prior toward what was seen.
  const double rate = scheduler_->GetNode("spot-1")->preemptions_per_hour;
  EXPECT_DOUBLE_EQ(rate, (prior * 100 + 3) / (100 + 1.5));
  EXPECT_GT(rate, prior);
  EXPECT_EQ(scheduler_->Stats().preemptions_total, 3u);
  EXPECT_EQ(scheduler_->Stats().preemption_notices_total, 3u);
  // An ordinary end is recorded too, and its spot hours count.
  clock_.Advance(absl::Minutes(30));
  ASSERT_THAT(Report("spot-1", session, id, job.epoch, JobState::kFailed, 2), IsOk());
  const Job failed = Get(id);
  EXPECT_EQ(failed.state, JobState::kFailed);
  EXPECT_EQ(failed.attempts.back().end_reason, "exit code 2");
  EXPECT_FALSE(failed.attempts.back().preempted);
  EXPECT_DOUBLE_EQ(scheduler_->GetNode("spot-1")->preemptions_per_hour,
                   (prior * 100 + 3) / (100 + 1.5));  // nodes take the rate at a preemption
  // All of it is stored: after a restart the records, the count and the risk are the same.
  Restart();
  const Job again = Get(id);
  ASSERT_THAT(again.attempts, SizeIs(4));
  EXPECT_EQ(again.preemptions, 3u);
  EXPECT_EQ(again.attempts[2].resumed_from, "step-3");
  EXPECT_TRUE(again.attempts[1].preempted);
  Connect("spot-1", spot, link);
  EXPECT_DOUBLE_EQ(scheduler_->GetNode("spot-1")->preemptions_per_hour,
                   (prior * 100 + 3) / (100 + 2.0));
}

}  // namespace
}  // namespace sched

namespace sched {
namespace {

TEST_F(SchedulerTest, AProjectWithTooManyJobsPendingIsRefusedMoreUntilSomeStart) {
  max_pending_ = 3;
  Restart();
  JobSpec mine = Spec("sweep");
  mine.project = "nlp";
  ASSERT_THAT(Submit(mine, "req-a"), IsOk());
  for (int i = 0; i < 2; ++i) ASSERT_THAT(Submit(mine), IsOk());
  auto fourth = Submit(mine);
  EXPECT_EQ(fourth.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(fourth.status().message(), HasSubstr("project nlp has 3 jobs pending"));
  EXPECT_THAT(fourth.status().message(), HasSubstr("--max_pending_per_project"));
  // Nothing was queued for it, and other projects are not held.
  EXPECT_THAT(scheduler_->ListJobs({}).jobs, SizeIs(3));
  JobSpec theirs = Spec("other");
  theirs.project = "vision";
  EXPECT_THAT(Submit(theirs), IsOk());
  // A retried request of an accepted job is still answered with that job.
  auto retried = Submit(mine, "req-a");
  ASSERT_THAT(retried, IsOk());
  EXPECT_TRUE(retried->existing);
  // One starts: there is room for one more. The count is rebuilt after a restart.
  auto link = std::make_shared<FakeAgentLink>();
  Connect("ws", Caps(1, 8 * kGiB), link);
  EXPECT_THAT(Submit(mine), IsOk());
  EXPECT_EQ(Submit(mine).status().code(), absl::StatusCode::kResourceExhausted);
  Restart();
  EXPECT_EQ(Submit(mine).status().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace sched

namespace sched {
namespace {

TEST_F(SchedulerTest, AJobsOutputPastItsLimitIsDroppedWithALineThatSaysSo) {
  max_log_bytes_ = 10;
  Restart();
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("ws", Caps(1, 8 * kGiB), link);
  auto a = Submit(Spec("chatty"));
  ASSERT_THAT(a, IsOk());
  const JobRef ref{a->job.id, a->job.epoch};
  ASSERT_THAT(scheduler_->AppendLog("ws", s, ref, LogStreamKind::kStdout, "1234"), IsOk());
  ASSERT_THAT(scheduler_->AppendLog("ws", s, ref, LogStreamKind::kStdout, "56789abcdef"), IsOk());
  ASSERT_THAT(scheduler_->AppendLog("ws", s, ref, LogStreamKind::kStdout, "more"), IsOk());
  auto logs = scheduler_->ReadLogs(a->job.id, 1, 10);
  ASSERT_THAT(logs, IsOk());
  ASSERT_THAT(*logs, SizeIs(3));
  EXPECT_EQ((*logs)[0].data, "1234");
  EXPECT_EQ((*logs)[1].data, "56789a");  // ten bytes in all
  EXPECT_EQ((*logs)[2].stream, LogStreamKind::kStderr);
  EXPECT_THAT((*logs)[2].data, HasSubstr("passed 10 bytes (--max_log_bytes_per_job)"));
  EXPECT_EQ(scheduler_->Stats().log_bytes_dropped_total, 5u + 4u);
  // Another job has its own.
  auto b = Submit(Spec("quiet"));
  ASSERT_THAT(b, IsOk());
  ASSERT_THAT(Report("ws", s, a->job.id, a->job.epoch, JobState::kSucceeded), IsOk());
  const Job quiet = Get(b->job.id);
  ASSERT_EQ(quiet.state, JobState::kAssigned);
  ASSERT_THAT(scheduler_->AppendLog("ws", s, {quiet.id, quiet.epoch}, LogStreamKind::kStdout,
                                    "hello\n"),
              IsOk());
  auto other = scheduler_->ReadLogs(quiet.id, 1, 10);
  ASSERT_THAT(other, IsOk());
  ASSERT_THAT(*other, SizeIs(1));
  EXPECT_EQ((*other)[0].data, "hello\n");
}

}  // namespace
}  // namespace sched

// ---- Retries and limits ----

namespace sched {
namespace {

JobSpec Retrying(uint32_t max_restarts, std::vector<int32_t> codes, absl::Duration backoff,
                 absl::Duration max_backoff) {
  JobSpec s = Spec("flaky");
  s.retry.max_restarts = max_restarts;
  s.retry.exit_codes = std::move(codes);
  s.retry.backoff = backoff;
  s.retry.max_backoff = max_backoff;
  return s;
}

TEST_F(SchedulerTest, ARetryPolicyRestartsMatchingFailuresAfterABackoffThatDoubles) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("ws", Caps(1, 8 * kGiB), link);
  auto a = Submit(Retrying(2, {3, 75}, absl::Seconds(10), absl::Seconds(15)));
  ASSERT_THAT(a, IsOk());
  const std::string id = a->job.id;
  const uint64_t e1 = Get(id).epoch;
  link->Take();

  // Exit code 3 is in the list: back to the queue, held for the backoff.
  auto failed = Report("ws", s, id, e1, JobState::kFailed, 3);
  ASSERT_THAT(failed, IsOk());
  EXPECT_EQ(failed->state, JobState::kPending);
  EXPECT_EQ(failed->restarts, 1u);
  EXPECT_EQ(failed->attempt, 2u);
  EXPECT_EQ(failed->hold_until, clock_.Now() + absl::Seconds(10));
  EXPECT_THAT(failed->message, HasSubstr("exit code 3; restart 1 of 2 at "));
  ASSERT_THAT(failed->attempts, SizeIs(1));
  EXPECT_EQ(failed->attempts[0].end_reason, "exit code 3");
  // The node is free, but the job waits out its backoff.
  clock_.Advance(absl::Seconds(9));
  scheduler_->Tick();
  EXPECT_EQ(Get(id).state, JobState::kPending);
  EXPECT_THAT(link->Take(), SizeIs(0));
  clock_.Advance(absl::Seconds(1));
  scheduler_->Tick();
  Job second = Get(id);
  ASSERT_EQ(second.state, JobState::kAssigned);
  EXPECT_GT(second.epoch, e1);
  EXPECT_TRUE(second.message.empty());
  auto cmds = link->Take();
  ASSERT_THAT(cmds, SizeIs(1));
  EXPECT_EQ(cmds[0].kind, "assign");

  // The second restart waits twice the backoff, capped at max_backoff (15 s, not 20 s); the
  // hold survives a restart of schedd.
  failed = Report("ws", s, id, second.epoch, JobState::kFailed, 75);
  ASSERT_THAT(failed, IsOk());
  EXPECT_EQ(failed->restarts, 2u);
  const absl::Time held_until = clock_.Now() + absl::Seconds(15);
  EXPECT_EQ(failed->hold_until, held_until);
  EXPECT_EQ(scheduler_->Stats().restarts_total, 2u);
  Restart();
  EXPECT_EQ(Get(id).hold_until, held_until);
  auto link2 = std::make_shared<FakeAgentLink>();
  s = Connect("ws", Caps(1, 8 * kGiB), link2);
  EXPECT_EQ(Get(id).state, JobState::kPending);
  EXPECT_THAT(link2->Take(), SizeIs(0));
  clock_.Advance(absl::Seconds(15));
  ASSERT_THAT(scheduler_->Heartbeat("ws", s, {}), IsOk());  // the agent is still there
  scheduler_->Tick();
  Job third = Get(id);
  ASSERT_EQ(third.state, JobState::kAssigned);
  EXPECT_EQ(third.attempt, 3u);

  // Out of restarts: the failure is final.
  failed = Report("ws", s, id, third.epoch, JobState::kFailed, 3);
  ASSERT_THAT(failed, IsOk());
  EXPECT_EQ(failed->state, JobState::kFailed);
  EXPECT_EQ(failed->exit_code, 3);
  EXPECT_EQ(failed->message, "");

  // An exit code not in the list is final at once; so is any failure without a policy.
  auto b = Submit(Retrying(5, {3}, absl::Seconds(1), absl::Seconds(1)));
  ASSERT_THAT(b, IsOk());
  failed = Report("ws", s, b->job.id, Get(b->job.id).epoch, JobState::kFailed, 1);
  ASSERT_THAT(failed, IsOk());
  EXPECT_EQ(failed->state, JobState::kFailed);
  EXPECT_EQ(failed->restarts, 0u);
  auto c = Submit(Spec("plain"));
  ASSERT_THAT(c, IsOk());
  failed = Report("ws", s, c->job.id, Get(c->job.id).epoch, JobState::kFailed, 3);
  ASSERT_THAT(failed, IsOk());
  EXPECT_EQ(failed->state, JobState::kFailed);
}

TEST_F(SchedulerTest, RestartsOnAnyFailureWhenNoExitCodesAreListedAndNeverOnSuccess) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("ws", Caps(1, 8 * kGiB), link);
  auto a = Submit(Retrying(1, {}, absl::Seconds(5), absl::Seconds(5)));
  ASSERT_THAT(a, IsOk());
  // Killed by SIGKILL (128 + 9).
  auto failed = Report("ws", s, a->job.id, Get(a->job.id).epoch, JobState::kFailed, 137);
  ASSERT_THAT(failed, IsOk());
  EXPECT_EQ(failed->state, JobState::kPending);
  clock_.Advance(absl::Seconds(5));
  scheduler_->Tick();
  auto done = Report("ws", s, a->job.id, Get(a->job.id).epoch, JobState::kSucceeded);
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(done->state, JobState::kSucceeded);
  EXPECT_EQ(done->restarts, 1u);
  // A cancel while held ends it at once, and it never comes back.
  auto b = Submit(Retrying(3, {}, absl::Minutes(1), absl::Minutes(1)));
  ASSERT_THAT(b, IsOk());
  ASSERT_THAT(Report("ws", s, b->job.id, Get(b->job.id).epoch, JobState::kFailed, 1), IsOk());
  auto cancelled = Cancel(b->job.id);
  ASSERT_THAT(cancelled, IsOk());
  EXPECT_EQ(cancelled->state, JobState::kCancelled);
  clock_.Advance(absl::Minutes(2));
  link->Take();
  scheduler_->Tick();
  EXPECT_EQ(Get(b->job.id).state, JobState::kCancelled);
  EXPECT_THAT(link->Take(), SizeIs(0));
}

TEST_F(SchedulerTest, NotBeforeHoldsAJobOutOfTheQueueUntilItsTime) {
  auto link = std::make_shared<FakeAgentLink>();
  const uint64_t s0 = Connect("ws", Caps(1, 8 * kGiB), link);
  JobSpec later = Spec("nightly");
  later.not_before = clock_.Now() + absl::Hours(1);
  auto a = Submit(later);
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(a->job.state, JobState::kPending);
  EXPECT_EQ(a->job.hold_until, later.not_before);
  EXPECT_THAT(a->job.message, HasSubstr("not before "));
  EXPECT_THAT(link->Take(), SizeIs(0));
  // A held job is not counted as stuck pending.
  EXPECT_TRUE(scheduler_->OldestPendingAge().empty());
  // Others pass it by.
  auto now_job = Submit(Spec("now"));
  ASSERT_THAT(now_job, IsOk());
  EXPECT_EQ(Get(now_job->job.id).state, JobState::kAssigned);
  ASSERT_THAT(Cancel(now_job->job.id), IsOk());
  ASSERT_THAT(Report("ws", s0, now_job->job.id, Get(now_job->job.id).epoch, JobState::kFailed, 143),
              IsOk());
  clock_.Advance(absl::Minutes(59));
  scheduler_->Tick();
  EXPECT_EQ(Get(a->job.id).state, JobState::kPending);
  Restart();
  link = std::make_shared<FakeAgentLink>();
  const uint64_t s1 = Connect("ws", Caps(1, 8 * kGiB), link);
  EXPECT_EQ(Get(a->job.id).state, JobState::kPending);
  EXPECT_THAT(link->Take(), SizeIs(0));
  clock_.Advance(absl::Minutes(1));
  ASSERT_THAT(scheduler_->Heartbeat("ws", s1, {}), IsOk());
  scheduler_->Tick();
  EXPECT_EQ(Get(a->job.id).state, JobState::kAssigned);

  // A time in the past is no hold; one more than a year ahead, or at the deadline, is refused.
  JobSpec past = Spec("past");
  past.not_before = clock_.Now() - absl::Hours(1);
  auto p = Submit(past);
  ASSERT_THAT(p, IsOk());
  EXPECT_TRUE(scheduler_->OldestPendingAge().count("default"));
  JobSpec far = Spec("far");
  far.not_before = clock_.Now() + absl::Hours(24 * 400);
  EXPECT_THAT(Submit(far), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not_before")));
  JobSpec after_deadline = Spec("late");
  after_deadline.deadline = clock_.Now() + absl::Hours(1);
  after_deadline.not_before = clock_.Now() + absl::Hours(2);
  EXPECT_THAT(Submit(after_deadline),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not_before")));
}

TEST_F(SchedulerTest, MaxDurationStopsTheJobLikeACancelAndItEndsFailedWithoutRestart) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("ws", Caps(1, 8 * kGiB), link);
  JobSpec spec = Retrying(3, {}, absl::Seconds(1), absl::Seconds(1));
  spec.max_duration = absl::Hours(1);
  auto a = Submit(spec);
  ASSERT_THAT(a, IsOk());
  const std::string id = a->job.id;
  const uint64_t epoch = Get(id).epoch;
  ASSERT_THAT(Report("ws", s, id, epoch, JobState::kRunning), IsOk());
  link->Take();
  clock_.Advance(absl::Minutes(59));
  ASSERT_THAT(scheduler_->Heartbeat("ws", s, {{id, epoch}}), IsOk());
  scheduler_->Tick();
  EXPECT_THAT(link->Take(), SizeIs(0));
  clock_.Advance(absl::Minutes(1));
  ASSERT_THAT(scheduler_->Heartbeat("ws", s, {{id, epoch}}), IsOk());
  scheduler_->Tick();
  auto cmds = link->Take();
  ASSERT_THAT(cmds, SizeIs(1));
  EXPECT_EQ(cmds[0].kind, "cancel");
  EXPECT_EQ(cmds[0].epoch, epoch);
  Job stopping = Get(id);
  EXPECT_EQ(stopping.state, JobState::kRunning);
  EXPECT_EQ(stopping.stop_reason, "ran 1h, its max_duration is 1h");
  EXPECT_THAT(stopping.message, HasSubstr("stopping: ran 1h"));
  EXPECT_EQ(scheduler_->Stats().limit_stops_total, 1u);
  // Said again with each heartbeat, like a cancel, until the job ends.
  ASSERT_THAT(scheduler_->Heartbeat("ws", s, {{id, epoch}}), IsOk());
  cmds = link->Take();
  ASSERT_THAT(cmds, SizeIs(1));
  EXPECT_EQ(cmds[0].kind, "cancel");
  // The agent stopped it (SIGTERM): FAILED with the reason, and no restart.
  auto end = Report("ws", s, id, epoch, JobState::kCancelled, 143);
  ASSERT_THAT(end, IsOk());
  EXPECT_EQ(end->state, JobState::kFailed);
  EXPECT_EQ(end->message, "ran 1h, its max_duration is 1h");
  EXPECT_EQ(end->restarts, 0u);
  EXPECT_EQ(end->run_time, absl::Hours(1));
}

TEST_F(SchedulerTest, MaxDurationCountsEveryAttemptAndSurvivesARestartOfSchedd) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("ws", Caps(1, 8 * kGiB), link);
  JobSpec spec = Spec("resumable");
  spec.max_duration = absl::Hours(1);
  auto a = Submit(spec);
  ASSERT_THAT(a, IsOk());
  const std::string id = a->job.id;
  // 40 minutes, then the node is taken back.
  clock_.Advance(absl::Minutes(40));
  JobReport gone{id, Get(id).epoch, JobState::kCancelled, 143, "notice"};
  gone.preempted = true;
  ASSERT_THAT(Call<Job>([&](auto done) { scheduler_->ReportJob("ws", s, gone, std::move(done)); }),
              IsOk());
  Job back = Get(id);
  ASSERT_EQ(back.state, JobState::kAssigned);  // the node is free again at once
  EXPECT_EQ(back.run_time, absl::Minutes(40));
  const JobRef ref{id, back.epoch};
  // schedd restarts mid-attempt; the agent comes back with the job.
  clock_.Advance(absl::Minutes(10));
  Restart();
  link = std::make_shared<FakeAgentLink>();
  s = Connect("ws", Caps(1, 8 * kGiB), link, {ref});
  link->Take();
  clock_.Advance(absl::Minutes(9));
  ASSERT_THAT(scheduler_->Heartbeat("ws", s, {ref}), IsOk());
  scheduler_->Tick();
  EXPECT_THAT(link->Take(), SizeIs(0));
  clock_.Advance(absl::Minutes(1));  // 40 + 20 minutes
  ASSERT_THAT(scheduler_->Heartbeat("ws", s, {ref}), IsOk());
  scheduler_->Tick();
  auto cmds = link->Take();
  ASSERT_THAT(cmds, SizeIs(1));
  EXPECT_EQ(cmds[0].kind, "cancel");
  // The agent is lost before it reports: the lease ends and the job is not requeued.
  clock_.Advance(absl::Seconds(11));
  scheduler_->Tick();
  Job end = Get(id);
  EXPECT_EQ(end.state, JobState::kFailed);
  EXPECT_THAT(end.message, HasSubstr("its max_duration is 1h"));
}

TEST_F(SchedulerTest, MaxCostStopsAJobWhenWhatItCostReachesTheLimit) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("vast-1", Priced(2.0, "vastai"), link);
  JobSpec spec = Spec("train");
  spec.runtime = absl::Minutes(20);  // expected $0.67: under max_cost, so it is placed
  spec.max_cost = 1.0;
  auto a = Submit(spec);
  ASSERT_THAT(a, IsOk());
  const std::string id = a->job.id;
  Job first = Get(id);
  ASSERT_EQ(first.state, JobState::kAssigned);
  link->Take();
  // 20 minutes ($0.67), then the node is taken back; the cost so far is kept.
  clock_.Advance(absl::Minutes(20));
  JobReport gone{id, first.epoch, JobState::kCancelled, 143, "notice"};
  gone.preempted = true;
  ASSERT_THAT(Call<Job>([&](auto done) { scheduler_->ReportJob("vast-1", s, gone, std::move(done)); }),
              IsOk());
  Job second = Get(id);
  ASSERT_EQ(second.state, JobState::kAssigned);
  EXPECT_NEAR(second.spent, 2.0 / 3, 1e-9);
  link->Take();
  // $1.00 is reached 10 minutes into the second lease.
  const JobRef ref{id, second.epoch};
  clock_.Advance(absl::Minutes(9));
  ASSERT_THAT(scheduler_->Heartbeat("vast-1", s, {ref}), IsOk());
  scheduler_->Tick();
  EXPECT_THAT(link->Take(), SizeIs(0));
  clock_.Advance(absl::Minutes(1));
  ASSERT_THAT(scheduler_->Heartbeat("vast-1", s, {ref}), IsOk());
  scheduler_->Tick();
  auto cmds = link->Take();
  ASSERT_THAT(cmds, SizeIs(1));
  EXPECT_EQ(cmds[0].kind, "cancel");
  EXPECT_EQ(Get(id).stop_reason, "cost $1.00, its max_cost is $1.00");
  auto end = Report("vast-1", s, id, second.epoch, JobState::kCancelled, 143);
  ASSERT_THAT(end, IsOk());
  EXPECT_EQ(end->state, JobState::kFailed);
  EXPECT_EQ(end->message, "cost $1.00, its max_cost is $1.00");
  EXPECT_NEAR(end->spent, 1.0, 1e-9);
  EXPECT_NEAR(scheduler_->Spent("default", absl::InfinitePast(), clock_.Now()), 1.0, 1e-9);
}

TEST_F(SchedulerTest, BadRetryAndLimitFieldsNameTheField) {
  auto with = [](auto edit) {
    JobSpec s = Spec("x");
    edit(s);
    return s;
  };
  EXPECT_THAT(Submit(with([](JobSpec& s) { s.retry.max_restarts = 101; })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("retry.max_restarts")));
  EXPECT_THAT(Submit(with([](JobSpec& s) {
                s.retry.max_restarts = 1;
                s.retry.exit_codes = {0};
              })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("retry.exit_codes")));
  EXPECT_THAT(Submit(with([](JobSpec& s) {
                s.retry.max_restarts = 1;
                s.retry.exit_codes = {256};
              })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("retry.exit_codes")));
  EXPECT_THAT(Submit(with([](JobSpec& s) { s.retry.exit_codes = {3}; })),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("retry.exit_codes: set, but retry.max_restarts is 0")));
  EXPECT_THAT(Submit(with([](JobSpec& s) {
                s.retry.max_restarts = 1;
                s.retry.backoff = absl::Hours(1);
                s.retry.max_backoff = absl::Minutes(1);
              })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("retry.backoff")));
  EXPECT_THAT(Submit(with([](JobSpec& s) { s.max_duration = -absl::Seconds(1); })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_duration")));
  EXPECT_THAT(Submit(with([](JobSpec& s) { s.max_duration = absl::Hours(24 * 400); })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_duration")));
  EXPECT_THAT(scheduler_->ListJobs({}).jobs, SizeIs(0));
  EXPECT_EQ(store_.appended(), 0u);
}

}  // namespace
}  // namespace sched

// ---- Sweeps ----

namespace sched {
namespace {

JobSpec Grid(std::vector<std::pair<std::string, std::vector<std::string>>> parameters,
             uint32_t max_parallel = 0) {
  JobSpec s = Spec("sweep");
  s.resources.cpu_millis = 100;
  s.sweep.parameters = std::move(parameters);
  s.sweep.max_parallel = max_parallel;
  s.sweep.metric = "loss";
  return s;
}

TEST_F(SchedulerTest, ASweepMakesAJobPerCombinationWithItsParametersAndIndex) {
  auto r = Submit(Grid({{"LR", {"0.1", "0.01"}}, {"BS", {"16", "32", "64"}}}), "req-sweep");
  ASSERT_THAT(r, IsOk());
  ASSERT_THAT(r->job_ids, SizeIs(6));
  EXPECT_THAT(r->sweep_id, SizeIs(16));
  EXPECT_EQ(r->job.id, r->job_ids[0]);
  // The first parameter changes slowest.
  const std::vector<std::pair<std::string, std::string>> want = {
      {"0.1", "16"}, {"0.1", "32"}, {"0.1", "64"}, {"0.01", "16"}, {"0.01", "32"}, {"0.01", "64"}};
  for (size_t i = 0; i < 6; ++i) {
    const Job job = Get(r->job_ids[i]);
    EXPECT_EQ(job.sweep_id, r->sweep_id);
    EXPECT_EQ(job.array_index, i);
    EXPECT_EQ(job.parameters.at("LR"), want[i].first) << i;
    EXPECT_EQ(job.parameters.at("BS"), want[i].second) << i;
    EXPECT_THAT(job.spec.env, ::testing::Contains(std::make_pair(std::string("LR"), want[i].first)));
    EXPECT_THAT(job.spec.env, ::testing::Contains(std::make_pair(std::string("SCHED_ARRAY_INDEX"),
                                                                 absl::StrCat(i))));
    EXPECT_THAT(job.spec.env, ::testing::Contains(std::make_pair(std::string("SCHED_SWEEP_ID"),
                                                                 r->sweep_id)));
    EXPECT_TRUE(job.spec.sweep.parameters.empty());
    EXPECT_EQ(job.spec.sweep.metric, "loss");
    EXPECT_EQ(job.state, JobState::kPending);
  }
  // A retried submit answers with the same sweep; a listed-runs sweep works too.
  auto again = Submit(Grid({{"LR", {"0.1", "0.01"}}, {"BS", {"16", "32", "64"}}}), "req-sweep");
  ASSERT_THAT(again, IsOk());
  EXPECT_TRUE(again->existing);
  EXPECT_EQ(again->sweep_id, r->sweep_id);
  EXPECT_EQ(again->job_ids, r->job_ids);
  JobSpec listed = Spec("listed");
  listed.sweep.runs = {{{"A", "1"}}, {{"A", "2"}, {"B", "x"}}};
  auto l = Submit(listed);
  ASSERT_THAT(l, IsOk());
  ASSERT_THAT(l->job_ids, SizeIs(2));
  EXPECT_EQ(Get(l->job_ids[1]).parameters.at("B"), "x");
  // Survives a restart, with the same sweep view.
  Restart();
  auto view = scheduler_->GetSweep(r->sweep_id.substr(0, 6));
  ASSERT_THAT(view, IsOk());
  ASSERT_THAT(view->runs, SizeIs(6));
  EXPECT_EQ(view->runs[4].parameters.at("BS"), "32");
  EXPECT_THAT(scheduler_->GetSweep("zzzz"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(SchedulerTest, BadSweepsNameTheFieldAndStoreNothing) {
  auto bad = [&](auto edit, const std::string& field) {
    JobSpec s = Grid({{"LR", {"0.1"}}});
    edit(s);
    EXPECT_THAT(Submit(s), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(field)));
  };
  bad([](JobSpec& s) { s.sweep.parameters = {{"1BAD", {"x"}}}; }, "sweep.1BAD");
  bad([](JobSpec& s) { s.sweep.parameters = {{"SCHED_X", {"x"}}}; }, "SCHED_ prefix");
  bad([](JobSpec& s) { s.sweep.parameters = {{"A", {}}}; }, "sweep.A: has no values");
  bad([](JobSpec& s) { s.sweep.parameters = {{"A", {"1"}}, {"A", {"2"}}}; }, "given twice");
  bad([](JobSpec& s) { s.sweep.runs = {{{"A", "1"}}}; }, "not both");
  bad([](JobSpec& s) { s.env = {{"LR", "1"}}; }, "sweep.LR: also set in env");
  bad([](JobSpec& s) {
    s.sweep.parameters = {{"A", std::vector<std::string>(200, "x")},
                          {"B", std::vector<std::string>(200, "y")}};
  }, "more than 10000 runs");
  bad([](JobSpec& s) { s.sweep.early_stopping.rule = "hyperband"; }, "early_stopping.rule");
  bad([](JobSpec& s) {
    s.sweep.metric.clear();
    s.sweep.early_stopping.rule = "median";
  }, "sweep.metric: required");
  bad([](JobSpec& s) { s.sweep.metric = "bad metric"; }, "sweep.metric");
  bad([](JobSpec& s) { s.sweep.early_stopping.reduction_factor = 1; }, "reduction_factor");
  EXPECT_THAT(scheduler_->ListJobs({}).jobs, SizeIs(0));
  EXPECT_EQ(store_.appended(), 0u);
  // A sweep past the project's pending cap is refused whole.
  max_pending_ = 5;
  Restart();
  auto big = Submit(Grid({{"A", {"1", "2", "3", "4", "5", "6"}}}));
  EXPECT_THAT(big, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("makes 6 more")));
  EXPECT_THAT(scheduler_->ListJobs({}).jobs, SizeIs(0));
}

TEST_F(SchedulerTest, MaxParallelHoldsTheRestUntilARunEnds) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("ws", Caps(8, 8 * kGiB), link);
  auto r = Submit(Grid({{"I", {"0", "1", "2", "3", "4"}}}, 2));
  ASSERT_THAT(r, IsOk());
  auto states = [&] {
    std::vector<JobState> out;
    for (const std::string& id : r->job_ids) out.push_back(Get(id).state);
    return out;
  };
  using S = JobState;
  EXPECT_THAT(states(), ElementsAre(S::kAssigned, S::kAssigned, S::kPending, S::kPending,
                                    S::kPending));
  EXPECT_TRUE(Get(r->job_ids[2]).waiting_for_slot);
  EXPECT_THAT(Get(r->job_ids[2]).message, HasSubstr("waiting for a slot of sweep"));
  // Run 0 ends: run 2 takes its slot in the same change.
  ASSERT_THAT(Report("ws", s, r->job_ids[0], Get(r->job_ids[0]).epoch, S::kSucceeded), IsOk());
  EXPECT_THAT(states(), ElementsAre(S::kSucceeded, S::kAssigned, S::kAssigned, S::kPending,
                                    S::kPending));
  EXPECT_FALSE(Get(r->job_ids[2]).waiting_for_slot);
  // A cancel of a held run frees nothing; a cancel of a running one does (when it ends).
  ASSERT_THAT(Cancel(r->job_ids[4]), IsOk());
  ASSERT_THAT(Cancel(r->job_ids[1]), IsOk());
  EXPECT_EQ(Get(r->job_ids[3]).state, S::kPending);
  ASSERT_THAT(Report("ws", s, r->job_ids[1], Get(r->job_ids[1]).epoch, S::kFailed, 143), IsOk());
  EXPECT_EQ(Get(r->job_ids[1]).state, S::kCancelled);
  EXPECT_EQ(Get(r->job_ids[3]).state, S::kAssigned);
  // The holds survive a restart: with two running, nothing else starts.
  auto more = Submit(Grid({{"I", {"a", "b", "c"}}}, 1));
  ASSERT_THAT(more, IsOk());
  Restart();
  auto link2 = std::make_shared<FakeAgentLink>();
  std::vector<JobRef> running;
  for (const std::string& id : {r->job_ids[2], r->job_ids[3], more->job_ids[0]}) {
    running.push_back({id, Get(id).epoch});
  }
  s = Connect("ws", Caps(8, 8 * kGiB), link2, running);
  EXPECT_EQ(Get(more->job_ids[1]).state, S::kPending);
  EXPECT_TRUE(Get(more->job_ids[1]).waiting_for_slot);
  ASSERT_THAT(Report("ws", s, more->job_ids[0], Get(more->job_ids[0]).epoch, S::kSucceeded),
              IsOk());
  EXPECT_EQ(Get(more->job_ids[1]).state, S::kAssigned);
  EXPECT_EQ(Get(more->job_ids[2]).state, S::kPending);
}

// Reports `values` (step, loss) for a run and returns the status.
absl::Status Metrics(Scheduler& s, uint64_t session, const Job& job,
                     std::vector<std::pair<int64_t, double>> values) {
  std::vector<Scheduler::MetricReport> points;
  for (const auto& [step, v] : values) points.push_back({step, "loss", v});
  points.push_back({values.back().first, "acc", 0.5});
  return s.ReportMetrics("ws", session, {job.id, job.epoch}, points);
}

TEST_F(SchedulerTest, MetricsAreStoredAndMedianStoppingEndsAWeakRunStoppedEarly) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("ws", Caps(8, 8 * kGiB), link);
  JobSpec spec = Grid({{"I", {"0", "1", "2", "3", "4"}}});
  spec.sweep.early_stopping.rule = "median";
  spec.sweep.early_stopping.min_step = 2;
  auto r = Submit(spec);
  ASSERT_THAT(r, IsOk());
  std::vector<Job> runs;
  for (const std::string& id : r->job_ids) runs.push_back(Get(id));
  // Runs 0..3 reach step 3 with losses 1.0, 0.9, 0.8, 0.7 at each step.
  for (int i = 0; i < 4; ++i) {
    for (int64_t step = 1; step <= 3; ++step) {
      ASSERT_THAT(Metrics(*scheduler_, s, runs[i], {{step, 1.0 - 0.1 * i}}), IsOk());
    }
  }
  link->Take();
  // Run 4 is worse than the median (0.85) at step 2: stopped. At step 1 it was not judged.
  ASSERT_THAT(Metrics(*scheduler_, s, runs[4], {{1, 5.0}}), IsOk());
  EXPECT_THAT(link->Take(), SizeIs(0));
  ASSERT_THAT(Metrics(*scheduler_, s, runs[4], {{2, 2.0}}), IsOk());
  auto cmds = link->Take();
  ASSERT_THAT(cmds, SizeIs(1));
  EXPECT_EQ(cmds[0].kind, "cancel");
  EXPECT_EQ(cmds[0].job_id, runs[4].id);
  Job stopping = Get(runs[4].id);
  EXPECT_TRUE(stopping.stopped_early);
  EXPECT_THAT(stopping.stop_reason,
              HasSubstr("loss 2 at step 2 is worse than the median 0.85 of 4 other runs"));
  EXPECT_EQ(stopping.metrics.at("loss"), 2.0);
  EXPECT_EQ(stopping.metrics.at("acc"), 0.5);
  EXPECT_EQ(stopping.metric_step, 2);
  ASSERT_THAT(stopping.history, SizeIs(2));
  // The agent stops it: STOPPED_EARLY, not FAILED.
  auto end = Report("ws", s, runs[4].id, runs[4].epoch, JobState::kCancelled, 143);
  ASSERT_THAT(end, IsOk());
  EXPECT_EQ(end->state, JobState::kStoppedEarly);
  EXPECT_EQ(scheduler_->Stats().early_stops_total, 1u);
  // Run 3 is the best; the others finish.
  for (int i = 0; i < 4; ++i) {
    ASSERT_THAT(Report("ws", s, runs[i].id, runs[i].epoch, JobState::kSucceeded), IsOk());
  }
  auto view = scheduler_->GetSweep(r->sweep_id);
  ASSERT_THAT(view, IsOk());
  EXPECT_EQ(view->best_index, 3);
  // Bad and stale reports are refused and change nothing.
  const Job done = Get(runs[0].id);
  EXPECT_THAT(Metrics(*scheduler_, s, done, {{4, 0.1}}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  auto c = Submit(Spec("other"));
  ASSERT_THAT(c, IsOk());
  const Job other = Get(c->job.id);
  EXPECT_THAT(scheduler_->ReportMetrics("ws", s, {other.id, other.epoch}, {{1, "bad name", 1}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("points.name")));
  EXPECT_THAT(scheduler_->ReportMetrics("ws", s, {other.id, other.epoch},
                                        {{1, "loss", std::nan("")}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not finite")));
  EXPECT_THAT(scheduler_->ReportMetrics("ws", s, {other.id, other.epoch}, {{-1, "loss", 1}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("points.step")));
  EXPECT_TRUE(Get(other.id).metrics.empty());
  // An agent may not claim STOPPED_EARLY itself.
  EXPECT_THAT(Report("ws", s, other.id, other.epoch, JobState::kStoppedEarly),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Metrics survive a restart.
  Restart();
  EXPECT_EQ(Get(runs[3].id).metrics.at("loss"), 0.7);
  EXPECT_THAT(Get(runs[3].id).history, SizeIs(3));
  EXPECT_EQ(Get(runs[4].id).state, JobState::kStoppedEarly);
}

}  // namespace
}  // namespace sched

// ---- Dependencies ----

namespace sched {
namespace {

JobSpec After(std::string name, std::vector<std::pair<std::string, std::string>> after) {
  JobSpec s = Spec(std::move(name));
  s.after = std::move(after);
  return s;
}

TEST_F(SchedulerTest, AJobRunsAfterItsDependenciesEndAsItSays) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("ws", Caps(8, 8 * kGiB), link);
  auto prep = Submit(Spec("prep"));
  auto flaky = Submit(Spec("flaky"));
  ASSERT_THAT(prep, IsOk());
  ASSERT_THAT(flaky, IsOk());
  // train after prep succeeds (by prefix); cleanup after flaky fails; report after both end.
  auto train = Submit(After("train", {{prep->job.id.substr(0, 8), "success"}}));
  auto cleanup = Submit(After("cleanup", {{flaky->job.id, "failure"}}));
  auto report = Submit(After("report", {{prep->job.id, "always"}, {flaky->job.id, "always"}}));
  ASSERT_THAT(train, IsOk());
  ASSERT_THAT(cleanup, IsOk());
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(train->job.spec.after[0].first, prep->job.id);  // stored as the full id
  EXPECT_EQ(train->job.state, JobState::kPending);
  EXPECT_EQ(train->job.message, absl::StrCat("waiting for job ", prep->job.id, " to succeed"));
  EXPECT_EQ(report->job.message, absl::StrCat("waiting for job ", prep->job.id,
                                              " to end, job ", flaky->job.id, " to end"));
  // prep succeeds: train goes at once, in the same change; report still waits for flaky.
  ASSERT_THAT(Report("ws", s, prep->job.id, Get(prep->job.id).epoch, JobState::kSucceeded),
              IsOk());
  EXPECT_EQ(Get(train->job.id).state, JobState::kAssigned);
  EXPECT_EQ(Get(report->job.id).state, JobState::kPending);
  EXPECT_EQ(Get(report->job.id).message,
            absl::StrCat("waiting for job ", flaky->job.id, " to end"));
  // The holds survive a restart of schedd.
  Restart();
  auto link2 = std::make_shared<FakeAgentLink>();
  s = Connect("ws", Caps(8, 8 * kGiB), link2,
              {{flaky->job.id, Get(flaky->job.id).epoch}, {train->job.id, Get(train->job.id).epoch}});
  EXPECT_EQ(Get(cleanup->job.id).state, JobState::kPending);
  EXPECT_EQ(Get(report->job.id).state, JobState::kPending);
  // flaky fails: cleanup and report go.
  ASSERT_THAT(Report("ws", s, flaky->job.id, Get(flaky->job.id).epoch, JobState::kFailed, 1),
              IsOk());
  EXPECT_EQ(Get(cleanup->job.id).state, JobState::kAssigned);
  EXPECT_EQ(Get(report->job.id).state, JobState::kAssigned);
}

TEST_F(SchedulerTest, AFailedDependencyCancelsTheJobsAfterItDownTheChain) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("ws", Caps(8, 8 * kGiB), link);
  auto a = Submit(Spec("stage-1"));
  ASSERT_THAT(a, IsOk());
  auto b = Submit(After("stage-2", {{a->job.id, "success"}}));
  ASSERT_THAT(b, IsOk());
  auto c = Submit(After("stage-3", {{b->job.id, "success"}}));
  ASSERT_THAT(c, IsOk());
  auto notify = Submit(After("notify", {{c->job.id, "always"}}));
  ASSERT_THAT(notify, IsOk());
  ASSERT_THAT(Report("ws", s, a->job.id, Get(a->job.id).epoch, JobState::kFailed, 2), IsOk());
  const Job b_end = Get(b->job.id);
  EXPECT_EQ(b_end.state, JobState::kCancelled);
  EXPECT_EQ(b_end.message, absl::StrCat("not run: job ", a->job.id,
                                        " ended FAILED, and this job runs after it succeeds"));
  EXPECT_EQ(Get(c->job.id).state, JobState::kCancelled);
  EXPECT_THAT(Get(c->job.id).message, HasSubstr(absl::StrCat("job ", b->job.id, " ended CANCELLED")));
  // "always" runs whatever became of the stage before.
  EXPECT_EQ(Get(notify->job.id).state, JobState::kAssigned);
  // All of it is on disk.
  Restart();
  EXPECT_EQ(Get(c->job.id).state, JobState::kCancelled);
  EXPECT_EQ(Get(notify->job.id).state, JobState::kAssigned);
}

TEST_F(SchedulerTest, DependenciesAreCheckedAtSubmit) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("ws", Caps(8, 8 * kGiB), link);
  auto done = Submit(Spec("done"));
  ASSERT_THAT(done, IsOk());
  ASSERT_THAT(Report("ws", s, done->job.id, Get(done->job.id).epoch, JobState::kFailed, 1),
              IsOk());
  const size_t jobs = scheduler_->ListJobs({}).jobs.size();
  EXPECT_THAT(Submit(After("x", {{"ffffffffffffffff", "success"}})),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("after[0].job: job ffffffffffffffff")));
  EXPECT_THAT(Submit(After("x", {{done->job.id, "success"}})),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("after: not run: job " + done->job.id + " ended FAILED")));
  EXPECT_THAT(Submit(After("x", {{done->job.id, "sometimes"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("after[0].when")));
  JobSpec with_sweep = After("x", {{done->job.id, "failure"}});
  with_sweep.sweep.parameters = {{"A", {"1"}}};
  EXPECT_THAT(Submit(with_sweep),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("after: not with a sweep")));
  EXPECT_EQ(scheduler_->ListJobs({}).jobs.size(), jobs);
  // A dependency met already: the job goes at once.
  auto ok = Submit(After("x", {{done->job.id, "failure"}}));
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ(Get(ok->job.id).state, JobState::kAssigned);
  // A held job can be cancelled, and its dependents follow.
  auto blocker = Submit(Spec("blocker"));
  auto held = Submit(After("held", {{blocker->job.id, "success"}}));
  auto next = Submit(After("next", {{held->job.id, "success"}}));
  ASSERT_THAT(Cancel(held->job.id), IsOk());
  EXPECT_EQ(Get(held->job.id).state, JobState::kCancelled);
  EXPECT_EQ(Get(next->job.id).state, JobState::kCancelled);
}

}  // namespace
}  // namespace sched

// ---- Packing small jobs onto one GPU ----

namespace sched {
namespace {

JobSpec Small(std::string name, int64_t gpu_memory, bool share = true) {
  JobSpec s = Spec(std::move(name));
  s.resources.gpus = 1;
  s.resources.gpu_memory_bytes = gpu_memory;
  s.resources.share_gpu = share;
  s.resources.cpu_millis = 100;
  return s;
}

TEST_F(SchedulerTest, SmallJobsShareAGpuWhileTheirMemoryFitsTheCard) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("ws", Caps(8, 64 * kGiB, {{0, "GPU-0", "NVIDIA GeForce RTX 3090", 24 * kGiB},
                                                 {1, "GPU-1", "NVIDIA GeForce RTX 3090", 24 * kGiB}}),
                       link);
  auto a = Submit(Small("eval-a", 10 * kGiB));
  auto b = Submit(Small("eval-b", 10 * kGiB));
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  // Both on GPU 0: b is packed beside a, leaving GPU 1 whole.
  EXPECT_EQ(Get(a->job.id).state, JobState::kAssigned);
  EXPECT_EQ(Get(b->job.id).state, JobState::kAssigned);
  EXPECT_THAT(Get(a->job.id).gpu_indexes, ElementsAre(0));
  EXPECT_THAT(Get(b->job.id).gpu_indexes, ElementsAre(0));
  // A job that holds a whole GPU takes GPU 1, not the shared one.
  auto whole = Submit(Small("train", 0, /*share=*/false));
  ASSERT_THAT(whole, IsOk());
  EXPECT_THAT(Get(whole->job.id).gpu_indexes, ElementsAre(1));
  // A third small job does not fit GPU 0 (10 + 10 + 10 > 24 GiB) and no GPU is free: it waits.
  auto c = Submit(Small("eval-c", 10 * kGiB));
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(Get(c->job.id).state, JobState::kPending);
  // One fits beside them.
  auto d = Submit(Small("eval-d", 4 * kGiB));
  ASSERT_THAT(d, IsOk());
  EXPECT_THAT(Get(d->job.id).gpu_indexes, ElementsAre(0));
  // The card's share is rebuilt on a restart.
  Restart();
  auto link2 = std::make_shared<FakeAgentLink>();
  std::vector<JobRef> running;
  for (const std::string& id : {a->job.id, b->job.id, whole->job.id, d->job.id}) {
    running.push_back({id, Get(id).epoch});
  }
  s = Connect("ws", Caps(8, 64 * kGiB, {{0, "GPU-0", "NVIDIA GeForce RTX 3090", 24 * kGiB},
                                        {1, "GPU-1", "NVIDIA GeForce RTX 3090", 24 * kGiB}}),
              link2, running);
  EXPECT_EQ(Get(c->job.id).state, JobState::kPending);
  // a ends: c fits now (10 + 10 + 4 <= 24).
  ASSERT_THAT(Report("ws", s, a->job.id, Get(a->job.id).epoch, JobState::kSucceeded), IsOk());
  EXPECT_EQ(Get(c->job.id).state, JobState::kAssigned);
  EXPECT_THAT(Get(c->job.id).gpu_indexes, ElementsAre(0));
  // Once every small job has left GPU 0, a whole-GPU job can have it.
  auto whole2 = Submit(Small("train-2", 0, /*share=*/false));
  ASSERT_THAT(whole2, IsOk());
  EXPECT_EQ(Get(whole2->job.id).state, JobState::kPending);
  for (const std::string& id : {b->job.id, c->job.id, d->job.id}) {
    ASSERT_THAT(Report("ws", s, id, Get(id).epoch, JobState::kSucceeded), IsOk());
  }
  EXPECT_EQ(Get(whole2->job.id).state, JobState::kAssigned);
  EXPECT_THAT(Get(whole2->job.id).gpu_indexes, ElementsAre(0));
  const Node node = *scheduler_->GetNode("ws");
  EXPECT_TRUE(node.shared_gpus.empty());
  EXPECT_EQ(node.busy_gpus.size(), 2u);
}

TEST_F(SchedulerTest, SharingAGpuNeedsOneGpuAndItsMemory) {
  JobSpec two = Small("x", 4 * kGiB);
  two.resources.gpus = 2;
  EXPECT_THAT(Submit(two), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("resources.share_gpu: needs gpus: 1, got 2")));
  EXPECT_THAT(Submit(Small("x", 0)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("resources.share_gpu: needs resources.gpu_memory")));
  // A model to estimate it from will do.
  JobSpec model = Small("x", 0);
  model.model.parameters = 1'000'000'000;
  auto ok = Submit(model);
  ASSERT_THAT(ok, IsOk());
  EXPECT_GT(ok->job.spec.resources.gpu_memory_bytes, 0);
}

}  // namespace
}  // namespace sched

// ---- Priorities on the user's own machines ----

namespace sched {
namespace {

JobSpec Prio(std::string name, int priority, int cpus) {
  JobSpec s = Spec(std::move(name), priority);
  s.resources.cpu_millis = cpus * 1000;
  return s;
}

TEST_F(SchedulerTest, AHigherPriorityJobStopsTheLowestOnTheWorkstationWhichResumesLater) {
  auto link = std::make_shared<FakeAgentLink>();
  uint64_t s = Connect("ws", Caps(8, 32 * kGiB), link);
  auto low = Submit(Prio("sweep-run", -5, 4));
  auto mid = Submit(Prio("eval", 0, 4));
  ASSERT_THAT(low, IsOk());
  ASSERT_THAT(mid, IsOk());
  const uint64_t low_epoch = Get(low->job.id).epoch;
  link->Take();
  // A job no higher than the lowest running waits its turn: nothing is stopped for it.
  auto same = Submit(Prio("same", -5, 4));
  ASSERT_THAT(same, IsOk());
  scheduler_->Tick();
  EXPECT_THAT(link->Take(), SizeIs(0));
  ASSERT_THAT(Cancel(same->job.id), IsOk());
  // A higher one: the lowest-priority job is stopped, and only it (its 4 CPUs are enough).
  auto high = Submit(Prio("urgent", 10, 4));
  ASSERT_THAT(high, IsOk());
  EXPECT_EQ(Get(high->job.id).state, JobState::kPending);
  scheduler_->Tick();
  auto cmds = link->Take();
  ASSERT_THAT(cmds, SizeIs(1));
  EXPECT_EQ(cmds[0].kind, "cancel");
  EXPECT_EQ(cmds[0].job_id, low->job.id);
  EXPECT_EQ(scheduler_->Stats().priority_preemptions_total, 1u);
  Job yielding = Get(low->job.id);
  EXPECT_EQ(yielding.yield_to, high->job.id);
  EXPECT_THAT(yielding.message, HasSubstr("stopping for higher-priority job " + high->job.id));
  EXPECT_EQ(Get(mid->job.id).state, JobState::kAssigned);
  // Not stopped twice while it stops; said again with each heartbeat; kept across a restart.
  scheduler_->Tick();
  EXPECT_THAT(link->Take(), SizeIs(0));
  Restart();
  link = std::make_shared<FakeAgentLink>();
  s = Connect("ws", Caps(8, 32 * kGiB), link,
              {{low->job.id, low_epoch}, {mid->job.id, Get(mid->job.id).epoch}});
  cmds = link->Take();
  ASSERT_THAT(cmds, SizeIs(1));
  EXPECT_EQ(cmds[0].kind, "cancel");
  // It stops (after saving a checkpoint): back to the queue as a preemption, and the urgent
  // job takes its place.
  auto back = Report("ws", s, low->job.id, low_epoch, JobState::kCancelled, 143);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->state, JobState::kPending);
  EXPECT_EQ(back->preemptions, 1u);
  EXPECT_EQ(back->attempt, 2u);
  EXPECT_TRUE(back->yield_to.empty());
  ASSERT_FALSE(back->attempts.empty());
  EXPECT_TRUE(back->attempts.back().preempted);
  EXPECT_EQ(back->attempts.back().end_reason,
            "preempted on node ws for higher-priority job " + high->job.id);
  EXPECT_EQ(Get(high->job.id).state, JobState::kAssigned);
  EXPECT_EQ(scheduler_->Stats().preemptions_total, 0u);  // not a spot preemption
  // When the urgent job is done, the stopped one resumes.
  ASSERT_THAT(Report("ws", s, high->job.id, Get(high->job.id).epoch, JobState::kSucceeded),
              IsOk());
  const Job resumed = Get(low->job.id);
  EXPECT_EQ(resumed.state, JobState::kAssigned);
  EXPECT_EQ(resumed.attempt, 2u);
}

// When several must stop, the room the first leaves is kept for the urgent job: neither the
// stopped job nor another low one queued takes it back, and the urgent job starts once the last
// has stopped.
TEST_F(SchedulerTest, RoomMadeForAHigherPriorityJobIsKeptForItUntilItStarts) {
  auto link = std::make_shared<FakeAgentLink>();
  const uint64_t s = Connect("ws", Caps(8, 32 * kGiB), link);
  auto a = Submit(Prio("a", 0, 4));
  auto b = Submit(Prio("b", 1, 4));
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  auto queued = Submit(Prio("queued-low", 0, 4));
  ASSERT_THAT(queued, IsOk());
  EXPECT_EQ(Get(queued->job.id).state, JobState::kPending);
  link->Take();
  auto high = Submit(Prio("urgent", 5, 8));
  ASSERT_THAT(high, IsOk());
  scheduler_->Tick();
  auto cmds = link->Take();
  ASSERT_THAT(cmds, SizeIs(2));
  // Lowest priority first.
  EXPECT_EQ(cmds[0].job_id, a->job.id);
  EXPECT_EQ(cmds[1].job_id, b->job.id);
  ASSERT_THAT(Report("ws", s, a->job.id, Get(a->job.id).epoch, JobState::kCancelled, 143),
              IsOk());
  scheduler_->Tick();
  EXPECT_EQ(Get(a->job.id).state, JobState::kPending);
  EXPECT_EQ(Get(queued->job.id).state, JobState::kPending);
  EXPECT_EQ(Get(high->job.id).state, JobState::kPending);
  cmds = link->Take();  // the stopped job's lease ended; nothing placed on the half-free machine
  ASSERT_THAT(cmds, SizeIs(1));
  EXPECT_EQ(cmds[0].kind, "stop");
  EXPECT_EQ(cmds[0].job_id, a->job.id);
  ASSERT_THAT(Report("ws", s, b->job.id, Get(b->job.id).epoch, JobState::kFailed, 143),
              IsOk());
  const Job started = Get(high->job.id);
  EXPECT_EQ(started.state, JobState::kAssigned);
  EXPECT_EQ(started.node, "ws");
  EXPECT_THAT(started.decision.summary, HasSubstr("lower-priority jobs were stopped"));
  EXPECT_EQ(Get(b->job.id).state, JobState::kPending);
  EXPECT_EQ(Get(b->job.id).preemptions, 1u);
  EXPECT_EQ(scheduler_->Stats().priority_preemptions_total, 2u);
  // Once it is done, the machine is everyone's again: the two highest waiting start.
  ASSERT_THAT(Report("ws", s, high->job.id, started.epoch, JobState::kSucceeded), IsOk());
  EXPECT_EQ(Get(b->job.id).state, JobState::kAssigned);
  EXPECT_EQ(Get(a->job.id).state, JobState::kAssigned);
  EXPECT_EQ(Get(queued->job.id).state, JobState::kPending);
}

TEST_F(SchedulerTest, PriorityNeverStopsJobsOnRentedNodesOrForCloudOnlyJobs) {
  auto rented = std::make_shared<FakeAgentLink>();
  NodeCapabilities caps = Caps(4, 32 * kGiB);
  caps.provider = "runpod";
  caps.price_per_hour = 1.0;
  Connect("rp-1", caps, rented);
  auto low = Submit(Prio("low", -5, 4));
  ASSERT_THAT(low, IsOk());
  EXPECT_EQ(Get(low->job.id).node, "rp-1");
  rented->Take();
  auto high = Submit(Prio("high", 10, 4));
  ASSERT_THAT(high, IsOk());
  scheduler_->Tick();
  EXPECT_THAT(rented->Take(), SizeIs(0));
  // On the workstation, a cloud-only job does not stop anything either.
  ASSERT_THAT(Cancel(high->job.id), IsOk());
  auto ws = std::make_shared<FakeAgentLink>();
  Connect("ws", Caps(4, 32 * kGiB), ws);
  auto local_low = Submit(Prio("local-low", -5, 4));
  ASSERT_THAT(local_low, IsOk());
  EXPECT_EQ(Get(local_low->job.id).node, "ws");
  ws->Take();
  JobSpec cloud = Prio("cloud", 10, 4);
  cloud.placement = PlacementPolicy::kCloudOnly;
  ASSERT_THAT(Submit(cloud), IsOk());
  scheduler_->Tick();
  EXPECT_THAT(ws->Take(), SizeIs(0));
}

}  // namespace
}  // namespace sched

// ---- The owner comes first ----

namespace sched {
namespace {

TEST_F(SchedulerTest, GpusTheOwnerUsesTakeNoJobUntilTheAgentGivesThemBack) {
  auto link = std::make_shared<FakeAgentLink>();
  const uint64_t s =
      Connect("ws", Caps(8, 64 * kGiB, {{0, "GPU-0", "NVIDIA GeForce RTX 4090", 24 * kGiB},
                                        {1, "GPU-1", "NVIDIA GeForce RTX 4090", 24 * kGiB}}),
              link);
  auto a = Submit(Small("a", 0, /*share=*/false));
  ASSERT_THAT(a, IsOk());
  EXPECT_THAT(Get(a->job.id).gpu_indexes, ElementsAre(0));
  link->Take();
  // The owner starts using GPU 0 (and names a GPU the node does not have): the agent steps the
  // job aside and its end comes back as a preemption.
  ASSERT_THAT(scheduler_->SetOwnerGpus("ws", s, {0, 7}, "GPU 0: pid 4242 (python3)"), IsOk());
  absl::StatusOr<Node> node = scheduler_->GetNode("ws");
  ASSERT_THAT(node, IsOk());
  EXPECT_THAT(node->owner_gpus, ElementsAre(0u));
  EXPECT_EQ(node->owner_detail, "GPU 0: pid 4242 (python3)");
  EXPECT_EQ(scheduler_->Stats().owner_gpu_takes_total, 1u);
  JobReport aside{a->job.id, Get(a->job.id).epoch, JobState::kCancelled, 143,
                  "stepped aside for the machine's owner, who is using GPU 0"};
  aside.preempted = true;
  ASSERT_THAT(Call<Job>([&](auto done) { scheduler_->ReportJob("ws", s, aside, std::move(done)); }),
              IsOk());
  EXPECT_EQ(scheduler_->Stats().owner_step_asides_total, 1u);
  EXPECT_EQ(scheduler_->Stats().preemptions_total, 0u);  // not a spot preemption
  Job back = Get(a->job.id);
  // Placed again at once, on the GPU the owner does not use.
  EXPECT_EQ(back.state, JobState::kAssigned);
  EXPECT_THAT(back.gpu_indexes, ElementsAre(1));
  EXPECT_EQ(back.attempt, 2u);
  EXPECT_EQ(back.preemptions, 1u);
  // Another job waits: GPU 0 stays the owner's although no job holds it.
  auto b = Submit(Small("b", 0, /*share=*/false));
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(Get(b->job.id).state, JobState::kPending);
  node = scheduler_->GetNode("ws");
  EXPECT_THAT(node->busy_gpus, ElementsAre(0u, 1u));
  // The same set again changes nothing; then the agent gives GPU 0 back and b takes it.
  ASSERT_THAT(scheduler_->SetOwnerGpus("ws", s, {0}, "GPU 0: pid 4242 (python3)"), IsOk());
  EXPECT_EQ(Get(b->job.id).state, JobState::kPending);
  EXPECT_EQ(scheduler_->Stats().owner_gpu_takes_total, 1u);
  ASSERT_THAT(scheduler_->SetOwnerGpus("ws", s, {}, ""), IsOk());
  EXPECT_EQ(Get(b->job.id).state, JobState::kAssigned);
  EXPECT_THAT(Get(b->job.id).gpu_indexes, ElementsAre(0));
  node = scheduler_->GetNode("ws");
  EXPECT_THAT(node->owner_gpus, IsEmpty());
  EXPECT_EQ(node->owner_detail, "");
  // A stale session is refused and changes nothing.
  EXPECT_THAT(scheduler_->SetOwnerGpus("ws", s + 1, {1}, "x"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(scheduler_->GetNode("ws")->owner_gpus, IsEmpty());
}

TEST_F(SchedulerTest, AGpuTheOwnerGivesBackWhileAJobStillHoldsItStaysThatJobs) {
  auto link = std::make_shared<FakeAgentLink>();
  const uint64_t s =
      Connect("ws", Caps(8, 64 * kGiB, {{0, "GPU-0", "NVIDIA GeForce RTX 4090", 24 * kGiB}}), link);
  auto a = Submit(Small("a", 0, /*share=*/false));
  ASSERT_THAT(a, IsOk());
  // Taken and given back before the job has stopped: the job still holds it, nothing else goes
  // there; when the job's end comes, the GPU is free.
  ASSERT_THAT(scheduler_->SetOwnerGpus("ws", s, {0}, "GPU 0: pid 1 (x)"), IsOk());
  ASSERT_THAT(scheduler_->SetOwnerGpus("ws", s, {}, ""), IsOk());
  auto b = Submit(Small("b", 0, /*share=*/false));
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(Get(b->job.id).state, JobState::kPending);
  ASSERT_THAT(Report("ws", s, a->job.id, Get(a->job.id).epoch, JobState::kSucceeded), IsOk());
  EXPECT_EQ(Get(b->job.id).state, JobState::kAssigned);
  EXPECT_THAT(Get(b->job.id).gpu_indexes, ElementsAre(0));
}

}  // namespace
}  // namespace sched

// ---- Fair share of the workstation ----

namespace sched {
namespace {

class FairShareTest : public SchedulerTest {
 protected:
  JobSpec OneGpu(const std::string& project, int n) {
    JobSpec s = Spec(absl::StrCat(project, "-", n));
    s.project = project;
    s.resources.gpus = 1;
    s.resources.cpu_millis = 1000;
    return s;
  }
  // On a one-GPU workstation, 15 jobs of "ml" then 15 of "research" (one minute each): the
  // projects of the first `n` to run, in order.
  std::string RunOneAtATime(int n) {
    auto link = std::make_shared<FakeAgentLink>();
    const uint64_t s =
        Connect("ws", Caps(8, 64 * kGiB, {{0, "GPU-0", "NVIDIA GeForce RTX 4090", 24 * kGiB}}), link);
    for (const char* project : {"ml", "research"}) {
      for (int i = 0; i < 15; ++i) EXPECT_THAT(Submit(OneGpu(project, i)), IsOk());
    }
    std::string order;
    for (int i = 0; i < n; ++i) {
      std::vector<Job> running;
      for (const Job& j : scheduler_->ListJobs({}).jobs) {
        if (j.state == JobState::kAssigned) running.push_back(j);
      }
      EXPECT_EQ(running.size(), 1u);
      if (running.size() != 1) break;
      clock_.Advance(absl::Minutes(1));
      order += running[0].spec.project == "ml" ? 'M' : 'R';
      EXPECT_THAT(Report("ws", s, running[0].id, running[0].epoch, JobState::kSucceeded), IsOk());
    }
    return order;
  }
};

TEST_F(FairShareTest, WithoutWeightsTheWorkstationGoesInQueueOrder) {
  EXPECT_EQ(RunOneAtATime(18), "MMMMMMMMMMMMMMMRRR");
}

// Weights 2 and 1: of every three jobs that run, two are ml's, at every point (within one job),
// though all of ml's were queued first.
TEST_F(FairShareTest, AWorkstationIsSharedByWeightOverTime) {
  fair_share_ = {{"ml", 2}, {"research", 1}};
  Restart();
  const std::string order = RunOneAtATime(24);
  SCOPED_TRACE(order);
  for (size_t n = 3; n <= order.size(); n += 3) {
    const auto ml = std::count(order.begin(), order.begin() + n, 'M');
    EXPECT_GE(ml, static_cast<long>(2 * n / 3) - 1) << "after " << n;
    EXPECT_LE(ml, static_cast<long>(2 * n / 3) + 1) << "after " << n;
  }
  EXPECT_NEAR(std::count(order.begin(), order.end(), 'M'), 16, 1);
}

// What a project used is rebuilt when schedd restarts: ml ran two jobs before it, so research's
// job goes before ml's next, though ml's was queued first.
TEST_F(FairShareTest, PastUseSurvivesARestart) {
  fair_share_ = {{"ml", 1}, {"research", 1}};
  Restart();
  auto link = std::make_shared<FakeAgentLink>();
  const NodeCapabilities caps =
      Caps(8, 64 * kGiB, {{0, "GPU-0", "NVIDIA GeForce RTX 4090", 24 * kGiB}});
  uint64_t s = Connect("ws", caps, link);
  auto run_one = [&](const std::string& id) {
    clock_.Advance(absl::Minutes(1));
    ASSERT_THAT(Report("ws", s, id, Get(id).epoch, JobState::kSucceeded), IsOk());
  };
  auto m0 = Submit(OneGpu("ml", 0));
  auto m1 = Submit(OneGpu("ml", 1));
  ASSERT_THAT(m1, IsOk());
  run_one(m0->job.id);
  run_one(m1->job.id);
  auto other = Submit(OneGpu("other", 0));
  ASSERT_THAT(other, IsOk());
  EXPECT_EQ(Get(other->job.id).state, JobState::kAssigned);
  auto m2 = Submit(OneGpu("ml", 2));
  auto r0 = Submit(OneGpu("research", 0));
  ASSERT_THAT(r0, IsOk());
  Restart();
  link = std::make_shared<FakeAgentLink>();
  s = Connect("ws", caps, link, {{other->job.id, Get(other->job.id).epoch}});
  run_one(other->job.id);
  EXPECT_EQ(Get(r0->job.id).state, JobState::kAssigned);
  EXPECT_EQ(Get(m2->job.id).state, JobState::kPending);
}

// With room for several jobs, what each project holds now decides first: on three GPUs, ml
// (weight 2) gets two and research one, however the queue is ordered.
TEST_F(FairShareTest, WhatEachProjectHoldsNowIsSplitByWeight) {
  fair_share_ = {{"ml", 2}, {"research", 1}};
  Restart();
  for (const char* project : {"ml", "research"}) {
    for (int i = 0; i < 6; ++i) ASSERT_THAT(Submit(OneGpu(project, i)), IsOk());
  }
  auto link = std::make_shared<FakeAgentLink>();
  Connect("ws", Caps(8, 64 * kGiB, {{0, "GPU-0", "NVIDIA GeForce RTX 4090", 24 * kGiB},
                                    {1, "GPU-1", "NVIDIA GeForce RTX 4090", 24 * kGiB},
                                    {2, "GPU-2", "NVIDIA GeForce RTX 4090", 24 * kGiB}}),
          link);
  std::map<std::string, int> held;
  for (const Job& j : scheduler_->ListJobs({}).jobs) {
    if (j.state == JobState::kAssigned) held[j.spec.project]++;
  }
  EXPECT_EQ(held["ml"], 2);
  EXPECT_EQ(held["research"], 1);
}

}  // namespace
}  // namespace sched

// ---- Artifacts between jobs ----

namespace sched {
namespace {

TEST_F(SchedulerTest, InputsAndOutputsAreCheckedAtSubmitAndKept) {
  auto link = std::make_shared<FakeAgentLink>();
  Connect("ws", Caps(8, 8 * kGiB), link);
  auto first = Submit(Spec("prepare"));
  ASSERT_THAT(first, IsOk());
  const std::string id = first->job.id;
  const size_t jobs = scheduler_->ListJobs({}).jobs.size();
  auto spec = [&](std::vector<std::string> outputs,
                  std::vector<std::pair<std::string, std::string>> inputs,
                  std::vector<std::pair<std::string, std::string>> after) {
    JobSpec s = Spec("train");
    s.outputs = std::move(outputs);
    s.inputs = std::move(inputs);
    s.after = std::move(after);
    return s;
  };
  // An input must be a job it runs after, on success; a prefix is resolved.
  EXPECT_THAT(Submit(spec({}, {{"data", id}}, {})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("inputs[0].job: " + id + " must also be in after")));
  EXPECT_THAT(Submit(spec({}, {{"data", id}}, {{id, "always"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must also be in after")));
  EXPECT_THAT(Submit(spec({}, {{"data", "ffffffffffffffff"}}, {})),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("inputs[0].job")));
  // Paths stay inside the job's folder; names are folder names.
  for (const char* bad : {"/etc/passwd", "../up", "a/../../b", "a//b", "./a", ""}) {
    EXPECT_THAT(Submit(spec({bad}, {}, {})),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outputs[0]")))
        << bad;
  }
  EXPECT_THAT(Submit(spec({}, {{"../x", id}}, {{id, "success"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inputs[0].name")));
  EXPECT_THAT(Submit(spec({}, {{"d", id}, {"d", id}}, {{id, "success"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inputs[1].name: \"d\" twice")));
  EXPECT_EQ(scheduler_->ListJobs({}).jobs.size(), jobs);  // nothing stored
  auto ok = Submit(spec({"model/", "metrics.json"}, {{"data", id.substr(0, 6)}},
                        {{id.substr(0, 6), "success"}}));
  ASSERT_THAT(ok, IsOk());
  Restart();
  const Job kept = Get(ok->job.id);
  EXPECT_THAT(kept.spec.outputs, ElementsAre("model/", "metrics.json"));
  ASSERT_EQ(kept.spec.inputs.size(), 1u);
  EXPECT_EQ(kept.spec.inputs[0].first, "data");
  EXPECT_EQ(kept.spec.inputs[0].second, id);  // the full id
}

}  // namespace
}  // namespace sched
