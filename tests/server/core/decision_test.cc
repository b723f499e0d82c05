#include "server/core/decision.h"

#include <cmath>
#include <deque>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sched {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kGiB = int64_t{1} << 30;
const absl::Time kNow = absl::FromCivil(absl::CivilSecond(2026, 11, 26, 12, 0, 0),
                                        absl::UTCTimeZone());
constexpr absl::Duration kNever = absl::InfiniteDuration();

// A node as one row of a decision table describes it.
struct Row {
  std::string name;
  bool local = false;
  double price = 0;        // $/h
  double runtime_h = 1;    // the job's runtime there
  double wait_h = 0;       // 0: room now; kBusy: no room and not waited for
  bool spot = false;
  double rate = 0;         // preemptions an hour
  bool too_small = false;
};
constexpr double kBusy = -1;

struct Case {
  std::string name;
  DecisionRules rules;
  std::vector<Row> rows;
  std::string chosen;  // "" : none
  bool wait = false;
  LocalBlocker blocker = LocalBlocker::kNone;
  bool meets_deadline = true;
  std::vector<std::pair<std::string, OptionVerdict>> verdicts;
};

DecisionRules Rules(PlacementPolicy p = PlacementPolicy::kPreferLocal,
                    absl::Duration deadline_in = kNever, SpotPolicy spot = SpotPolicy::kAuto) {
  DecisionRules r;
  r.placement = p;
  r.spot = spot;
  r.deadline = deadline_in == kNever ? absl::InfiniteFuture() : kNow + deadline_in;
  return r;
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  cases.push_back({"local fits: it goes home even with a faster cloud GPU",
                   Rules(),
                   {{"ws", true, 0.10, 2}, {"cloud", false, 2.0, 0.5}},
                   "ws", false, LocalBlocker::kNone, true,
                   {{"cloud", OptionVerdict::kDearer}}});
  cases.push_back({"local too small: the cheapest cloud node",
                   Rules(),
                   {{"ws", true, 0.1, 1, 0, false, 0, true},
                    {"dear", false, 2.0, 1},
                    {"cheap", false, 1.5, 1}},
                   "cheap", false, LocalBlocker::kTooSmall, true,
                   {{"ws", OptionVerdict::kTooSmall}, {"dear", OptionVerdict::kDearer}}});
  cases.push_back({"deadline forces a burst: waiting for local would finish too late",
                   Rules(PlacementPolicy::kPreferLocal, absl::Hours(4)),
                   {{"ws", true, 0.1, 2, 3}, {"cloud", false, 2.0, 1}},
                   "cloud", false, LocalBlocker::kDeadline, true,
                   {{"ws", OptionVerdict::kMissesDeadline}}});
  cases.push_back({"waiting for local is within the deadline and cheaper",
                   Rules(PlacementPolicy::kPreferLocal, absl::Hours(4)),
                   {{"ws", true, 0.1, 2, 1}, {"cloud", false, 2.0, 1}},
                   "ws", true, LocalBlocker::kNone, true,
                   {{"cloud", OptionVerdict::kDearer}}});
  cases.push_back({"no deadline: waiting costs nothing, so it waits for local",
                   Rules(),
                   {{"ws", true, 0.0, 2, 30}, {"cloud", false, 2.0, 1}},
                   "ws", true, LocalBlocker::kNone, true,
                   {{"cloud", OptionVerdict::kDearer}}});
  cases.push_back({"waiting for a dear local machine loses to a cheaper cloud node",
                   Rules(),
                   {{"ws", true, 1.0, 2, 1}, {"cloud", false, 0.5, 1}},
                   "cloud", false, LocalBlocker::kBusy, true,
                   {{"ws", OptionVerdict::kDearer}}});
  // Spot: 10 h at 0.05 preemptions/h is expected to take (e^0.5 - 1)/0.05 = 12.97 h.
  cases.push_back({"auto: spot wins even with the work expected to be lost",
                   Rules(PlacementPolicy::kCloudOnly),
                   {{"od", false, 4.0, 10}, {"spot", false, 1.2, 10, 0, true, 0.05}},
                   "spot", false, LocalBlocker::kNone, true,
                   {{"od", OptionVerdict::kDearer}}});
  cases.push_back({"auto: preemptions make spot dearer than on-demand",
                   Rules(PlacementPolicy::kCloudOnly),
                   {{"od", false, 2.0, 10}, {"spot", false, 1.6, 10, 0, true, 0.1}},
                   "od", false, LocalBlocker::kNone, true,
                   {{"spot", OptionVerdict::kDearer}}});
  cases.push_back({"spot policy on-demand rules out spot",
                   Rules(PlacementPolicy::kCloudOnly, kNever, SpotPolicy::kOnDemand),
                   {{"od", false, 4.0, 10}, {"spot", false, 1.2, 10, 0, true, 0.05}},
                   "od", false, LocalBlocker::kNone, true,
                   {{"spot", OptionVerdict::kPolicy}}});
  cases.push_back({"spot policy spot rules out on-demand",
                   Rules(PlacementPolicy::kCloudOnly, kNever, SpotPolicy::kSpot),
                   {{"od", false, 1.0, 10}, {"spot", false, 1.2, 10, 0, true, 0.05}},
                   "spot", false, LocalBlocker::kNone, true,
                   {{"od", OptionVerdict::kPolicy}}});
  cases.push_back({"spot's expected finish misses the deadline that on-demand meets",
                   Rules(PlacementPolicy::kCloudOnly, absl::Hours(12)),
                   {{"od", false, 4.0, 10}, {"spot", false, 1.2, 10, 0, true, 0.05}},
                   "od", false, LocalBlocker::kNone, true,
                   {{"spot", OptionVerdict::kMissesDeadline}}});
  {
    Case c{"budget cap blocks the cloud node but not the free local one",
           Rules(PlacementPolicy::kCheapest),
           {{"ws", true, 0.0, 3}, {"cloud", false, 2.0, 1}},
           "ws", false, LocalBlocker::kNone, true,
           {{"cloud", OptionVerdict::kOverBudget}}};
    c.rules.budget_room = 1.0;
    cases.push_back(c);
  }
  {
    Case c{"budget cap: with local busy, it waits for local rather than pass the cap",
           Rules(),
           {{"ws", true, 0.0, 3, 2}, {"cloud", false, 2.0, 1}},
           "ws", true, LocalBlocker::kNone, true,
           {{"cloud", OptionVerdict::kOverBudget}}};
    c.rules.budget_room = 1.0;
    cases.push_back(c);
  }
  {
    Case c{"budget cap and no local machine: nothing",
           Rules(),
           {{"cloud", false, 2.0, 1}},
           "", false, LocalBlocker::kNone, true,
           {{"cloud", OptionVerdict::kOverBudget}}};
    c.rules.budget_room = 1.0;
    cases.push_back(c);
  }
  {
    Case c{"max_cost leaves out the dear node",
           Rules(PlacementPolicy::kCloudOnly, absl::Minutes(90)),
           {{"fast", false, 8.0, 0.5}, {"slow", false, 2.5, 1}},
           "slow", false, LocalBlocker::kNone, true,
           {{"fast", OptionVerdict::kOverMaxCost}}};
    c.rules.max_cost = 3.0;
    cases.push_back(c);
  }
  cases.push_back({"local-only never rents: it waits for the workstation",
                   Rules(PlacementPolicy::kLocalOnly, absl::Hours(1)),
                   {{"ws", true, 0.1, 2, 5}, {"cloud", false, 0.5, 1}},
                   "ws", true, LocalBlocker::kNone, false,
                   {{"cloud", OptionVerdict::kPolicy}}});
  cases.push_back({"cloud-only leaves the free workstation alone",
                   Rules(PlacementPolicy::kCloudOnly),
                   {{"ws", true, 0.0, 1}, {"cloud", false, 2.0, 1}},
                   "cloud", false, LocalBlocker::kPolicy, true,
                   {{"ws", OptionVerdict::kPolicy}}});
  cases.push_back({"cheapest takes a cloud node cheaper than the free workstation",
                   Rules(PlacementPolicy::kCheapest),
                   {{"ws", true, 1.0, 2}, {"cloud", false, 0.5, 1}},
                   "cloud", false, LocalBlocker::kCost, true,
                   {{"ws", OptionVerdict::kDearer}}});
  cases.push_back({"no node meets the deadline: the earliest finish",
                   Rules(PlacementPolicy::kPreferLocal, absl::Minutes(30)),
                   {{"ws", true, 0.0, 2}, {"cloud", false, 2.0, 1}},
                   "cloud", false, LocalBlocker::kDeadline, false,
                   {{"ws", OptionVerdict::kLater}}});
  cases.push_back({"a busy rented node is not waited for",
                   Rules(PlacementPolicy::kCloudOnly),
                   {{"busy", false, 0.5, 1, kBusy}, {"free", false, 2.0, 1}},
                   "free", false, LocalBlocker::kNone, true,
                   {{"busy", OptionVerdict::kBusy}}});
  cases.push_back({"nothing can ever hold it",
                   Rules(),
                   {{"ws", true, 0.0, 1, 0, false, 0, true},
                    {"cloud", false, 2.0, 1, 0, false, 0, true}},
                   "", false, LocalBlocker::kTooSmall, true,
                   {{"ws", OptionVerdict::kTooSmall}, {"cloud", OptionVerdict::kTooSmall}}});
  return cases;
}

class DecideTableTest : public ::testing::TestWithParam<Case> {};

TEST_P(DecideTableTest, ChoosesAndExplains) {
  const Case& c = GetParam();
  std::deque<Node> nodes;
  std::vector<Candidate> cs;
  for (const Row& row : c.rows) {
    Node& n = nodes.emplace_back();
    n.record.name = row.name;
    n.record.caps.provider = row.local ? "local" : "runpod";
    Candidate& k = cs.emplace_back();
    k.node = &n;
    k.local = row.local;
    k.spot = row.spot;
    k.too_small = row.too_small;
    k.fits_now = !row.too_small && row.wait_h == 0;
    if (k.fits_now) {
      k.wait = absl::ZeroDuration();
    } else if (row.wait_h > 0) {
      k.wait = absl::Hours(row.wait_h);
    }
    k.runtime = absl::Hours(row.runtime_h);
    k.price_per_hour = row.price;
    k.preemptions_per_hour = row.rate;
  }
  const Choice choice = Decide(c.rules, kNow, absl::MakeSpan(cs));
  if (c.chosen.empty()) {
    EXPECT_EQ(choice.chosen, -1);
  } else {
    ASSERT_GE(choice.chosen, 0);
    EXPECT_EQ(cs[choice.chosen].node->record.name, c.chosen);
    EXPECT_EQ(cs[choice.chosen].verdict, OptionVerdict::kChosen);
  }
  EXPECT_EQ(choice.wait, c.wait);
  EXPECT_EQ(choice.local_blocker, c.blocker) << LocalBlockerName(choice.local_blocker);
  EXPECT_EQ(choice.meets_deadline, c.meets_deadline);
  for (const auto& [name, verdict] : c.verdicts) {
    for (const Candidate& k : cs) {
      if (k.node->record.name == name) {
        EXPECT_EQ(k.verdict, verdict) << name << " is " << OptionVerdictName(k.verdict);
      }
    }
  }
  // The record names the choice first and gives every node a reason.
  Resources r;
  r.gpus = 1;
  r.gpu_memory_bytes = 40 * kGiB;
  const Decision d = RecordDecision(c.rules, kNow, choice, cs, r, 10);
  EXPECT_EQ(d.placed, !c.chosen.empty() && !c.wait);
  EXPECT_EQ(d.nodes_considered, c.rows.size());
  ASSERT_EQ(d.options.size(), c.rows.size());
  if (!c.chosen.empty()) EXPECT_EQ(d.options[0].node, c.chosen);
  for (const DecisionOption& o : d.options) EXPECT_FALSE(o.reason.empty()) << o.node;
}

INSTANTIATE_TEST_SUITE_P(Decisions, DecideTableTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           std::string name;
                           for (char ch : info.param.name) {
                             if (std::isalnum(static_cast<unsigned char>(ch))) name += ch;
                           }
                           return name.substr(0, 60);
                         });

TEST(DecideTest, TiesGoToTheBestFitThenTheName) {
  std::deque<Node> nodes;
  std::vector<Candidate> cs;
  auto add = [&](std::string name, size_t gpus_left, int64_t cpu_left) {
    Node& n = nodes.emplace_back();
    n.record.name = std::move(name);
    Candidate& k = cs.emplace_back();
    k.node = &n;
    k.local = true;
    k.fits_now = true;
    k.wait = absl::ZeroDuration();
    k.runtime = absl::Hours(1);
    k.gpus_left = gpus_left;
    k.cpu_left = cpu_left;
  };
  add("gpu", 1, 2000);
  add("big", 0, 14000);
  add("small-b", 0, 2000);
  add("small-a", 0, 2000);
  const Choice choice = Decide(Rules(), kNow, absl::MakeSpan(cs));
  ASSERT_GE(choice.chosen, 0);
  EXPECT_EQ(cs[choice.chosen].node->record.name, "small-a");
  EXPECT_EQ(cs[0].verdict, OptionVerdict::kLater);
}

// Two workstations, busy; the job waits for "a". It moves to "b" only if it would finish at
// least kMoveGain sooner there without paying more, or pay less without finishing later.
TEST(DecideTest, AWaitingJobMovesToAnotherMachineOnlyForEnoughGain) {
  std::deque<Node> nodes;
  Choice choice;
  auto decide = [&](absl::Duration wait_a, absl::Duration wait_b, double price_b,
                    std::vector<Candidate>& cs) {
    nodes.clear();
    cs.assign(3, Candidate());
    const std::pair<const char*, absl::Duration> ws[] = {{"a", wait_a}, {"b", wait_b}};
    for (int i = 0; i < 2; ++i) {
      Node& n = nodes.emplace_back();
      n.record.name = ws[i].first;
      cs[i].node = &n;
      cs[i].local = true;
      cs[i].wait = ws[i].second;
      cs[i].runtime = absl::Hours(2);
      cs[i].price_per_hour = i == 0 ? 0.20 : price_b;
    }
    cs[0].waited_for = true;
    Node& cloud = nodes.emplace_back();
    cloud.record.name = "cloud";
    cs[2].node = &cloud;
    cs[2].fits_now = true;
    cs[2].wait = absl::ZeroDuration();
    cs[2].runtime = absl::Hours(1);
    cs[2].price_per_hour = 2.0;
    choice = Decide(Rules(), kNow, absl::MakeSpan(cs));
    return choice.chosen >= 0 ? cs[choice.chosen].node->record.name : std::string();
  };
  std::vector<Candidate> cs;
  // 10 minutes sooner on b: not worth the move.
  EXPECT_EQ(decide(absl::Hours(3), absl::Hours(3) - absl::Minutes(10), 0.20, cs), "a");
  EXPECT_EQ(cs[1].verdict, OptionVerdict::kLater);
  EXPECT_TRUE(choice.wait);
  const Decision d = RecordDecision(Rules(), kNow, choice, cs, Resources{}, 5);
  bool explained = false;
  for (const DecisionOption& o : d.options) {
    if (o.node == "b") explained = absl::StrContains(o.reason, "too little to move the job");
  }
  EXPECT_TRUE(explained);
  // 20 minutes sooner: it moves.
  EXPECT_EQ(decide(absl::Hours(3), absl::Hours(3) - absl::Minutes(20), 0.20, cs), "b");
  // As soon, but cheaper: it moves.
  EXPECT_EQ(decide(absl::Hours(3), absl::Hours(3), 0.10, cs), "b");
  // Cheaper, but finishing later: it stays, and the record says why.
  EXPECT_EQ(decide(absl::Hours(3), absl::Hours(5), 0.10, cs), "a");
  const Decision later = RecordDecision(Rules(), kNow, choice, cs, Resources{}, 5);
  explained = false;
  for (const DecisionOption& o : later.options) {
    if (o.node == "b") explained = absl::StrContains(o.reason, "not worth moving the job from a");
  }
  EXPECT_TRUE(explained);
  // Sooner but dearer: it stays (cheaper wins, as for any job).
  EXPECT_EQ(decide(absl::Hours(3), absl::Hours(1), 0.30, cs), "a");
  // A job not yet waiting anywhere takes the sooner machine, however little sooner.
  EXPECT_EQ(decide(absl::Hours(3), absl::Hours(3) - absl::Minutes(10), 0.20, cs), "a");
  cs[0].waited_for = false;
  Decide(Rules(), kNow, absl::MakeSpan(cs));
  EXPECT_EQ(cs[1].verdict, OptionVerdict::kChosen);
}

TEST(DecideTest, FiguresOfAnOption) {
  std::deque<Node> nodes;
  std::vector<Candidate> cs(1);
  Node& n = nodes.emplace_back();
  n.record.name = "spot";
  cs[0].node = &n;
  cs[0].spot = true;
  cs[0].fits_now = true;
  cs[0].wait = absl::ZeroDuration();
  cs[0].runtime = absl::Hours(10);
  cs[0].price_per_hour = 1.2;
  cs[0].preemptions_per_hour = 0.05;
  Decide(Rules(), kNow, absl::MakeSpan(cs));
  const double hours = std::expm1(0.5) / 0.05;  // 12.974 h
  EXPECT_NEAR(absl::ToDoubleHours(cs[0].expected_runtime), hours, 1e-6);
  EXPECT_NEAR(cs[0].cost, 1.2 * hours, 1e-6);
  EXPECT_EQ(cs[0].start, kNow);
  EXPECT_NEAR(absl::ToDoubleHours(cs[0].finish - kNow), hours, 1e-6);
}

// Cheap windows: the workstation costs $0.30/h, $0.05/h from midnight to 06:00 UTC; now is
// noon. A 2 h job whose deadline leaves room starts at midnight.
TEST(DecideTest, ADeadlineThatLeavesRoomWaitsForTheCheapWindow) {
  const cost::PriceSchedule night{{{0, 6 * 60, 0.05}}, 0};
  std::deque<Node> nodes;
  auto decide = [&](absl::Duration deadline_in, std::vector<Candidate>& cs) {
    nodes.clear();
    cs.assign(2, Candidate());
    const char* names[] = {"ws", "cloud"};
    for (int i = 0; i < 2; ++i) {
      Node& n = nodes.emplace_back();
      n.record.name = names[i];
      cs[i].node = &n;
      cs[i].fits_now = true;
      cs[i].wait = absl::ZeroDuration();
      cs[i].runtime = absl::Hours(2);
    }
    cs[0].local = true;
    cs[0].price_per_hour = 0.30;
    cs[0].schedule = &night;
    cs[1].price_per_hour = 1.0;
    return Decide(Rules(PlacementPolicy::kPreferLocal, deadline_in), kNow, absl::MakeSpan(cs));
  };
  std::vector<Candidate> cs;
  Choice choice = decide(absl::Hours(20), cs);
  ASSERT_EQ(choice.chosen, 0);
  EXPECT_TRUE(choice.wait);
  EXPECT_TRUE(cs[0].deferred);
  EXPECT_EQ(cs[0].start, kNow + absl::Hours(12));
  EXPECT_NEAR(cs[0].cost, 0.10, 1e-9);
  EXPECT_NEAR(cs[0].cost_at_earliest, 0.60, 1e-9);
  const Decision d = RecordDecision(Rules(PlacementPolicy::kPreferLocal, absl::Hours(20)), kNow,
                                    choice, cs, Resources(), 5);
  EXPECT_FALSE(d.placed);
  EXPECT_EQ(d.summary,
            "waiting for the cheaper window on ws (local): start 2026-11-27 00:00 UTC, finish "
            "2026-11-27 02:00 UTC, about $0.10, saving $0.50 against starting at once");
  EXPECT_TRUE(d.options[0].deferred);
  EXPECT_NEAR(d.options[0].cost_at_earliest, 0.60, 1e-9);

  // A deadline at 01:00 leaves room for the first hour of the window only: start 23:00 for
  // $0.30 + $0.05, cheaper than $0.60 now.
  choice = decide(absl::Hours(13), cs);
  ASSERT_EQ(choice.chosen, 0);
  EXPECT_TRUE(choice.wait);
  EXPECT_EQ(cs[0].start, kNow + absl::Hours(11));
  EXPECT_NEAR(cs[0].cost, 0.35, 1e-9);
  // A tight deadline, or none: at once, at the day price.
  for (absl::Duration deadline : {absl::Hours(3), kNever}) {
    choice = decide(deadline, cs);
    ASSERT_EQ(choice.chosen, 0);
    EXPECT_FALSE(choice.wait);
    EXPECT_FALSE(cs[0].deferred);
    EXPECT_EQ(cs[0].start, kNow);
    EXPECT_NEAR(cs[0].cost, 0.60, 1e-9);
  }
}

TEST(ExpectedWithPreemptionTest, RestartsFromScratchOnEachPreemption) {
  EXPECT_EQ(ExpectedWithPreemption(absl::Hours(3), 0), absl::Hours(3));
  // Rare preemptions barely matter: (e^0.001 - 1)/0.001 h is 1.0005 h.
  EXPECT_NEAR(absl::ToDoubleHours(ExpectedWithPreemption(absl::Hours(1), 0.001)), 1.0005, 1e-4);
  // One expected preemption over the run: e - 1 = 1.718 times the runtime.
  EXPECT_NEAR(absl::ToDoubleHours(ExpectedWithPreemption(absl::Hours(10), 0.1)), 17.1828, 1e-3);
  EXPECT_EQ(ExpectedWithPreemption(absl::Hours(1000), 1), absl::InfiniteDuration());
}

TEST(WhyNeverFitsTest, NamesTheResourceThatIsShort) {
  NodeCapabilities caps;
  caps.cpu_millis = 8000;
  caps.memory_bytes = 32 * kGiB;
  caps.gpus = {{0, "u0", "NVIDIA GeForce RTX 4090", 24 * kGiB}};
  Resources r;
  r.cpu_millis = 4000;
  r.memory_bytes = 16 * kGiB;
  EXPECT_EQ(WhyNeverFits(r, caps), "");
  r.gpus = 1;
  r.gpu_memory_bytes = 40 * kGiB;
  EXPECT_EQ(WhyNeverFits(r, caps), "needs 40 GiB of GPU memory, the largest GPU has 24 GiB");
  r.gpus = 2;
  EXPECT_EQ(WhyNeverFits(r, caps), "needs 2 GPUs, has 1");
  r.gpus = 1;
  r.gpu_memory_bytes = 0;
  r.gpu_models = {"h100"};
  EXPECT_THAT(WhyNeverFits(r, caps), HasSubstr("needs GPU model h100"));
  r.memory_bytes = 64 * kGiB;
  EXPECT_EQ(WhyNeverFits(r, caps), "needs 64 GiB of memory, has 32 GiB");
  r.cpu_millis = 16000;
  EXPECT_EQ(WhyNeverFits(r, caps), "needs 16.0 CPUs, has 8.0");
}

}  // namespace
}  // namespace sched
