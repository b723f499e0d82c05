// The crash loop: schedd killed again and again (SIGKILL at random moments, or its own failpoints)
// while real agents run jobs and client workers submit and cancel. After the last kill every
// unknown call is resolved, every job must end, and the checker judges the whole history.
//
// Short mode (CI): 20 kills. Long mode: SCHED_CRASH_KILLS=500 build/tests/e2e/e2e_crash_loop_test
// Other knobs: SCHED_CRASH_SEED (replays the kill schedule), SCHED_CRASH_WORKERS (4),
// SCHED_CRASH_LIVENESS_S (60: how long the jobs have to end after the last kill),
// SCHED_CRASH_KEEP=1 (keep the run's folder even when it passes).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/crash_loop_checker.h"
#include "tests/e2e/crash_loop_clients.h"
#include "tests/e2e/crash_loop_cluster.h"

namespace sched::crash_loop {
namespace {

// Jobs not yet ended beyond which workers stop submitting: two agents drain this many in a few
// seconds, so the liveness bound holds however long the loop runs.
constexpr size_t kMaxBacklog = 300;

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoll(v, nullptr, 10) : fallback;
}

// Every third incarnation runs with one failpoint armed, taking turns.
std::string FailpointsFor(int incarnation, std::mt19937_64& rng) {
  if (incarnation % 3 != 0) return "";
  switch ((incarnation / 3) % 3) {
    case 0:
      return "store.after_sync_before_reply=crash@0.05";
    case 1:
      return "store.before_sync=crash@0.05";
    default:
      return absl::StrCat("scheduler.before_send_assignment=crash#", 1 + rng() % 4);
  }
}

struct KillStats {
  int sigkills = 0;
  std::map<std::string, int> by_failpoint;
  int total() const {
    int n = sigkills;
    for (const auto& [name, count] : by_failpoint) n += count;
    return n;
  }
  std::string Describe() const {
    std::vector<std::string> parts;
    for (const auto& [name, count] : by_failpoint) parts.push_back(absl::StrCat(name, " ", count));
    return absl::StrCat(sigkills, " by SIGKILL, by failpoint: ",
                        parts.empty() ? "none" : absl::StrJoin(parts, ", "));
  }
};

struct ReopenStats {
  int times = 0;
  absl::Duration total, max;
  void Add(absl::Duration d) {
    times++;
    total += d;
    max = std::max(max, d);
  }
};

TEST(CrashLoopTest, KillsLoseNothingAcknowledgedAndEveryJobEndsOnce) {
  const int kills = static_cast<int>(EnvInt("SCHED_CRASH_KILLS", 20));
  const uint64_t seed = static_cast<uint64_t>(EnvInt("SCHED_CRASH_SEED", absl::ToUnixMicros(absl::Now())));
  const int workers_count = static_cast<int>(EnvInt("SCHED_CRASH_WORKERS", 4));
  const absl::Duration liveness = absl::Seconds(EnvInt("SCHED_CRASH_LIVENESS_S", 60));
  const absl::Duration start_timeout = absl::Seconds(20);
  const std::string dir = testing::MakeTempDir("sched_crash_loop_");
  std::printf("crash loop: %d kills, seed %llu, folder %s\n", kills,
              static_cast<unsigned long long>(seed), dir.c_str());
  std::mt19937_64 rng(seed);
  const absl::Time began = absl::Now();

  History history(dir + "/history.jsonl");
  SchedIncarnations schedd(dir, testing::PickFreePort());
  ReopenStats reopen;
  KillStats killed;
  // One line per incarnation's end, on the clock of history.jsonl's invoke_us.
  std::ofstream kill_log(dir + "/kills.log");
  auto log_kill = [&](const std::string& how) {
    kill_log << std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::steady_clock::now().time_since_epoch())
                    .count()
             << " incarnation " << schedd.incarnations() << " " << how << std::endl;
  };
  ASSERT_TRUE(schedd.Start("", 0, start_timeout).ok());
  auto agents = StartAgents(dir, schedd.address(), 2);
  Watcher watcher(schedd.address(), dir + "/events.jsonl");
  Workers workers(schedd.address(), &history, workers_count, seed, absl::Milliseconds(20),
                  [&watcher] { return watcher.unfinished(); }, kMaxBacklog);

  while (killed.total() < kills) {
    // Up for a random while; a failpoint may end it sooner.
    const int incarnation = schedd.incarnations();
    const bool armed = incarnation % 3 == 0 && incarnation > 0;
    const int uptime_ms = armed ? 50 + rng() % 1450 : 50 + rng() % 350;
    const absl::Time kill_at = absl::Now() + absl::Milliseconds(uptime_ms);
    while (absl::Now() < kill_at && schedd.running()) absl::SleepFor(absl::Milliseconds(2));
    if (schedd.running()) {
      schedd.Kill();
      killed.sigkills++;
      log_kill("SIGKILL");
    } else {
      const std::string at = schedd.CrashedAt();
      ASSERT_FALSE(at.empty()) << "schedd exited on its own; see " << dir;
      killed.by_failpoint[at]++;
      log_kill(at);
    }
    // The next incarnation; a failpoint may take it down before it serves.
    while (true) {
      const bool last = killed.total() >= kills;
      const std::string failpoints = last ? "" : FailpointsFor(schedd.incarnations() + 1, rng);
      absl::StatusOr<absl::Duration> up = schedd.Start(failpoints, rng(), start_timeout);
      if (up.ok()) {
        reopen.Add(*up);
        break;
      }
      ASSERT_EQ(up.status().code(), absl::StatusCode::kAborted)
          << "the store did not reopen without help: " << up.status();
      killed.by_failpoint[schedd.CrashedAt()]++;
      log_kill(schedd.CrashedAt() + " before serving");
    }
  }
  workers.Stop();
  const absl::Time last_kill = absl::Now();

  auto stub = v1::JobService::NewStub(FastReconnectChannel(schedd.address()));
  const int resolved = ResolveUnknowns(*stub, history, last_kill + absl::Seconds(30));

  const absl::Time resolved_at = absl::Now();

  // Liveness: every job ends, agents having reconnected on their own. The bound counts from the
  // end of resolution, which submits the jobs whose first submit had not been applied.
  std::vector<JobView> final_jobs;
  absl::Duration settled = absl::InfiniteDuration();
  while (absl::Now() - resolved_at < liveness) {
    if (ListAll(*stub, final_jobs) &&
        std::all_of(final_jobs.begin(), final_jobs.end(),
                    [](const JobView& j) { return IsTerminal(j.state); })) {
      settled = absl::Now() - resolved_at;
      break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  absl::SleepFor(absl::Milliseconds(200));  // the last events reach the watcher
  watcher.Stop();
  ASSERT_TRUE(ListAll(*stub, final_jobs));

  CheckInput input;
  input.ops = history.ops();
  input.events = watcher.events();
  input.final_jobs = final_jobs;
  const std::vector<std::string> violations = Check(input);

  int acked = 0, acked_cancels = 0, unknowns = 0;
  for (const Op& op : input.ops) {
    if (op.outcome == Outcome::kOk) (op.kind == OpKind::kSubmit ? acked : acked_cancels)++;
    if (op.outcome == Outcome::kUnknown) unknowns++;
  }
  std::printf(
      "crash loop summary: kills %d (%s); store reopened %d times unaided (mean %.0f ms, max "
      "%.0f ms); acked submits %d, acked cancels %d; unknowns %d, resolved %d in %.1f s; jobs "
      "%zu, all ended %s after that; %zu events over %d watch subscriptions; violations %zu; "
      "seed %llu; %.1f s\n",
      killed.total(), killed.Describe().c_str(), reopen.times,
      absl::ToDoubleMilliseconds(reopen.total) / std::max(reopen.times, 1),
      absl::ToDoubleMilliseconds(reopen.max), acked, acked_cancels, unknowns, resolved,
      absl::ToDoubleSeconds(resolved_at - last_kill), final_jobs.size(),
      settled == absl::InfiniteDuration() ? "NEVER" : absl::FormatDuration(settled).c_str(),
      input.events.size(), watcher.subscriptions(), violations.size(),
      static_cast<unsigned long long>(seed), absl::ToDoubleSeconds(absl::Now() - began));
  for (size_t i = 0; i < violations.size() && i < 30; ++i) {
    ADD_FAILURE() << "violation: " << violations[i];
  }
  EXPECT_THAT(violations, ::testing::IsEmpty());
  EXPECT_GE(killed.total(), kills);
  EXPECT_EQ(resolved, unknowns);
  EXPECT_GE(acked, 5 * kills) << "too few acknowledged submits to prove anything";
  EXPECT_NE(settled, absl::InfiniteDuration()) << "jobs did not all end within " << liveness;

  if (!::testing::Test::HasFailure() && EnvInt("SCHED_CRASH_KEEP", 0) == 0) {
    agents.clear();
    schedd.Kill();
    std::filesystem::remove_all(dir);
  } else {
    std::printf("crash loop: run kept in %s (history.jsonl, schedd-N.log, a1.log, a2.log)\n",
                dir.c_str());
  }
}

}  // namespace
}  // namespace sched::crash_loop
