#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/core/agent_link.h"
#include "server/core/decision.h"
#include "server/core/job.h"
#include "server/core/ledger.h"
#include "server/core/node.h"
#include "server/core/placement.h"
#include "server/core/rental.h"
#include "server/core/store.h"
#include "server/cost/catalog.h"

namespace sched {

struct SchedulerOptions {
  // A leased job goes back to the queue when its agent has not renewed it for this long.
  absl::Duration lease_ttl = absl::Seconds(10);
  // How often agents are asked to heartbeat; well under lease_ttl.
  absl::Duration heartbeat_interval = absl::Seconds(2);
  // Extra lease time given at start, so agents can reconnect to a restarted schedd.
  absl::Duration restart_grace = absl::Seconds(10);
  // A job whose lease expired this many times ends FAILED instead of going back to the queue.
  uint32_t max_attempts = 10;
  // A submit to a project that has this many jobs pending is refused (RESOURCE_EXHAUSTED);
  // 0: no limit.
  uint64_t max_pending_per_project = 1'000'000;
  // Output kept per job, counted since schedd started; past it a line says so and the rest is
  // dropped. 0: no limit.
  uint64_t max_log_bytes_per_job = uint64_t{1} << 30;
  // Seeds job ids; 0 picks a random seed.
  uint64_t seed = 0;
  // What a job that gives no runtime is expected to run, for budget caps and max_cost.
  absl::Duration budget_reservation = absl::Hours(1);
  // GPU models and their relative speed: a runtime given for one GPU is scaled to the node's
  // (a job expected to run 1 h on an A100 holds an RTX 3080 about 3.3 h). Null: not scaled.
  std::shared_ptr<const cost::Catalog> catalog;
  // How often a spot node is taken back, an hour, when the catalog does not say for its provider.
  double default_spot_preemptions_per_hour = 0.05;
  // Successful runs kept per (project, job name) to learn a runtime for jobs that give none.
  size_t history_runs = 20;
  // Options besides the chosen one that a job's decision record keeps.
  size_t decision_options = 5;
  // The fast paths of placement: a waiting group's last decision stands until a node that gained
  // room could beat it (PendingQueue::Standing), and rented nodes are weighed cheapest first
  // until the rest cannot win (ScanRented). False: every waiting group is decided again on
  // every node that gains room, against every node with room; slow, and the reference the fast
  // paths are tested against.
  bool fast_decisions = true;
  // For tests: every wait read from a node's kept timeline (updated in place as jobs come and
  // go) is checked against a timeline built afresh. A difference of more than the time since
  // the kept one was started is counted in SchedulerStats::timeline_mismatches_total.
  bool verify_timelines = false;
  // Weighted fair share of the user's own machines (local nodes) between projects, by weight
  // (> 0; a project not named weighs 1). Among jobs of the same priority, the project that
  // holds the least of those machines for its weight now goes first (a job's part of a machine
  // is its dominant share: the largest of its GPUs, CPUs and memory over the machine's); when
  // equal, the one that used the least of them lately (share-seconds, halved every
  // fair_share_half_life); then submit order. Empty: queue order alone.
  std::map<std::string, double> fair_share;
  absl::Duration fair_share_half_life = absl::Hours(1);
};

template <typename T>
using Done = absl::AnyInvocable<void(absl::StatusOr<T>)>;

struct SubmitResult {
  Job job;                // for a sweep: its first run
  bool existing = false;  // the request id matched an earlier submit
  std::string sweep_id;   // for a sweep: its id and its runs' job ids in index order
  std::vector<std::string> job_ids;
};

// A sweep's runs in index order, and the best of them (proto SweepStatus).
struct SweepView {
  std::string id;
  std::vector<Job> runs;
  int best_index = -1;
};

struct JobQuery {
  std::vector<JobState> states;  // empty: all
  std::string project;           // empty: all
  size_t limit = 500;
  uint64_t after_seq = 0;  // paging: jobs submitted after this one
};

struct JobPage {
  std::vector<Job> jobs;
  uint64_t next_after_seq = 0;  // 0: no more pages
};

// A job an agent holds, named by the assignment it came from.
struct JobRef {
  std::string job_id;
  uint64_t epoch = 0;
};

struct JobReport {
  std::string job_id;
  uint64_t epoch = 0;
  JobState state = JobState::kRunning;  // kRunning or a terminal state
  int32_t exit_code = 0;
  std::string message;
  // With a terminal state: the node is being taken back; the job goes back to the queue.
  bool preempted = false;
  // With kRunning: the checkpoint the attempt resumed from.
  std::string resumed_from;
  uint64_t resumed_from_seq = 0;
};

struct SchedulerStats {
  uint64_t jobs_by_state[kJobStates] = {};  // indexed by JobState
  uint64_t submits_total = 0;
  uint64_t assignments_total = 0;
  // Decisions the cost brain took (a job weighed against nodes), and waiting groups left as they
  // were because the node that gained room could not beat their last decision.
  uint64_t decisions_total = 0;
  uint64_t decisions_skipped_total = 0;
  // With SchedulerOptions::verify_timelines: waits read from kept timelines, and those that
  // a timeline built afresh contradicts.
  uint64_t timeline_reads_total = 0;
  uint64_t timeline_mismatches_total = 0;
  uint64_t lease_expiries_total = 0;
  uint64_t stale_reports_total = 0;
  // Preemption notices agents passed on, and leases that ended in a preemption.
  uint64_t preemption_notices_total = 0;
  uint64_t preemptions_total = 0;
  // Failed jobs started again by their retry policy; jobs stopped for max_duration or max_cost.
  uint64_t restarts_total = 0;
  uint64_t limit_stops_total = 0;
  // Sweeps' runs stopped by their early-stopping rule; metric points stored.
  uint64_t early_stops_total = 0;
  uint64_t metric_points_total = 0;
  // Jobs stopped on a user's machine to make room for a higher-priority one.
  uint64_t priority_preemptions_total = 0;
  // GPUs that owners of the machines took back from jobs (agents' heartbeats), over time.
  uint64_t owner_gpu_takes_total = 0;
  // Jobs that stepped aside because the owner took their GPU (back to the queue).
  uint64_t owner_step_asides_total = 0;
  uint64_t log_bytes_dropped_total = 0;  // output past a job's limit
  uint64_t agents_connected = 0;
  uint64_t nodes_total = 0;
};

// The scheduler: job queue, state machine, leases with fencing epochs, and placement. Plain
// C++: no RPC, no storage engine, no clock of its own.
//
// Thread-safe. Every change is appended to the Store under the lock, so the store's order is the
// order of the changes; a method's `done` runs once its change is durable, and commands to
// agents (AgentLink) go out only after the change that caused them is durable. `done` and the
// links are called without the lock held, possibly inside the method.
//
// Time moves only through Tick(), which production calls from a timer and tests call directly.
// The Store must outlive the Scheduler.
class Scheduler {
 public:
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(SchedulerOptions options,
                                                           Store* store, const Clock* clock);
  ~Scheduler();

  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // ---- Users ----
  // Queues a job. A non-empty `request_id` seen before returns that job (existing = true).
  void Submit(JobSpec spec, std::string request_id, Done<SubmitResult> done);
  // By id or unique id prefix. NOT_FOUND, or INVALID_ARGUMENT for an ambiguous prefix.
  absl::StatusOr<Job> GetJob(absl::string_view id_or_prefix) const;
  JobPage ListJobs(const JobQuery& query) const;
  void Cancel(absl::string_view id_or_prefix, std::string reason, Done<Job> done);
  // Full id for an id or unique prefix.
  absl::StatusOr<std::string> ResolveJobId(absl::string_view id_or_prefix) const;
  // Where `spec` would go if it were submitted now, and every node's figures, ranked; changes
  // nothing. The errors of Submit for a bad spec.
  absl::StatusOr<Decision> Estimate(JobSpec spec) const;

  // ---- Operators ----
  std::vector<Node> ListNodes() const;
  absl::StatusOr<Node> GetNode(absl::string_view name) const;
  void Cordon(absl::string_view name, bool cordon, Done<Node> done);
  void Drain(absl::string_view name, Done<Node> done);

  // ---- Agents ----
  // OK when `node` holds the lease of job `ref.job_id` at `ref.epoch` (the job is assigned or
  // running there); NOT_FOUND for an unknown job; FAILED_PRECONDITION otherwise (a stale epoch:
  // the job was given to another node, or ended). For uploads that ride beside the stream
  // (checkpoints).
  absl::Status CheckLease(const std::string& node, const JobRef& ref) const;
  // A new stream from agent `name`. Replaces any earlier session of that node. `running` are the
  // jobs the agent still runs; those whose lease is no longer theirs are stopped, and jobs leased
  // to the node that the agent does not hold go back to the queue. `done` gets the session id
  // that every later call from this stream passes.
  void ConnectAgent(const std::string& name, NodeCapabilities caps, std::vector<JobRef> running,
                    std::shared_ptr<AgentLink> link, Done<uint64_t> done);
  // Agent `name` got a preemption notice (`source`: "sigterm", "aws", ...): no new work goes to
  // the node on this session; its jobs report their end with JobReport::preempted.
  absl::Status NotePreempting(const std::string& name, uint64_t session, const std::string& source,
                              int64_t seconds_left);
  // The stream ended. Leases stay until their TTL, so a quick reconnect loses nothing.
  void DisconnectAgent(const std::string& name, uint64_t session);
  // Renews the leases in `running`; stale ones are told to stop. FAILED_PRECONDITION when the
  // session is no longer current (the agent must reconnect).
  // The GPUs the node's owner uses now (from each heartbeat; the agent has stepped its jobs on
  // them aside): nothing is placed on them until a later call leaves them out. Indexes the node
  // does not have are ignored. `detail` says who, for people.
  absl::Status SetOwnerGpus(const std::string& name, uint64_t session,
                            const std::set<uint32_t>& gpus, const std::string& detail);
  absl::Status Heartbeat(const std::string& name, uint64_t session,
                         const std::vector<JobRef>& running);
  // A job started or ended. FAILED_PRECONDITION for a stale session or epoch; NOT_FOUND for an
  // unknown job. A repeated final report of the same attempt is acknowledged again.
  void ReportJob(const std::string& name, uint64_t session, JobReport report, Done<Job> done);
  // Stores a piece of a job's output; refused like ReportJob when stale.
  absl::Status AppendLog(const std::string& name, uint64_t session, const JobRef& ref,
                         LogStreamKind stream, std::string data);
  // Metrics the job reported (docs/sweeps.md); refused like ReportJob when stale, and
  // INVALID_ARGUMENT for a bad name, value or step. A run of a sweep whose early-stopping rule
  // says it is behind is stopped (like a cancel) and ends STOPPED_EARLY.
  struct MetricReport {
    int64_t step = 0;
    std::string name;
    double value = 0;
  };
  absl::Status ReportMetrics(const std::string& name, uint64_t session, const JobRef& ref,
                             const std::vector<MetricReport>& points);
  // A sweep by id or unique prefix: NOT_FOUND, or INVALID_ARGUMENT for an ambiguous prefix.
  absl::StatusOr<SweepView> GetSweep(absl::string_view id_or_prefix) const;

  // ---- Rented capacity (the autoscaler) ----
  // The offers the providers make now: candidates of PlanRentals and Estimate.
  void SetOffers(std::vector<Offer> offers, RentalOptions options);
  // Weighs the pending jobs (in queue order, up to RentalOptions::max_jobs) against the nodes
  // as Schedule does plus the rented nodes on their way and the offers, and says which jobs
  // would go to which; each such job's message and decision say what it waits for. New nodes
  // of an offer are packed: a job goes on a node planned in the same pass when it fits there.
  void PlanRentals(Done<RentalPlan> done);
  // Records a node being rented (record.rental set, in kProvisioning): not schedulable until its
  // agent joins; the time no job holds it is charged to the rental's owner from now on.
  // ALREADY_EXISTS for a name in use.
  void RentNode(NodeRecord record, Done<Node> done);
  // Changes a rental's phase, instance id or message. To kGone: the machine is no longer paid
  // for; jobs still leased there go back to the queue. NOT_FOUND for an unknown node;
  // FAILED_PRECONDITION for a node that is not rented or already gone, or for a move back.
  void UpdateRental(const std::string& name, RentalUpdate update, Done<Node> done);

  // ---- Money ----
  // Creates or replaces a project's budget. INVALID_ARGUMENT names the bad field.
  void SetBudget(Budget budget, Done<Budget> done);
  // NOT_FOUND when the project has none.
  absl::StatusOr<Budget> GetBudget(absl::string_view project) const;
  std::vector<Budget> ListBudgets() const;
  // The ledger entries that overlap [since, now]: closed leases, and the leases still open as
  // entries ending now. In (job id, epoch) order.
  std::vector<LedgerEntry> Ledger(absl::Time since) const;
  // Dollars `project` spent in [from, to), open leases counted up to now.
  double Spent(absl::string_view project, absl::Time from, absl::Time to) const;
  // Dollars `project` spent since the start of this calendar month (UTC).
  double SpentThisMonth(absl::string_view project) const;
  // Spending in [since, now], grouped; `since` InfinitePast: the start of this month.
  CostReport Costs(absl::Time since, CostGroup group, const std::string& project) const;

  // Expires leases and silent agents. Call at least every heartbeat interval.
  void Tick();

  // ---- Feeds ----
  // `fn` sees every job change once it is durable, in commit order. Must not block or call
  // back into the Scheduler.
  uint64_t SubscribeJobs(absl::AnyInvocable<void(const Job&)> fn);
  // `fn` sees every stored log record.
  uint64_t SubscribeLogs(absl::AnyInvocable<void(const std::string& job_id, const LogRecord&)> fn);
  void Unsubscribe(uint64_t id);
  // Runs `fn` once every change made before the call is durable; at once when nothing is
  // pending. What a reader saw before the call may be ahead of the disk until then.
  void WhenDurable(absl::AnyInvocable<void()> fn);

  absl::StatusOr<std::vector<LogRecord>> ReadLogs(const std::string& job_id, uint64_t from_index,
                                                  size_t max) const;

  SchedulerStats Stats() const;
  // How long each project's oldest pending job has waited since it was submitted.
  std::map<std::string, absl::Duration> OldestPendingAge() const;
  const SchedulerOptions& options() const { return options_; }

  // How much work a job is, for the runtime on any node: learned or given once, scaled per node.
  struct Work {
    bool known = false;         // given in the spec or learned from history
    bool from_history = false;
    double gpu_work_hours = 0;  // hours on one reference GPU; 0: cannot be scaled
    absl::Duration plain;       // as given or learned, unscaled
  };

 private:
  // A job holding part of a node until `end`, in the expected-wait timeline.
  struct Holder {
    absl::Time end;
    int64_t cpu = 0, memory = 0;
    uint64_t gpus = 0;  // bit i: GPU index i (GpuMask)
  };
  static bool EndsLater(const Holder& a, const Holder& b) { return a.end > b.end; }
  // A node's expected-wait timeline: its running jobs' expected ends, then the jobs waiting for
  // it started in queue order, with the state saved every few jobs so that the wait of a job
  // behind any of them is found without starting over. Built on demand; valid while the node's
  // jobs and waiting jobs are as they were (its version and its waiting groups' versions), and
  // for at most a minute of the clock, never past the first expected end of a running job.
  // Times in it are absolute, so a wait read later is shorter by the time gone by.
  struct WaitTimeline {
    uint64_t node_version = ~uint64_t{0};  // base is of this version of the node
    uint64_t groups_version = ~uint64_t{0};
    absl::Time built_at = absl::InfinitePast();
    absl::Time valid_until = absl::InfinitePast();
    struct Item {
      PendingQueue::Key key;
      const Resources* resources = nullptr;
      absl::Duration runtime;
      uint64_t usable = 0;  // the node's GPUs that suit it (UsableGpus)
    };
    std::vector<Item> items;  // in queue order
    bool truncated = false;   // more jobs wait than items holds
    struct State {
      absl::Time t;
      int64_t alloc_cpu = 0, alloc_memory = 0;
      uint64_t busy_gpus = 0;
      std::vector<Holder> ends;  // a min-heap on end
    };
    // saved[i]: before items[i * kSaveEvery]; saved as far as jobs have been asked about
    std::vector<State> saved;
    State base;                // the running jobs alone, at built_at
    // When each job asked about would start, as found (InfiniteFuture: never, or too far back
    // to say); of the job's key, since the timeline says where it stands in the queue.
    absl::flat_hash_map<PendingQueue::Key, absl::Time> starts;
  };
  static constexpr size_t kSaveEvery = 16;
  static constexpr absl::Duration kTimelineLife = absl::Minutes(1);
  static constexpr size_t kMaxWaitingAhead = 256;

  // The spend index of one project, for the month starting spend_month_ (turned over by Tick).
  struct ProjectSpend {
    double closed = 0;      // ledger entries, inside the month
    double committed = 0;   // open leases: LeaseCommitment from the month's start
    // Open priced leases by expected end: those past it cost more as they run.
    absl::btree_set<std::pair<absl::Time, const Job*>> open_by_end;
    // Leases past their expected end, moved here by Tick with the time their overrun counts
    // from; those without a price schedule are also summed, so their cost is
    // overrun_rate * now - overrun_base (in hours since the Unix epoch).
    absl::flat_hash_map<const Job*, absl::Time> overrun;
    absl::flat_hash_map<const Job*, absl::Time> overrun_scheduled;  // those with a schedule
    double overrun_rate = 0;
    double overrun_base = 0;
    // SpentAndCommitted's last answer, good while spend_version_ and the clock are as then.
    mutable uint64_t memo_version = ~uint64_t{0};
    mutable absl::Time memo_at;
    mutable double memo = 0;
  };
  struct NodeEntry {
    Node node;
    std::shared_ptr<AgentLink> link;
    uint64_t session = 0;
    std::map<std::string, const Job*> jobs;  // leased to this node, by id
    // Pending jobs that decided to wait for this node, in queue order, with their groups
    // (valid while the job waits: a job leaves `waiting` before it leaves the queue).
    struct Waiter {
      Job* job = nullptr;
      const PendingQueue::Group* group = nullptr;
    };
    absl::btree_map<PendingQueue::Key, Waiter> waiting;
    uint64_t version = 0;          // raised when its jobs change
    uint64_t waiting_version = 0;  // raised when a job starts or stops waiting for it
    // Its keys in the price index (rented nodes): its cheapest hour, and that per unit of GPU
    // speed; negative when not indexed.
    double price_key = -1;
    double gpu_price_key = -1;
    size_t price_slot = PriceIndex::kNone;  // its places in those indexes
    size_t gpu_price_slot = PriceIndex::kNone;
    mutable WaitTimeline timeline;  // written only under the exclusive lock
  };


  // Successful runs of one (project, name), newest last: hours on one reference GPU (0 when the
  // GPU was unknown or there was none) and wall-clock hours.
  struct RunHistory {
    std::vector<std::pair<double, double>> runs;
  };

  // The effects of one call, applied after its store batch is durable.
  struct Outbox {
    StoreBatch batch;
    uint64_t ticket = 0;
    uint64_t publish_seq = 0;  // set with a batch: the events go out in this order
    std::vector<absl::AnyInvocable<void()>> commands;
    std::vector<Job> events;
  };

  Scheduler(SchedulerOptions options, Store* store, const Clock* clock);
  absl::Status LoadState() ABSL_LOCKS_EXCLUDED(mu_);

  // Appends the outbox's batch to the store; called with the lock held, so that store order is
  // change order.
  void Seal(Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `done(status)`, then the commands and events, once the outbox is durable.
  void Deliver(Outbox out, absl::AnyInvocable<void(absl::Status)> done) ABSL_LOCKS_EXCLUDED(mu_);
  template <typename T>
  void Finish(Outbox out, absl::StatusOr<T> result, Done<T> done) ABSL_LOCKS_EXCLUDED(mu_);
  // Runs `locked(outbox)` under the lock, then Finish.
  template <typename T, typename Locked>
  void Apply(Locked locked, Done<T> done) ABSL_LOCKS_EXCLUDED(mu_);
  // Hands the events of outbox `seq` to the subscribers once those of every earlier outbox have
  // gone: callbacks of consecutive batches may run on different threads at once.
  void Publish(uint64_t seq, std::vector<Job> events) ABSL_LOCKS_EXCLUDED(sub_mu_);

  absl::StatusOr<SubmitResult> SubmitLocked(JobSpec spec, std::string request_id, Outbox& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Refuses a submit of `jobs` more jobs to a project at its pending cap.
  absl::Status CheckPendingRoom(const std::string& project, size_t jobs) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // A new pending job of `spec`, stored in the maps but not yet queued, held or written.
  Job& NewJob(JobSpec spec, std::string request_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues a new job (or holds it until its not_before) and writes it.
  void Enqueue(Job& job, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes a sweep's runs; those past max_parallel wait for a slot.
  absl::StatusOr<SubmitResult> SubmitSweepLocked(JobSpec spec, std::string request_id,
                                                 Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  SubmitResult ResultOf(const Job& job, bool existing) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Lets the runs of sweeps that lost a run (sweeps_freed_) take the free slots, in index
  // order. Called by Seal, so every change that ends a run fills its slot in the same batch.
  void FillSweepSlots(Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Where `job`'s dependencies (spec.after) stand: `never` says why it can no longer run,
  // `waiting` what it still waits for; both empty: it may go.
  struct DependencyCheck {
    std::string never;
    std::string waiting;
  };
  DependencyCheck CheckDependencies(const Job& job) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The jobs held for jobs that ended since (deps_ended_): queued when every dependency is met,
  // cancelled when one never can be (and so on down the chain). Called by Seal.
  void ReleaseDependents(Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues a job whose holds are over (or holds it until its not_before).
  void QueueReleased(Job& job, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ReportMetricsLocked(const std::string& name, uint64_t session, const JobRef& ref,
                                   const std::vector<MetricReport>& points, Outbox& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops a leased job like a cancel, to end FAILED (or STOPPED_EARLY) with `reason`.
  void StopLeased(Job& job, std::string reason, bool early, Outbox& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Job> CancelLocked(absl::string_view id, std::string reason, Outbox& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<uint64_t> ConnectLocked(const std::string& name, NodeCapabilities caps,
                                         const std::vector<JobRef>& running,
                                         std::shared_ptr<AgentLink> link, Outbox& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Job> ReportLocked(const std::string& name, uint64_t session,
                                   const JobReport& report, Outbox& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Node> SetCordonLocked(absl::string_view name, bool cordon, bool drain,
                                       Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::StatusOr<std::string> ResolveLocked(absl::string_view id_or_prefix) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The node of that name, or null.
  NodeEntry* FindNode(absl::string_view name) const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    auto it = node_index_.find(name);
    return it == node_index_.end() ? nullptr : it->second;
  }
  // The node of that name, added (empty) when there is none.
  NodeEntry& EntryFor(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<NodeEntry*> SessionNode(const std::string& name, uint64_t session)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The job `ref` names, if it is leased to `node` under that epoch; FAILED_PRECONDITION if not.
  // OK when `job` is leased to `node` at `ref.epoch`, else FAILED_PRECONDITION saying why.
  static absl::Status LeaseHeld(const Job& job, const std::string& node, const JobRef& ref);
  absl::StatusOr<Job*> LeasedJob(const std::string& node, const JobRef& ref)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // lease_expiry_ and expiry_order_ together.
  void SetLeaseExpiry(const Job& job, absl::Time expiry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseLeaseExpiry(const Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A heartbeat (or a connect) from the node's agent at `when`: heard_ follows.
  void MarkHeard(NodeEntry& entry, absl::Time when) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Renews the refs that are current (repeating the Cancel of a job being cancelled, in case
  // the first was lost with a stream); queues a Stop for the rest.
  void RenewLeases(NodeEntry& entry, const std::vector<JobRef>& refs, Outbox& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void SetState(Job& job, JobState state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PutJob(const Job& job, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PutNode(const NodeRecord& record, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Assign(Job& job, NodeEntry& entry, std::vector<uint32_t> gpus, Decision decision,
              Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Allocate(NodeEntry& entry, const Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Release(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the ledger entry of `job`'s lease, if it held a priced node, and clears the lease.
  void MeterLease(Job& job, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A rented node's time without jobs: ends it (a job takes the node, or the node is given
  // back) with a ledger entry for the owner; starts it when its last job let go.
  void CloseUnleased(NodeEntry& entry, absl::Time until, Outbox& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OpenUnleasedIfIdle(const std::string& node, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The open part of a rented node's time without jobs, as a ledger entry ending `now`.
  LedgerEntry UnleasedEntry(const NodeEntry& entry, absl::Time now) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // A rented node's dollars so far: entries written, leases open on it, its open unleased time.
  double RentalCost(const NodeEntry& entry, absl::Time now) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // A copy of the node for the outside, with the figures only the Scheduler has.
  Node View(const NodeEntry& entry, absl::Time now) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  static void NoteRentalEvent(Rental& rental, absl::Time now, RentalPhase phase,
                              const std::string& message);
  absl::StatusOr<RentalPlan> PlanLocked(Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Node> UpdateRentalLocked(const std::string& name, RentalUpdate update,
                                          Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Each offer as a candidate for `job` into `cs`: a new node, ready after its provisioning.
  void AddOfferCandidates(const Job& job, const Work& work, std::vector<Candidate>& cs) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // What the cost model derives from a node's capabilities (Node's derived fields).
  void ComputeNodeFacts(Node& node) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The open lease of a leased job as a ledger entry ending `now`.
  LedgerEntry OpenEntry(const Job& job, absl::Time now) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The lease of `job` ends without a report from its agent (or, `preempted`, with one that
  // says its node is being taken back): back to the queue unless cancelled or out of attempts
  // (preemptions do not count).
  void EndLease(Job& job, const std::string& reason, Outbox& out, bool preempted = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Closes the record of the job's current lease (Job::attempts) and counts its spot hours and
  // preemption for the provider's spot risk.
  void EndAttempt(Job& job, const std::string& reason, bool preempted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The preemption rate to expect of a spot node of `provider`: the catalog's (`prior`), as if
  // seen over kRiskPriorHours, with the preemptions and spot hours seen here added to it.
  double SpotRate(const std::string& provider, double prior) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // After a preemption: the provider's spot nodes take the new rate, and waiting jobs are
  // decided again.
  void RefreshSpotRisk(const std::string& provider) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A pending job held out of the queue until `until` (not_before, a restart's backoff), with
  // `why` as its message; Unhold forgets the hold (no-op when there is none).
  void Hold(Job& job, absl::Time until, std::string why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unhold(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues the held jobs whose time has come; true if any.
  bool ReleaseHolds(absl::Time now, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Why `job` has passed its max_duration or max_cost at `now` (its open lease counted), or
  // empty.
  std::string LimitPassed(const Job& job, absl::Time now) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // When a leased job could first pass a limit, for Tick to look then (nothing without limits).
  void SetLimitCheck(const Job& job, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ClearLimitCheck(const Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops the leased jobs past a limit (like a cancel: SIGTERM, then they end FAILED).
  void CheckLimits(absl::Time now, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When a pending job waits for room on one of the user's machines that lower-priority jobs
  // hold, stops the fewest of them (lowest priority, newest first) that make room: like a
  // cancel, so they checkpoint, and then they go back to the queue as preempted (Job::yield_to).
  // One node at a time, and not again while its jobs are stopping. First completes or ends the
  // reservations made earlier: true when one ended (its node has room for others again).
  // Fair share (SchedulerOptions::fair_share): a job's part of a machine; a project's weight;
  // its use of the user's machines, decayed to `now`; adding a lease's use as it ends.
  static double DominantShare(const Job& job, const Node& node);
  double FairWeight(const std::string& project) const;
  double PastUse(const std::string& project, absl::Time now) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void AddPastUse(const Job& job, const Node& node, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool PreemptForPriority(absl::Time now, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Once the jobs stopped on `entry` for a higher-priority one have all ended, places that job
  // there when it is still first in the queue, fits and its money rules allow it, and ends the
  // reservation either way. Also ends a reservation past its time or whose job left the queue.
  // True when the reservation ended.
  bool CompleteReservation(NodeEntry& entry, absl::Time now, Outbox& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Places pending jobs (only `job` when given) while nodes have room. Every change that gives
  // a node room calls GainedRoom() and then, before the lock is released, Schedule().
  void Schedule(Outbox& out, Job* job = nullptr) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void GainedRoom(NodeEntry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Schedulable nodes with free CPU; forgets the others until they gain room again.
  std::vector<const Node*> OpenNodes() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The cost brain's choice for `job` among `nodes` (those with room; null: every node with
  // room, through ScanRented) and the user's own machines (decision.h). A job that waits by choice, or that only money holds back, gets the
  // reason in its message (stored when it changed). `record`, when given, receives the decision
  // of a placement.
  std::optional<Placement> PlaceWithin(Job& job, const std::vector<const Node*>* nodes,
                                       Outbox& out, Decision* record = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Candidates for `job` into `cs`: each of `nodes` with room for it, then every local node;
  // with `everything`, every schedulable node whatever its room (for Estimate).
  void Gather(const Job& job, const Work& work, const DecisionRules& rules,
              const std::vector<const Node*>* nodes, bool everything, bool cached, absl::Time now,
              std::vector<Candidate>& cs) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Every rented node with room for `job` that could be its choice, into `cs`: walks the price
  // index cheapest first and stops where the least a node could cost passes the cheapest node
  // already found that the job may take by its deadline. Nodes left out are dearer than that
  // one, so the decision is the same as over every node.
  void ScanRented(const Job& job, const Work& work, const DecisionRules& rules, absl::Time now,
                  std::vector<Candidate>& cs) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  DecisionRules RulesOf(const Job& job) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The job waits (for a local node, or for money); notes why, and when to decide again.
  void NoteWait(Job& job, const Work& work, const DecisionRules& rules, absl::Time now,
                const Choice& choice, absl::Span<const Candidate> cs, Outbox& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetWaiting(Job& job, NodeEntry* entry, absl::Time revisit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `job` joined `group`: the groups waiting for the same node behind it may now wait longer,
  // so their standing decisions no longer hold.
  void QueuedAhead(const PendingQueue::Group* group, const Job& job)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The node whose current expected-wait timeline `job`, about to join the queue, would leave as
  // it is (it holds only jobs ahead of it), or null.
  NodeEntry* TimelineKeptBy(const Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Keeps what the decision for `job` (not placed) leaves open: PendingQueue::Standing.
  void KeepStanding(const Job& job, const Work& work, const DecisionRules& rules,
                    absl::Time now, const Choice& choice, absl::Span<const Candidate> cs)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // False when the standing decision of `group` says that `node`, which gained room, cannot
  // change it (PendingQueue::Standing).
  bool CouldChange(const PendingQueue::Group& group, const Node& node, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True when the standing choice of `group` now costs more than its capped project has left
  // (`room_left` caches the projects' rooms for one pass).
  bool OverBudgetNow(const PendingQueue::Group& group,
                     absl::flat_hash_map<std::string, double>& room_left) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // `node` as the decision weighs it for `job` (decision.h), before Decide fills in the rest.
  Candidate MakeCandidate(const Job& job, const Work& work, const Node& node, bool fits_now,
                          size_t gpus_taken) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void ClearWaiting(const Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // How long until `entry` would have room for `job`, if the jobs it runs end when expected and
  // the jobs waiting for it ahead of `job` start in queue order; InfiniteDuration if never, or
  // when too many wait ahead to say.
  // `cached`: use and refresh the node's timeline (exclusive lock held); else build one apart.
  absl::Duration ExpectedWait(const Job& job, const NodeEntry& entry, absl::Time now,
                              bool cached) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Duration WaitOn(const Job& job, const NodeEntry& entry, absl::Time now, bool cached) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void BuildTimeline(const NodeEntry& entry, absl::Time now, WaitTimeline& tl) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Moves when a job starts or stops waiting for the node, or a waiting group gains or loses a
  // job at or before its horizon.
  static uint64_t WaitingGroupsVersion(const NodeEntry& entry);
  // Lets the jobs of `st` end, earliest first, until `r` fits the node (of `caps`, whose GPUs
  // in `usable` suit it); false if it never does.
  static bool RoomFor(const Resources& r, uint64_t usable, const NodeCapabilities& caps,
                      WaitTimeline::State& st);
  // Starts `r` in `st` now (st.t) for `runtime`, on the first free GPUs of `usable`.
  static void StartIn(const Resources& r, uint64_t usable, absl::Duration runtime,
                      WaitTimeline::State& st);
  void RefreshNodeFacts(NodeEntry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Work WorkOf(const Job& job) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Duration RuntimeOn(const Work& work, const Job& job, const Node& node) const;
  // INVALID_ARGUMENT when the spec's runtime names a GPU the catalog does not know.
  absl::Status CheckRuntimeGpu(const JobSpec& spec) const;
  // Remembers a successful run for runtime learning.
  void RecordRun(const Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // How long a job is expected to hold `node` (null: the node it holds): its runtime (given or
  // learned) scaled to the node's GPUs by the catalog, else options.budget_reservation.
  absl::Duration Reservation(const Job& job, const Node* node) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Spent this month by `project` plus what its open leases are still expected to cost. From
  // the spend index: closed leases and open ones are summed as they change, so only open leases
  // past their expected end are visited.
  double SpentAndCommitted(const std::string& project) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The index: a priced lease began or ended; the month turned (rebuilds it).
  void IndexLeaseStart(Job& job, const Node* node) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void IndexLeaseEnd(const Job& job, const LedgerEntry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RebuildSpendIndex(absl::Time month) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MoveOverruns(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An overrun lease enters (sign +1) or leaves (-1) a project's sums.
  void SumOverrun(ProjectSpend& p, const Job& job, absl::Time from, int sign);
  // What an open lease is expected to cost in [from, its expected end).
  static double LeaseCommitment(const Job& job, absl::Time from);
  bool TryPlace(Job& job, const std::vector<const Node*>* nodes, Outbox& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string NewJobId() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const SchedulerOptions options_;
  Store* const store_;
  const Clock* const clock_;

  mutable absl::Mutex mu_;
  // Every job by id; node-based, so pointers to jobs and their ids stay valid.
  absl::node_hash_map<std::string, Job> jobs_ ABSL_GUARDED_BY(mu_);
  // The ids in order, for prefixes (ResolveLocked). An id's first 8 bytes packed big-endian
  // order most pairs without reading the id itself.
  struct IdKey {
    uint64_t head;
    absl::string_view id;  // jobs_'s key
    static IdKey Of(absl::string_view id);
    bool operator<(const IdKey& o) const { return head != o.head ? head < o.head : id < o.id; }
  };
  absl::btree_set<IdKey> job_ids_ ABSL_GUARDED_BY(mu_);
  absl::btree_map<uint64_t, Job*> by_seq_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Job*> by_request_id_ ABSL_GUARDED_BY(mu_);
  // Output bytes kept per job since start (SchedulerOptions::max_log_bytes_per_job).
  absl::flat_hash_map<std::string, uint64_t> log_bytes_ ABSL_GUARDED_BY(mu_);
  // Pending jobs by project (SchedulerOptions::max_pending_per_project).
  absl::flat_hash_map<std::string, uint64_t> pending_by_project_ ABSL_GUARDED_BY(mu_);
  // What spot leases of each provider saw here: preemptions and spot hours (SpotRate).
  struct ProviderRisk {
    uint64_t preemptions = 0;
    double spot_hours = 0;
  };
  absl::flat_hash_map<std::string, ProviderRisk> provider_risk_ ABSL_GUARDED_BY(mu_);
  static constexpr double kRiskPriorHours = 100;
  PendingQueue pending_ ABSL_GUARDED_BY(mu_);
  // Nodes that may have room (a superset; OpenNodes() prunes it), and those that gained room
  // since the last Schedule() pass. Entries of nodes_, which never removes one.
  absl::flat_hash_set<NodeEntry*> open_nodes_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<NodeEntry*> grown_nodes_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, absl::Time> lease_expiry_ ABSL_GUARDED_BY(mu_);
  // The same by time, so that Tick() reads only the expired ones (SetLeaseExpiry).
  absl::btree_set<std::pair<absl::Time, const Job*>> expiry_order_ ABSL_GUARDED_BY(mu_);
  // Pending jobs held out of the queue, by the end of their hold (Hold).
  absl::btree_set<std::pair<absl::Time, Job*>> held_ ABSL_GUARDED_BY(mu_);
  // Each sweep's runs in index order; sweeps a run of which ended since the last Seal.
  absl::btree_map<std::string, std::vector<Job*>> sweeps_ ABSL_GUARDED_BY(mu_);
  absl::btree_set<std::string> sweeps_freed_ ABSL_GUARDED_BY(mu_);
  // Pending jobs by each job they run after; jobs with dependents that ended since the last
  // Seal.
  absl::flat_hash_map<std::string, std::vector<Job*>> dependents_ ABSL_GUARDED_BY(mu_);
  absl::btree_set<std::string> deps_ended_ ABSL_GUARDED_BY(mu_);
  // Leased jobs with limits, by when to look at them next (SetLimitCheck).
  absl::btree_set<std::pair<absl::Time, const Job*>> limit_order_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<const Job*, absl::Time> limit_of_ ABSL_GUARDED_BY(mu_);
  // Connected agents by their last heartbeat, so that Tick() reads only the silent (MarkHeard).
  absl::btree_set<std::pair<absl::Time, NodeEntry*>> heard_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, NodeEntry> nodes_ ABSL_GUARDED_BY(mu_);  // in name order; never erased
  // The same by name, hashed: the keys are nodes_'s (EntryFor adds to both).
  absl::flat_hash_map<absl::string_view, NodeEntry*> node_index_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<NodeEntry*> local_nodes_ ABSL_GUARDED_BY(mu_);
  // Each project's use of the local nodes (share-seconds) as of a time, for fair share; rebuilt
  // at start-up from the attempts that ended on them.
  struct PastUseEntry {
    double share_seconds = 0;
    absl::Time as_of = absl::InfinitePast();
  };
  absl::flat_hash_map<std::string, PastUseEntry> past_use_ ABSL_GUARDED_BY(mu_);
  // Rented nodes by their cheapest hour, and those with GPUs the catalog rates by that hour per
  // unit of speed, cheapest first: a job's cost on a node is at least the key times a factor of
  // the job's (ScanRented). GPU nodes the catalog cannot rate are kept apart.
  PriceIndex by_price_ ABSL_GUARDED_BY(mu_);
  PriceIndex by_gpu_price_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<NodeEntry*> unrated_gpu_nodes_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, NodeEntry*> waiting_for_ ABSL_GUARDED_BY(mu_);  // job id ->
  // When to decide again about jobs that wait by choice: (time, job id).
  absl::btree_set<std::pair<absl::Time, std::string>> revisits_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, absl::Time> revisit_of_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, std::string>, RunHistory> history_ ABSL_GUARDED_BY(mu_);
  std::vector<Candidate> scratch_ ABSL_GUARDED_BY(mu_);
  // Closed ledger entries by (job, epoch); hashed, read in key order where sums are taken.
  absl::flat_hash_map<std::pair<std::string, uint64_t>, LedgerEntry> ledger_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Budget, std::less<>> budgets_ ABSL_GUARDED_BY(mu_);
  absl::Time month_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();  // of the last Tick
  absl::flat_hash_map<std::string, ProjectSpend> spend_ ABSL_GUARDED_BY(mu_);
  uint64_t spend_version_ ABSL_GUARDED_BY(mu_) = 0;  // raised by every change to spend_
  absl::Time spend_month_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t last_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t last_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t last_session_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t last_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t last_publish_seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  SchedulerStats stats_ ABSL_GUARDED_BY(mu_);
  // Rented nodes not yet gone; the offers (as nodes the decision can weigh, in offers_'s order)
  // and how the planner costs them.
  absl::flat_hash_set<NodeEntry*> rented_ ABSL_GUARDED_BY(mu_);
  std::vector<Offer> offers_ ABSL_GUARDED_BY(mu_);
  std::vector<Node> offer_nodes_ ABSL_GUARDED_BY(mu_);
  RentalOptions rental_options_ ABSL_GUARDED_BY(mu_);

  // verify_timelines, written under the exclusive lock.
  mutable uint64_t timeline_reads_ ABSL_GUARDED_BY(mu_) = 0;
  mutable uint64_t timeline_mismatches_ ABSL_GUARDED_BY(mu_) = 0;

  // Taken without mu_ held; subscribers may call the Scheduler (taking mu_) inside.
  mutable absl::Mutex sub_mu_;
  uint64_t last_sub_ ABSL_GUARDED_BY(sub_mu_) = 0;
  uint64_t next_publish_seq_ ABSL_GUARDED_BY(sub_mu_) = 1;
  std::map<uint64_t, std::vector<Job>> unpublished_ ABSL_GUARDED_BY(sub_mu_);
  std::map<uint64_t, absl::AnyInvocable<void(const Job&)>> job_subs_ ABSL_GUARDED_BY(sub_mu_);
  std::map<uint64_t, absl::AnyInvocable<void(const std::string&, const LogRecord&)>> log_subs_
      ABSL_GUARDED_BY(sub_mu_);
  std::atomic<size_t> job_sub_count_{0};
};

}  // namespace sched
