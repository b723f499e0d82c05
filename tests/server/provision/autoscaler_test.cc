// The autoscaler against a provider that answers from memory: what it rents, when it gives
// nodes back, and how it copes with providers that fail or hang.

#include "server/provision/autoscaler.h"

#include <map>
#include <optional>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/store/memory_store.h"
#include "tests/testing/fake_agent_link.h"
#include "tests/testing/status_matchers.h"

namespace sched::provision {
namespace {

using nlohmann::json;
using ::sched::testing::FakeAgentLink;
using ::sched::testing::IsOk;
using ::testing::HasSubstr;
using ::testing::SizeIs;

template <typename T, typename F>
absl::StatusOr<T> Call(F f) {
  std::optional<absl::StatusOr<T>> out;
  f([&out](absl::StatusOr<T> r) { out = std::move(r); });
  return out.value_or(absl::InternalError("done was not called"));
}

// A provider kept in memory. Offers are fixed; a machine is "pending" until Boot() says it is
// up; an offer may be set to fail its creates or to never come up.
class FakeProvider {
 public:
  absl::StatusOr<json> Run(const std::string& op, const json& req) {
    absl::MutexLock lock(&mu_);
    calls_[op]++;
    if (fail_all_) return absl::UnavailableError("provider program failed (exit code 1: 503)");
    if (op == "offers") return json{{"offers", offers_}};
    const std::string node = req.value("node_name", "");
    if (op == "create") {
      last_create_ = req;
      const std::string offer = req.value("offer_id", "");
      if (fail_create_.count(offer) > 0) {
        return absl::UnavailableError("provider program failed (exit code 1: no capacity)");
      }
      machines_.try_emplace(node, Machine{offer, "pending"});
      return json{{"instance_id", "i-" + node}};
    }
    if (op == "status") {
      auto it = machines_.find(node);
      return json{{"state", it == machines_.end() ? "gone" : it->second.state}};
    }
    if (op == "delete") {
      machines_.erase(node);
      deleted_.push_back(node);
      return json{{"state", "gone"}};
    }
    return absl::InvalidArgumentError("unknown op");
  }

  void Boot(const std::string& node) {
    absl::MutexLock lock(&mu_);
    machines_.at(node).state = "running";
  }
  int calls(const std::string& op) {
    absl::MutexLock lock(&mu_);
    return calls_[op];
  }
  std::vector<std::string> machines() {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> out;
    for (const auto& [name, m] : machines_) out.push_back(name);
    return out;
  }
  std::string offer_of(const std::string& node) {
    absl::MutexLock lock(&mu_);
    return machines_.at(node).offer;
  }
  std::vector<std::string> deleted() {
    absl::MutexLock lock(&mu_);
    return deleted_;
  }
  json last_create() {
    absl::MutexLock lock(&mu_);
    return last_create_;
  }
  void set_offers(json offers) {
    absl::MutexLock lock(&mu_);
    offers_ = std::move(offers);
  }
  void fail_create(const std::string& offer) {
    absl::MutexLock lock(&mu_);
    fail_create_[offer] = true;
  }
  void fail_all(bool fail) {
    absl::MutexLock lock(&mu_);
    fail_all_ = fail;
  }

 private:
  struct Machine {
    std::string offer;
    std::string state;
  };
  absl::Mutex mu_;
  json offers_ = json::array();
  std::map<std::string, Machine> machines_;
  std::map<std::string, int> calls_;
  std::map<std::string, bool> fail_create_;
  std::vector<std::string> deleted_;
  json last_create_;
  bool fail_all_ = false;
};

json H100Offer(const std::string& id, double price) {
  return json{{"id", id},
              {"gpu", "NVIDIA H100 80GB HBM3"},
              {"gpu_count", 1},
              {"gpu_memory_gib", 80},
              {"cpus", 16},
              {"memory_gib", 128},
              {"price_per_hour", price},
              {"spot", false},
              {"provisioning_seconds", 60}};
}

class AutoscalerTest : public ::testing::Test {
 protected:
  AutoscalerTest() {
    SchedulerOptions o;
    o.seed = 3;
    scheduler_ = Scheduler::Create(o, &store_, &clock_).value();
    provider_.set_offers(json::array({H100Offer("cheap", 2.0), H100Offer("dear", 3.0)}));
  }

  void StartAutoscaler(AutoscaleConfig config = {}) {
    if (config.providers.empty()) {
      ProviderConfig p;
      p.name = "fake";
      p.program = "unused";
      p.advertise_provider = "fakecloud";
      p.config = json{{"region", "test"}};
      config.providers.push_back(p);
    }
    config.idle_timeout = absl::Minutes(10);
    config.provisioning_timeout = absl::Minutes(5);
    config.status_interval = absl::Seconds(10);
    config_ = config;
    Autoscaler::Deps deps;
    deps.scheduler = scheduler_.get();
    deps.clock = &clock_;
    deps.schedd_address = "127.0.0.1:7070";
    deps.ca_pin = "sha256:abc";
    deps.join_token = [](const std::string& node, absl::Duration) -> absl::StatusOr<std::string> {
      return "tok." + node;
    };
    deps.run = [this](const ProviderConfig&, const std::string& op, const json& req,
                      absl::Duration) { return provider_.Run(op, req); };
    autoscaler_ = std::make_unique<Autoscaler>(config, std::move(deps));
  }

  // Passes until what they start has answered and been applied: offers, then a create, then
  // its answer (the clock stands still meanwhile).
  void Pass() {
    for (int i = 0; i < 3; ++i) {
      autoscaler_->Pass();
      autoscaler_->WaitForCalls();
    }
  }

  std::string Submit(const std::string& name, const std::string& project = "alpha") {
    JobSpec s;
    s.name = name;
    s.run = "train";
    s.project = project;
    s.resources.gpus = 1;
    s.resources.gpu_models = {"H100"};
    s.runtime = absl::Hours(1);
    auto r = Call<SubmitResult>(
        [&](auto done) { scheduler_->Submit(std::move(s), "", std::move(done)); });
    EXPECT_THAT(r, IsOk());
    return r.ok() ? r->job.id : "";
  }

  std::vector<Node> Rented() {
    std::vector<Node> out;
    for (Node& n : scheduler_->ListNodes()) {
      if (n.record.rental) out.push_back(std::move(n));
    }
    return out;
  }

  uint64_t Join(const Node& node, std::shared_ptr<FakeAgentLink> link) {
    auto session = Call<uint64_t>([&](auto done) {
      scheduler_->ConnectAgent(node.record.name, node.record.caps, {}, link, std::move(done));
    });
    EXPECT_THAT(session, IsOk());
    return session.value_or(0);
  }

  FakeClock clock_;
  MemoryStore store_;
  std::unique_ptr<Scheduler> scheduler_;
  FakeProvider provider_;
  AutoscaleConfig config_;
  std::unique_ptr<Autoscaler> autoscaler_;
};

TEST_F(AutoscalerTest, RentsForAJobRunsItAndGivesTheNodeBackWhenIdle) {
  StartAutoscaler();
  const std::string id = Submit("big");
  Pass();
  std::vector<Node> rented = Rented();
  ASSERT_THAT(rented, SizeIs(1));
  const std::string name = rented[0].record.name;
  EXPECT_TRUE(absl::StartsWith(name, "fake-")) << name;
  EXPECT_EQ(rented[0].record.rental->offer_id, "cheap");
  EXPECT_EQ(rented[0].record.rental->instance_id, "i-" + name);
  EXPECT_EQ(rented[0].record.caps.provider, "fakecloud");
  // What the provider was asked: the agent's settings, its join token and schedd's pin.
  const json create = provider_.last_create();
  EXPECT_EQ(create["offer_id"], "cheap");
  EXPECT_EQ(create["node_name"], name);
  EXPECT_EQ(create["config"]["region"], "test");
  EXPECT_EQ(create["agent"]["server"], "127.0.0.1:7070");
  EXPECT_EQ(create["agent"]["join_token"], "tok." + name);
  EXPECT_EQ(create["agent"]["ca_pin"], "sha256:abc");
  EXPECT_EQ(create["agent"]["provider"], "fakecloud");
  EXPECT_EQ(create["agent"]["price_per_hour"], 2.0);
  // More passes rent nothing more for the same job.
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(absl::Seconds(11));
    Pass();
  }
  EXPECT_EQ(provider_.calls("create"), 1);
  EXPECT_EQ(scheduler_->GetNode(name)->state(), NodeState::kProvisioning);
  provider_.Boot(name);
  clock_.Advance(absl::Seconds(11));
  Pass();
  EXPECT_EQ(scheduler_->GetNode(name)->state(), NodeState::kJoining);
  auto link = std::make_shared<FakeAgentLink>();
  const uint64_t session = Join(*scheduler_->GetNode(name), link);
  EXPECT_EQ(scheduler_->GetJob(id)->state, JobState::kAssigned);
  EXPECT_EQ(scheduler_->GetJob(id)->node, name);
  clock_.Advance(absl::Minutes(30));
  const uint64_t epoch = scheduler_->GetJob(id)->epoch;
  ASSERT_THAT(Call<Job>([&](auto done) {
                scheduler_->ReportJob(name, session,
                                      JobReport{id, epoch, JobState::kSucceeded, 0, ""},
                                      std::move(done));
              }),
              IsOk());
  clock_.Advance(absl::Minutes(9));
  Pass();
  EXPECT_EQ(scheduler_->GetNode(name)->state(), NodeState::kReady);  // idle 9 min: kept
  clock_.Advance(absl::Minutes(1));
  Pass();
  const Node gone = scheduler_->GetNode(name).value();
  EXPECT_EQ(gone.state(), NodeState::kGone);
  EXPECT_THAT(provider_.deleted(), ::testing::ElementsAre(name));
  EXPECT_TRUE(provider_.machines().empty());
  // Paid from the create request to the provider's word that it is gone.
  const absl::Duration life = gone.record.rental->end_time - gone.record.rental->create_time;
  EXPECT_NEAR(gone.cost_so_far, 2.0 * absl::ToDoubleHours(life), 1e-9);
  EXPECT_NEAR(scheduler_->SpentThisMonth("alpha"), 2.0 * absl::ToDoubleHours(life), 1e-9);
}

TEST_F(AutoscalerTest, ADrainedRentedNodeIsGivenBackOnceItsJobsEnd) {
  StartAutoscaler();
  const std::string id = Submit("big");
  Pass();
  ASSERT_THAT(Rented(), SizeIs(1));
  const std::string name = Rented()[0].record.name;
  const uint64_t session = Join(*scheduler_->GetNode(name), std::make_shared<FakeAgentLink>());
  ASSERT_EQ(scheduler_->GetJob(id)->node, name);
  ASSERT_THAT(Call<Node>([&](auto done) { scheduler_->Drain(name, std::move(done)); }), IsOk());
  EXPECT_EQ(scheduler_->GetNode(name)->state(), NodeState::kDraining);
  clock_.Advance(absl::Minutes(1));
  Pass();
  EXPECT_EQ(scheduler_->GetNode(name)->state(), NodeState::kDraining);  // its job still runs
  const uint64_t epoch = scheduler_->GetJob(id)->epoch;
  ASSERT_THAT(Call<Job>([&](auto done) {
                scheduler_->ReportJob(name, session,
                                      JobReport{id, epoch, JobState::kSucceeded, 0, ""},
                                      std::move(done));
              }),
              IsOk());
  Pass();
  const Node gone = scheduler_->GetNode(name).value();
  EXPECT_EQ(gone.state(), NodeState::kGone);
  bool drained = false;
  for (const RentalEvent& e : gone.record.rental->events) drained |= e.message == "drained";
  EXPECT_TRUE(drained);
}

TEST_F(AutoscalerTest, ANodeStuckProvisioningIsGivenBackAndTheNextOfferTried) {
  StartAutoscaler();
  Submit("big");
  Pass();
  ASSERT_THAT(Rented(), SizeIs(1));
  const std::string stuck = Rented()[0].record.name;
  EXPECT_EQ(provider_.offer_of(stuck), "cheap");
  clock_.Advance(absl::Minutes(5) + absl::Seconds(1));
  Pass();
  const Node old = scheduler_->GetNode(stuck).value();
  EXPECT_EQ(old.state(), NodeState::kGone);
  ASSERT_THAT(old.record.rental->events, SizeIs(3));  // PROVISIONING, TERMINATING, GONE
  EXPECT_EQ(old.record.rental->events[1].phase, RentalPhase::kTerminating);
  EXPECT_THAT(old.record.rental->events[1].message, HasSubstr("did not join within 5m"));
  Pass();
  std::vector<std::string> alive;
  for (const Node& n : Rented()) {
    if (n.record.rental->active()) alive.push_back(n.record.rental->offer_id);
  }
  EXPECT_THAT(alive, ::testing::ElementsAre("dear"));
}

TEST_F(AutoscalerTest, AFailingCreateBacksTheProviderOffAndTriesAnotherOffer) {
  provider_.fail_create("cheap");
  StartAutoscaler();
  Submit("big");
  Pass();
  auto providers = autoscaler_->Providers();
  ASSERT_THAT(providers, SizeIs(1));
  EXPECT_EQ(providers[0].failures, 1);
  EXPECT_THAT(providers[0].last_error, HasSubstr("no capacity"));
  const int creates = provider_.calls("create");
  // Backed off: nothing is asked until it is over (10 s after the first failure).
  Pass();
  EXPECT_EQ(provider_.calls("create"), creates);
  clock_.Advance(absl::Seconds(11));
  Pass();
  std::vector<std::string> alive;
  for (const Node& n : Rented()) {
    if (n.record.rental->active()) alive.push_back(n.record.rental->offer_id);
  }
  EXPECT_THAT(alive, ::testing::ElementsAre("dear"));
}

TEST_F(AutoscalerTest, ProvidersThatKeepFailingWaitLongerEachTime) {
  provider_.fail_all(true);
  StartAutoscaler();
  Submit("big");
  autoscaler_->Pass();
  autoscaler_->WaitForCalls();
  autoscaler_->Pass();
  EXPECT_EQ(provider_.calls("offers"), 1);
  absl::Time until = autoscaler_->Providers()[0].backoff_until;
  EXPECT_EQ(until, clock_.Now() + absl::Seconds(10));
  clock_.Advance(absl::Seconds(10));
  Pass();
  EXPECT_EQ(provider_.calls("offers"), 2);
  EXPECT_EQ(autoscaler_->Providers()[0].backoff_until, clock_.Now() + absl::Seconds(20));
  EXPECT_TRUE(Rented().empty());
  provider_.fail_all(false);
  clock_.Advance(absl::Seconds(20));
  Pass();
  EXPECT_EQ(autoscaler_->Providers()[0].failures, 0);
  EXPECT_THAT(Rented(), SizeIs(1));
}

TEST_F(AutoscalerTest, TheFleetCapsHoldWhateverIsPending) {
  AutoscaleConfig config;
  config.max_nodes = 2;
  config.max_dollars_per_hour = 100;
  StartAutoscaler(config);
  for (int i = 0; i < 4; ++i) Submit(absl::StrCat("job", i));
  Pass();
  Pass();
  EXPECT_THAT(Rented(), SizeIs(2));
  EXPECT_EQ(provider_.calls("create"), 2);
  // The jobs left waiting say which cap holds them.
  int told = 0;
  for (const Job& job : scheduler_->ListJobs({}).jobs) {
    told += absl::StrContains(job.message, "not rented now: the fleet's cap of 2 rented nodes");
  }
  EXPECT_EQ(told, 2);
}

TEST_F(AutoscalerTest, TheDollarCapHoldsToo) {
  AutoscaleConfig config;
  config.max_nodes = 10;
  config.max_dollars_per_hour = 5;  // two nodes at $2/h, not a third
  StartAutoscaler(config);
  for (int i = 0; i < 4; ++i) Submit(absl::StrCat("job", i));
  Pass();
  Pass();
  EXPECT_THAT(Rented(), SizeIs(2));
}

TEST_F(AutoscalerTest, ANodeNoLongerNeededIsGivenBackBeforeItJoins) {
  StartAutoscaler();
  const std::string id = Submit("big");
  Pass();
  ASSERT_THAT(Rented(), SizeIs(1));
  const std::string name = Rented()[0].record.name;
  ASSERT_THAT(Call<Job>([&](auto done) { scheduler_->Cancel(id, "", std::move(done)); }), IsOk());
  clock_.Advance(absl::Seconds(1));
  Pass();
  const Node node = scheduler_->GetNode(name).value();
  EXPECT_EQ(node.state(), NodeState::kGone);
  EXPECT_THAT(node.record.rental->events.back().message, HasSubstr("gone"));
  bool said_why = false;
  for (const RentalEvent& e : node.record.rental->events) {
    said_why |= absl::StrContains(e.message, "no pending job needs it any more");
  }
  EXPECT_TRUE(said_why);
}

TEST_F(AutoscalerTest, ABudgetThatCannotAffordAnOfferRentsNothing) {
  Budget b;
  b.project = "alpha";
  b.monthly_limit = 1;
  ASSERT_THAT(Call<Budget>([&](auto done) { scheduler_->SetBudget(b, std::move(done)); }), IsOk());
  StartAutoscaler();
  const std::string id = Submit("big");
  Pass();
  Pass();
  EXPECT_TRUE(Rented().empty());
  EXPECT_EQ(provider_.calls("create"), 0);
  EXPECT_THAT(scheduler_->GetJob(id)->message, HasSubstr("would pass project alpha's budget"));
}

TEST(AutoscaleConfigTest, ReadsAFileAndNamesWhatIsWrong) {
  auto c = ParseAutoscaleConfig(R"(
interval: 1s
idle_timeout: 3m
max_nodes: 3
max_dollars_per_hour: 7.5
schedd_address: 10.0.0.2:7070
providers:
  - name: local
    program: sched-provider-local
    max_nodes: 2
    timeouts: {create: 5s}
    config:
      offers:
        - id: h100
          gpu: "H100"
          price_per_hour: 2
)");
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->interval, absl::Seconds(1));
  EXPECT_EQ(c->idle_timeout, absl::Minutes(3));
  EXPECT_EQ(c->max_nodes, 3);
  EXPECT_DOUBLE_EQ(c->max_dollars_per_hour, 7.5);
  ASSERT_THAT(c->providers, SizeIs(1));
  EXPECT_EQ(c->providers[0].advertise_provider, "local-rented");
  EXPECT_EQ(c->providers[0].create_timeout, absl::Seconds(5));
  EXPECT_EQ(c->providers[0].config["offers"][0]["gpu"], "H100");
  EXPECT_EQ(c->providers[0].config["offers"][0]["price_per_hour"], 2);
  EXPECT_THAT(ParseAutoscaleConfig("providers: []").status().message(), HasSubstr("providers"));
  EXPECT_THAT(ParseAutoscaleConfig("idle_timeout: soon\nproviders: [{name: a, program: b}]")
                  .status()
                  .message(),
              HasSubstr("idle_timeout: expected a positive duration"));
  EXPECT_THAT(ParseAutoscaleConfig("providers: [{name: A!, program: b}]").status().message(),
              HasSubstr("providers[0].name"));
  EXPECT_THAT(ParseAutoscaleConfig("providers: [{name: a, program: b}, {name: a, program: c}]")
                  .status()
                  .message(),
              HasSubstr("named twice"));
  EXPECT_THAT(
      ParseAutoscaleConfig("providers: [{name: a, program: b, colour: red}]").status().message(),
      HasSubstr("unknown key"));
  EXPECT_THAT(ParseAutoscaleConfig("providers: [{name: a, program: b, advertise_provider: local}]")
                  .status()
                  .message(),
              HasSubstr("other than \"local\""));
}

TEST(ParseOfferTest, ChecksEachFieldAndFillsWhatTheCatalogKnows) {
  ProviderConfig p;
  p.name = "fake";
  p.advertise_provider = "fakecloud";
  auto o = ParseOffer(H100Offer("a", 2.5), p, nullptr);
  ASSERT_THAT(o, IsOk());
  EXPECT_EQ(o->provider, "fake");
  EXPECT_EQ(o->caps.provider, "fakecloud");
  EXPECT_EQ(o->caps.cpu_millis, 16000);
  ASSERT_THAT(o->caps.gpus, SizeIs(1));
  EXPECT_EQ(o->caps.gpus[0].memory_bytes, int64_t{80} << 30);
  EXPECT_EQ(o->provisioning_time, absl::Seconds(60));
  json bad = H100Offer("a", 2.5);
  bad["price_per_hour"] = -1;
  EXPECT_THAT(ParseOffer(bad, p, nullptr).status().message(), HasSubstr("price_per_hour"));
  bad = H100Offer("../x", 2.5);
  EXPECT_THAT(ParseOffer(bad, p, nullptr).status().message(), HasSubstr("offer.id"));
  bad = H100Offer("a", 2.5);
  bad.erase("gpu_memory_gib");
  EXPECT_THAT(ParseOffer(bad, p, nullptr).status().message(), HasSubstr("gpu_memory_gib"));
  bad = H100Offer("a", 2.5);
  bad["gpu_memory_gib"] = 0;  // with GPUs: missing
  EXPECT_THAT(ParseOffer(bad, p, nullptr).status().message(), HasSubstr("gpu_memory_gib"));
  json cpu_only = H100Offer("cpu", 0.1);
  cpu_only["gpu"] = "";
  cpu_only["gpu_count"] = 0;
  cpu_only["gpu_memory_gib"] = 0;
  auto cpu = ParseOffer(cpu_only, p, nullptr);
  ASSERT_THAT(cpu, IsOk());
  EXPECT_TRUE(cpu->caps.gpus.empty());
  bad = H100Offer("a", 2.5);
  bad["gpu_count"] = 1.5;
  EXPECT_THAT(ParseOffer(bad, p, nullptr).status().message(), HasSubstr("whole number"));
  bad = H100Offer("a", 2.5);
  bad["cpus"] = "many";
  EXPECT_THAT(ParseOffer(bad, p, nullptr).status().message(), HasSubstr("cpus"));
}

}  // namespace
}  // namespace sched::provision
