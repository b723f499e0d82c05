#pragma once

#include <cstdint>
#include <map>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "server/cost/price_schedule.h"

namespace sched {

enum class JobState { kPending, kAssigned, kRunning, kSucceeded, kFailed, kCancelled, kStoppedEarly };
inline constexpr int kJobStates = 7;

inline bool IsTerminal(JobState s) {
  return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kCancelled ||
         s == JobState::kStoppedEarly;
}
// True while the job holds a lease on a node.
inline bool IsLeased(JobState s) { return s == JobState::kAssigned || s == JobState::kRunning; }
absl::string_view JobStateName(JobState s);

struct Resources {
  uint32_t gpus = 0;
  int64_t gpu_memory_bytes = 0;
  // gpu_memory_bytes was computed from the spec's model description, not given.
  bool gpu_memory_estimated = false;
  std::vector<std::string> gpu_models;
  int64_t cpu_millis = 0;
  int64_t memory_bytes = 0;
  // One GPU, shared with other such jobs while their gpu_memory_bytes fit it together.
  bool share_gpu = false;
};

enum class PlacementPolicy { kPreferLocal, kLocalOnly, kCheapest, kCloudOnly };
enum class SpotPolicy { kAuto, kSpot, kOnDemand };
absl::string_view PlacementPolicyName(PlacementPolicy p);  // "prefer-local", ...
absl::string_view SpotPolicyName(SpotPolicy p);            // "auto", "spot", "on-demand"

// The model a job trains or serves; parameters == 0 means none was described. Empty strings and
// zeros are defaults the estimator fills in (see ModelDescription in types.proto).
struct ModelDescription {
  int64_t parameters = 0;
  std::string precision;
  std::string method;
  std::string optimizer;
  uint32_t batch_size = 0;
  uint32_t sequence_length = 0;
  bool gradient_checkpointing = false;
  uint32_t lora_rank = 0;
};

// When a failed job runs again (proto RetryPolicy).
struct RetryPolicy {
  uint32_t max_restarts = 0;
  std::vector<int32_t> exit_codes;  // empty: any failure
  absl::Duration backoff = absl::Seconds(10);
  absl::Duration max_backoff = absl::Minutes(10);
  // True when a failure with `exit_code` should restart a job that has restarted `restarts`
  // times.
  bool Restarts(int32_t exit_code, uint32_t restarts) const;
  // The wait before restart number `restart` (1 for the first): backoff doubled each time,
  // at most max_backoff.
  absl::Duration Backoff(uint32_t restart) const;
};

// When a sweep's weak runs stop (proto EarlyStopping).
struct EarlyStopping {
  std::string rule;  // "", "median" or "asha"
  int64_t min_step = 0;
  uint32_t min_runs = 0;
  uint32_t reduction_factor = 0;
  int64_t max_step = 0;
};

// A hyperparameter sweep (proto Sweep): a grid of parameters or a list of runs.
struct SweepSpec {
  std::vector<std::pair<std::string, std::vector<std::string>>> parameters;
  std::vector<std::map<std::string, std::string>> runs;
  uint32_t max_parallel = 0;
  std::string metric;
  bool maximize = false;
  EarlyStopping early_stopping;
  bool empty() const { return parameters.empty() && runs.empty(); }
};

struct JobSpec {
  std::string name;
  std::string project;
  std::string run;
  std::string setup;
  std::vector<std::pair<std::string, std::string>> env;
  // Names in `env` whose values are secret: never shown back (convert's RedactSecrets).
  std::vector<std::string> secret_env;
  Resources resources;
  int32_t priority = 0;
  std::map<std::string, std::string> labels;
  ModelDescription model;
  // Runtime on `runtime_gpu_model` (empty: the catalog's reference GPU); zero: not given.
  absl::Duration runtime = absl::ZeroDuration();
  std::string runtime_gpu_model;
  absl::Time deadline = absl::InfiniteFuture();
  double max_cost = 0;  // dollars; 0: no limit of its own
  PlacementPolicy placement = PlacementPolicy::kPreferLocal;
  SpotPolicy spot = SpotPolicy::kAuto;
  RetryPolicy retry;
  absl::Duration max_duration = absl::ZeroDuration();  // zero: no limit
  absl::Time not_before = absl::InfinitePast();         // InfinitePast: at once
  SweepSpec sweep;  // in a submit: the runs to make; in a run: its sweep's rules
  // The jobs it runs after, and on what: "success", "failure" or "always".
  std::vector<std::pair<std::string, std::string>> after;
  // Artifacts (proto JobSpec.outputs and .inputs): paths in the job's folder it leaves when it
  // succeeds, and (name, job id) of the jobs whose newest checkpoint it starts with.
  std::vector<std::string> outputs;
  std::vector<std::pair<std::string, std::string>> inputs;
};

// One value of a sweep's metric a job reported.
struct MetricSample {
  int64_t step = 0;
  double value = 0;
};

// How one node fared when the scheduler decided where a job goes.
enum class OptionVerdict {
  kChosen,         // the job went there (or waits for it)
  kTooSmall,       // the machine can never hold the job (GPU memory, count, model, RAM, CPU)
  kPolicy,         // the job's placement or spot policy rules it out
  kBusy,           // no room now, and rented capacity is not waited for
  kOverMaxCost,    // expected cost above the job's max_cost
  kOverBudget,     // would take the project past its hard-capped budget
  kMissesDeadline, // expected finish after the deadline
  kDearer,         // meets everything, but another option is cheaper
  kLater,          // as cheap or cheaper, but another option finishes sooner or is local
  // New values go last, and kLastOptionVerdict follows: stored decisions are read by name.
};
inline constexpr OptionVerdict kLastOptionVerdict = OptionVerdict::kLater;
absl::string_view OptionVerdictName(OptionVerdict v);  // "chosen", "too-small", ...

struct DecisionOption {
  std::string node;
  std::string provider;
  bool local = false;  // a machine the user owns
  bool spot = false;
  bool fits_now = false;
  absl::Time start = absl::InfinitePast();   // expected
  absl::Time finish = absl::InfinitePast();  // expected, preemption losses included
  // Expected time on the node: the runtime scaled to its GPUs plus, on spot, the expected work
  // redone after preemptions.
  absl::Duration runtime = absl::ZeroDuration();
  double price_per_hour = 0;
  double cost = 0;  // expected dollars for `runtime`
  // Put off to a cheaper time-of-day window: `start` is the window's, and starting as soon as
  // possible would cost cost_at_earliest.
  bool deferred = false;
  double cost_at_earliest = 0;
  OptionVerdict verdict = OptionVerdict::kChosen;
  std::string reason;  // for people: "needs 40 GiB of GPU memory, has 24 GiB"
  // A node to be rented: an offer (`node` is "provider/offer id") or a rental on its way.
  bool rental = false;
};

// What kept the job off the user's own machines, when it went elsewhere.
enum class LocalBlocker {
  kNone,      // it runs locally, or there is no local machine
  kTooSmall,  // no local machine can ever hold it
  kBusy,      // local machines were busy and waiting for them would cost more
  kDeadline,  // no local machine could finish by the deadline (busy, or too slow)
  kPolicy,    // the job asked for cloud-only
  kCost,      // a local machine was free but the policy (cheapest) found the cloud cheaper
  // New values go last, and kLastLocalBlocker follows: stored decisions are read by name.
};
inline constexpr LocalBlocker kLastLocalBlocker = LocalBlocker::kCost;
absl::string_view LocalBlockerName(LocalBlocker b);  // "none", "too-small", ...

// Why a job went where it went (or waits), with the figures of the options weighed.
struct Decision {
  absl::Time time = absl::InfinitePast();  // InfinitePast: never decided
  bool placed = false;                     // false: the job waits
  std::string summary;                     // one line for people
  // The chosen option first (when there is one), then the best of the others, ranked.
  std::vector<DecisionOption> options;
  uint32_t nodes_considered = 0;
  uint32_t nodes_not_shown = 0;  // considered but left out of `options` for brevity
  LocalBlocker local_blocker = LocalBlocker::kNone;
};

// A job as the scheduler keeps it. Plain data: the Scheduler owns the rules.
// One lease of a job (proto JobAttempt).
struct JobAttempt {
  uint32_t attempt = 0;
  uint64_t epoch = 0;
  std::string node;
  std::string provider;
  bool spot = false;
  absl::Time start = absl::InfinitePast();
  absl::Time end = absl::InfinitePast();  // InfinitePast while it runs
  std::string end_reason;
  bool preempted = false;
  std::string resumed_from;
  uint64_t resumed_from_seq = 0;
};

struct Job {
  std::string id;
  uint64_t seq = 0;  // submit order
  JobSpec spec;
  JobState state = JobState::kPending;
  uint32_t attempt = 1;
  uint64_t epoch = 0;
  std::string node;
  std::vector<uint32_t> gpu_indexes;
  absl::Time create_time = absl::InfinitePast();
  absl::Time start_time = absl::InfinitePast();
  absl::Time finish_time = absl::InfinitePast();
  absl::Time update_time = absl::InfinitePast();
  int32_t exit_code = 0;
  std::string message;
  bool cancel_requested = false;
  std::string request_id;
  // The last attempt's agent reported the end itself (not a lease expiry); a repeat of that
  // report is acknowledged again.
  bool finished_by_agent = false;
  // The current lease, for the ledger: when it began and what the node cost then. Cleared when
  // the lease ends and its ledger entry is written.
  absl::Time lease_start = absl::InfinitePast();
  double lease_price_per_hour = 0;
  cost::PriceSchedule lease_price_schedule;
  std::string lease_provider;
  // How long the lease is expected to last, as reckoned when it began (not stored: reckoned
  // again at start-up).
  absl::Duration lease_reserved = absl::ZeroDuration();
  // The figures behind the last wait message (not stored): the same figures, the same message.
  uint64_t wait_fingerprint = 0;
  // The last placement decision: set when the job is assigned, and while it waits by choice.
  Decision decision;
  // Every lease, oldest first; the last kMaxAttemptsKept.
  std::vector<JobAttempt> attempts;
  static constexpr size_t kMaxAttemptsKept = 50;
  // Leases lost to preemption notices; not counted against SchedulerOptions::max_attempts.
  uint32_t preemptions = 0;
  // Restarts after failed exits (spec.retry).
  uint32_t restarts = 0;
  // A pending job is held back until then (not_before, a restart's backoff); InfinitePast: not
  // held.
  absl::Time hold_until = absl::InfinitePast();
  // What its ended attempts took: time on nodes and dollars (for max_duration and max_cost).
  absl::Duration run_time = absl::ZeroDuration();
  double spent = 0;
  // Why schedd is stopping it (a limit, or early stopping); it ends FAILED, or STOPPED_EARLY
  // when stopped_early, with this once it stops.
  std::string stop_reason;
  bool stopped_early = false;
  // A run of a sweep: the sweep, its index and parameters.
  std::string sweep_id;
  uint32_t array_index = 0;
  std::map<std::string, std::string> parameters;
  // Pending, held until a run of its sweep ends (max_parallel).
  bool waiting_for_slot = false;
  // The last value of each metric it reported, the step of its last report, and its sweep's
  // metric step by step (the last kMaxHistory reports).
  std::map<std::string, double> metrics;
  int64_t metric_step = -1;
  std::vector<MetricSample> history;
  static constexpr size_t kMaxHistory = 1000;
  // Being stopped on a local node to make room for this higher-priority job (PreemptForPriority).
  std::string yield_to;
  // When a hold on it ended and it joined the queue (not stored), for how long it has waited.
  absl::Time queued_since = absl::InfinitePast();
};

}  // namespace sched
