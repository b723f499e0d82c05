// The deterministic simulation, a few hundred seeds in the default test run, and the replay
// property the harness rests on.
#include "gtest/gtest.h"
#include "tests/sim/sim_world.h"

namespace sched::sim {
namespace {

TEST(SimulationTest, SameSeedSameRun) {
  SimOptions options;
  options.seed = 7;
  SimResult a = RunSimulation(options);
  SimResult b = RunSimulation(options);
  EXPECT_EQ(a.Summary(), b.Summary());
  EXPECT_GT(a.steps, 1000u);
  EXPECT_GT(a.messages, 100u);
}

TEST(SimulationTest, FaultsActuallyHappen) {
  // Over a batch of seeds, every kind of fault is injected somewhere: a harness that injects
  // nothing proves nothing.
  SimResult total;
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    SimOptions options;
    options.seed = seed;
    SimResult r = RunSimulation(options);
    total.schedd_crashes += r.schedd_crashes;
    total.agent_crashes += r.agent_crashes;
    total.pauses += r.pauses;
    total.partitions += r.partitions;
    total.clock_jumps += r.clock_jumps;
    total.dropped += r.dropped;
    total.duplicated += r.duplicated;
    total.unknown_calls += r.unknown_calls;
    total.refused_reports += r.refused_reports;
    total.priority_preemptions += r.priority_preemptions;
  }
  EXPECT_GT(total.schedd_crashes, 10);
  EXPECT_GT(total.agent_crashes, 5);
  EXPECT_GT(total.pauses, 5);
  EXPECT_GT(total.partitions, 5);
  EXPECT_GT(total.clock_jumps, 5);
  EXPECT_GT(total.dropped, 100u);
  EXPECT_GT(total.duplicated, 20u);
  EXPECT_GT(total.unknown_calls, 0);
  EXPECT_GT(total.refused_reports, 0);
  EXPECT_GT(total.priority_preemptions, 0u);
}

TEST(SimulationTest, ManySeedsKeepEveryInvariant) {
  const uint64_t seeds = 300;
  int failed = 0;
  for (uint64_t seed = 1; seed <= seeds; ++seed) {
    SimOptions options;
    options.seed = seed;
    SimResult r = RunSimulation(options);
    if (!r.ok) {
      ++failed;
      ADD_FAILURE() << r.Summary() << "\n  replay: " << ReplayCommand(seed);
    }
  }
  EXPECT_EQ(failed, 0);
}

}  // namespace
}  // namespace sched::sim
