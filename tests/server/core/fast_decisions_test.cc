// Placement's fast paths against the reference.
//
// SchedulerOptions.fast_decisions turns on two shortcuts: a waiting group's last decision
// stands until a node that gained room could beat it, and rented nodes are weighed cheapest
// first, skipping blocks of them where the job fits nowhere, until the rest cannot win. With it
// off, every waiting group is decided again on every node that gains room, against every node
// with room. This runs both on the same random operations (submits of jobs with every policy,
// runtimes given and learned, deadlines, max_cost and budgets; completions; budget changes;
// time going by) and compares every job after every step. Both worlds also check every
// workstation wait read from a kept timeline against one built afresh
// (SchedulerOptions::verify_timelines).
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/common/clock.h"
#include "server/core/scheduler.h"
#include "server/store/memory_store.h"
#include "tests/server/cost/test_catalog.h"
#include "tests/testing/fake_agent_link.h"
#include "tests/testing/status_matchers.h"

namespace sched {
namespace {

using ::sched::testing::FakeAgentLink;
using ::sched::testing::IsOk;

constexpr int64_t kGiB = int64_t{1} << 30;

template <typename T, typename F>
absl::StatusOr<T> Call(F f) {
  std::optional<absl::StatusOr<T>> out;
  f([&out](absl::StatusOr<T> r) { out = std::move(r); });
  return out.value_or(absl::InternalError("done was not called"));
}

void AddGpus(NodeCapabilities& caps, const std::string& model, int64_t memory, int count) {
  for (int i = 0; i < count; ++i) {
    GpuDevice g;
    g.index = i;
    g.model = model;
    g.memory_bytes = memory;
    caps.gpus.push_back(g);
  }
}

// One scheduler and the agents it talks to.
struct World {
  MemoryStore store;
  std::unique_ptr<Scheduler> scheduler;
  std::vector<std::shared_ptr<FakeAgentLink>> links;
  std::vector<uint64_t> sessions;
  std::map<std::string, std::pair<size_t, uint64_t>> running;  // job id -> (node, epoch)
  bool has_workstation = false;  // node 0 is the user's workstation
  uint64_t local_placements = 0;
  // Assignments since the last look, in the order given.
  std::vector<std::string> Collect() {
    std::vector<std::string> out;
    for (size_t n = 0; n < links.size(); ++n) {
      for (const FakeAgentLink::Command& c : links[n]->Take()) {
        if (c.kind != "assign") continue;
        running[c.job_id] = {n, c.epoch};
        if (n == 0 && has_workstation) local_placements++;
        out.push_back(absl::StrCat(c.job_id, "@", n, "#", c.epoch));
      }
    }
    return out;
  }
};

// What one run of both worlds came to.
struct Outcome {
  int first_difference = -1;  // the first step after which the two differed; -1: never
  std::string difference;     // what differed then
  uint64_t succeeded[2] = {};  // fast, reference
  uint64_t local[2] = {};      // placements on the workstation
  double spent[2] = {};        // by every project, over the run
  bool over_cap = false;       // a project spent past its hard cap, in either world
  uint64_t skipped = 0;
  uint64_t decisions[2] = {};
  int waited = 0;  // pending jobs with a reason, seen every 50 steps in the fast world
  uint64_t timeline_mismatches = 0;  // both worlds
  uint64_t timeline_reads = 0;       // workstation waits read in the fast world
};

class FastDecisionsTest : public ::testing::TestWithParam<uint64_t> {
 protected:
  std::unique_ptr<World> MakeWorld(bool fast) {
    auto w = std::make_unique<World>();
    SchedulerOptions o;
    o.seed = 7;  // the same job ids in both worlds
    o.lease_ttl = absl::Hours(24 * 365);
    o.catalog = catalog_;
    o.fast_decisions = fast;
    o.verify_timelines = true;
    auto s = Scheduler::Create(o, &w->store, &clock_);
    EXPECT_THAT(s, IsOk());
    w->scheduler = *std::move(s);
    return w;
  }

  // Runs both worlds on the operations `seed` makes, 1,500 steps.
  Outcome Run(uint64_t seed, bool workstation);

  FakeClock clock_{absl::FromUnixSeconds(1'790'000'000)};  // 2026-09-21, mid-month
  std::shared_ptr<const cost::Catalog> catalog_ = std::make_shared<const cost::Catalog>(
      *cost::Catalog::Create(cost::testing::SmallCatalogData()));
};

Outcome FastDecisionsTest::Run(uint64_t seed, bool workstation) {
  Outcome out;
  std::mt19937_64 rng(seed);
  auto uniform = [&](double lo, double hi) {
    return std::uniform_real_distribution<double>(lo, hi)(rng);
  };
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  std::unique_ptr<World> fast = MakeWorld(true), ref = MakeWorld(false);
  World* worlds[] = {fast.get(), ref.get()};
  std::map<std::string, std::pair<double, bool>> caps;  // project -> (limit, hard)

  // Budgets: one tight hard cap, one loose, one soft; project "d" has none.
  auto set_budget = [&](const std::string& project, double limit, bool hard) {
    Budget b;
    b.project = project;
    b.monthly_limit = limit;
    b.hard_cap = hard;
    caps[project] = {limit, hard};
    for (World* w : worlds) {
      EXPECT_THAT(Call<Budget>([&](auto done) { w->scheduler->SetBudget(b, std::move(done)); }),
                  IsOk());
    }
  };
  double tight = 20;
  set_budget("a", tight, true);
  set_budget("b", 500, true);
  set_budget("c", 50, false);

  // Nodes: the user's workstation (two GPUs) when asked for, rented GPU nodes (some spot),
  // rented CPU nodes. No price schedules: a decision that weighed one is taken again a minute
  // later, the reference's at every node that gains room.
  std::vector<NodeCapabilities> nodes;
  if (workstation) {
    NodeCapabilities c;
    c.provider = "local";
    c.cpu_millis = 16000;
    c.memory_bytes = 64 * kGiB;
    AddGpus(c, "NVIDIA GeForce RTX 3080", 10240LL << 20, 2);
    c.price_per_hour = 0.12;
    nodes.push_back(c);
  }
  for (int i = 0; i < 36; ++i) {
    NodeCapabilities c;
    if (i % 3 != 0) {
      c.provider = "runpod";
      const bool h100 = uniform(0, 1) < 0.4;
      const int count = std::vector<int>{1, 1, 2, 4}[pick(4)];
      AddGpus(c, h100 ? "NVIDIA H100 80GB HBM3" : "NVIDIA A100-SXM4-80GB", 80 * kGiB, count);
      c.spot = uniform(0, 1) < 0.3;
      c.price_per_hour = std::round(uniform(h100 ? 2.0 : 1.2, h100 ? 3.0 : 1.9) * count * 100) /
                         100 * (c.spot ? 0.6 : 1);
      c.cpu_millis = 8000 * std::max(count, 2);
      c.memory_bytes = 32 * kGiB * std::max(count, 2);
    } else {
      c.provider = "aws";
      c.cpu_millis = std::vector<int64_t>{8, 16, 32}[pick(3)] * 1000;
      c.memory_bytes = 64 * kGiB;
      c.price_per_hour = std::round(uniform(0.03, 0.05) * c.cpu_millis / 1000 * 100) / 100;
    }
    nodes.push_back(c);
  }
  for (World* w : worlds) {
    w->has_workstation = workstation;
    for (size_t n = 0; n < nodes.size(); ++n) {
      auto link = std::make_shared<FakeAgentLink>();
      auto session = Call<uint64_t>([&](auto done) {
        w->scheduler->ConnectAgent(absl::StrCat("node-", n), nodes[n], {}, link, std::move(done));
      });
      EXPECT_THAT(session, IsOk());
      w->links.push_back(link);
      w->sessions.push_back(session.value_or(0));
    }
  }

  // Kinds of job: a kind's jobs are alike, as a sweep's are.
  std::vector<JobSpec> kinds;
  for (int k = 0; k < 14; ++k) {
    JobSpec s;
    s.name = absl::StrCat("kind-", k);
    s.run = "true";
    s.project = std::vector<std::string>{"a", "b", "c", "d"}[pick(4)];
    s.resources.cpu_millis = std::vector<int64_t>{1000, 2000, 4000, 8000}[pick(4)];
    s.resources.memory_bytes = std::vector<int64_t>{1, 4, 16}[pick(3)] * kGiB;
    if (uniform(0, 1) < 0.6) {
      s.resources.gpus = std::vector<uint32_t>{1, 1, 2}[pick(3)];
      s.resources.gpu_memory_bytes = std::vector<int64_t>{0, 8, 40}[pick(3)] * kGiB;
    }
    s.placement = static_cast<PlacementPolicy>(pick(4));
    s.spot = static_cast<SpotPolicy>(pick(3));
    if (uniform(0, 1) < 0.2) s.max_cost = std::vector<double>{0.5, 3, 20}[pick(3)];
    if (uniform(0, 1) < 0.7) s.runtime = absl::Minutes(std::vector<int>{10, 40, 120, 300}[pick(4)]);
    kinds.push_back(s);
  }
  // When each lease ends: after 40-100% of its expected length, drawn from the job and its
  // epoch, so the same in both worlds.
  std::map<std::string, absl::Time> ends;
  auto end_of = [&](World& w, const std::string& id, uint64_t epoch) {
    const std::string key = absl::StrCat(id, "#", epoch);
    auto it = ends.find(key);
    if (it != ends.end()) return it->second;
    const Job job = *w.scheduler->GetJob(id);
    // What the scheduler expects the lease to take (the runtime scaled to the node's GPUs; an
    // hour when none is given), so that no budget cap is passed by a job running over.
    const absl::Duration planned = job.lease_reserved;
    const double spread = static_cast<double>(std::hash<std::string>{}(key) % 1000) / 1000;
    return ends[key] = clock_.Now() + planned * (0.4 + 0.6 * spread);
  };
  // Moves time to `until`, reporting each job's end, in both worlds, at its own moment.
  auto run_until = [&](absl::Time until) {
    while (true) {
      World* in = nullptr;
      std::string next;
      absl::Time when = absl::InfiniteFuture();
      for (World* w : worlds) {
        for (const auto& [id, where] : w->running) {
          const absl::Time t = end_of(*w, id, where.second);
          if (t <= until && t < when) when = t, next = id, in = w;
        }
      }
      if (in == nullptr) break;
      clock_.Set(std::max(clock_.Now(), when));
      const auto [n, epoch] = in->running.at(next);
      in->running.erase(next);
      EXPECT_THAT(Call<Job>([&](auto done) {
                    in->scheduler->ReportJob(absl::StrCat("node-", n), in->sessions[n],
                                             JobReport{next, epoch, JobState::kSucceeded, 0, ""},
                                             std::move(done));
                  }),
                  IsOk());
      in->Collect();
    }
    clock_.Set(std::max(clock_.Now(), until));
  };
  // The first job whose state, node or GPUs differ between the worlds; empty when none.
  auto difference = [&] {
    const JobPage a = fast->scheduler->ListJobs({});
    const JobPage b = ref->scheduler->ListJobs({});
    if (a.jobs.size() != b.jobs.size()) return std::string("the job counts differ");
    for (size_t i = 0; i < a.jobs.size(); ++i) {
      const Job& x = a.jobs[i];
      const Job& y = b.jobs[i];
      if (x.id == y.id && x.state == y.state && x.node == y.node &&
          x.gpu_indexes == y.gpu_indexes) {
        continue;
      }
      return absl::StrCat("job ", x.id, " (", x.spec.name, "): fast ", JobStateName(x.state),
                          " on '", x.node, "': ",
                          x.message.empty() ? x.decision.summary : x.message, "; reference ",
                          JobStateName(y.state), " on '", y.node, "': ",
                          y.message.empty() ? y.decision.summary : y.message);
    }
    return std::string();
  };

  const absl::Time start = clock_.Now();
  for (int step = 0; step < 1500; ++step) {
    if (step % 50 == 0) {
      for (const Job& job : fast->scheduler->ListJobs({}).jobs) {
        if (job.state == JobState::kPending && !job.message.empty()) out.waited++;
      }
    }
    const double r = uniform(0, 1);
    if (r < 0.45) {
      JobSpec spec = kinds[pick(kinds.size())];
      spec.priority = uniform(0, 1) < 0.15 ? 10 : 0;
      if (uniform(0, 1) < 0.5) {
        // Deadlines on whole hours, so that jobs of a kind submitted together share one.
        const int64_t hour = absl::ToUnixSeconds(clock_.Now()) / 3600 + 1;
        spec.deadline = absl::FromUnixSeconds((hour + std::vector<int>{1, 3, 12}[pick(3)]) * 3600);
      }
      for (World* w : worlds) {
        EXPECT_THAT(Call<SubmitResult>(
                        [&](auto done) { w->scheduler->Submit(spec, "", std::move(done)); }),
                    IsOk());
      }
    } else if (r < 0.92) {
      // Time goes to the next end of a job, in either world.
      absl::Time when = absl::InfiniteFuture();
      for (World* w : worlds) {
        for (const auto& [id, where] : w->running) {
          when = std::min(when, end_of(*w, id, where.second));
        }
      }
      if (when == absl::InfiniteFuture()) continue;
      run_until(when);
    } else if (r < 0.95) {
      tight += std::round(uniform(1, 10));
      set_budget("a", tight, true);
    } else {
      run_until(clock_.Now() + absl::Minutes(std::round(uniform(1, 30))));
    }
    // The timer, as schedd runs it: what is due (a decision to take again) is taken.
    for (World* w : worlds) {
      w->scheduler->Tick();
      w->Collect();
    }
    if (out.first_difference < 0) {
      std::string d = difference();
      if (!d.empty()) {
        out.first_difference = step;
        out.difference = std::move(d);
      }
    }
    for (World* w : worlds) {
      for (const auto& [project, cap] : caps) {
        // This month's: the run may cross into the next.
        const double spent =
            w->scheduler->Spent(project, MonthStart(clock_.Now()), clock_.Now());
        if (cap.second && spent > cap.first + 1e-6) out.over_cap = true;
      }
    }
  }
  for (int i = 0; i < 2; ++i) {
    for (const Job& job : worlds[i]->scheduler->ListJobs({}).jobs) {
      if (job.state == JobState::kSucceeded) out.succeeded[i]++;
    }
    for (const char* project : {"a", "b", "c", "d"}) {
      out.spent[i] += worlds[i]->scheduler->Spent(project, start, clock_.Now());
    }
    out.local[i] = worlds[i]->local_placements;
    out.decisions[i] = worlds[i]->scheduler->Stats().decisions_total;
    out.timeline_mismatches += worlds[i]->scheduler->Stats().timeline_mismatches_total;
  }
  out.timeline_reads = fast->scheduler->Stats().timeline_reads_total;
  out.skipped = fast->scheduler->Stats().decisions_skipped_total;
  return out;
}

// Without a workstation, jobs wait for money, a deadline or room, and the two agree at every
// step.
TEST_P(FastDecisionsTest, RentedNodesOnlyPlaceAsTheReferenceAtEveryStep) {
  const Outcome o = Run(GetParam(), /*workstation=*/false);
  EXPECT_EQ(o.first_difference, -1) << "step " << o.first_difference << ": " << o.difference;
  EXPECT_FALSE(o.over_cap);
  // The run did what it is for: jobs ran, jobs waited with a reason, decisions were skipped.
  EXPECT_GT(o.succeeded[0], 200u);
  EXPECT_GT(o.waited, 0);
  EXPECT_GT(o.skipped, 0u);
  EXPECT_LT(o.decisions[0], o.decisions[1]);
}

// With the user's workstation the two agree for hundreds of steps and may then part: the
// reference decides every waiting group again at every pass, and with it which groups count as
// queued for the workstation (docs/cost-model.md, "How fast"), so the two can estimate the
// workstation's queue differently and one of them sends a job to a rented node that the other
// keeps waiting. What they come to stays close.
TEST_P(FastDecisionsTest, WithAWorkstationStayCloseToTheReference) {
  const Outcome o = Run(GetParam(), /*workstation=*/true);
  EXPECT_TRUE(o.first_difference < 0 || o.first_difference >= 400)
      << "step " << o.first_difference << ": " << o.difference;
  EXPECT_FALSE(o.over_cap);
  EXPECT_GT(o.succeeded[0], 200u);
  EXPECT_GT(o.local[0], 20u);
  // The workstation's timeline, kept and moved in place, says what a new one would.
  EXPECT_GT(o.timeline_reads, 50u);
  EXPECT_EQ(o.timeline_mismatches, 0u);
  EXPECT_NEAR(static_cast<double>(o.succeeded[0]), static_cast<double>(o.succeeded[1]),
              0.1 * o.succeeded[1])
      << "first difference at step " << o.first_difference << ": " << o.difference;
  EXPECT_NEAR(static_cast<double>(o.local[0]), static_cast<double>(o.local[1]),
              0.15 * o.local[1] + 3);
  EXPECT_NEAR(o.spent[0], o.spent[1], 0.15 * o.spent[1] + 1);
  EXPECT_GT(o.skipped, 0u);
  EXPECT_LT(o.decisions[0], o.decisions[1]);
}

// Seeds 1-40 all pass; CI runs the first twelve (about 30 s).
INSTANTIATE_TEST_SUITE_P(Seeds, FastDecisionsTest, ::testing::Range(uint64_t{1}, uint64_t{13}));

}  // namespace
}  // namespace sched
