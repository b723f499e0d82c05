#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/core/job.h"
#include "server/core/node.h"
#include "server/core/placement.h"
#include "server/cost/price_schedule.h"

namespace sched {

// The cost brain's rules, apart from the Scheduler's state: given each node's figures for one
// job (when it could start, how long the job would take there, what it would cost), which node
// the job goes to, or whether it waits. docs/cost-model.md describes the rules in prose.

// One node as the decision weighs it. Filled by the Scheduler; plain figures, no strings, since
// it is made for every node a job is tried on.
struct Candidate {
  const Node* node = nullptr;
  bool local = false;      // a machine the user owns
  bool spot = false;
  bool fits_now = false;   // room for the job now
  bool too_small = false;  // can never hold the job (its capacity, not its load)
  // Until the node would have room for the job: zero when fits_now; InfiniteDuration when it
  // is not known (rented capacity is not queued for, so it is not estimated in the hot path).
  absl::Duration wait = absl::InfiniteDuration();
  // The job's expected runtime on this node without preemptions.
  absl::Duration runtime = absl::ZeroDuration();
  double price_per_hour = 0;
  double preemptions_per_hour = 0;  // spot only
  // Prices by time of day (null or empty: price_per_hour all day). With a deadline that leaves
  // room, the start may be put off to a cheaper window.
  const cost::PriceSchedule* schedule = nullptr;
  // Best fit, for ties: GPUs and CPU millis left free on the node if the job went there now.
  size_t gpus_left = 0;
  int64_t cpu_left = 0;
  // The job already waits for this node (one of the user's machines).
  bool waited_for = false;
  // A node to be rented (an offer) or one being rented (its agent has not joined yet): it has
  // no room now but will, after `wait`, and may be waited for like the user's own machines.
  bool rental = false;
  // Time paid for on a rented node that is not the job's run: the provisioning of a new node
  // and the idle time before it is given back. Counted in `cost`.
  absl::Duration paid_idle = absl::ZeroDuration();

  // Filled by Decide():
  absl::Time start = absl::InfinitePast();
  absl::Time finish = absl::InfinitePast();
  absl::Duration expected_runtime = absl::ZeroDuration();  // preemption losses included
  double cost = 0;
  // The start was put off to a cheaper window; cost_at_earliest is what starting as soon as
  // possible would cost.
  bool deferred = false;
  double cost_at_earliest = 0;
  OptionVerdict verdict = OptionVerdict::kChosen;
};

// A job waiting for one of the user's machines moves to another only when it would finish at
// least this much sooner there without paying more, or pay less without finishing later.
// Without it, jobs waiting for alike machines trade places at every look (each move makes the
// other queue the longer one), and jobs with no deadline chase cheaper hours days away.
inline constexpr absl::Duration kMoveGain = absl::Minutes(15);

// What a job asks of the decision, from its spec and its project's budget.
struct DecisionRules {
  PlacementPolicy placement = PlacementPolicy::kPreferLocal;
  SpotPolicy spot = SpotPolicy::kAuto;
  absl::Time deadline = absl::InfiniteFuture();
  double max_cost = 0;                 // 0: none
  double budget_room = -1;             // dollars left under a hard cap; negative: no cap
};

struct Choice {
  int chosen = -1;    // index into the candidates; -1: no option at all
  // The job waits for the chosen node: it has no room now, or a cheaper window comes later.
  bool wait = false;
  bool meets_deadline = true;
  LocalBlocker local_blocker = LocalBlocker::kNone;
};

// Expected time to finish `runtime` of work on a node taken back at `rate` times an hour, each
// preemption losing the work since the start (no checkpoints): (e^(rate*T) - 1) / rate. Equal
// to `runtime` at rate 0.
absl::Duration ExpectedWithPreemption(absl::Duration runtime, double rate_per_hour);

// Fills each candidate's start, finish, expected runtime, cost and verdict, and picks:
//  - only nodes the policies allow, within max_cost and the budget, that have room now or are
//    the user's own and will have room (a busy rented node is not waited for: renting another
//    is the alternative);
//  - among those whose expected finish meets the deadline: prefer-local takes a local node with
//    room now; else it waits for a busy local node when that is no dearer than the cheapest
//    node with room; else the cheapest. cheapest, local-only and cloud-only take the cheapest
//    (ties: the earlier finish, then the local node, then best fit, then the name);
//  - when none meets the deadline, the earliest finish.
// A node with a price schedule costs the integral of its prices over the run; with a deadline,
// its start is put off to the cheapest start that still meets it (cost::CheapestStart).
Choice Decide(const DecisionRules& rules, absl::Time now, absl::Span<Candidate> candidates);

// One line for people: what was decided and why, with the figures.
std::string Summary(const DecisionRules& rules, absl::Time now, const Choice& choice,
                    absl::Span<const Candidate> candidates);

// Why `caps` can never hold `r` ("needs 40 GiB of GPU memory, the largest GPU has 24 GiB"), or
// empty when it could.
std::string WhyNeverFits(const Resources& r, const NodeCapabilities& caps);

// The record kept with the job: the chosen candidate first, then up to `max_others` of the
// others, best first; the summary says what was decided and why in one line.
Decision RecordDecision(const DecisionRules& rules, absl::Time now, const Choice& choice,
                        absl::Span<const Candidate> candidates, const Resources& resources,
                        size_t max_others);

}  // namespace sched
