// sched-sim: runs the deterministic simulation of the scheduler core for many seeds.
//   sched-sim --seeds=10000              seeds 1..10000, a line per failure, a summary at the end
//   sched-sim --seed=42 --trace          one seed again, every event printed
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/clock.h"
#include "tests/sim/sim_world.h"

ABSL_FLAG(uint64_t, seed, 0, "Run this one seed (0: run --seeds seeds from --first_seed).");
ABSL_FLAG(uint64_t, first_seed, 1, "First seed of a batch.");
ABSL_FLAG(uint64_t, seeds, 1000, "How many seeds in a batch.");
ABSL_FLAG(bool, trace, false, "Print every event (one seed).");
ABSL_FLAG(int64_t, fault_seconds, 30, "Simulated seconds of faults before the world heals.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("sched-sim: deterministic simulation of the scheduler core");
  absl::ParseCommandLine(argc, argv);
  sched::sim::SimOptions options;
  options.trace = absl::GetFlag(FLAGS_trace);
  options.fault_time = absl::Seconds(absl::GetFlag(FLAGS_fault_seconds));
  if (absl::GetFlag(FLAGS_seed) != 0) {
    options.seed = absl::GetFlag(FLAGS_seed);
    sched::sim::SimResult r = sched::sim::RunSimulation(options);
    std::printf("%s\n", r.Summary().c_str());
    return r.ok ? 0 : 1;
  }
  const absl::Time start = absl::Now();
  uint64_t failed = 0;
  uint64_t steps = 0;
  const uint64_t first = absl::GetFlag(FLAGS_first_seed);
  const uint64_t n = absl::GetFlag(FLAGS_seeds);
  for (uint64_t seed = first; seed < first + n; ++seed) {
    options.seed = seed;
    sched::sim::SimResult r = sched::sim::RunSimulation(options);
    steps += r.steps;
    if (!r.ok) {
      ++failed;
      std::printf("%s\n  replay: %s\n", r.Summary().c_str(),
                  sched::sim::ReplayCommand(seed).c_str());
      std::fflush(stdout);
    }
  }
  std::printf("seeds %llu..%llu: %llu ran, %llu failed, %llu steps, %.1f s\n",
              static_cast<unsigned long long>(first),
              static_cast<unsigned long long>(first + n - 1), static_cast<unsigned long long>(n),
              static_cast<unsigned long long>(failed), static_cast<unsigned long long>(steps),
              absl::ToDoubleSeconds(absl::Now() - start));
  return failed == 0 ? 0 : 1;
}
