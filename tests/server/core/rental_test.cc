// Rented capacity in the Scheduler: offers weighed as candidates, the plan of what to rent, a
// rented node's phases, and the ledger that meters it from its creation to its end.

#include <optional>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/convert/convert.h"
#include "server/core/scheduler.h"
#include "server/store/memory_store.h"
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

template <typename T, typename F>
absl::StatusOr<T> Call(F f) {
  std::optional<absl::StatusOr<T>> out;
  f([&out](absl::StatusOr<T> r) { out = std::move(r); });
  EXPECT_TRUE(out.has_value()) << "done was not called";
  return out.value_or(absl::InternalError("done was not called"));
}

NodeCapabilities Workstation() {
  NodeCapabilities c;
  c.cpu_millis = 8000;
  c.memory_bytes = 32 * kGiB;
  c.provider = "local";
  c.gpus.push_back({0, "GPU-ws", "NVIDIA GeForce RTX 3080", 10 * kGiB});
  return c;
}

Offer H100Offer(std::string id, double price, int gpus = 1,
                absl::Duration provisioning = absl::Minutes(2)) {
  Offer o;
  o.provider = "cloud";
  o.id = std::move(id);
  o.caps.cpu_millis = 16000;
  o.caps.memory_bytes = 128 * kGiB;
  o.caps.provider = "cloudco";
  o.caps.price_per_hour = price;
  for (int i = 0; i < gpus; ++i) {
    o.caps.gpus.push_back({static_cast<uint32_t>(i), "", "NVIDIA H100 80GB HBM3", 80 * kGiB});
  }
  o.provisioning_time = provisioning;
  return o;
}

JobSpec H100Job(std::string name, absl::Duration runtime = absl::Hours(1)) {
  JobSpec s;
  s.name = std::move(name);
  s.run = "train";
  s.project = "alpha";
  s.resources.gpus = 1;
  s.resources.gpu_models = {"H100"};
  s.runtime = runtime;
  return s;
}

class RentalTest : public ::testing::Test {
 protected:
  RentalTest() { Restart(); }

  void Restart() {
    scheduler_.reset();
    SchedulerOptions o;
    o.lease_ttl = absl::Seconds(10);
    o.heartbeat_interval = absl::Seconds(2);
    o.restart_grace = absl::Seconds(5);
    o.seed = 7;
    auto s = Scheduler::Create(o, &store_, &clock_);
    ASSERT_THAT(s, IsOk());
    scheduler_ = std::move(*s);
  }

  std::string Submit(JobSpec spec) {
    auto r = Call<SubmitResult>(
        [&](auto done) { scheduler_->Submit(std::move(spec), "", std::move(done)); });
    EXPECT_THAT(r, IsOk());
    return r.ok() ? r->job.id : "";
  }

  uint64_t Connect(const std::string& name, NodeCapabilities caps,
                   std::shared_ptr<FakeAgentLink> link) {
    auto session = Call<uint64_t>([&](auto done) {
      scheduler_->ConnectAgent(name, std::move(caps), {}, link, std::move(done));
    });
    EXPECT_THAT(session, IsOk());
    return session.value_or(0);
  }

  RentalPlan Plan() {
    auto plan = Call<RentalPlan>([&](auto done) { scheduler_->PlanRentals(std::move(done)); });
    EXPECT_THAT(plan, IsOk());
    return plan.value_or(RentalPlan());
  }

  absl::StatusOr<Node> Rent(const std::string& name, const Offer& offer,
                            const std::string& project = "alpha") {
    NodeRecord record;
    record.name = name;
    record.caps = offer.caps;
    Rental& r = record.rental.emplace();
    r.provider = offer.provider;
    r.offer_id = offer.id;
    r.owner_project = project;
    r.price_per_hour = offer.caps.price_per_hour;
    r.expected_ready = clock_.Now() + offer.provisioning_time;
    return Call<Node>([&](auto done) { scheduler_->RentNode(std::move(record), std::move(done)); });
  }

  absl::StatusOr<Node> Move(const std::string& name, RentalPhase phase,
                            bool only_if_unused = false) {
    RentalUpdate u;
    u.phase = phase;
    u.only_if_unused = only_if_unused;
    return Call<Node>(
        [&](auto done) { scheduler_->UpdateRental(name, std::move(u), std::move(done)); });
  }

  // The ledger's dollars for `node`, open entries up to now included.
  double NodeDollars(const std::string& node) {
    double d = 0;
    for (const LedgerEntry& e : scheduler_->Ledger(absl::InfinitePast())) {
      if (e.node == node) d += e.Cost();
    }
    return d;
  }

  FakeClock clock_;
  MemoryStore store_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(RentalTest, AJobNoNodeCanHoldGoesToTheOfferAndSaysSo) {
  Connect("ws", Workstation(), std::make_shared<FakeAgentLink>());
  const std::string id = Submit(H100Job("big"));
  scheduler_->SetOffers({H100Offer("h100", 2.0)}, RentalOptions{absl::Minutes(10), 100});
  RentalPlan plan = Plan();
  ASSERT_THAT(plan.new_nodes, SizeIs(1));
  EXPECT_EQ(plan.new_nodes[0].offer, 0u);
  EXPECT_THAT(plan.new_nodes[0].job_ids, ElementsAre(id));
  EXPECT_EQ(plan.new_nodes[0].project, "alpha");
  // An hour of work plus 2 minutes of provisioning and 10 of idle time, at $2/h.
  EXPECT_NEAR(plan.new_nodes[0].cost, 2.0 * (60 + 2 + 10) / 60, 1e-9);
  const Job job = scheduler_->GetJob(id).value();
  EXPECT_EQ(job.state, JobState::kPending);
  EXPECT_THAT(job.message, HasSubstr("waiting for a new node of offer cloud/h100"));
  ASSERT_FALSE(job.decision.options.empty());
  EXPECT_TRUE(job.decision.options[0].rental);
  EXPECT_EQ(job.decision.options[0].node, "cloud/h100");
  EXPECT_EQ(job.decision.options[0].verdict, OptionVerdict::kChosen);
  // The workstation is in the record too, ruled out for its GPU.
  bool saw_ws = false;
  for (const DecisionOption& o : job.decision.options) {
    if (o.node == "ws") {
      saw_ws = true;
      EXPECT_EQ(o.verdict, OptionVerdict::kTooSmall);
    }
  }
  EXPECT_TRUE(saw_ws);
}

TEST_F(RentalTest, TheCheapestFittingOfferIsChosenAndEstimateShowsOffers) {
  const std::string id = Submit(H100Job("big"));
  scheduler_->SetOffers(
      {H100Offer("dear", 4.0), H100Offer("cheap", 2.5), H100Offer("eight", 20.0, 8)},
      RentalOptions{});
  RentalPlan plan = Plan();
  ASSERT_THAT(plan.new_nodes, SizeIs(1));
  EXPECT_EQ(plan.new_nodes[0].offer, 1u);
  auto estimate = scheduler_->Estimate(H100Job("another"));
  ASSERT_THAT(estimate, IsOk());
  EXPECT_EQ(estimate->options.size(), 3u);
  EXPECT_EQ(estimate->options[0].node, "cloud/cheap");
  EXPECT_TRUE(estimate->options[0].rental);
  EXPECT_THAT(estimate->summary, HasSubstr("a new node of offer cloud/cheap"));
}

TEST_F(RentalTest, ANodeOnItsWayIsWaitedForNotRentedTwice) {
  const std::string id = Submit(H100Job("big"));
  const Offer offer = H100Offer("h100", 2.0);
  scheduler_->SetOffers({offer}, RentalOptions{});
  ASSERT_THAT(Plan().new_nodes, SizeIs(1));
  ASSERT_THAT(Rent("cloud-aaaaaa", offer), IsOk());
  for (int pass = 0; pass < 3; ++pass) {
    clock_.Advance(absl::Seconds(30));
    RentalPlan plan = Plan();
    EXPECT_THAT(plan.new_nodes, IsEmpty()) << pass;
    ASSERT_EQ(plan.waited_for.count("cloud-aaaaaa"), 1u);
    EXPECT_THAT(plan.waited_for["cloud-aaaaaa"], ElementsAre(id));
  }
  EXPECT_THAT(scheduler_->GetJob(id)->message,
              HasSubstr("waiting for cloud-aaaaaa (cloud, being rented)"));
  // A second job that also needs a whole node gets a node of its own.
  const std::string second = Submit(H100Job("second"));
  RentalPlan plan = Plan();
  ASSERT_THAT(plan.new_nodes, SizeIs(1));
  EXPECT_THAT(plan.new_nodes[0].job_ids, ElementsAre(second));
}

TEST_F(RentalTest, JobsThatFitTogetherArePackedOnOneNewNode) {
  const std::string a = Submit(H100Job("a"));
  const std::string b = Submit(H100Job("b"));
  const std::string c = Submit(H100Job("c"));
  scheduler_->SetOffers({H100Offer("two", 4.0, 2)}, RentalOptions{});
  RentalPlan plan = Plan();
  ASSERT_THAT(plan.new_nodes, SizeIs(2));
  EXPECT_THAT(plan.new_nodes[0].job_ids, ElementsAre(a, b));
  EXPECT_THAT(plan.new_nodes[1].job_ids, ElementsAre(c));
}

TEST_F(RentalTest, ABudgetThatCannotAffordTheOfferRentsNothingAndSaysWhy) {
  Budget budget;
  budget.project = "alpha";
  budget.monthly_limit = 1.0;
  ASSERT_THAT(Call<Budget>([&](auto done) { scheduler_->SetBudget(budget, std::move(done)); }),
              IsOk());
  const std::string id = Submit(H100Job("big"));
  scheduler_->SetOffers({H100Offer("h100", 2.0)}, RentalOptions{});
  RentalPlan plan = Plan();
  EXPECT_THAT(plan.new_nodes, IsEmpty());
  const Job job = scheduler_->GetJob(id).value();
  EXPECT_EQ(job.state, JobState::kPending);
  EXPECT_THAT(job.message, HasSubstr("renting cloud/h100 would pass project alpha's budget of "
                                     "$1.00 a month"));
  EXPECT_THAT(job.message, HasSubstr("about $2.40 more there"));
}

TEST_F(RentalTest, PreferLocalWaitsForTheBusyWorkstationUnlessTheDeadlineNeedsTheCloud) {
  auto link = std::make_shared<FakeAgentLink>();
  Connect("ws", Workstation(), link);
  JobSpec hog;
  hog.name = "hog";
  hog.run = "x";
  hog.project = "alpha";
  hog.resources.gpus = 1;
  hog.runtime = absl::Hours(2);
  Submit(hog);
  JobSpec next = hog;
  next.name = "next";
  const std::string waits = Submit(next);
  scheduler_->SetOffers({H100Offer("h100", 2.0)}, RentalOptions{});
  EXPECT_THAT(Plan().new_nodes, IsEmpty());  // the workstation is free in 2 h and costs less
  JobSpec urgent = next;
  urgent.name = "urgent";
  urgent.deadline = clock_.Now() + absl::Hours(3);  // behind two hours of work, 2 h more: late
  const std::string id = Submit(urgent);
  RentalPlan plan = Plan();
  ASSERT_THAT(plan.new_nodes, SizeIs(1));
  EXPECT_THAT(plan.new_nodes[0].job_ids, ElementsAre(id));
  EXPECT_EQ(scheduler_->GetJob(waits)->decision.options.empty() ||
                !scheduler_->GetJob(waits)->decision.options[0].rental,
            true);
}

TEST_F(RentalTest, TheLedgerChargesARentedNodeExactlyItsLifetime) {
  const absl::Time created = clock_.Now();
  const Offer offer = H100Offer("h100", 3.6);  // a dollar every 1,000 s
  auto rented = Rent("cloud-bbbbbb", offer);
  ASSERT_THAT(rented, IsOk());
  EXPECT_EQ(rented->state(), NodeState::kProvisioning);
  EXPECT_FALSE(rented->Schedulable());
  const std::string id = Submit(H100Job("big"));
  clock_.Advance(absl::Seconds(50));
  ASSERT_THAT(Move("cloud-bbbbbb", RentalPhase::kJoining), IsOk());
  EXPECT_EQ(scheduler_->GetNode("cloud-bbbbbb")->state(), NodeState::kJoining);
  clock_.Advance(absl::Seconds(10));
  auto link = std::make_shared<FakeAgentLink>();
  const uint64_t session = Connect("cloud-bbbbbb", offer.caps, link);
  Node node = scheduler_->GetNode("cloud-bbbbbb").value();
  EXPECT_EQ(node.state(), NodeState::kReady);
  EXPECT_EQ(node.record.rental->phase, RentalPhase::kReady);
  EXPECT_EQ(node.record.rental->ready_time, created + absl::Seconds(60));
  ASSERT_EQ(scheduler_->GetJob(id)->state, JobState::kAssigned);  // placed as it joined
  EXPECT_NEAR(node.cost_so_far, 0.06, 1e-9);                      // 60 s without a job
  EXPECT_THAT(Move("cloud-bbbbbb", RentalPhase::kTerminating, /*only_if_unused=*/true),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("runs 1 jobs")));
  clock_.Advance(absl::Seconds(120));
  const uint64_t epoch = scheduler_->GetJob(id)->epoch;
  ASSERT_THAT(Call<Job>([&](auto done) {
                scheduler_->ReportJob("cloud-bbbbbb", session,
                                      JobReport{id, epoch, JobState::kSucceeded, 0, ""},
                                      std::move(done));
              }),
              IsOk());
  clock_.Advance(absl::Seconds(300));
  node = scheduler_->GetNode("cloud-bbbbbb").value();
  EXPECT_EQ(node.record.rental->unleased_since, created + absl::Seconds(180));
  EXPECT_NEAR(node.cost_so_far, 0.48, 1e-9);
  // The idle time counts against the owner's month while it runs.
  EXPECT_NEAR(scheduler_->SpentThisMonth("alpha"), 0.48, 1e-9);
  ASSERT_THAT(Move("cloud-bbbbbb", RentalPhase::kTerminating, true), IsOk());
  clock_.Advance(absl::Seconds(10));
  auto gone = Move("cloud-bbbbbb", RentalPhase::kGone);
  ASSERT_THAT(gone, IsOk());
  EXPECT_EQ(gone->state(), NodeState::kGone);
  EXPECT_EQ(gone->record.rental->end_time, created + absl::Seconds(490));
  // 490 s at $3.60/h: without a job 0-60 and 180-490, the job's lease 60-180.
  EXPECT_NEAR(NodeDollars("cloud-bbbbbb"), 0.49, 1e-9);
  EXPECT_NEAR(gone->cost_so_far, 0.49, 1e-9);
  v1::Node shown;
  NodeToProto(*gone, &shown);
  EXPECT_EQ(shown.state(), v1::NODE_STATE_GONE);
  EXPECT_EQ(shown.rental().phase(), v1::RENTAL_PHASE_GONE);
  EXPECT_NEAR(shown.rental().cost_so_far(), 0.49, 1e-9);
  EXPECT_FALSE(shown.rental().has_idle_since()) << shown.DebugString();
  EXPECT_EQ(shown.rental().end_time().seconds(), absl::ToUnixSeconds(created) + 490);
  int entries = 0;
  for (const LedgerEntry& e : scheduler_->Ledger(absl::InfinitePast())) {
    if (e.node != "cloud-bbbbbb") continue;
    entries++;
    EXPECT_EQ(e.project, "alpha");
  }
  EXPECT_EQ(entries, 3);
  // Nothing more accrues once it is gone, and the phases are its events.
  clock_.Advance(absl::Hours(1));
  EXPECT_NEAR(NodeDollars("cloud-bbbbbb"), 0.49, 1e-9);
  EXPECT_NEAR(scheduler_->SpentThisMonth("alpha"), 0.49, 1e-9);
  std::vector<RentalPhase> phases;
  for (const RentalEvent& e : gone->record.rental->events) phases.push_back(e.phase);
  EXPECT_THAT(phases,
              ElementsAre(RentalPhase::kProvisioning, RentalPhase::kJoining, RentalPhase::kReady,
                          RentalPhase::kTerminating, RentalPhase::kGone));
  // Its agent cannot come back.
  auto again = Call<uint64_t>([&](auto done) {
    scheduler_->ConnectAgent("cloud-bbbbbb", offer.caps, {}, link, std::move(done));
  });
  EXPECT_THAT(again, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("given back")));
  EXPECT_THAT(Move("cloud-bbbbbb", RentalPhase::kTerminating),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(RentalTest, ARentalSurvivesARestartAndKeepsMetering) {
  const Offer offer = H100Offer("h100", 3.6);
  ASSERT_THAT(Rent("cloud-cccccc", offer), IsOk());
  clock_.Advance(absl::Seconds(100));
  Restart();
  Node node = scheduler_->GetNode("cloud-cccccc").value();
  ASSERT_TRUE(node.record.rental.has_value());
  EXPECT_EQ(node.state(), NodeState::kProvisioning);
  EXPECT_EQ(node.record.rental->owner_project, "alpha");
  EXPECT_NEAR(node.cost_so_far, 0.1, 1e-9);
  clock_.Advance(absl::Seconds(100));
  ASSERT_THAT(Move("cloud-cccccc", RentalPhase::kGone), IsOk());
  Restart();
  EXPECT_NEAR(NodeDollars("cloud-cccccc"), 0.2, 1e-9);
  EXPECT_EQ(scheduler_->GetNode("cloud-cccccc")->state(), NodeState::kGone);
}

TEST_F(RentalTest, AGoneNodesJobsGoBackToTheQueue) {
  const Offer offer = H100Offer("h100", 2.0);
  ASSERT_THAT(Rent("cloud-dddddd", offer), IsOk());
  const std::string id = Submit(H100Job("big"));
  Connect("cloud-dddddd", offer.caps, std::make_shared<FakeAgentLink>());
  ASSERT_EQ(scheduler_->GetJob(id)->state, JobState::kAssigned);
  ASSERT_THAT(Move("cloud-dddddd", RentalPhase::kGone), IsOk());
  const Job job = scheduler_->GetJob(id).value();
  EXPECT_EQ(job.state, JobState::kPending);
  EXPECT_THAT(job.message, HasSubstr("node cloud-dddddd was given back"));
}

TEST_F(RentalTest, BadRentalsAreRefusedAndChangeNothing) {
  Offer local = H100Offer("h100", 2.0);
  local.caps.provider = "local";
  EXPECT_THAT(Rent("cloud-eeeeee", local),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("user's own machines")));
  EXPECT_THAT(Rent("bad name!", H100Offer("h100", 2.0)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  Connect("ws", Workstation(), std::make_shared<FakeAgentLink>());
  EXPECT_THAT(Rent("ws", H100Offer("h100", 2.0)), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(Move("ws", RentalPhase::kTerminating),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("was not rented")));
  EXPECT_THAT(Move("nope", RentalPhase::kGone), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(scheduler_->ListNodes(), SizeIs(1));
}

}  // namespace
}  // namespace sched
