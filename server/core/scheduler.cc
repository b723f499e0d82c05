#include "server/core/scheduler.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <tuple>

#include "absl/hash/hash.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "server/common/failpoint.h"
#include "server/common/status_macros.h"
#include "server/core/early_stopping.h"
#include "server/core/gpu_memory.h"
#include "server/core/job_spec_validation.h"
#include "server/cost/runtime_estimate.h"

namespace sched {
namespace {

absl::Status StaleSession(const std::string& name) {
  return absl::FailedPreconditionError(
      absl::StrCat("session of node ", name, " is no longer current: reconnect"));
}

std::string FormatClock(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", t, absl::UTCTimeZone());
}

// "$1.25", "$0.0031".
std::string Dollars(double d) { return absl::StrFormat(d >= 0.01 ? "$%.2f" : "$%.4f", d); }

// A node making room for a higher-priority job takes no other job unless it ranks above that one.
bool ReservedAgainst(const Node& node, const Job& job) {
  return !node.reserved_for.empty() && node.reserved_for != job.id &&
         job.spec.priority <= node.reserved_priority;
}

// How long a node stays kept for a higher-priority job while the jobs it stopped wind down.
constexpr absl::Duration kReservationTime = absl::Minutes(10);

}  // namespace

absl::string_view JobStateName(JobState s) {
  switch (s) {
    case JobState::kPending:
      return "PENDING";
    case JobState::kAssigned:
      return "ASSIGNED";
    case JobState::kRunning:
      return "RUNNING";
    case JobState::kSucceeded:
      return "SUCCEEDED";
    case JobState::kFailed:
      return "FAILED";
    case JobState::kCancelled:
      return "CANCELLED";
    case JobState::kStoppedEarly:
      return "STOPPED_EARLY";
  }
  return "UNKNOWN";
}

absl::string_view NodeStateName(NodeState s) {
  switch (s) {
    case NodeState::kReady:
      return "READY";
    case NodeState::kCordoned:
      return "CORDONED";
    case NodeState::kDraining:
      return "DRAINING";
    case NodeState::kDown:
      return "DOWN";
    case NodeState::kPreempting:
      return "PREEMPTING";
    case NodeState::kProvisioning:
      return "PROVISIONING";
    case NodeState::kJoining:
      return "JOINING";
    case NodeState::kTerminating:
      return "TERMINATING";
    case NodeState::kGone:
      return "GONE";
  }
  return "UNKNOWN";
}

absl::string_view RentalPhaseName(RentalPhase p) {
  switch (p) {
    case RentalPhase::kProvisioning:
      return "PROVISIONING";
    case RentalPhase::kJoining:
      return "JOINING";
    case RentalPhase::kReady:
      return "READY";
    case RentalPhase::kDraining:
      return "DRAINING";
    case RentalPhase::kTerminating:
      return "TERMINATING";
    case RentalPhase::kGone:
      return "GONE";
  }
  return "UNKNOWN";
}

Scheduler::Scheduler(SchedulerOptions options, Store* store, const Clock* clock)
    : options_(std::move(options)),
      store_(store),
      clock_(clock),
      rng_(options_.seed != 0 ? options_.seed : std::random_device{}()) {}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(SchedulerOptions options, Store* store,
                                                             const Clock* clock) {
  if (options.lease_ttl <= absl::ZeroDuration() ||
      options.heartbeat_interval >= options.lease_ttl) {
    return absl::InvalidArgumentError("heartbeat_interval must be positive and below lease_ttl");
  }
  std::unique_ptr<Scheduler> s(new Scheduler(std::move(options), store, clock));
  SCHED_RETURN_IF_ERROR(s->LoadState());
  return s;
}

Scheduler::~Scheduler() {
  // Callbacks of batches still in flight point at this object: wait for them.
  uint64_t ticket;
  {
    absl::MutexLock lock(&mu_);
    ticket = last_ticket_;
  }
  if (ticket == 0) return;
  absl::Notification flushed;
  store_->WhenDurable(ticket, [&flushed](absl::Status) { flushed.Notify(); });
  flushed.WaitForNotification();
}

absl::Status Scheduler::LoadState() {
  SCHED_ASSIGN_OR_RETURN(LoadedState state, store_->Load());
  absl::MutexLock lock(&mu_);
  const absl::Time lease_end = clock_->Now() + options_.lease_ttl + options_.restart_grace;
  for (NodeRecord& record : state.nodes) {
    std::string name = record.name;
    NodeEntry& entry = EntryFor(name);
    entry.node.record = std::move(record);
    RefreshNodeFacts(entry);
    if (entry.node.record.rental && entry.node.record.rental->active()) rented_.insert(&entry);
  }
  for (LedgerEntry& entry : state.ledger) {
    auto key = std::make_pair(entry.job_id, entry.epoch);
    ledger_[key] = std::move(entry);
  }
  for (Budget& budget : state.budgets) {
    std::string project = budget.project;
    budgets_[project] = std::move(budget);
  }
  std::vector<Job*> with_dependencies;
  for (Job& loaded : state.jobs) {
    std::string id = loaded.id;
    auto [it, inserted] = jobs_.emplace(id, std::move(loaded));
    if (inserted) job_ids_.insert(IdKey::Of(it->first));
    if (!inserted) return absl::DataLossError(absl::StrCat("job ", id, " stored twice"));
    Job& job = it->second;
    by_seq_[job.seq] = &job;
    if (!job.request_id.empty()) by_request_id_[job.request_id] = &job;
    last_seq_ = std::max(last_seq_, job.seq);
    last_epoch_ = std::max(last_epoch_, job.epoch);
    stats_.jobs_by_state[static_cast<int>(job.state)]++;
    if (!job.sweep_id.empty()) sweeps_[job.sweep_id].push_back(&job);
    if (job.state == JobState::kPending && !job.spec.after.empty()) {
      for (const auto& [dep, when] : job.spec.after) dependents_[dep].push_back(&job);
      with_dependencies.push_back(&job);
      pending_by_project_[job.spec.project]++;
    } else if (job.state == JobState::kPending) {
      if (job.waiting_for_slot) job.hold_until = absl::InfiniteFuture();
      if (job.hold_until > clock_->Now()) {
        held_.insert({job.hold_until, &job});
      } else {
        pending_.Add(&job, /*settled=*/false);
      }
      pending_by_project_[job.spec.project]++;
    }
    if (IsLeased(job.state)) {
      SetLeaseExpiry(job, lease_end);
      NodeEntry& entry = EntryFor(job.node);
      if (entry.node.record.name.empty()) entry.node.record.name = job.node;
      Allocate(entry, job);
      if (job.stop_reason.empty()) SetLimitCheck(job, clock_->Now());
    }
  }
  // Jobs that run after others: held while those have not all ended (every dependency that
  // ended was dealt with in the batch that ended it).
  for (Job* job : with_dependencies) {
    if (!CheckDependencies(*job).waiting.empty()) {
      job->hold_until = absl::InfiniteFuture();
      held_.insert({job->hold_until, job});
    } else if (job->hold_until > clock_->Now()) {
      held_.insert({job->hold_until, job});
    } else {
      pending_.Add(job, /*settled=*/false);
    }
  }
  for (auto& [id, runs] : sweeps_) {
    std::sort(runs.begin(), runs.end(),
              [](const Job* a, const Job* b) { return a->array_index < b->array_index; });
  }
  std::vector<const Job*> succeeded;  // in the order they finished, as they were recorded live
  for (const auto& [seq, job] : by_seq_) {
    if (job->state == JobState::kSucceeded) succeeded.push_back(job);
  }
  std::stable_sort(succeeded.begin(), succeeded.end(),
                   [](const Job* a, const Job* b) { return a->finish_time < b->finish_time; });
  for (const Job* job : succeeded) RecordRun(*job);
  // The spot risk seen here, from every ended lease on a spot node; then the spot nodes' rates.
  for (const auto& [seq, job] : by_seq_) {
    for (const JobAttempt& a : job->attempts) {
      if (!a.spot || a.end == absl::InfinitePast()) continue;
      ProviderRisk& risk = provider_risk_[a.provider];
      risk.spot_hours += absl::ToDoubleHours(std::max(a.end - a.start, absl::ZeroDuration()));
      if (a.preempted) risk.preemptions++;
    }
  }
  for (auto& [name, entry] : nodes_) {
    if (entry.node.record.caps.spot && provider_risk_.contains(entry.node.record.caps.provider)) {
      RefreshNodeFacts(entry);
    }
  }
  // Fair share's past use of the user's machines, from the leases that ended on them, decayed
  // from each end to now as it would have been live.
  if (!options_.fair_share.empty()) {
    const absl::Time now = clock_->Now();
    for (const auto& [seq, job] : by_seq_) {
      for (const JobAttempt& a : job->attempts) {
        const NodeEntry* on = FindNode(a.node);
        if (on == nullptr || !on->node.local || a.end == absl::InfinitePast() || a.end > now) {
          continue;
        }
        const double halves =
            absl::FDivDuration(now - a.end, options_.fair_share_half_life);
        PastUseEntry& e = past_use_[job->spec.project];
        e.share_seconds += DominantShare(*job, on->node) *
                           absl::ToDoubleSeconds(std::max(a.end - a.start, absl::ZeroDuration())) *
                           std::exp2(-halves);
        e.as_of = now;
      }
    }
  }
  spend_month_ = MonthStart(clock_->Now());
  for (const auto& [id, expiry] : lease_expiry_) IndexLeaseStart(jobs_.at(id), nullptr);
  RebuildSpendIndex(spend_month_);
  stats_.nodes_total = nodes_.size();
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Commit plumbing

void Scheduler::Seal(Outbox& out) {
  if (!deps_ended_.empty()) ReleaseDependents(out);
  if (!sweeps_freed_.empty()) FillSweepSlots(out);
  if (!out.batch.empty()) {
    out.ticket = last_ticket_ = store_->Append(std::move(out.batch));
    out.publish_seq = ++last_publish_seq_;
    out.batch.clear();
  }
}

void Scheduler::Deliver(Outbox out, absl::AnyInvocable<void(absl::Status)> done) {
  auto apply = [this, commands = std::move(out.commands), events = std::move(out.events),
                seq = out.publish_seq, done = std::move(done)](absl::Status status) mutable {
    done(status);
    if (status.ok()) {
      for (auto& command : commands) command();
    } else {
      events.clear();  // not durable: nothing to tell, but later outboxes must not wait on it
    }
    if (seq != 0) Publish(seq, std::move(events));
  };
  if (out.ticket == 0) {
    apply(absl::OkStatus());
  } else {
    store_->WhenDurable(out.ticket, std::move(apply));
  }
}

template <typename T>
void Scheduler::Finish(Outbox out, absl::StatusOr<T> result, Done<T> done) {
  Deliver(std::move(out),
          [result = std::move(result), done = std::move(done)](absl::Status status) mutable {
            if (!status.ok()) {
              done(status);
            } else {
              done(std::move(result));
            }
          });
}

template <typename T, typename Locked>
void Scheduler::Apply(Locked locked, Done<T> done) {
  Outbox out;
  absl::StatusOr<T> result;
  {
    absl::MutexLock lock(&mu_);
    result = locked(out);
    Seal(out);
  }
  Finish(std::move(out), std::move(result), std::move(done));
}

void Scheduler::Publish(uint64_t seq, std::vector<Job> events) {
  absl::MutexLock lock(&sub_mu_);
  unpublished_.emplace(seq, std::move(events));
  while (!unpublished_.empty() && unpublished_.begin()->first == next_publish_seq_) {
    for (const Job& job : unpublished_.begin()->second) {
      for (auto& [id, fn] : job_subs_) fn(job);
    }
    unpublished_.erase(unpublished_.begin());
    ++next_publish_seq_;
  }
}

void Scheduler::SetState(Job& job, JobState state) {
  stats_.jobs_by_state[static_cast<int>(job.state)]--;
  stats_.jobs_by_state[static_cast<int>(state)]++;
  if (job.state == JobState::kPending && state != JobState::kPending) {
    pending_by_project_[job.spec.project]--;
  } else if (job.state != JobState::kPending && state == JobState::kPending) {
    pending_by_project_[job.spec.project]++;
  }
  job.state = state;
  job.update_time = clock_->Now();
  if (IsTerminal(state) && !job.sweep_id.empty()) sweeps_freed_.insert(job.sweep_id);
  if (IsTerminal(state) && dependents_.contains(job.id)) deps_ended_.insert(job.id);
}

void Scheduler::PutJob(const Job& job, Outbox& out) {
  StoreOp op;
  op.kind = StoreOp::Kind::kPutJob;
  op.job = job;
  out.batch.push_back(std::move(op));
  if (job_sub_count_.load(std::memory_order_relaxed) > 0) out.events.push_back(job);
}

void Scheduler::PutNode(const NodeRecord& record, Outbox& out) {
  StoreOp op;
  op.kind = StoreOp::Kind::kPutNode;
  op.node = record;
  out.batch.push_back(std::move(op));
}

// ---------------------------------------------------------------------------------------------
// Users

void Scheduler::Submit(JobSpec spec, std::string request_id, Done<SubmitResult> done) {
  Apply<SubmitResult>(
      [&](Outbox& out) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return SubmitLocked(std::move(spec), std::move(request_id), out);
      },
      std::move(done));
}

absl::StatusOr<SubmitResult> Scheduler::SubmitLocked(JobSpec spec, std::string request_id,
                                                     Outbox& out) {
  if (request_id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id: longer than ", kMaxRequestIdBytes, " characters"));
  }
  if (!request_id.empty()) {
    auto it = by_request_id_.find(request_id);
    if (it != by_request_id_.end()) {
      // The first submit may not be durable yet: answer once everything before now is.
      out.ticket = last_ticket_;
      return ResultOf(*it->second, /*existing=*/true);
    }
  }
  SCHED_RETURN_IF_ERROR(ValidateAndDefaultJobSpec(spec, clock_->Now()));
  SCHED_RETURN_IF_ERROR(EstimateGpuMemory(spec));
  SCHED_RETURN_IF_ERROR(CheckRuntimeGpu(spec));
  // Job ids given by a prefix become the full ids; `field` names the one for an error.
  auto resolve = [&](std::string& id, const std::string& field) -> absl::Status {
    absl::StatusOr<std::string> full = ResolveLocked(id);
    if (!full.ok()) {
      return absl::Status(full.status().code(), absl::StrCat(field, ": ", full.status().message()));
    }
    id = *std::move(full);
    return absl::OkStatus();
  };
  for (size_t i = 0; i < spec.after.size(); ++i) {
    SCHED_RETURN_IF_ERROR(resolve(spec.after[i].first, absl::StrCat("after[", i, "].job")));
  }
  // An input is a job it runs after, when that one succeeded: its outputs are there then.
  for (size_t i = 0; i < spec.inputs.size(); ++i) {
    std::string& id = spec.inputs[i].second;
    SCHED_RETURN_IF_ERROR(resolve(id, absl::StrCat("inputs[", i, "].job")));
    const bool after_success =
        std::any_of(spec.after.begin(), spec.after.end(),
                    [&](const auto& dep) { return dep.first == id && dep.second == "success"; });
    if (!after_success) {
      return absl::InvalidArgumentError(absl::StrCat(
          "inputs[", i, "].job: ", id, " must also be in after (when: success): its outputs are "
          "there only once it has succeeded"));
    }
  }
  if (!spec.after.empty()) {
    Job probe;
    probe.spec.after = spec.after;
    if (DependencyCheck c = CheckDependencies(probe); !c.never.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("after: ", c.never));
    }
  }
  if (!spec.sweep.empty()) return SubmitSweepLocked(std::move(spec), std::move(request_id), out);
  SCHED_RETURN_IF_ERROR(CheckPendingRoom(spec.project, 1));
  Job& stored = NewJob(std::move(spec), std::move(request_id));
  Enqueue(stored, out);
  return SubmitResult{stored, false, "", {}};
}

absl::Status Scheduler::CheckPendingRoom(const std::string& project, size_t jobs) const {
  const uint64_t max = options_.max_pending_per_project;
  if (max == 0) return absl::OkStatus();
  auto queued = pending_by_project_.find(project);
  const uint64_t now = queued == pending_by_project_.end() ? 0 : queued->second;
  if (now + jobs <= max) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "project ", project, " has ", now, " jobs pending",
      jobs > 1 ? absl::StrCat(" and this submit makes ", jobs, " more") : "",
      ", the most schedd takes (--max_pending_per_project); submit more as these start"));
}

Job& Scheduler::NewJob(JobSpec spec, std::string request_id) {
  Job job;
  job.id = NewJobId();
  job.seq = ++last_seq_;
  job.spec = std::move(spec);
  job.state = JobState::kPending;
  job.attempt = 1;
  job.create_time = job.update_time = clock_->Now();
  job.request_id = std::move(request_id);
  auto [it, inserted] = jobs_.emplace(job.id, std::move(job));
  job_ids_.insert(IdKey::Of(it->first));
  Job& stored = it->second;
  by_seq_[stored.seq] = &stored;
  if (!stored.request_id.empty()) by_request_id_[stored.request_id] = &stored;
  stats_.jobs_by_state[static_cast<int>(JobState::kPending)]++;
  pending_by_project_[stored.spec.project]++;
  stats_.submits_total++;
  return stored;
}

void Scheduler::Enqueue(Job& stored, Outbox& out) {
  for (const auto& [dep, when] : stored.spec.after) dependents_[dep].push_back(&stored);
  if (DependencyCheck c = CheckDependencies(stored); !c.waiting.empty()) {
    Hold(stored, absl::InfiniteFuture(), std::move(c.waiting));
    PutJob(stored, out);
    return;
  }
  if (stored.spec.not_before > stored.create_time) {
    Hold(stored, stored.spec.not_before,
         absl::StrCat("not before ", FormatClock(stored.spec.not_before)));
    PutJob(stored, out);
    return;
  }
  // A job queued behind everything a busy workstation's timeline holds (it holds the first
  // kMaxWaitingAhead waiting jobs) leaves it as it is.
  NodeEntry* kept = TimelineKeptBy(stored);
  // Schedule() tries it on every node below.
  QueuedAhead(pending_.Add(&stored, /*settled=*/true), stored);
  if (kept != nullptr) kept->timeline.groups_version = WaitingGroupsVersion(*kept);
  PutJob(stored, out);
  Schedule(out, &stored);
}

absl::StatusOr<SubmitResult> Scheduler::SubmitSweepLocked(JobSpec spec, std::string request_id,
                                                          Outbox& out) {
  SCHED_ASSIGN_OR_RETURN(SweepRuns runs,
                         ExpandSweep(spec.sweep));
  SCHED_RETURN_IF_ERROR(CheckPendingRoom(spec.project, runs.size()));
  std::string sweep_id;
  do {
    sweep_id = NewJobId();
  } while (sweeps_.contains(sweep_id));
  // The runs keep the sweep's rules, not its list of runs.
  JobSpec base = std::move(spec);
  base.sweep.parameters.clear();
  base.sweep.runs.clear();
  const uint32_t max_parallel = base.sweep.max_parallel;
  std::vector<Job*>& members = sweeps_[sweep_id];
  SubmitResult result;
  result.sweep_id = sweep_id;
  for (size_t i = 0; i < runs.size(); ++i) {
    JobSpec run_spec = base;
    for (const auto& [name, value] : runs[i]) run_spec.env.emplace_back(name, value);
    // Set here, past the spec's checks, which keep SCHED_ names for schedd and the agent.
    run_spec.env.emplace_back("SCHED_SWEEP_ID", sweep_id);
    run_spec.env.emplace_back("SCHED_ARRAY_INDEX", absl::StrCat(i));
    Job& job = NewJob(std::move(run_spec), i == 0 ? request_id : std::string());
    job.sweep_id = sweep_id;
    job.array_index = static_cast<uint32_t>(i);
    job.parameters = std::move(runs[i]);
    members.push_back(&job);
    result.job_ids.push_back(job.id);
    if (max_parallel > 0 && i >= max_parallel) {
      job.waiting_for_slot = true;
      Hold(job, absl::InfiniteFuture(),
           absl::StrCat("waiting for a slot of sweep ", sweep_id, " (max_parallel ",
                        max_parallel, ")"));
      PutJob(job, out);
    } else {
      Enqueue(job, out);
    }
  }
  result.job = *members.front();
  return result;
}

SubmitResult Scheduler::ResultOf(const Job& job, bool existing) const {
  SubmitResult r{job, existing, job.sweep_id, {}};
  if (!job.sweep_id.empty()) {
    auto it = sweeps_.find(job.sweep_id);
    if (it != sweeps_.end()) {
      for (const Job* run : it->second) r.job_ids.push_back(run->id);
      if (!it->second.empty()) r.job = *it->second.front();
    }
  }
  return r;
}

Scheduler::DependencyCheck Scheduler::CheckDependencies(const Job& job) const {
  DependencyCheck c;
  std::vector<std::string> waiting;
  for (const auto& [id, when] : job.spec.after) {
    auto it = jobs_.find(id);
    const char* verb = when == "success" ? "succeed" : when == "failure" ? "fail" : "end";
    if (it == jobs_.end()) {
      c.never = absl::StrCat("job ", id, " is not known");
      return c;
    }
    const Job& dep = it->second;
    if (!IsTerminal(dep.state)) {
      waiting.push_back(absl::StrCat(id, " to ", verb));
      continue;
    }
    const bool met = when == "always" || (when == "success" && dep.state == JobState::kSucceeded) ||
                     (when == "failure" && dep.state == JobState::kFailed);
    if (!met) {
      c.never = absl::StrCat("not run: job ", id, " ended ", JobStateName(dep.state),
                             ", and this job runs after it ",
                             when == "success" ? "succeeds" : "fails");
      return c;
    }
  }
  if (!waiting.empty()) {
    c.waiting = absl::StrCat("waiting for job ", absl::StrJoin(waiting, ", job "));
  }
  return c;
}

void Scheduler::QueueReleased(Job& job, Outbox& out) {
  Unhold(job);
  job.hold_until = absl::InfinitePast();
  job.message.clear();
  job.update_time = clock_->Now();
  if (job.spec.not_before > job.update_time) {
    Hold(job, job.spec.not_before, absl::StrCat("not before ", FormatClock(job.spec.not_before)));
  } else {
    job.queued_since = job.update_time;
    QueuedAhead(pending_.Add(&job, /*settled=*/false), job);
  }
  PutJob(job, out);
}

void Scheduler::ReleaseDependents(Outbox& out) {
  bool queued = false;
  while (!deps_ended_.empty()) {
    const std::string id = *deps_ended_.begin();
    deps_ended_.erase(deps_ended_.begin());
    auto it = dependents_.find(id);
    if (it == dependents_.end()) continue;
    const std::vector<Job*> waiting = it->second;
    for (Job* job : waiting) {
      if (job->state != JobState::kPending || job->hold_until != absl::InfiniteFuture() ||
          job->waiting_for_slot) {
        continue;
      }
      DependencyCheck c = CheckDependencies(*job);
      if (!c.never.empty()) {
        // Its own dependents follow through SetState and this loop.
        Unhold(*job);
        job->hold_until = absl::InfinitePast();
        SetState(*job, JobState::kCancelled);
        job->finish_time = job->update_time;
        job->message = std::move(c.never);
        PutJob(*job, out);
      } else if (c.waiting.empty()) {
        QueueReleased(*job, out);
        queued = queued || job->hold_until == absl::InfinitePast();
      } else if (c.waiting != job->message) {
        job->message = std::move(c.waiting);
        job->update_time = clock_->Now();
        PutJob(*job, out);
      }
    }
  }
  if (queued) Schedule(out);
}

void Scheduler::FillSweepSlots(Outbox& out) {
  bool queued = false;
  const absl::Time now = clock_->Now();
  for (const std::string& id : sweeps_freed_) {
    auto it = sweeps_.find(id);
    if (it == sweeps_.end() || it->second.empty()) continue;
    const uint32_t max_parallel = it->second.front()->spec.sweep.max_parallel;
    if (max_parallel == 0) continue;
    size_t active = 0;
    for (const Job* run : it->second) {
      if (!IsTerminal(run->state) && !run->waiting_for_slot) ++active;
    }
    for (Job* run : it->second) {
      if (active >= max_parallel) break;
      if (!run->waiting_for_slot || run->state != JobState::kPending) continue;
      run->waiting_for_slot = false;
      Unhold(*run);
      run->hold_until = absl::InfinitePast();
      run->message.clear();
      run->update_time = now;
      ++active;
      if (run->spec.not_before > now) {
        Hold(*run, run->spec.not_before,
             absl::StrCat("not before ", FormatClock(run->spec.not_before)));
        PutJob(*run, out);
        continue;
      }
      run->queued_since = now;
      PutJob(*run, out);
      QueuedAhead(pending_.Add(run, /*settled=*/false), *run);
      queued = true;
    }
  }
  sweeps_freed_.clear();
  if (queued) Schedule(out);
}

absl::StatusOr<SweepView> Scheduler::GetSweep(absl::string_view prefix) const {
  absl::ReaderMutexLock lock(&mu_);
  if (prefix.empty()) return absl::InvalidArgumentError("sweep_id: required");
  auto it = sweeps_.lower_bound(std::string(prefix));
  if (it == sweeps_.end() || !absl::StartsWith(it->first, prefix)) {
    return absl::NotFoundError(absl::StrCat("sweep ", prefix, " not found"));
  }
  if (it->first.size() != prefix.size()) {
    auto next = std::next(it);
    if (next != sweeps_.end() && absl::StartsWith(next->first, prefix)) {
      return absl::InvalidArgumentError(
          absl::StrCat("sweep id prefix ", prefix, " is ambiguous: matches ", it->first, ", ",
                       next->first, " and maybe more; give more characters"));
    }
  }
  SweepView view;
  view.id = it->first;
  for (const Job* run : it->second) view.runs.push_back(*run);
  if (view.runs.empty()) return view;
  const SweepSpec& sweep = view.runs.front().spec.sweep;
  // The best by its last value of the metric: among the runs that succeeded, else among all.
  for (bool succeeded_only : {true, false}) {
    double best = 0;
    for (const Job& run : view.runs) {
      if (succeeded_only && run.state != JobState::kSucceeded) continue;
      auto m = run.metrics.find(sweep.metric);
      if (sweep.metric.empty() || m == run.metrics.end()) continue;
      if (view.best_index < 0 || (sweep.maximize ? m->second > best : m->second < best)) {
        best = m->second;
        view.best_index = static_cast<int>(run.array_index);
      }
    }
    if (view.best_index >= 0) break;
  }
  return view;
}

absl::Status Scheduler::ReportMetrics(const std::string& name, uint64_t session,
                                      const JobRef& ref,
                                      const std::vector<MetricReport>& points) {
  Outbox out;
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    status = ReportMetricsLocked(name, session, ref, points, out);
    Seal(out);
  }
  Deliver(std::move(out), [](absl::Status) {});
  return status;
}

absl::Status Scheduler::ReportMetricsLocked(const std::string& name, uint64_t session,
                                            const JobRef& ref,
                                            const std::vector<MetricReport>& points,
                                            Outbox& out) {
  SCHED_RETURN_IF_ERROR(SessionNode(name, session).status());
  SCHED_ASSIGN_OR_RETURN(Job * job, LeasedJob(name, ref));
  if (points.size() > kMaxMetricPointsPerReport) {
    return absl::InvalidArgumentError(absl::StrCat("points: at most ", kMaxMetricPointsPerReport,
                                                   " in one report, got ", points.size()));
  }
  for (const MetricReport& p : points) {
    if (!IsValidMetricName(p.name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "points.name: 1-64 of letters, digits, '_', '.', ':', '/' or '-', starting with a "
          "letter, got \"",
          p.name.substr(0, 64), "\""));
    }
    if (!std::isfinite(p.value)) {
      return absl::InvalidArgumentError(absl::StrCat("points.value: ", p.name, " is not finite"));
    }
    if (p.step < 0 || p.step > (int64_t{1} << 53)) {
      return absl::InvalidArgumentError(absl::StrCat("points.step: must be in 0..2^53, got ",
                                                     p.step));
    }
  }
  if (points.empty()) return absl::OkStatus();
  const SweepSpec& sweep = job->spec.sweep;
  const int64_t previous_step = job->history.empty() ? -1 : job->history.back().step;
  bool new_sample = false;
  int64_t report_step = 0;
  for (const MetricReport& p : points) report_step = std::max(report_step, p.step);
  job->metric_step = report_step;  // the last report's, also when a resumed run goes back
  for (const MetricReport& p : points) {
    // Past kMaxMetricsPerJob names, new ones are not kept (the sweep's metric always is).
    if (!job->metrics.count(p.name) && job->metrics.size() >= kMaxMetricsPerJob &&
        p.name != sweep.metric) {
      continue;
    }
    job->metrics[p.name] = p.value;
    if (!sweep.metric.empty() && p.name == sweep.metric) {
      // Steps only go forward: a repeated or earlier step replaces the samples from it on.
      while (!job->history.empty() && job->history.back().step >= p.step) job->history.pop_back();
      job->history.push_back({p.step, p.value});
      if (job->history.size() > Job::kMaxHistory) job->history.erase(job->history.begin());
      new_sample = true;
    }
  }
  stats_.metric_points_total += points.size();
  job->update_time = clock_->Now();
  PutJob(*job, out);
  if (!new_sample || sweep.early_stopping.rule.empty() || job->cancel_requested ||
      !job->stop_reason.empty()) {
    return absl::OkStatus();
  }
  auto members = sweeps_.find(job->sweep_id);
  if (members == sweeps_.end()) return absl::OkStatus();
  RunCurve run{job->array_index, job->history};
  std::vector<RunCurve> others;
  for (const Job* other : members->second) {
    if (other == job || other->history.empty()) continue;
    others.push_back({other->array_index, other->history});
  }
  std::string why = ShouldStopEarly(sweep.early_stopping, sweep.maximize, sweep.metric, run,
                                    previous_step, others);
  if (!why.empty()) {
    stats_.early_stops_total++;
    StopLeased(*job, std::move(why), /*early=*/true, out);
  }
  return absl::OkStatus();
}

void Scheduler::StopLeased(Job& job, std::string reason, bool early, Outbox& out) {
  job.stop_reason = std::move(reason);
  job.stopped_early = early;
  job.message = absl::StrCat(early ? "stopping early: " : "stopping: ", job.stop_reason);
  job.update_time = clock_->Now();
  PutJob(job, out);
  NodeEntry* entry = FindNode(job.node);
  if (entry != nullptr && entry->link) {
    out.commands.push_back(
        [link = entry->link, id = job.id, epoch = job.epoch] { link->Cancel(id, epoch); });
  }
}

Scheduler::NodeEntry& Scheduler::EntryFor(const std::string& name) {
  if (NodeEntry* found = FindNode(name)) return *found;
  auto it = nodes_.try_emplace(name).first;
  node_index_.emplace(it->first, &it->second);
  return it->second;
}

Scheduler::IdKey Scheduler::IdKey::Of(absl::string_view id) {
  uint64_t head = 0;
  for (size_t i = 0; i < 8; ++i) {
    head = head << 8 | (i < id.size() ? static_cast<unsigned char>(id[i]) : 0);
  }
  return {head, id};
}

std::string Scheduler::NewJobId() {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(16, '0');
  while (true) {
    uint64_t v = rng_();
    for (int i = 15; i >= 0; --i, v >>= 4) id[i] = kHex[v & 0xf];
    if (!jobs_.contains(id)) return id;
  }
}

absl::StatusOr<std::string> Scheduler::ResolveJobId(absl::string_view id_or_prefix) const {
  absl::ReaderMutexLock lock(&mu_);
  return ResolveLocked(id_or_prefix);
}

absl::StatusOr<std::string> Scheduler::ResolveLocked(absl::string_view prefix) const {
  if (prefix.empty()) return absl::InvalidArgumentError("job_id: required");
  auto it = job_ids_.lower_bound(IdKey::Of(prefix));
  if (it == job_ids_.end() || !absl::StartsWith(it->id, prefix)) {
    return absl::NotFoundError(absl::StrCat("job ", prefix, " not found"));
  }
  if (it->id.size() == prefix.size()) return std::string(it->id);
  auto next = std::next(it);
  if (next != job_ids_.end() && absl::StartsWith(next->id, prefix)) {
    return absl::InvalidArgumentError(
        absl::StrCat("job id prefix ", prefix, " is ambiguous: matches ", it->id, ", ", next->id,
                     " and maybe more; give more characters"));
  }
  return std::string(it->id);
}

absl::StatusOr<Job> Scheduler::GetJob(absl::string_view id_or_prefix) const {
  absl::ReaderMutexLock lock(&mu_);
  SCHED_ASSIGN_OR_RETURN(std::string id, ResolveLocked(id_or_prefix));
  return jobs_.at(id);
}

JobPage Scheduler::ListJobs(const JobQuery& query) const {
  absl::ReaderMutexLock lock(&mu_);
  auto matches = [&query](const Job& job) {
    if (!query.project.empty() && job.spec.project != query.project) return false;
    if (query.states.empty()) return true;
    return std::find(query.states.begin(), query.states.end(), job.state) != query.states.end();
  };
  JobPage page;
  for (auto it = by_seq_.upper_bound(query.after_seq); it != by_seq_.end(); ++it) {
    if (!matches(*it->second)) continue;
    if (page.jobs.size() == query.limit) {
      page.next_after_seq = page.jobs.back().seq;
      break;
    }
    page.jobs.push_back(*it->second);
  }
  return page;
}

void Scheduler::Cancel(absl::string_view id_or_prefix, std::string reason, Done<Job> done) {
  Apply<Job>(
      [&](Outbox& out) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return CancelLocked(id_or_prefix, std::move(reason), out);
      },
      std::move(done));
}

absl::StatusOr<Job> Scheduler::CancelLocked(absl::string_view id_or_prefix, std::string reason,
                                            Outbox& out) {
  SCHED_ASSIGN_OR_RETURN(std::string id, ResolveLocked(id_or_prefix));
  Job& job = jobs_.at(id);
  if (IsTerminal(job.state)) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id, " already ended ", JobStateName(job.state)));
  }
  if (reason.empty()) reason = "cancelled by user";
  if (job.state == JobState::kPending) {
    ClearWaiting(job);
    pending_.Remove(job);
    Unhold(job);
    SetState(job, JobState::kCancelled);
    job.finish_time = job.update_time;
    job.cancel_requested = true;
    job.message = std::move(reason);
    PutJob(job, out);
    return job;
  }
  if (job.cancel_requested) return job;
  job.cancel_requested = true;
  job.message = std::move(reason);
  job.update_time = clock_->Now();
  PutJob(job, out);
  NodeEntry& entry = EntryFor(job.node);
  if (entry.link) {
    out.commands.push_back(
        [link = entry.link, id = job.id, epoch = job.epoch] { link->Cancel(id, epoch); });
  }
  return job;
}

// ---------------------------------------------------------------------------------------------
// Operators

std::vector<Node> Scheduler::ListNodes() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<Node> nodes;
  nodes.reserve(nodes_.size());
  const absl::Time now = clock_->Now();
  for (const auto& [name, entry] : nodes_) nodes.push_back(View(entry, now));
  return nodes;
}

absl::StatusOr<Node> Scheduler::GetNode(absl::string_view name) const {
  absl::ReaderMutexLock lock(&mu_);
  const NodeEntry* entry = FindNode(name);
  if (entry == nullptr) return absl::NotFoundError(absl::StrCat("node ", name, " not found"));
  return View(*entry, clock_->Now());
}

Node Scheduler::View(const NodeEntry& entry, absl::Time now) const {
  Node node = entry.node;
  if (node.record.rental) node.cost_so_far = RentalCost(entry, now);
  return node;
}

void Scheduler::Cordon(absl::string_view name, bool cordon, Done<Node> done) {
  Apply<Node>(
      [&](Outbox& out) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return SetCordonLocked(name, cordon, /*drain=*/false, out);
      },
      std::move(done));
}

void Scheduler::Drain(absl::string_view name, Done<Node> done) {
  Apply<Node>(
      [&](Outbox& out) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return SetCordonLocked(name, /*cordon=*/true, /*drain=*/true, out);
      },
      std::move(done));
}

absl::StatusOr<Node> Scheduler::SetCordonLocked(absl::string_view name, bool cordon, bool drain,
                                                Outbox& out) {
  NodeEntry* found = FindNode(name);
  if (found == nullptr) return absl::NotFoundError(absl::StrCat("node ", name, " not found"));
  NodeEntry& entry = *found;
  NodeRecord& record = entry.node.record;
  const bool was_schedulable = entry.node.Schedulable();
  record.cordoned = cordon;
  record.draining = cordon && (drain || record.draining);
  PutNode(record, out);
  if (drain && entry.link) out.commands.push_back([link = entry.link] { link->Drain(); });
  if (!was_schedulable && entry.node.Schedulable()) {
    GainedRoom(entry);
    Schedule(out);
  }
  return View(entry, clock_->Now());
}

// ---------------------------------------------------------------------------------------------
// Agents

void Scheduler::ConnectAgent(const std::string& name, NodeCapabilities caps,
                             std::vector<JobRef> running, std::shared_ptr<AgentLink> link,
                             Done<uint64_t> done) {
  Apply<uint64_t>(
      [&](Outbox& out) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return ConnectLocked(name, std::move(caps), running, std::move(link), out);
      },
      std::move(done));
}

absl::StatusOr<uint64_t> Scheduler::ConnectLocked(const std::string& name, NodeCapabilities caps,
                                                  const std::vector<JobRef>& running,
                                                  std::shared_ptr<AgentLink> link, Outbox& out) {
  if (!IsValidName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "node_name: must be 1-63 characters of letters, digits, '.', '_' or '-', got \"", name,
        "\""));
  }
  if (caps.cpu_millis <= 0) {
    return absl::InvalidArgumentError("capabilities.cpus: must be > 0");
  }
  const absl::Time now = clock_->Now();
  if (const NodeEntry* known = FindNode(name);
      known != nullptr && known->node.record.rental &&
      (known->node.record.rental->phase == RentalPhase::kTerminating ||
       known->node.record.rental->phase == RentalPhase::kGone)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "node ", name, " was rented and is ",
        known->node.record.rental->phase == RentalPhase::kGone ? "given back" : "being given back",
        ": it takes no work"));
  }
  NodeEntry& entry = EntryFor(name);
  NodeRecord& record = entry.node.record;
  if (record.rental && (record.rental->phase == RentalPhase::kProvisioning ||
                        record.rental->phase == RentalPhase::kJoining)) {
    record.rental->phase = RentalPhase::kReady;
    record.rental->ready_time = now;
    NoteRentalEvent(*record.rental, now, RentalPhase::kReady, "its agent joined");
  }
  const bool is_new = record.name.empty() || record.register_time == absl::InfinitePast();
  if (is_new) {
    record.name = name;
    record.register_time = now;
  }
  if (record.rental) {
    // What it was rented as stays what it is: its provider (never the user's own machine) and
    // the price it is metered at, whatever its agent says.
    caps.provider = record.caps.provider;
    caps.price_per_hour = record.rental->price_per_hour;
    caps.spot = record.caps.spot;
    caps.local_price.reset();
    caps.price_schedule = {};
  }
  record.caps = std::move(caps);
  RefreshNodeFacts(entry);
  PutNode(record, out);
  stats_.nodes_total = nodes_.size();
  if (!entry.node.connected) stats_.agents_connected++;
  entry.node.connected = true;
  entry.node.preempting = false;  // a new connection: a machine woken up, or a new one
  MarkHeard(entry, now);
  entry.link = std::move(link);
  entry.session = ++last_session_;
  // Jobs leased here that the agent no longer holds were lost with its previous process or
  // stream: back to the queue.
  std::set<std::string> held;
  for (const JobRef& ref : running) held.insert(ref.job_id);
  std::vector<std::string> lost;
  for (const auto& [id, job] : entry.jobs) {
    if (!held.count(id)) lost.push_back(id);
  }
  for (const std::string& id : lost) {
    EndLease(jobs_.at(id), absl::StrCat("agent on ", name, " reconnected without the job"), out);
  }
  RenewLeases(entry, running, out);
  if (record.draining) out.commands.push_back([link = entry.link] { link->Drain(); });
  GainedRoom(entry);
  Schedule(out);
  return entry.session;
}

void Scheduler::DisconnectAgent(const std::string& name, uint64_t session) {
  absl::MutexLock lock(&mu_);
  NodeEntry* entry = FindNode(name);
  if (entry == nullptr || entry->session != session || !entry->node.connected) return;
  entry->node.connected = false;
  heard_.erase({entry->node.last_heartbeat, entry});
  entry->link.reset();
  stats_.agents_connected--;
}

absl::StatusOr<Scheduler::NodeEntry*> Scheduler::SessionNode(const std::string& name,
                                                             uint64_t session) {
  NodeEntry* entry = FindNode(name);
  if (entry == nullptr || entry->session != session || !entry->node.connected) {
    return StaleSession(name);
  }
  return entry;
}

absl::StatusOr<Job*> Scheduler::LeasedJob(const std::string& node, const JobRef& ref) {
  auto it = jobs_.find(ref.job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("job ", ref.job_id, " not found"));
  }
  absl::Status held = LeaseHeld(it->second, node, ref);
  if (!held.ok()) {
    stats_.stale_reports_total++;
    return held;
  }
  return &it->second;
}

absl::Status Scheduler::LeaseHeld(const Job& job, const std::string& node, const JobRef& ref) {
  if (job.epoch != ref.epoch || job.node != node || !IsLeased(job.state)) {
    return absl::FailedPreconditionError(
        absl::StrFormat("stale epoch %d for job %s on node %s: the job is %s at epoch %d%s",
                        ref.epoch, job.id, node, JobStateName(job.state), job.epoch,
                        job.node.empty() ? "" : absl::StrCat(" on node ", job.node)));
  }
  return absl::OkStatus();
}

absl::Status Scheduler::CheckLease(const std::string& node, const JobRef& ref) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = jobs_.find(ref.job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("job ", ref.job_id, " not found"));
  }
  return LeaseHeld(it->second, node, ref);
}

void Scheduler::RenewLeases(NodeEntry& entry, const std::vector<JobRef>& refs, Outbox& out) {
  const absl::Time expiry = clock_->Now() + options_.lease_ttl;
  for (const JobRef& ref : refs) {
    absl::StatusOr<Job*> job = LeasedJob(entry.node.record.name, ref);
    if (job.ok()) {
      SetLeaseExpiry(**job, expiry);
      // The cancel sent earlier may have been lost with a stream: say it again until it ends.
      if (((*job)->cancel_requested || !(*job)->stop_reason.empty() ||
           !(*job)->yield_to.empty()) &&
          entry.link) {
        out.commands.push_back([link = entry.link, ref] { link->Cancel(ref.job_id, ref.epoch); });
      }
    } else if (entry.link) {
      out.commands.push_back(
          [link = entry.link, ref, reason = std::string(job.status().message())] {
            link->Stop(ref.job_id, ref.epoch, reason);
          });
    }
  }
}

absl::Status Scheduler::NotePreempting(const std::string& name, uint64_t session,
                                       const std::string& source, int64_t seconds_left) {
  absl::MutexLock lock(&mu_);
  SCHED_ASSIGN_OR_RETURN(NodeEntry * entry, SessionNode(name, session));
  if (!entry->node.preempting) stats_.preemption_notices_total++;
  entry->node.preempting = true;
  return absl::OkStatus();
}

absl::Status Scheduler::Heartbeat(const std::string& name, uint64_t session,
                                  const std::vector<JobRef>& running) {
  Outbox out;
  {
    absl::MutexLock lock(&mu_);
    SCHED_ASSIGN_OR_RETURN(NodeEntry * entry, SessionNode(name, session));
    MarkHeard(*entry, clock_->Now());
    RenewLeases(*entry, running, out);
    Seal(out);
  }
  Deliver(std::move(out), [](absl::Status) {});
  return absl::OkStatus();
}

absl::Status Scheduler::SetOwnerGpus(const std::string& name, uint64_t session,
                                     const std::set<uint32_t>& gpus, const std::string& detail) {
  Outbox out;
  {
    absl::MutexLock lock(&mu_);
    SCHED_ASSIGN_OR_RETURN(NodeEntry * entry, SessionNode(name, session));
    Node& node = entry->node;
    std::set<uint32_t> owned;
    for (const GpuDevice& g : node.record.caps.gpus) {
      if (gpus.count(g.index)) owned.insert(g.index);
    }
    node.owner_detail = owned.empty() ? "" : detail.substr(0, 1024);
    if (owned == node.owner_gpus) return absl::OkStatus();
    bool freed = false;
    for (uint32_t g : owned) {
      if (node.owner_gpus.count(g)) continue;
      node.busy_gpus.insert(g);
      stats_.owner_gpu_takes_total++;
    }
    for (uint32_t g : node.owner_gpus) {
      if (owned.count(g)) continue;
      // Given back: free unless a job still holds it (one that has not ended its step aside).
      const bool held = std::any_of(entry->jobs.begin(), entry->jobs.end(), [&](const auto& j) {
        const std::vector<uint32_t>& held_gpus = jobs_.at(j.first).gpu_indexes;
        return std::find(held_gpus.begin(), held_gpus.end(), g) != held_gpus.end();
      });
      if (!held) {
        node.busy_gpus.erase(g);
        freed = true;
      }
    }
    node.owner_gpus = std::move(owned);
    entry->version++;
    by_price_.Touch(&entry->price_slot);
    by_gpu_price_.Touch(&entry->gpu_price_slot);
    for (const auto& [key, waiter] : entry->waiting) pending_.ForgetStanding(waiter.group);
    if (freed) {
      GainedRoom(*entry);
      Schedule(out);
    }
    Seal(out);
  }
  Deliver(std::move(out), [](absl::Status) {});
  return absl::OkStatus();
}

void Scheduler::ReportJob(const std::string& name, uint64_t session, JobReport report,
                          Done<Job> done) {
  Apply<Job>(
      [&](Outbox& out)
          ABSL_NO_THREAD_SAFETY_ANALYSIS { return ReportLocked(name, session, report, out); },
      std::move(done));
}

absl::StatusOr<Job> Scheduler::ReportLocked(const std::string& name, uint64_t session,
                                            const JobReport& report, Outbox& out) {
  SCHED_RETURN_IF_ERROR(SessionNode(name, session).status());
  const JobRef ref{report.job_id, report.epoch};
  absl::StatusOr<Job*> leased = LeasedJob(name, ref);
  if (!leased.ok()) {
    auto it = jobs_.find(report.job_id);
    if (it != jobs_.end() && IsTerminal(report.state) && it->second.finished_by_agent &&
        it->second.epoch == report.epoch && it->second.node == name) {
      stats_.stale_reports_total--;
      out.ticket = last_ticket_;  // a repeat: acknowledge once the first one is durable
      return it->second;
    }
    return leased.status();
  }
  Job& job = **leased;
  const absl::Time now = clock_->Now();
  if (report.state == JobState::kRunning) {
    if (job.state == JobState::kAssigned) {
      SetState(job, JobState::kRunning);
      job.start_time = now;
      if (!job.attempts.empty() && job.attempts.back().epoch == job.epoch) {
        job.attempts.back().resumed_from = report.resumed_from.substr(0, 256);
        job.attempts.back().resumed_from_seq = report.resumed_from_seq;
      }
      PutJob(job, out);
    }
    return job;
  }
  if (!IsTerminal(report.state) || report.state == JobState::kStoppedEarly) {
    return absl::InvalidArgumentError(
        absl::StrCat("state: an agent reports RUNNING, SUCCEEDED, FAILED or CANCELLED, not ",
                     JobStateName(report.state)));
  }
  if (report.preempted && !job.cancel_requested && job.stop_reason.empty()) {
    // The node is being taken back: not the job's failure. It goes back to the queue and
    // resumes from its newest checkpoint wherever it goes next.
    job.preemptions++;
    // A job that stepped aside for the owner of the machine (its GPU is the owner's now) is not
    // a spot preemption: it is counted apart, and not in what the preemption alert watches.
    const NodeEntry* on = FindNode(name);
    const bool for_owner =
        on != nullptr && std::any_of(job.gpu_indexes.begin(), job.gpu_indexes.end(),
                                     [&](uint32_t g) { return on->node.owner_gpus.count(g) > 0; });
    (for_owner ? stats_.owner_step_asides_total : stats_.preemptions_total)++;
    const std::string provider = job.attempts.empty() ? "" : job.attempts.back().provider;
    const bool spot = !job.attempts.empty() && job.attempts.back().spot;
    job.finished_by_agent = true;
    EndLease(job,
             absl::StrCat("preempted on node ", name,
                          report.message.empty() ? "" : absl::StrCat(": ", report.message)),
             out, /*preempted=*/true);
    if (spot) RefreshSpotRisk(provider);
    Schedule(out);
    return job;
  }
  if (!job.yield_to.empty() && !job.cancel_requested && job.stop_reason.empty() &&
      report.state != JobState::kSucceeded) {
    // Stopped to make room for a higher-priority job: back to the queue, not a failure (nor a
    // spot preemption: sched_priority_preemptions_total counted it when it was asked to stop).
    job.preemptions++;
    job.finished_by_agent = true;
    const std::string reason =
        absl::StrCat("preempted on node ", name, " for higher-priority job ", job.yield_to);
    job.yield_to.clear();
    EndLease(job, reason, out, /*preempted=*/true);
    if (NodeEntry* entry = FindNode(name); entry != nullptr) {
      CompleteReservation(*entry, clock_->Now(), out);
    }
    Schedule(out);
    return job;
  }
  job.yield_to.clear();
  JobState final_state = report.state;
  std::string message = report.message;
  if (job.cancel_requested) {
    final_state = JobState::kCancelled;
    message = job.message;
  } else if (!job.stop_reason.empty() && final_state != JobState::kSucceeded) {
    // (A job that succeeded ended on its own before the stop reached it: it stays SUCCEEDED.)
    final_state = job.stopped_early ? JobState::kStoppedEarly : JobState::kFailed;
    message = job.stop_reason;
  } else if (final_state == JobState::kCancelled) {
    final_state = JobState::kFailed;
    message = absl::StrCat("stopped by the agent: ", report.message);
  }
  std::string ended = message;
  if (final_state == JobState::kSucceeded) {
    ended = "succeeded";
  } else if (ended.empty()) {
    ended = final_state == JobState::kFailed ? absl::StrCat("exit code ", report.exit_code)
                                             : std::string(JobStateName(final_state));
  }
  EndAttempt(job, ended, /*preempted=*/false);
  MeterLease(job, out);
  Release(job);
  OpenUnleasedIfIdle(name, out);
  if (final_state == JobState::kFailed && report.state == JobState::kFailed &&
      job.stop_reason.empty() && job.spec.retry.Restarts(report.exit_code, job.restarts) &&
      LimitPassed(job, now).empty()) {
    // A failure the job's retry policy restarts: back to the queue after the backoff, as a new
    // attempt that resumes from the newest checkpoint.
    job.restarts++;
    const absl::Time at = now + job.spec.retry.Backoff(job.restarts);
    job.exit_code = report.exit_code;
    job.attempt++;
    job.node.clear();
    job.gpu_indexes.clear();
    job.decision = Decision();
    job.finished_by_agent = true;
    SetState(job, JobState::kPending);
    stats_.restarts_total++;
    Hold(job, at,
         absl::StrCat(ended, "; restart ", job.restarts, " of ", job.spec.retry.max_restarts,
                      " at ", FormatClock(at)));
    PutJob(job, out);
    Schedule(out);
    return job;
  }
  SetState(job, final_state);
  if (job.start_time == absl::InfinitePast()) job.start_time = now;
  job.finish_time = now;
  job.exit_code = report.exit_code;
  job.message = std::move(message);
  job.finished_by_agent = true;
  PutJob(job, out);
  if (final_state == JobState::kSucceeded) RecordRun(job);
  Schedule(out);
  return job;
}

absl::Status Scheduler::AppendLog(const std::string& name, uint64_t session, const JobRef& ref,
                                  LogStreamKind stream, std::string data) {
  LogRecord record;
  bool passed_limit = false;
  {
    absl::MutexLock lock(&mu_);
    SCHED_RETURN_IF_ERROR(SessionNode(name, session).status());
    SCHED_ASSIGN_OR_RETURN(Job * job, LeasedJob(name, ref));
    record.attempt = job->attempt;
    if (const uint64_t max = options_.max_log_bytes_per_job; max > 0) {
      uint64_t& kept = log_bytes_[ref.job_id];
      if (kept >= max) {
        stats_.log_bytes_dropped_total += data.size();
        return absl::OkStatus();
      }
      if (data.size() > max - kept) {
        stats_.log_bytes_dropped_total += data.size() - (max - kept);
        data.resize(max - kept);
        passed_limit = true;
      }
      kept += data.size();
    }
  }
  record.stream = stream;
  record.data = std::move(data);
  record.time = clock_->Now();
  const uint32_t attempt = record.attempt;
  std::vector<LogRecord> records;
  if (!record.data.empty()) records.push_back(std::move(record));
  if (passed_limit) {
    LogRecord note;
    note.attempt = attempt;
    note.stream = LogStreamKind::kStderr;
    note.data = absl::StrCat("\n[sched: this job's output passed ", options_.max_log_bytes_per_job,
                             " bytes (--max_log_bytes_per_job); the rest is not kept]\n");
    note.time = clock_->Now();
    records.push_back(std::move(note));
  }
  for (LogRecord& r : records) {
    SCHED_ASSIGN_OR_RETURN(r.index, store_->AppendLog(ref.job_id, r));
    absl::MutexLock lock(&sub_mu_);
    for (auto& [id, fn] : log_subs_) fn(ref.job_id, r);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<LogRecord>> Scheduler::ReadLogs(const std::string& job_id,
                                                           uint64_t from_index, size_t max) const {
  return store_->ReadLogs(job_id, from_index, max);
}

// ---------------------------------------------------------------------------------------------
// Time

void Scheduler::SetLeaseExpiry(const Job& job, absl::Time expiry) {
  auto [it, added] = lease_expiry_.try_emplace(job.id, expiry);
  if (!added) {
    expiry_order_.erase({it->second, &job});
    it->second = expiry;
  }
  expiry_order_.insert({expiry, &job});
}

void Scheduler::EraseLeaseExpiry(const Job& job) {
  auto it = lease_expiry_.find(job.id);
  if (it == lease_expiry_.end()) return;
  expiry_order_.erase({it->second, &job});
  lease_expiry_.erase(it);
}

void Scheduler::MarkHeard(NodeEntry& entry, absl::Time when) {
  heard_.erase({entry.node.last_heartbeat, &entry});
  entry.node.last_heartbeat = when;
  if (entry.node.connected) heard_.insert({when, &entry});
}

void Scheduler::Tick() {
  Outbox out;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    // Connected agents, the longest silent first.
    while (!heard_.empty() && heard_.begin()->first + options_.lease_ttl < now) {
      // Silent but its stream is open (a paused machine): stop trusting the session.
      NodeEntry& entry = *heard_.begin()->second;
      heard_.erase(heard_.begin());
      entry.node.connected = false;
      entry.link.reset();
      stats_.agents_connected--;
    }
    std::vector<std::string> expired;
    for (auto it = expiry_order_.begin(); it != expiry_order_.end() && it->first < now; ++it) {
      expired.push_back(it->second->id);
    }
    std::sort(expired.begin(), expired.end());  // deterministic order
    for (const std::string& id : expired) {
      Job& job = jobs_.at(id);
      stats_.lease_expiries_total++;
      EndLease(job, absl::StrCat("lease expired on node ", job.node), out);
    }
    // A new month: what every project may spend starts again.
    const absl::Time month = MonthStart(now);
    const bool new_month = month != month_;
    if (new_month) {
      if (month_ != absl::InfinitePast()) pending_.Unsettle("");
      month_ = month;
      if (month != spend_month_) RebuildSpendIndex(month);
    }
    // Jobs that wait by choice are decided again when their time comes (a deadline closing in).
    bool revisit = false;
    while (!revisits_.empty() && revisits_.begin()->first <= now) {
      const std::string id = revisits_.begin()->second;
      revisits_.erase(revisits_.begin());
      revisit_of_.erase(id);
      auto it = jobs_.find(id);
      if (it != jobs_.end() && it->second.state == JobState::kPending) {
        pending_.UnsettleGroupOf(it->second);
        revisit = true;
      }
    }
    MoveOverruns(now);
    const bool released = ReleaseHolds(now, out);
    CheckLimits(now, out);
    const bool unreserved = PreemptForPriority(now, out);
    if (!expired.empty() || new_month || revisit || released || unreserved) Schedule(out);
    Seal(out);
  }
  Deliver(std::move(out), [](absl::Status) {});
}

// ---------------------------------------------------------------------------------------------
// Leases and placement

void Scheduler::Allocate(NodeEntry& entry, const Job& job) {
  Node& node = entry.node;
  node.alloc_cpu_millis += job.spec.resources.cpu_millis;
  node.alloc_memory_bytes += job.spec.resources.memory_bytes;
  for (uint32_t gpu : job.gpu_indexes) {
    node.busy_gpus.insert(gpu);
    if (job.spec.resources.share_gpu) {
      Node::GpuShare& share = node.shared_gpus[gpu];
      share.jobs++;
      share.memory_bytes += job.spec.resources.gpu_memory_bytes;
    }
  }
  node.running_jobs++;
  entry.jobs.emplace(job.id, &job);
  entry.version++;
  by_price_.Touch(&entry.price_slot);
  by_gpu_price_.Touch(&entry.gpu_price_slot);
  // Those waiting for the node now wait longer: their decisions are taken again.
  for (const auto& [key, waiter] : entry.waiting) pending_.ForgetStanding(waiter.group);
}

void Scheduler::Release(Job& job) {
  EraseLeaseExpiry(job);
  ClearLimitCheck(job);
  NodeEntry* entry = FindNode(job.node);
  if (entry == nullptr || !entry->jobs.erase(job.id)) return;
  Node& node = entry->node;
  if (node.local && !options_.fair_share.empty()) AddPastUse(job, node, clock_->Now());
  node.alloc_cpu_millis -= job.spec.resources.cpu_millis;
  node.alloc_memory_bytes -= job.spec.resources.memory_bytes;
  for (uint32_t gpu : job.gpu_indexes) {
    auto share = node.shared_gpus.find(gpu);
    if (job.spec.resources.share_gpu && share != node.shared_gpus.end()) {
      share->second.memory_bytes -= job.spec.resources.gpu_memory_bytes;
      if (--share->second.jobs > 0) continue;  // still shared by others
      node.shared_gpus.erase(share);
    }
    if (!node.owner_gpus.count(gpu)) node.busy_gpus.erase(gpu);
  }
  node.running_jobs--;
  entry->version++;
  by_price_.Touch(&entry->price_slot);
  by_gpu_price_.Touch(&entry->gpu_price_slot);
  // Those waiting for the node may now wait less (or, past their expected end, more).
  for (const auto& [key, waiter] : entry->waiting) pending_.ForgetStanding(waiter.group);
  GainedRoom(*entry);
}

LedgerEntry Scheduler::OpenEntry(const Job& job, absl::Time now) const {
  LedgerEntry e;
  e.job_id = job.id;
  e.epoch = job.epoch;
  e.attempt = job.attempt;
  e.project = job.spec.project;
  e.node = job.node;
  e.provider = job.lease_provider;
  e.price_per_hour = job.lease_price_per_hour;
  e.price_schedule = job.lease_price_schedule;
  e.start = job.lease_start;
  e.end = std::max(now, job.lease_start);
  return e;
}

void Scheduler::MeterLease(Job& job, Outbox& out) {
  if (job.lease_start != absl::InfinitePast() && job.lease_price_per_hour > 0) {
    LedgerEntry e = OpenEntry(job, clock_->Now());
    IndexLeaseEnd(job, e);
    job.spent += e.Cost();
    StoreOp op;
    op.kind = StoreOp::Kind::kPutLedger;
    op.ledger = e;
    out.batch.push_back(std::move(op));
    if (NodeEntry* entry = FindNode(job.node); entry != nullptr && entry->node.record.rental) {
      entry->node.record.rental->closed_cost += e.Cost();
      PutNode(entry->node.record, out);
    }
    auto key = std::make_pair(e.job_id, e.epoch);
    ledger_.insert_or_assign(std::move(key), std::move(e));
    // What the project has committed just changed: jobs its budget held may go now.
    auto b = budgets_.find(job.spec.project);
    if (b != budgets_.end() && b->second.hard_cap) {
      pending_.UnsettleHeldByBudget(job.spec.project,
                                    b->second.monthly_limit - SpentAndCommitted(job.spec.project));
    }
  }
  job.lease_start = absl::InfinitePast();
  job.lease_price_per_hour = 0;
  job.lease_price_schedule = {};
  job.lease_provider.clear();
  job.lease_reserved = absl::ZeroDuration();
}

void Scheduler::Assign(Job& job, NodeEntry& entry, std::vector<uint32_t> gpus, Decision decision,
                       Outbox& out) {
  auto waited = waiting_for_.find(job.id);
  NodeEntry* waited_for = waited != waiting_for_.end() ? waited->second : nullptr;
  ClearWaiting(job);
  const PendingQueue::Group* group = pending_.Remove(job);
  if (waited_for != nullptr && group != nullptr && group->first != nullptr &&
      !waiting_for_.contains(group->first->id)) {
    // The group's next job waits where the group waited until it is decided itself: the group
    // stays counted in that node's queue, where those behind it already counted it.
    Job& next = *group->first;
    waited_for->waiting[group->first_key] = {&next, group};
    waited_for->waiting_version++;
    waiting_for_[next.id] = waited_for;
  }
  job.decision = std::move(decision);
  SetState(job, JobState::kAssigned);
  job.epoch = ++last_epoch_;
  job.node = entry.node.record.name;
  job.gpu_indexes = std::move(gpus);
  job.message.clear();
  job.finished_by_agent = false;
  job.lease_start = clock_->Now();
  if (entry.node.record.rental && entry.node.running_jobs == 0) {
    CloseUnleased(entry, job.lease_start, out);
  }
  job.lease_price_per_hour = entry.node.record.caps.price_per_hour;
  job.lease_price_schedule = entry.node.record.caps.price_schedule;
  job.lease_provider = entry.node.record.caps.provider;
  JobAttempt& attempt = job.attempts.emplace_back();
  attempt.attempt = job.attempt;
  attempt.epoch = job.epoch;
  attempt.node = job.node;
  attempt.provider = entry.node.record.caps.provider;
  attempt.spot = entry.node.record.caps.spot;
  attempt.start = job.lease_start;
  if (job.attempts.size() > Job::kMaxAttemptsKept) job.attempts.erase(job.attempts.begin());
  IndexLeaseStart(job, &entry.node);
  SetLeaseExpiry(job, clock_->Now() + options_.lease_ttl);
  Allocate(entry, job);
  SetLimitCheck(job, job.lease_start);
  stats_.assignments_total++;
  PutJob(job, out);
  out.commands.push_back([link = entry.link, job] {
    MaybeCrashAt(kFailpointBeforeSendAssignment);
    link->Assign(job);
  });
}

void Scheduler::EndLease(Job& job, const std::string& reason, Outbox& out, bool preempted) {
  job.yield_to.clear();
  const std::string node = job.node;
  const uint64_t epoch = job.epoch;
  EndAttempt(job, reason, preempted);
  MeterLease(job, out);
  Release(job);
  OpenUnleasedIfIdle(node, out);
  if (job.cancel_requested) {
    SetState(job, JobState::kCancelled);
    job.finish_time = job.update_time;
  } else if (!job.stop_reason.empty()) {
    SetState(job, job.stopped_early ? JobState::kStoppedEarly : JobState::kFailed);
    job.finish_time = job.update_time;
    job.message = job.stop_reason;
  } else if (std::string limit = LimitPassed(job, job.update_time); !limit.empty()) {
    SetState(job, JobState::kFailed);
    job.finish_time = job.update_time;
    job.message = std::move(limit);
  } else if (job.attempt - std::min(job.attempt, job.preemptions) >= options_.max_attempts) {
    SetState(job, JobState::kFailed);
    job.finish_time = job.update_time;
    job.message = absl::StrCat("gave up after ", job.attempt, " attempts; last: ", reason);
  } else {
    SetState(job, JobState::kPending);
    job.attempt++;
    job.node.clear();
    job.gpu_indexes.clear();
    job.message = reason;
    job.decision = Decision();  // where it went no longer holds; the next decision says why
    QueuedAhead(pending_.Add(&job, /*settled=*/false), job);
  }
  PutJob(job, out);
  const NodeEntry* entry = FindNode(node);
  if (entry != nullptr && entry->link) {
    out.commands.push_back(
        [link = entry->link, id = job.id, epoch, reason] { link->Stop(id, epoch, reason); });
  }
}

void Scheduler::EndAttempt(Job& job, const std::string& reason, bool preempted) {
  if (job.attempts.empty()) return;
  JobAttempt& a = job.attempts.back();
  if (a.epoch != job.epoch || a.end != absl::InfinitePast()) return;
  a.end = clock_->Now();
  a.end_reason = reason;
  a.preempted = preempted;
  job.run_time += std::max(a.end - a.start, absl::ZeroDuration());
  if (!a.spot) return;
  ProviderRisk& risk = provider_risk_[a.provider];
  risk.spot_hours += absl::ToDoubleHours(std::max(a.end - a.start, absl::ZeroDuration()));
  if (preempted) risk.preemptions++;
}

// ---------------------------------------------------------------------------------------------
// Holds and limits

void Scheduler::Hold(Job& job, absl::Time until, std::string why) {
  Unhold(job);
  job.hold_until = until;
  job.message = std::move(why);
  job.update_time = clock_->Now();
  held_.insert({until, &job});
}

void Scheduler::Unhold(Job& job) { held_.erase({job.hold_until, &job}); }

bool Scheduler::ReleaseHolds(absl::Time now, Outbox& out) {
  bool released = false;
  while (!held_.empty() && held_.begin()->first <= now) {
    Job& job = *held_.begin()->second;
    held_.erase(held_.begin());
    if (job.state != JobState::kPending) continue;
    job.message.clear();
    job.update_time = job.queued_since = now;
    PutJob(job, out);
    QueuedAhead(pending_.Add(&job, /*settled=*/false), job);
    released = true;
  }
  return released;
}

std::string Scheduler::LimitPassed(const Job& job, absl::Time now) const {
  absl::Duration run = job.run_time;
  if (!job.attempts.empty() && job.attempts.back().epoch == job.epoch &&
      job.attempts.back().end == absl::InfinitePast() && IsLeased(job.state)) {
    run += std::max(now - job.attempts.back().start, absl::ZeroDuration());
  }
  if (job.spec.max_duration > absl::ZeroDuration() && run >= job.spec.max_duration) {
    return absl::StrCat("ran ", absl::FormatDuration(absl::Trunc(run, absl::Seconds(1))),
                        ", its max_duration is ", absl::FormatDuration(job.spec.max_duration));
  }
  double spent = job.spent;
  if (job.lease_start != absl::InfinitePast() && job.lease_price_per_hour > 0) {
    spent += OpenEntry(job, now).Cost();
  }
  if (job.spec.max_cost > 0 && spent >= job.spec.max_cost) {
    return absl::StrCat("cost ", Dollars(spent), ", its max_cost is ", Dollars(job.spec.max_cost));
  }
  return "";
}

void Scheduler::SetLimitCheck(const Job& job, absl::Time now) {
  ClearLimitCheck(job);
  absl::Time at = absl::InfiniteFuture();
  if (job.spec.max_duration > absl::ZeroDuration() && !job.attempts.empty()) {
    at = job.attempts.back().start + (job.spec.max_duration - job.run_time);
  }
  if (job.spec.max_cost > 0 && job.lease_start != absl::InfinitePast()) {
    // The dearest hour the lease can be charged, so the check comes no later than the limit.
    double rate = job.lease_price_per_hour;
    for (const cost::PriceWindow& w : job.lease_price_schedule.windows) {
      rate = std::max(rate, w.usd_per_hour);
    }
    if (rate > 0) {
      double left = job.spec.max_cost - job.spent;
      if (job.lease_price_per_hour > 0) left -= OpenEntry(job, now).Cost();
      at = std::min(at, now + absl::Seconds(std::max(left, 0.0) / rate * 3600));
    }
  }
  if (at == absl::InfiniteFuture()) return;
  limit_of_[&job] = at;
  limit_order_.insert({at, &job});
}

void Scheduler::ClearLimitCheck(const Job& job) {
  auto it = limit_of_.find(&job);
  if (it == limit_of_.end()) return;
  limit_order_.erase({it->second, &job});
  limit_of_.erase(it);
}

void Scheduler::CheckLimits(absl::Time now, Outbox& out) {
  std::vector<Job*> due;
  for (auto it = limit_order_.begin(); it != limit_order_.end() && it->first <= now; ++it) {
    due.push_back(const_cast<Job*>(it->second));
  }
  std::sort(due.begin(), due.end(), [](const Job* a, const Job* b) { return a->id < b->id; });
  for (Job* job : due) {
    ClearLimitCheck(*job);
    std::string limit = LimitPassed(*job, now);
    if (limit.empty()) {
      // Not yet (a cheaper hour than the dearest one counted): look again later.
      SetLimitCheck(*job, now);
      auto it = limit_of_.find(job);
      if (it != limit_of_.end() && it->second <= now) {
        limit_order_.erase({it->second, job});
        it->second = now + absl::Seconds(1);
        limit_order_.insert({it->second, job});
      }
      continue;
    }
    // Stopped like a cancel, so it can checkpoint; it ends FAILED with the reason.
    stats_.limit_stops_total++;
    StopLeased(*job, std::move(limit), /*early=*/false, out);
  }
}

bool Scheduler::PreemptForPriority(absl::Time now, Outbox& out) {
  absl::flat_hash_set<std::string> reserved;  // jobs a node is being cleared for
  bool ended = false;
  for (NodeEntry* entry : std::vector<NodeEntry*>(local_nodes_.begin(), local_nodes_.end())) {
    ended = CompleteReservation(*entry, now, out) || ended;
    if (!entry->node.reserved_for.empty()) reserved.insert(entry->node.reserved_for);
  }
  if (local_nodes_.empty() || pending_.empty()) return ended;
  // The lowest priority running on a user's machine: only a pending job above it may preempt.
  int32_t lowest = std::numeric_limits<int32_t>::max();
  for (const NodeEntry* entry : local_nodes_) {
    for (const auto& [id, job] : entry->jobs) lowest = std::min(lowest, job->spec.priority);
  }
  if (lowest == std::numeric_limits<int32_t>::max()) return ended;
  std::vector<Job*> candidates;
  for (const PendingQueue::Group* group : pending_.Groups()) {
    Job* job = group->first;
    if (job == nullptr || job->spec.priority <= lowest ||
        job->spec.placement == PlacementPolicy::kCloudOnly || reserved.contains(job->id)) {
      continue;
    }
    // One that chose to wait for a cheaper hour is not short of room.
    const Decision& d = job->decision;
    if (!d.options.empty() && d.options.front().verdict == OptionVerdict::kChosen &&
        d.options.front().deferred) {
      continue;
    }
    candidates.push_back(job);
  }
  std::sort(candidates.begin(), candidates.end(), [](const Job* a, const Job* b) {
    return PendingQueue::KeyOf(*a) < PendingQueue::KeyOf(*b);
  });
  std::vector<NodeEntry*> nodes(local_nodes_.begin(), local_nodes_.end());
  std::sort(nodes.begin(), nodes.end(), [](const NodeEntry* a, const NodeEntry* b) {
    return a->node.record.name < b->node.record.name;
  });
  for (Job* high : candidates) {
    const Resources& r = high->spec.resources;
    for (NodeEntry* entry : nodes) {
      const Node& node = entry->node;
      if (!node.Schedulable() || !entry->link || !node.reserved_for.empty() ||
          !CouldEverFit(r, node.record.caps)) {
        continue;
      }
      std::vector<Job*> lower;
      bool stopping = false;
      for (const auto& [id, held] : entry->jobs) {
        Job& job = jobs_.at(id);
        if (!job.yield_to.empty() || job.cancel_requested || !job.stop_reason.empty()) {
          stopping = true;
          break;
        }
        if (job.spec.priority < high->spec.priority) lower.push_back(&job);
      }
      if (stopping || lower.empty()) continue;
      std::sort(lower.begin(), lower.end(), [](const Job* a, const Job* b) {
        if (a->spec.priority != b->spec.priority) return a->spec.priority < b->spec.priority;
        return a->lease_start > b->lease_start || (a->lease_start == b->lease_start && a->seq > b->seq);
      });
      // What the node would have free without the first k of them.
      int64_t cpu = node.alloc_cpu_millis, memory = node.alloc_memory_bytes;
      std::set<uint32_t> busy = node.busy_gpus;
      std::map<uint32_t, Node::GpuShare> shared = node.shared_gpus;
      std::vector<uint32_t> gpus;
      size_t k = 0;
      bool room = false;
      while (k < lower.size() && !room) {
        const Job& v = *lower[k++];
        cpu -= v.spec.resources.cpu_millis;
        memory -= v.spec.resources.memory_bytes;
        for (uint32_t g : v.gpu_indexes) {
          auto s = shared.find(g);
          if (v.spec.resources.share_gpu && s != shared.end() && --s->second.jobs > 0) continue;
          if (s != shared.end()) shared.erase(s);
          if (!node.owner_gpus.count(g)) busy.erase(g);
        }
        room = FitsOn(r, node.record.caps, cpu, memory, busy, &gpus);
      }
      if (!room) continue;
      entry->node.reserved_for = high->id;
      entry->node.reserved_priority = high->spec.priority;
      entry->node.reserved_until = now + kReservationTime;
      for (size_t i = 0; i < k; ++i) {
        Job& v = *lower[i];
        v.yield_to = high->id;
        v.message = absl::StrCat("stopping for higher-priority job ", high->id, " (priority ",
                                 high->spec.priority, " over ", v.spec.priority, ")");
        v.update_time = now;
        stats_.priority_preemptions_total++;
        PutJob(v, out);
        out.commands.push_back(
            [link = entry->link, id = v.id, epoch = v.epoch] { link->Cancel(id, epoch); });
      }
      return ended;  // one node at a time; the next tick looks again
    }
  }
  return ended;
}

double Scheduler::DominantShare(const Job& job, const Node& node) {
  const Resources& r = job.spec.resources;
  const NodeCapabilities& caps = node.record.caps;
  double share = 0;
  if (!caps.gpus.empty()) share = std::max(share, double(r.gpus) / caps.gpus.size());
  if (caps.cpu_millis > 0) share = std::max(share, double(r.cpu_millis) / caps.cpu_millis);
  if (caps.memory_bytes > 0) share = std::max(share, double(r.memory_bytes) / caps.memory_bytes);
  return std::min(share, 1.0);
}

double Scheduler::FairWeight(const std::string& project) const {
  auto it = options_.fair_share.find(project);
  return it != options_.fair_share.end() && it->second > 0 ? it->second : 1.0;
}

double Scheduler::PastUse(const std::string& project, absl::Time now) const {
  auto it = past_use_.find(project);
  if (it == past_use_.end() || it->second.as_of == absl::InfinitePast()) return 0;
  const double halves =
      std::max(0.0, absl::FDivDuration(now - it->second.as_of, options_.fair_share_half_life));
  return it->second.share_seconds * std::exp2(-halves);
}

void Scheduler::AddPastUse(const Job& job, const Node& node, absl::Time now) {
  // The lease's start: MeterLease may have closed it already; the attempt keeps it.
  absl::Time start = job.lease_start;
  if (start == absl::InfinitePast() && !job.attempts.empty() &&
      job.attempts.back().epoch == job.epoch) {
    start = job.attempts.back().start;
  }
  if (start == absl::InfinitePast()) return;
  const double ran = absl::ToDoubleSeconds(std::max(now - start, absl::ZeroDuration()));
  PastUseEntry& e = past_use_[job.spec.project];
  e.share_seconds = PastUse(job.spec.project, now) + DominantShare(job, node) * ran;
  e.as_of = now;
}

bool Scheduler::CompleteReservation(NodeEntry& entry, absl::Time now, Outbox& out) {
  Node& node = entry.node;
  if (node.reserved_for.empty()) return false;
  auto it = jobs_.find(node.reserved_for);
  Job* high = it == jobs_.end() ? nullptr : &it->second;
  const PendingQueue::Group* group = high == nullptr ? nullptr : pending_.GroupOf(*high);
  const bool queued = group != nullptr && group->first == high;
  const bool stopping = std::any_of(entry.jobs.begin(), entry.jobs.end(), [&](const auto& j) {
    return !jobs_.at(j.first).yield_to.empty();
  });
  if (queued && stopping && now < node.reserved_until) return false;  // still winding down
  node.reserved_for.clear();
  node.reserved_until = absl::InfinitePast();
  GainedRoom(entry);  // what was kept is open to every job again
  std::vector<uint32_t> gpus;
  if (!queued || stopping || !node.Schedulable() || !entry.link ||
      !Fits(high->spec.resources, node, &gpus)) {
    return true;
  }
  // The cost brain weighs this one machine: the job's money rules (budget cap, max_cost) and
  // deadline still hold; only waiting for a machine elsewhere is not an option.
  const Work work = WorkOf(*high);
  const DecisionRules rules = RulesOf(*high);
  std::vector<Candidate> cs;
  cs.push_back(MakeCandidate(*high, work, node, /*fits_now=*/true, gpus.size()));
  const Choice choice = Decide(rules, now, absl::MakeSpan(cs));
  if (choice.chosen < 0 || choice.wait) return true;
  Decision record = RecordDecision(rules, now, choice, cs, high->spec.resources, 0);
  record.summary = absl::StrCat(record.summary, " (lower-priority jobs were stopped to make room)");
  Assign(*high, entry, std::move(gpus), std::move(record), out);
  return true;
}

double Scheduler::SpotRate(const std::string& provider, double prior) const {
  auto it = provider_risk_.find(provider);
  if (it == provider_risk_.end()) return prior;
  return (prior * kRiskPriorHours + static_cast<double>(it->second.preemptions)) /
         (kRiskPriorHours + it->second.spot_hours);
}

void Scheduler::RefreshSpotRisk(const std::string& provider) {
  for (auto& [name, entry] : nodes_) {
    if (!entry.node.record.caps.spot || entry.node.record.caps.provider != provider) continue;
    RefreshNodeFacts(entry);
  }
  pending_.Unsettle("");  // spot costs moved: every waiting group is decided again
}

void Scheduler::GainedRoom(NodeEntry& entry) {
  open_nodes_.insert(&entry);
  grown_nodes_.insert(&entry);
}

std::vector<const Node*> Scheduler::OpenNodes() {
  std::vector<const Node*> open;
  for (auto it = open_nodes_.begin(); it != open_nodes_.end();) {
    const Node& node = (*it)->node;
    if (node.Schedulable() && node.FreeCpuMillis() > 0) {
      open.push_back(&node);
      ++it;
    } else {
      open_nodes_.erase(it++);  // back when it gains room again
    }
  }
  return open;
}

// ---------------------------------------------------------------------------------------------
// The cost brain's inputs: what a job is, what each node would make of it

void Scheduler::RefreshNodeFacts(NodeEntry& entry) {
  Node& node = entry.node;
  const NodeCapabilities& caps = node.record.caps;
  ComputeNodeFacts(node);
  // What those waiting for it counted on may have changed.
  entry.version++;
  for (const auto& [key, waiter] : entry.waiting) pending_.ForgetStanding(waiter.group);
  if (node.local) {
    local_nodes_.insert(&entry);
  } else {
    local_nodes_.erase(&entry);
  }
  // The price index of rented nodes.
  if (entry.price_key >= 0) by_price_.Erase(entry.price_key, &node, &entry.price_slot);
  if (entry.gpu_price_key >= 0) {
    by_gpu_price_.Erase(entry.gpu_price_key, &node, &entry.gpu_price_slot);
  }
  unrated_gpu_nodes_.erase(&entry);
  entry.price_key = entry.gpu_price_key = -1;
  if (node.local) return;
  entry.price_key = node.min_price_per_hour;
  by_price_.Insert(entry.price_key, &node, &entry.price_slot);
  if (caps.gpus.empty()) return;
  if (node.gpu_throughput > 0) {
    entry.gpu_price_key = node.min_price_per_hour / node.gpu_throughput;
    by_gpu_price_.Insert(entry.gpu_price_key, &node, &entry.gpu_price_slot);
  } else {
    unrated_gpu_nodes_.insert(&entry);
  }
}

void Scheduler::ComputeNodeFacts(Node& node) const {
  const NodeCapabilities& caps = node.record.caps;
  const cost::Catalog* catalog = options_.catalog.get();
  const cost::Provider* provider =
      catalog != nullptr && !caps.provider.empty() ? catalog->FindProvider(caps.provider) : nullptr;
  node.local = caps.local_price.has_value() || caps.provider.empty() || caps.provider == "local" ||
               (provider != nullptr && provider->local);
  node.gpu_throughput = 0;
  if (catalog != nullptr && !caps.gpus.empty()) {
    const cost::GpuModel* gpu = catalog->FindGpu(caps.gpus.front().model);
    if (gpu != nullptr) node.gpu_throughput = gpu->relative_throughput;
  }
  node.preemptions_per_hour = 0;
  if (caps.spot) {
    node.preemptions_per_hour =
        SpotRate(caps.provider, provider != nullptr && provider->offers_spot
                                    ? provider->spot_preemptions_per_hour
                                    : options_.default_spot_preemptions_per_hour);
  }
  node.min_price_per_hour = node.max_price_per_hour = caps.price_per_hour;
  for (const cost::PriceWindow& w : caps.price_schedule.windows) {
    node.min_price_per_hour = std::min(node.min_price_per_hour, w.usd_per_hour);
    node.max_price_per_hour = std::max(node.max_price_per_hour, w.usd_per_hour);
  }
}

namespace {

// Says in a decision's summary where the runtime came from, when it was not given.
void NoteRuntimeBasis(const Scheduler::Work& work, std::string& summary) {
  if (!work.known) {
    absl::StrAppend(&summary, "; no runtime given or learned: ", absl::FormatDuration(work.plain),
                    " assumed");
  } else if (work.from_history) {
    absl::StrAppend(&summary, "; runtime learned from earlier runs");
  }
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

absl::Status Scheduler::CheckRuntimeGpu(const JobSpec& spec) const {
  const cost::Catalog* catalog = options_.catalog.get();
  if (catalog == nullptr || spec.runtime_gpu_model.empty() ||
      catalog->FindGpu(spec.runtime_gpu_model) != nullptr) {
    return absl::OkStatus();
  }
  std::vector<std::string> keys;
  for (const cost::GpuModel& gpu : catalog->gpus()) keys.push_back(gpu.key);
  return absl::InvalidArgumentError(absl::StrCat(
      "runtime.gpu_model: \"", spec.runtime_gpu_model, "\" is not in the GPU catalog; known: ",
      absl::StrJoin(keys, ", "), " (or their NVML names and aliases)"));
}

void Scheduler::RecordRun(const Job& job) {
  if (job.spec.name.empty()) return;  // nameless jobs have nothing in common
  if (job.start_time == absl::InfinitePast() || job.finish_time <= job.start_time) return;
  const double hours = absl::ToDoubleHours(job.finish_time - job.start_time);
  double gpu_work = 0;
  const NodeEntry* node = FindNode(job.node);
  if (node != nullptr && !job.gpu_indexes.empty() && node->node.gpu_throughput > 0) {
    gpu_work = hours * cost::ScaledThroughput(node->node.gpu_throughput,
                                              static_cast<int32_t>(job.gpu_indexes.size()));
  }
  RunHistory& h = history_[{job.spec.project, job.spec.name}];
  h.runs.emplace_back(gpu_work, hours);
  if (h.runs.size() > options_.history_runs) h.runs.erase(h.runs.begin());
  pending_.ForgetLearned(job.spec.project, job.spec.name);  // their runtime moved
}

Scheduler::Work Scheduler::WorkOf(const Job& job) const {
  Work w;
  const uint32_t gpus = job.spec.resources.gpus;
  const cost::Catalog* catalog = options_.catalog.get();
  if (job.spec.runtime > absl::ZeroDuration()) {
    w.known = true;
    w.plain = job.spec.runtime;
    if (gpus > 0 && catalog != nullptr) {
      const cost::GpuAllocation on{job.spec.runtime_gpu_model.empty() ? catalog->reference_gpu().key
                                                                      : job.spec.runtime_gpu_model,
                                   static_cast<int32_t>(gpus)};
      absl::StatusOr<double> speed = cost::AllocationThroughput(*catalog, on);
      if (speed.ok()) w.gpu_work_hours = absl::ToDoubleHours(job.spec.runtime) * *speed;
    }
    return w;
  }
  auto it =
      job.spec.name.empty() ? history_.end() : history_.find({job.spec.project, job.spec.name});
  if (it != history_.end() && !it->second.runs.empty()) {
    std::vector<double> work, hours;
    for (const auto& [gpu_work, wall] : it->second.runs) {
      hours.push_back(wall);
      if (gpu_work > 0) work.push_back(gpu_work);
    }
    w.known = true;
    w.from_history = true;
    w.plain = absl::Hours(Median(hours));
    if (gpus > 0 && !work.empty()) w.gpu_work_hours = Median(work);
    return w;
  }
  w.plain = options_.budget_reservation;
  return w;
}

absl::Duration Scheduler::RuntimeOn(const Work& work, const Job& job, const Node& node) const {
  const uint32_t gpus = job.spec.resources.gpus;
  if (work.gpu_work_hours > 0 && gpus > 0 && node.gpu_throughput > 0) {
    return absl::Hours(work.gpu_work_hours /
                       cost::ScaledThroughput(node.gpu_throughput, static_cast<int32_t>(gpus)));
  }
  return work.plain;  // not scalable: as given or learned
}

absl::Duration Scheduler::Reservation(const Job& job, const Node* node) const {
  if (node == nullptr) {
    const NodeEntry* entry = FindNode(job.node);
    if (entry == nullptr) return WorkOf(job).plain;
    node = &entry->node;
  }
  return RuntimeOn(WorkOf(job), job, *node);
}

double Scheduler::LeaseCommitment(const Job& job, absl::Time from) {
  const absl::Time start = std::max(job.lease_start, from);
  const absl::Time end = job.lease_start + job.lease_reserved;
  if (end <= start) return 0;
  if (job.lease_price_schedule.empty()) {
    return job.lease_price_per_hour * absl::ToDoubleHours(end - start);
  }
  return cost::CostOver(job.lease_price_schedule, job.lease_price_per_hour, start, end - start);
}

void Scheduler::IndexLeaseStart(Job& job, const Node* node) {
  if (job.lease_start == absl::InfinitePast()) return;
  if (node == nullptr) {
    const NodeEntry* entry = FindNode(job.node);
    if (entry != nullptr) node = &entry->node;
  }
  // As the decision reckoned it: on spot, with the work expected to be redone.
  job.lease_reserved = Reservation(job, node);
  if (node != nullptr && node->record.caps.spot) {
    job.lease_reserved = ExpectedWithPreemption(job.lease_reserved, node->preemptions_per_hour);
  }
  if (job.lease_price_per_hour <= 0) return;  // free: nothing to commit
  spend_version_++;
  ProjectSpend& p = spend_[job.spec.project];
  p.committed += LeaseCommitment(job, spend_month_);
  p.open_by_end.insert({job.lease_start + job.lease_reserved, &job});
}

void Scheduler::SumOverrun(ProjectSpend& p, const Job& job, absl::Time from, int sign) {
  spend_version_++;
  if (!job.lease_price_schedule.empty()) {  // costed one by one
    if (sign > 0) {
      p.overrun_scheduled[&job] = from;
    } else {
      p.overrun_scheduled.erase(&job);
    }
    return;
  }
  p.overrun_rate += sign * job.lease_price_per_hour;
  p.overrun_base += sign * job.lease_price_per_hour * absl::ToDoubleHours(from - absl::UnixEpoch());
}

void Scheduler::MoveOverruns(absl::Time now) {
  for (auto& [project, p] : spend_) {
    while (!p.open_by_end.empty() && p.open_by_end.begin()->first < now) {
      const auto [end, job] = *p.open_by_end.begin();
      p.open_by_end.erase(p.open_by_end.begin());
      const absl::Time from = std::max(end, spend_month_);
      p.overrun[job] = from;
      SumOverrun(p, *job, from, +1);
    }
  }
}

void Scheduler::IndexLeaseEnd(const Job& job, const LedgerEntry& entry) {
  spend_version_++;
  ProjectSpend& p = spend_[job.spec.project];
  p.committed -= LeaseCommitment(job, spend_month_);
  if (!p.open_by_end.erase({job.lease_start + job.lease_reserved, &job})) {
    auto o = p.overrun.find(&job);
    if (o != p.overrun.end()) {
      SumOverrun(p, job, o->second, -1);
      p.overrun.erase(o);
    }
  }
  p.closed += entry.CostWithin(spend_month_, absl::InfiniteFuture());
}

void Scheduler::RebuildSpendIndex(absl::Time month) {
  spend_version_++;
  spend_month_ = month;
  for (auto& [project, p] : spend_) {
    p.closed = 0;
    p.committed = 0;
    p.overrun_rate = 0;
    p.overrun_base = 0;
    for (auto& [job, from] : p.overrun) {
      from = std::max(job->lease_start + job->lease_reserved, month);
      SumOverrun(p, *job, from, +1);
    }
  }
  // In key order, so that the sums come out the same at every start.
  std::vector<const LedgerEntry*> closed;
  closed.reserve(ledger_.size());
  for (const auto& [key, entry] : ledger_) closed.push_back(&entry);
  std::sort(closed.begin(), closed.end(), [](const LedgerEntry* a, const LedgerEntry* b) {
    return std::tie(a->job_id, a->epoch) < std::tie(b->job_id, b->epoch);
  });
  for (const LedgerEntry* entry : closed) {
    spend_[entry->project].closed += entry->CostWithin(month, absl::InfiniteFuture());
  }
  for (const auto& [id, expiry] : lease_expiry_) {
    const Job& job = jobs_.at(id);
    if (job.lease_price_per_hour > 0 && job.lease_start != absl::InfinitePast()) {
      spend_[job.spec.project].committed += LeaseCommitment(job, month);
    }
  }
}

double Scheduler::SpentAndCommitted(const std::string& project) const {
  auto it = spend_.find(project);
  if (it == spend_.end()) return 0;
  const ProjectSpend& p = it->second;
  const absl::Time now = clock_->Now();
  if (p.memo_version == spend_version_ && p.memo_at == now) return p.memo;
  double dollars = p.closed + p.committed;
  // Leases running past their expected end cost what they ran beyond it: summed for those
  // Tick moved, one by one for those with a schedule and those not moved yet.
  dollars += p.overrun_rate * absl::ToDoubleHours(now - absl::UnixEpoch()) - p.overrun_base;
  for (const auto& [job, from] : p.overrun_scheduled) {
    if (now <= from) continue;
    dollars +=
        cost::CostOver(job->lease_price_schedule, job->lease_price_per_hour, from, now - from);
  }
  for (const NodeEntry* entry : rented_) {
    const Rental& r = *entry->node.record.rental;
    if (r.owner_project == project && r.unleased_since != absl::InfinitePast()) {
      dollars += UnleasedEntry(*entry, now).CostWithin(spend_month_, now);
    }
  }
  for (const auto& [end, job_ptr] : p.open_by_end) {
    if (end >= now) break;
    const Job& job = *job_ptr;
    const absl::Time from = std::max(end, spend_month_);
    if (now <= from) continue;
    dollars +=
        job.lease_price_schedule.empty()
            ? job.lease_price_per_hour * absl::ToDoubleHours(now - from)
            : cost::CostOver(job.lease_price_schedule, job.lease_price_per_hour, from, now - from);
  }
  p.memo_version = spend_version_;
  p.memo_at = now;
  p.memo = dollars;
  return dollars;
}

uint64_t Scheduler::WaitingGroupsVersion(const NodeEntry& entry) {
  uint64_t v = entry.waiting_version * 1'000'003 + entry.waiting.size();
  for (const auto& [key, waiter] : entry.waiting) v = v * 31 + waiter.group->version;
  return v;
}

bool Scheduler::RoomFor(const Resources& r, uint64_t usable, const NodeCapabilities& caps,
                        WaitTimeline::State& st) {
  auto fits = [&] {
    return r.cpu_millis <= caps.cpu_millis - st.alloc_cpu &&
           r.memory_bytes <= caps.memory_bytes - st.alloc_memory &&
           (r.gpus == 0 ||
            static_cast<uint32_t>(__builtin_popcountll(usable & ~st.busy_gpus)) >= r.gpus);
  };
  while (!fits()) {
    if (st.ends.empty()) return false;  // more than the node holds
    std::pop_heap(st.ends.begin(), st.ends.end(), EndsLater);
    const Holder& h = st.ends.back();
    st.t = std::max(st.t, h.end);
    st.alloc_cpu -= h.cpu;
    st.alloc_memory -= h.memory;
    st.busy_gpus &= ~h.gpus;
    st.ends.pop_back();
  }
  return true;
}

void Scheduler::StartIn(const Resources& r, uint64_t usable, absl::Duration runtime,
                        WaitTimeline::State& st) {
  uint64_t free = usable & ~st.busy_gpus, taken = 0;
  for (uint32_t n = 0; n < r.gpus && free != 0; ++n) {
    const uint64_t lowest = free & (~free + 1);
    taken |= lowest;
    free &= ~lowest;
  }
  st.alloc_cpu += r.cpu_millis;
  st.alloc_memory += r.memory_bytes;
  st.busy_gpus |= taken;
  st.ends.push_back({st.t + runtime, r.cpu_millis, r.memory_bytes, taken});
  std::push_heap(st.ends.begin(), st.ends.end(), EndsLater);
}

void Scheduler::BuildTimeline(const NodeEntry& entry, absl::Time now, WaitTimeline& tl) const {
  // The running jobs' expected ends: kept while the node's jobs are the same.
  bool base_changed = false;
  if (tl.node_version != entry.version || now < tl.built_at || now >= tl.valid_until) {
    base_changed = true;
    tl.node_version = entry.version;
    tl.built_at = now;
    tl.valid_until = now + kTimelineLife;
    WaitTimeline::State& st = tl.base;
    st.t = now;
    st.alloc_cpu = entry.node.alloc_cpu_millis;
    st.alloc_memory = entry.node.alloc_memory_bytes;
    st.busy_gpus = GpuMask(entry.node.busy_gpus);
    st.ends.clear();
    for (const auto& [id, j] : entry.jobs) {
      const absl::Duration r = j->lease_reserved > absl::ZeroDuration()
                                   ? j->lease_reserved
                                   : Reservation(*j, &entry.node);
      const absl::Time began = j->lease_start != absl::InfinitePast() ? j->lease_start : now;
      absl::Time end = began + r;
      // Past its expected end: assume a tenth more (at least a minute) is left.
      if (end <= now) {
        end = now + std::max(r / 10, absl::Minutes(1));
      } else {
        tl.valid_until = std::min(tl.valid_until, end);  // from then on it is past its end
      }
      st.ends.push_back({end, j->spec.resources.cpu_millis, j->spec.resources.memory_bytes,
                         GpuMask(j->gpu_indexes)});
    }
    std::make_heap(st.ends.begin(), st.ends.end(), EndsLater);
  }
  // The jobs waiting for the node: each waiting group's first job stands for its whole group.
  tl.groups_version = WaitingGroupsVersion(entry);
  // The first kMaxWaitingAhead of their jobs in queue order: the groups' queues merged.
  struct Cursor {
    absl::btree_map<PendingQueue::Key, Job*>::const_iterator at, end;
    absl::Duration runtime;
    uint64_t usable;        // a group's jobs ask the same
    PendingQueue::Key key;  // at's, while at != end
  };
  const NodeCapabilities& caps = entry.node.record.caps;
  std::vector<Cursor> cursors;
  for (const auto& [key, waiter] : entry.waiting) {
    if (waiter.group->jobs.empty()) continue;
    cursors.push_back({waiter.group->jobs.begin(), waiter.group->jobs.end(),
                       Reservation(*waiter.job, &entry.node),
                       UsableGpus(waiter.group->resources, caps),
                       waiter.group->jobs.begin()->first});
  }
  std::vector<WaitTimeline::Item> items;
  items.reserve(kMaxWaitingAhead);
  bool truncated = false;
  // A min-heap of the cursors on their keys.
  auto later = [](const Cursor& a, const Cursor& b) { return b.key < a.key; };
  std::make_heap(cursors.begin(), cursors.end(), later);
  while (!cursors.empty()) {
    if (items.size() == kMaxWaitingAhead) {
      truncated = true;
      break;
    }
    std::pop_heap(cursors.begin(), cursors.end(), later);
    Cursor& c = cursors.back();
    items.push_back({c.key, &c.at->second->spec.resources, c.runtime, c.usable});
    if (++c.at == c.end) {
      cursors.pop_back();
    } else {
      c.key = c.at->first;
      std::push_heap(cursors.begin(), cursors.end(), later);
    }
  }
  // With the running jobs as they were, what comes before the first job that changed stands:
  // the jobs asked about ahead of it, and the states saved before it.
  size_t same = 0;
  if (!base_changed) {
    const size_t n = std::min(items.size(), tl.items.size());
    while (same < n && items[same].key == tl.items[same].key &&
           items[same].resources == tl.items[same].resources &&
           items[same].runtime == tl.items[same].runtime &&
           items[same].usable == tl.items[same].usable) {
      same++;
    }
  }
  if (base_changed) {
    tl.starts.clear();
    tl.saved.clear();
  } else if (same < std::max(items.size(), tl.items.size()) || truncated != tl.truncated) {
    // Jobs from the first that changed on (or, when only what lies past the items changed,
    // those past them) start differently now.
    const bool past = same == items.size() && same == tl.items.size();
    const PendingQueue::Key from = past                   ? items.back().key
                                   : same == items.size() ? tl.items[same].key
                                   : same == tl.items.size()
                                       ? items[same].key
                                       : std::min(items[same].key, tl.items[same].key);
    for (auto it = tl.starts.begin(); it != tl.starts.end();) {
      if (past ? from < it->first : !(it->first < from)) {
        tl.starts.erase(it++);
      } else {
        ++it;
      }
    }
  }
  if (&tl == &entry.timeline) {
    // Past the last job counted, when more wait than are counted, a job that comes or goes
    // changes nothing here.
    const PendingQueue::Key last = truncated
                                       ? items.back().key
                                       : PendingQueue::Key{std::numeric_limits<int64_t>::max(),
                                                           std::numeric_limits<uint64_t>::max()};
    for (const auto& [key, waiter] : entry.waiting) {
      waiter.group->horizon = std::max(waiter.group->horizon, last);
    }
  }
  tl.items = std::move(items);
  tl.truncated = truncated;
  const size_t keep = same / kSaveEvery;  // saved[keep] is the state before items[keep * 16]
  if (tl.saved.size() > keep) tl.saved.resize(keep + 1);
  if (tl.saved.empty()) tl.saved.push_back(tl.base);
  // The rest is started as jobs behind them are asked about (ExpectedWait).
}

absl::Duration Scheduler::ExpectedWait(const Job& job, const NodeEntry& entry, absl::Time now,
                                       bool cached) const {
  const absl::Duration wait = WaitOn(job, entry, now, cached);
  if (cached && options_.verify_timelines) {
    const absl::Duration fresh = WaitOn(job, entry, now, /*cached=*/false);
    timeline_reads_++;
    // A kept timeline starts from when it was built: a job it starts at once ends that much
    // sooner than in one built now, and so may the waits behind it.
    const absl::Duration slack = now - entry.timeline.built_at;
    if (wait != fresh && (wait == absl::InfiniteDuration() || fresh == absl::InfiniteDuration() ||
                          absl::AbsDuration(wait - fresh) > slack)) {
      timeline_mismatches_++;
    }
  }
  return wait;
}

absl::Duration Scheduler::WaitOn(const Job& job, const NodeEntry& entry, absl::Time now,
                                 bool cached) const {
  WaitTimeline apart;
  WaitTimeline* tl = &apart;
  if (cached) {
    tl = &entry.timeline;
    if (tl->node_version != entry.version || now < tl->built_at || now >= tl->valid_until ||
        tl->groups_version != WaitingGroupsVersion(entry)) {
      BuildTimeline(entry, now, *tl);
    }
  } else {
    BuildTimeline(entry, now, apart);
  }
  // The jobs ahead of `job`: those before it in queue order.
  const PendingQueue::Key mine = PendingQueue::KeyOf(job);
  auto known = tl->starts.find(mine);
  if (known != tl->starts.end()) {
    return known->second == absl::InfiniteFuture()
               ? absl::InfiniteDuration()
               : std::max(known->second - now, absl::ZeroDuration());
  }
  const size_t ahead = std::lower_bound(tl->items.begin(), tl->items.end(), mine,
                                        [](const WaitTimeline::Item& item,
                                           const PendingQueue::Key& k) { return item.key < k; }) -
                       tl->items.begin();
  if (tl->truncated && ahead == tl->items.size()) {  // too far back to say
    tl->starts[mine] = absl::InfiniteFuture();
    return absl::InfiniteDuration();
  }
  // From the last saved state before them, start the rest, then find room for `job`.
  const size_t from = ahead / kSaveEvery;
  const NodeCapabilities& caps = entry.node.record.caps;
  // The states are saved as far as jobs have been asked about: on to this one.
  while (tl->saved.size() <= from) {
    WaitTimeline::State next = tl->saved.back();
    const size_t begin = (tl->saved.size() - 1) * kSaveEvery;
    for (size_t i = begin; i < begin + kSaveEvery; ++i) {
      const WaitTimeline::Item& item = tl->items[i];
      if (RoomFor(*item.resources, item.usable, caps, next)) {
        StartIn(*item.resources, item.usable, item.runtime, next);
      }
    }
    tl->saved.push_back(std::move(next));
  }
  WaitTimeline::State st = tl->saved[from];
  for (size_t i = from * kSaveEvery; i < ahead; ++i) {
    const WaitTimeline::Item& item = tl->items[i];
    if (RoomFor(*item.resources, item.usable, caps, st)) {
      StartIn(*item.resources, item.usable, item.runtime, st);
    }
  }
  const bool room = RoomFor(job.spec.resources, UsableGpus(job.spec.resources, caps), caps, st);
  tl->starts[mine] = room ? st.t : absl::InfiniteFuture();
  if (!room) return absl::InfiniteDuration();
  return std::max(st.t - now, absl::ZeroDuration());
}

Candidate Scheduler::MakeCandidate(const Job& job, const Work& work, const Node& node,
                                   bool fits_now, size_t gpus_taken) const {
  Candidate c;
  c.node = &node;
  c.local = node.local;
  c.spot = node.record.caps.spot;
  c.fits_now = fits_now;
  c.runtime = RuntimeOn(work, job, node);
  c.price_per_hour = node.record.caps.price_per_hour;
  c.preemptions_per_hour = node.preemptions_per_hour;
  if (!node.record.caps.price_schedule.empty()) c.schedule = &node.record.caps.price_schedule;
  if (fits_now) {
    c.wait = absl::ZeroDuration();
    // A job packed onto a card already shared takes no more of them.
    const size_t used = node.busy_gpus.size() + gpus_taken;
    c.gpus_left = node.record.caps.gpus.size() > used ? node.record.caps.gpus.size() - used : 0;
    c.cpu_left = node.FreeCpuMillis() - job.spec.resources.cpu_millis;
  }
  return c;
}

void Scheduler::ScanRented(const Job& job, const Work& work, const DecisionRules& rules,
                           absl::Time now, std::vector<Candidate>& cs) const {
  const Resources& r = job.spec.resources;
  // The least a node can cost the job is its key times this: its cheapest hour for the job's
  // runtime there, before preemption losses and dearer hours (decision.h only adds those).
  const bool by_speed = r.gpus > 0 && work.gpu_work_hours > 0;
  const double per_key =
      by_speed ? work.gpu_work_hours / cost::ScaledThroughput(1.0, static_cast<int32_t>(r.gpus))
               : absl::ToDoubleHours(work.plain);
  // The cheapest node met so far that the job may take by its deadline, and from the start
  // what max_cost and the budget allow: a node that costs more cannot be chosen. Until one is
  // met, the cheapest node over those limits is looked for too: it says what the job would need
  // (the budget room it waits for, the figures of its message).
  double best = HUGE_VAL;
  if (rules.max_cost > 0) best = rules.max_cost;
  if (rules.budget_room >= 0) best = std::min(best, rules.budget_room);
  bool met = false;
  double over = HUGE_VAL;  // the cheapest node met so far that a limit rules out
  std::vector<uint32_t> gpus;
  auto consider = [&](const Node& node) {
    if (!node.Schedulable() || !Fits(r, node, &gpus)) return;
    Candidate& c = cs.emplace_back(MakeCandidate(job, work, node, /*fits_now=*/true, gpus.size()));
    Candidate probe = c;
    Decide(rules, now, absl::MakeSpan(&probe, 1));
    if (probe.verdict == OptionVerdict::kChosen && probe.finish <= rules.deadline) {
      best = std::min(best, probe.cost);
      met = true;
    } else if (probe.verdict == OptionVerdict::kOverBudget ||
               probe.verdict == OptionVerdict::kOverMaxCost) {
      over = std::min(over, probe.cost);
    }
  };
  // Blocks of nodes where the job fits nowhere are passed over. A node costs at least its key
  // times per_key, and the nodes after it no less.
  (by_speed ? by_gpu_price_ : by_price_).Walk(r, [&](double key, const Node& node) {
    const double least = key * per_key;
    if (least > best + 1e-9 && (met || least > over + 1e-9)) return false;
    consider(node);
    return true;
  });
  if (by_speed) {
    for (const NodeEntry* entry : unrated_gpu_nodes_) consider(entry->node);
  }
}

void Scheduler::Gather(const Job& job, const Work& work, const DecisionRules& rules,
                       const std::vector<const Node*>* nodes, bool everything, bool cached,
                       absl::Time now, std::vector<Candidate>& cs) const {
  const Resources& r = job.spec.resources;
  std::vector<uint32_t> gpus;
  auto add = [&](const Node& node, bool fits_now) -> Candidate& {
    return cs.emplace_back(MakeCandidate(job, work, node, fits_now, gpus.size()));
  };
  // A node that can never hold the job, or one with no room that is waited for (the user's
  // own) or shown (estimates).
  auto waits = waiting_for_.find(job.id);
  const NodeEntry* waits_for = waits != waiting_for_.end() ? waits->second : nullptr;
  auto add_busy = [&](const NodeEntry& entry) {
    const Node& node = entry.node;
    Candidate& c = add(node, false);
    c.waited_for = &entry == waits_for;
    if (!CouldEverFit(r, node.record.caps)) {
      c.too_small = true;
    } else if (!(node.local && rules.placement == PlacementPolicy::kCloudOnly)) {
      c.wait = ExpectedWait(job, entry, now, cached);
    }
  };
  size_t local_fits = 0;
  if (!everything && nodes == nullptr && options_.fast_decisions) {
    ScanRented(job, work, rules, now, cs);
  } else if (!everything && nodes == nullptr) {  // the reference: every node with room
    for (const auto& [name, entry] : nodes_) {
      const Node& node = entry.node;
      if (node.local || !node.Schedulable() || !Fits(r, node, &gpus)) continue;
      add(node, true);
    }
  } else if (!everything) {
    for (const Node* node : *nodes) {
      if (!node->Schedulable() || ReservedAgainst(*node, job) || !Fits(r, *node, &gpus)) continue;
      add(*node, true);
      if (node->local) local_fits++;
    }
  }
  if (!everything) {
    for (const NodeEntry* entry : local_nodes_) {
      const Node& node = entry->node;
      if (!node.Schedulable()) continue;
      if (local_fits > 0 &&
          std::any_of(cs.begin(), cs.end(), [&](const Candidate& c) { return c.node == &node; })) {
        continue;
      }
      if (!ReservedAgainst(node, job) && Fits(r, node, &gpus)) {
        add(node, true);
      } else {
        add_busy(*entry);
      }
    }
    return;
  }
  for (const auto& [name, entry] : nodes_) {
    const Node& node = entry.node;
    if (!node.Schedulable()) continue;
    if (Fits(r, node, &gpus)) {
      add(node, true);
    } else {
      add_busy(entry);
    }
  }
}

DecisionRules Scheduler::RulesOf(const Job& job) const {
  DecisionRules rules;
  rules.placement = job.spec.placement;
  rules.spot = job.spec.spot;
  rules.deadline = job.spec.deadline;
  rules.max_cost = job.spec.max_cost;
  auto b = budgets_.find(job.spec.project);
  if (b != budgets_.end() && b->second.hard_cap) {
    rules.budget_room =
        std::max(0.0, b->second.monthly_limit - SpentAndCommitted(job.spec.project));
  }
  return rules;
}

void Scheduler::SetWaiting(Job& job, NodeEntry* entry, absl::Time revisit) {
  auto w = waiting_for_.find(job.id);
  const bool same = entry != nullptr && w != waiting_for_.end() && w->second == entry;
  if (same) {  // waits for the same node: only when to look again changes
    auto r = revisit_of_.find(job.id);
    if (r != revisit_of_.end()) {
      revisits_.erase({r->second, job.id});
      revisit_of_.erase(r);
    }
  } else {
    ClearWaiting(job);
  }
  const PendingQueue::Group* group = entry != nullptr ? pending_.GroupOf(job) : nullptr;
  if (group != nullptr && !same) {
    const PendingQueue::Key key = PendingQueue::KeyOf(job);
    entry->waiting[key] = {&job, group};
    // Its group now counts ahead of those behind it there.
    for (auto it = entry->waiting.upper_bound(key); it != entry->waiting.end(); ++it) {
      pending_.ForgetStanding(it->second.group);
    }
    entry->waiting_version++;
    waiting_for_[job.id] = entry;
  }
  if (revisit < absl::InfiniteFuture()) {
    revisits_.insert({revisit, job.id});
    revisit_of_[job.id] = revisit;
  }
}

Scheduler::NodeEntry* Scheduler::TimelineKeptBy(const Job& job) {
  const PendingQueue::Group* group = pending_.GroupOf(job);
  if (group == nullptr || group->first == nullptr) return nullptr;
  auto w = waiting_for_.find(group->first->id);
  if (w == waiting_for_.end()) return nullptr;
  NodeEntry* entry = w->second;
  const WaitTimeline& tl = entry->timeline;
  const bool current =
      tl.node_version == entry->version && tl.groups_version == WaitingGroupsVersion(*entry);
  return current && tl.truncated && !tl.items.empty() &&
                 tl.items.back().key < PendingQueue::KeyOf(job)
             ? entry
             : nullptr;
}

void Scheduler::QueuedAhead(const PendingQueue::Group* group, const Job& job) {
  if (group == nullptr || group->first == nullptr) return;
  // The job that may wait for a node on the group's behalf: its first, or the one it
  // replaced as first.
  const Job* waiter = group->first;
  if (waiter == &job) {
    if (group->jobs.size() < 2) return;
    waiter = std::next(group->jobs.begin())->second;
  }
  auto w = waiting_for_.find(waiter->id);
  if (w == waiting_for_.end()) return;
  const NodeEntry& entry = *w->second;
  for (auto it = entry.waiting.upper_bound(PendingQueue::KeyOf(job)); it != entry.waiting.end();
       ++it) {
    pending_.ForgetStanding(it->second.group);
  }
}

void Scheduler::KeepStanding(const Job& job, const Work& work, const DecisionRules& rules,
                             absl::Time now, const Choice& choice, absl::Span<const Candidate> cs) {
  PendingQueue::Standing s;
  s.known = true;
  s.budget_room = rules.budget_room;
  s.gpu_work_hours = work.gpu_work_hours;
  s.plain = work.plain;
  // Past the time NoteWait set to look at it again, the decision no longer stands.
  auto revisit = revisit_of_.find(job.id);
  if (revisit != revisit_of_.end()) s.until = revisit->second;
  // A node priced by the time of day costs a little more or less each minute: decisions that
  // weighed one are taken again after a minute.
  for (const Candidate& c : cs) {
    if (c.schedule != nullptr && !c.too_small) {
      s.until = std::min(s.until, now + kTimelineLife);
      break;
    }
  }
  s.bar = HUGE_VAL;  // no choice: any node with room may win
  if (choice.chosen >= 0 && !choice.meets_deadline) {
    // Nothing meets the deadline, so the earliest finish wins: a node must finish sooner.
    s.finish_bar = cs[choice.chosen].finish;
  }
  if (choice.chosen >= 0) s.chosen_cost = cs[choice.chosen].cost;
  if (choice.chosen >= 0 && choice.meets_deadline) {
    // The chosen option at its dearest hour: its start moves as time goes by.
    const Candidate& c = cs[choice.chosen];
    s.bar = c.expected_runtime == absl::InfiniteDuration()
                ? HUGE_VAL
                : std::max(c.cost,
                           absl::ToDoubleHours(c.expected_runtime) * c.node->max_price_per_hour);
  }
  pending_.SetStanding(job, s);
}

bool Scheduler::CouldChange(const PendingQueue::Group& group, const Node& node, absl::Time now) {
  const PendingQueue::Standing& s = group.standing;
  if (!options_.fast_decisions || !s.known || group.first == nullptr || now >= s.until) {
    return true;
  }
  const Job& job = *group.first;
  std::vector<uint32_t> gpus;
  if (!node.Schedulable() || !Fits(job.spec.resources, node, &gpus)) return false;
  // Nothing to beat and nothing that could rule the node out: no need to weigh it first.
  const JobSpec& spec = job.spec;
  if (s.bar == HUGE_VAL && s.finish_bar == absl::InfiniteFuture() && s.budget_room < 0 &&
      spec.max_cost <= 0 && spec.placement == PlacementPolicy::kPreferLocal &&
      spec.spot == SpotPolicy::kAuto) {
    return true;
  }
  // A rented node that costs more than the standing choice at its dearest, even at its own
  // cheapest hour, cannot beat it (the bound of ScanRented's walk; RuntimeOn's runtime).
  const Resources& r = spec.resources;
  if (!node.local && s.finish_bar == absl::InfiniteFuture() && s.bar < HUGE_VAL) {
    const bool by_speed = r.gpus > 0 && s.gpu_work_hours > 0 && node.gpu_throughput > 0;
    const double least = by_speed
                             ? node.min_price_per_hour / node.gpu_throughput * s.gpu_work_hours /
                                   cost::ScaledThroughput(1.0, static_cast<int32_t>(r.gpus))
                             : node.min_price_per_hour * absl::ToDoubleHours(s.plain);
    if (least > s.bar + 1e-9) return false;
  }
  // The node as the decision would weigh it, alone.
  Work work;
  work.gpu_work_hours = s.gpu_work_hours;
  work.plain = s.plain;
  Candidate c = MakeCandidate(job, work, node, /*fits_now=*/true, gpus.size());
  DecisionRules rules;
  rules.placement = job.spec.placement;
  rules.spot = job.spec.spot;
  rules.deadline = job.spec.deadline;
  rules.max_cost = job.spec.max_cost;
  rules.budget_room = s.budget_room;
  Decide(rules, now, absl::MakeSpan(&c, 1));
  switch (c.verdict) {
    case OptionVerdict::kOverBudget:
      pending_.NoteBudgetNeedAtMost(&group, c.cost);  // to be tried when the budget has room
      return false;
    case OptionVerdict::kChosen:
      break;
    default:  // ruled out by policy or max_cost
      return false;
  }
  if (s.finish_bar < absl::InfiniteFuture()) return c.finish <= s.finish_bar;
  if (s.bar == HUGE_VAL) return true;
  // prefer-local takes the user's own machine with room, if it meets the deadline, at any cost.
  if (node.local && rules.placement == PlacementPolicy::kPreferLocal) {
    return c.finish <= rules.deadline;
  }
  // The standing choice meets the deadline: a node that does not, or costs more, loses to it.
  return c.finish <= rules.deadline && c.cost <= s.bar + 1e-9;
}

bool Scheduler::OverBudgetNow(const PendingQueue::Group& group,
                              absl::flat_hash_map<std::string, double>& room_left) const {
  const PendingQueue::Standing& s = group.standing;
  if (!s.known || s.budget_room < 0 || s.chosen_cost <= 0) return false;
  auto [it, added] = room_left.try_emplace(group.project, 0.0);
  if (added) {
    auto b = budgets_.find(group.project);
    it->second = b == budgets_.end() || !b->second.hard_cap
                     ? HUGE_VAL
                     : b->second.monthly_limit - SpentAndCommitted(group.project);
  }
  return s.chosen_cost > it->second + 1e-9;
}

void Scheduler::ClearWaiting(const Job& job) {
  auto w = waiting_for_.find(job.id);
  if (w != waiting_for_.end()) {
    w->second->waiting.erase(PendingQueue::KeyOf(job));
    w->second->waiting_version++;
    waiting_for_.erase(w);
  }
  auto r = revisit_of_.find(job.id);
  if (r != revisit_of_.end()) {
    revisits_.erase({r->second, job.id});
    revisit_of_.erase(r);
  }
}

void Scheduler::NoteWait(Job& job, const Work& work, const DecisionRules& rules, absl::Time now,
                         const Choice& choice, absl::Span<const Candidate> cs, Outbox& out) {
  double budget_needed = -1;  // the cheapest option with room that the budget holds back
  int verdicts[static_cast<int>(kLastOptionVerdict) + 1] = {};
  const Candidate* money_node = nullptr;
  for (const Candidate& c : cs) {
    verdicts[static_cast<int>(c.verdict)]++;
    // A node with room, or the user's own that will have room, is taken when the budget lets it.
    if (c.verdict == OptionVerdict::kOverBudget && c.start != absl::InfiniteFuture() &&
        (budget_needed < 0 || c.cost < budget_needed)) {
      budget_needed = c.cost;
    }
    if (!c.fits_now) continue;
    if (money_node == nullptr &&
        (c.verdict == OptionVerdict::kOverBudget || c.verdict == OptionVerdict::kOverMaxCost)) {
      money_node = &c;
    }
  }
  if (budget_needed >= 0) pending_.NoteBudgetNeedAtMost(pending_.GroupOf(job), budget_needed);
  // Messages are made of these figures (times to the minute, dollars to the cent): when they
  // are as last time, only the revisit may change, and the strings are not made again.
  const Candidate* chosen = choice.chosen >= 0 ? &cs[choice.chosen] : nullptr;
  auto minutes = [](absl::Time t) {
    return t == absl::InfiniteFuture() ? -1 : absl::ToUnixSeconds(t) / 60;
  };
  auto cents = [](double d) { return std::isfinite(d) ? std::llround(d * 100) : -1; };
  uint64_t fingerprint =
      absl::Hash<std::tuple<const void*, bool, bool, int64_t, int64_t, long long, const void*,
                            long long, long long, std::string_view, bool>>{}(
          {chosen != nullptr ? chosen->node : nullptr, choice.wait, choice.meets_deadline,
           chosen ? minutes(chosen->start) : 0, chosen ? minutes(chosen->finish) : 0,
           chosen ? cents(chosen->cost) : 0, money_node ? money_node->node : nullptr,
           money_node ? cents(money_node->cost) : 0, cents(rules.budget_room),
           std::string_view(reinterpret_cast<const char*>(verdicts), sizeof(verdicts)),
           chosen != nullptr && chosen->deferred});
  fingerprint |= 1;  // never 0, the value of "no wait noted"
  const bool same = fingerprint == job.wait_fingerprint && !job.message.empty();
  if (same && chosen == nullptr) return;
  // What money holds back, with the figures: the first node with room over a limit.
  std::string money;
  for (const Candidate& c : cs) {
    if (!c.fits_now) continue;
    if (c.verdict == OptionVerdict::kOverMaxCost) {
      money = absl::StrFormat("on %s it would cost about $%.2f, over its max_cost $%.2f",
                              c.node->record.name, c.cost, rules.max_cost);
    } else if (c.verdict == OptionVerdict::kOverBudget) {
      const Budget& cap = budgets_.at(job.spec.project);
      money = absl::StrFormat(
          "project %s's budget of $%.2f a month would be passed: $%.2f spent and committed, "
          "about $%.2f more on %s",
          job.spec.project, cap.monthly_limit, cap.monthly_limit - rules.budget_room, c.cost,
          c.node->record.name);
    } else {
      continue;
    }
    break;
  }
  std::string message;
  if (choice.chosen >= 0) {  // waits for a local node by choice
    // Decide again when the node should have room (or its cheap window opens), or when the
    // first of the nodes with room now that meet the deadline would stop meeting it.
    absl::Time revisit = chosen->start;
    for (const Candidate& c : cs) {
      if (!c.fits_now || rules.deadline == absl::InfiniteFuture()) continue;
      if (c.verdict != OptionVerdict::kDearer && c.verdict != OptionVerdict::kLater) continue;
      const absl::Time latest = rules.deadline - c.expected_runtime;
      if (latest > now) revisit = std::min(revisit, latest);
    }
    revisit = std::max(revisit, now + absl::Seconds(1));
    SetWaiting(job, FindNode(chosen->node->record.name), revisit);
    if (same) return;
    message = Summary(rules, now, choice, cs);  // "waiting for ws (local): ..."
    if (!money.empty()) absl::StrAppend(&message, "; ", money);
  } else {
    ClearWaiting(job);
    // Only money holds it back, or nothing can take it: "no node can take the job now: ...".
    message = absl::StrCat("waiting: ", money.empty() ? Summary(rules, now, choice, cs) : money);
  }
  NoteRuntimeBasis(work, message);
  job.wait_fingerprint = fingerprint;
  if (job.message == message) return;
  job.message = std::move(message);
  job.decision =
      RecordDecision(rules, now, choice, cs, job.spec.resources, options_.decision_options);
  NoteRuntimeBasis(work, job.decision.summary);
  PutJob(job, out);
}

std::optional<Placement> Scheduler::PlaceWithin(Job& job, const std::vector<const Node*>* nodes,
                                                Outbox& out, Decision* record) {
  const absl::Time now = clock_->Now();
  const Work work = WorkOf(job);
  const DecisionRules rules = RulesOf(job);
  by_price_.Prepare();
  by_gpu_price_.Prepare();
  std::vector<Candidate>& cs = scratch_;
  cs.clear();
  Gather(job, work, rules, nodes, /*everything=*/false, /*cached=*/true, now, cs);
  if (cs.empty()) return std::nullopt;
  const Choice choice = Decide(rules, now, absl::MakeSpan(cs));
  stats_.decisions_total++;
  if (choice.chosen < 0 || choice.wait) {
    NoteWait(job, work, rules, now, choice, cs, out);
    KeepStanding(job, work, rules, now, choice, cs);
    return std::nullopt;
  }
  Placement p;
  p.node = cs[choice.chosen].node;
  Fits(job.spec.resources, *p.node, &p.gpu_indexes);
  if (record != nullptr) {
    *record = RecordDecision(rules, now, choice, cs, job.spec.resources, options_.decision_options);
    NoteRuntimeBasis(work, record->summary);
  }
  return p;
}

bool Scheduler::TryPlace(Job& job, const std::vector<const Node*>* nodes, Outbox& out) {
  Decision record;
  std::optional<Placement> placement = PlaceWithin(job, nodes, out, &record);
  if (!placement) return false;
  Assign(job, *FindNode(placement->node->record.name), std::move(placement->gpu_indexes),
         std::move(record), out);
  return true;
}

absl::StatusOr<Decision> Scheduler::Estimate(JobSpec spec) const {
  const absl::Time now = clock_->Now();
  SCHED_RETURN_IF_ERROR(ValidateAndDefaultJobSpec(spec, now));
  SCHED_RETURN_IF_ERROR(EstimateGpuMemory(spec));
  SCHED_RETURN_IF_ERROR(CheckRuntimeGpu(spec));
  absl::ReaderMutexLock lock(&mu_);
  Job job;
  job.spec = std::move(spec);
  job.seq = last_seq_ + 1;  // behind everything queued
  job.create_time = now;
  const Work work = WorkOf(job);
  std::vector<Candidate> cs;
  const DecisionRules rules = RulesOf(job);
  Gather(job, work, rules, nullptr, /*everything=*/true, /*cached=*/false, now, cs);
  AddOfferCandidates(job, work, cs);
  const Choice choice = Decide(rules, now, absl::MakeSpan(cs));
  Decision d = RecordDecision(rules, now, choice, cs, job.spec.resources, cs.size());
  NoteRuntimeBasis(work, d.summary);
  return d;
}

void Scheduler::Schedule(Outbox& out, Job* only) {
  if (only != nullptr) {
    // Queued jobs that ask the same already fit no node with room: neither does this one.
    const PendingQueue::Group* group = pending_.GroupOf(*only);
    if (group != nullptr && group->settled && group->jobs.size() > 1) return;
    TryPlace(*only, /*nodes=*/nullptr, out);
    return;
  }
  // A settled group fits no node that had room at the end of the last pass, and those nodes
  // have only lost room since; so it is tried on the nodes that gained room. An unsettled group
  // is tried on every node with room.
  const absl::Time now = clock_->Now();
  std::vector<const Node*> grown;
  for (const NodeEntry* entry : grown_nodes_) {
    const Node& node = entry->node;
    if (node.Schedulable() && node.FreeCpuMillis() > 0) grown.push_back(&node);
  }
  grown_nodes_.clear();
  const MostRoom grown_room = MostRoom::Of(grown);
  std::vector<const Node*> open;
  MostRoom open_room;
  bool open_known = false;
  absl::flat_hash_map<std::string, double> room_left;  // by capped project, this pass
  // The groups that may fit what has room, first jobs in queue order first (a min-heap).
  // With fair share, among the same priority: the project holding the least of the user's
  // machines for its weight, then the one that used the least of them lately.
  const bool fair = !options_.fair_share.empty();
  struct FairKey {
    double held = 0;
    double past = 0;
  };
  absl::flat_hash_map<std::string, FairKey> fair_keys;
  auto fair_key = [&](const std::string& project) -> FairKey& {
    auto [it, added] = fair_keys.try_emplace(project);
    if (added) it->second.past = PastUse(project, now) / FairWeight(project);
    return it->second;
  };
  if (fair) {
    for (const NodeEntry* entry : local_nodes_) {
      for (const auto& [id, job] : entry->jobs) {
        fair_key(job->spec.project).held +=
            DominantShare(*job, entry->node) / FairWeight(job->spec.project);
      }
    }
  }
  auto after = [&](const PendingQueue::Group* a, const PendingQueue::Group* b) {
    if (!fair || a->first_key.first != b->first_key.first) return b->first_key < a->first_key;
    const FairKey fa = fair_key(a->project);  // copies: the map may grow between the calls
    const FairKey fb = fair_key(b->project);
    if (fa.held != fb.held) return fb.held < fa.held;
    if (fa.past != fb.past) return fb.past < fa.past;
    return b->first_key < a->first_key;
  };
  // With fair share, room on a user's machine is decided afresh: who goes first has changed.
  const bool grown_local = fair && std::any_of(grown.begin(), grown.end(),
                                               [](const Node* node) { return node->local; });
  std::vector<const PendingQueue::Group*> live;
  for (const PendingQueue::Group* group : pending_.Groups()) {
    if (!group->settled && !open_known) {
      open = OpenNodes();
      open_room = MostRoom::Of(open);
      open_known = true;
    }
    // Most groups fail this cheap test when one job's end freed a little room.
    if (!(group->settled ? grown_room : open_room).MayFit(group->resources)) continue;
    live.push_back(group);
  }
  std::make_heap(live.begin(), live.end(), after);
  // Walks the queue in order and places each job that fits, as decided then: a group's first
  // job is decided with what the jobs before it took already taken, and when it is placed the
  // group's next job takes its turn.
  while (!live.empty()) {
    std::pop_heap(live.begin(), live.end(), after);
    const PendingQueue::Group* group = live.back();
    live.pop_back();
    if (group->first == nullptr) continue;
    // A settled group's last decision stands unless a node that gained room (and still has it)
    // could beat it, or the budget no longer covers it.
    if (group->settled && !OverBudgetNow(*group, room_left) && !(fair && grown_local) &&
        std::none_of(grown.begin(), grown.end(),
                     [&](const Node* node) { return CouldChange(*group, *node, now); })) {
      stats_.decisions_skipped_total++;
      continue;
    }
    Job& job = *group->first;
    Decision record;
    std::optional<Placement> p = PlaceWithin(job, group->settled ? &grown : nullptr, out, &record);
    if (!p) continue;  // it waits, and says why (NoteWait)
    const std::string project = job.spec.project;
    NodeEntry& chosen = *FindNode(p->node->record.name);
    Assign(job, chosen, std::move(p->gpu_indexes), std::move(record), out);
    room_left.erase(project);  // less is left under its cap
    if (fair && chosen.node.local) {
      // The project holds more now: the order of what is left changes.
      fair_key(project).held += DominantShare(job, chosen.node) / FairWeight(project);
      if (group->first != nullptr) live.push_back(group);
      std::make_heap(live.begin(), live.end(), after);
    } else if (group->first != nullptr) {
      live.push_back(group);
      std::push_heap(live.begin(), live.end(), after);
    }
  }
  pending_.SettleAll();
}

// ---------------------------------------------------------------------------------------------
// Rented capacity

void Scheduler::NoteRentalEvent(Rental& rental, absl::Time now, RentalPhase phase,
                                const std::string& message) {
  // The first event (the create request) is kept; the oldest after it make room.
  if (rental.events.size() >= Rental::kMaxEvents) rental.events.erase(rental.events.begin() + 1);
  rental.events.push_back({now, phase, message});
}

LedgerEntry Scheduler::UnleasedEntry(const NodeEntry& entry, absl::Time now) const {
  const Rental& r = *entry.node.record.rental;
  LedgerEntry e;
  e.job_id = absl::StrCat("node:", entry.node.record.name);
  e.epoch = r.ledger_seq + 1;
  e.project = r.owner_project;
  e.node = entry.node.record.name;
  e.provider = entry.node.record.caps.provider;
  e.price_per_hour = r.price_per_hour;
  e.start = r.unleased_since;
  e.end = std::max(now, r.unleased_since);
  return e;
}

void Scheduler::CloseUnleased(NodeEntry& entry, absl::Time until, Outbox& out) {
  Rental& r = *entry.node.record.rental;
  if (r.unleased_since == absl::InfinitePast()) return;
  if (until > r.unleased_since) {
    LedgerEntry e = UnleasedEntry(entry, until);
    r.ledger_seq = e.epoch;
    r.closed_cost += e.Cost();
    spend_[e.project].closed += e.CostWithin(spend_month_, absl::InfiniteFuture());
    StoreOp op;
    op.kind = StoreOp::Kind::kPutLedger;
    op.ledger = e;
    out.batch.push_back(std::move(op));
    auto key = std::make_pair(e.job_id, e.epoch);
    ledger_.insert_or_assign(std::move(key), std::move(e));
  }
  r.unleased_since = absl::InfinitePast();
  spend_version_++;
  PutNode(entry.node.record, out);
}

void Scheduler::OpenUnleasedIfIdle(const std::string& node, Outbox& out) {
  NodeEntry* entry = FindNode(node);
  if (entry == nullptr || !entry->node.record.rental) return;
  Rental& r = *entry->node.record.rental;
  if (!r.active() || entry->node.running_jobs > 0 || r.unleased_since != absl::InfinitePast()) {
    return;
  }
  r.unleased_since = clock_->Now();
  spend_version_++;
  PutNode(entry->node.record, out);
}

double Scheduler::RentalCost(const NodeEntry& entry, absl::Time now) const {
  const Rental& r = *entry.node.record.rental;
  double dollars = r.closed_cost;
  if (!r.active()) return dollars;
  for (const auto& [id, job] : entry.jobs) {
    if (job->lease_start != absl::InfinitePast() && job->lease_price_per_hour > 0) {
      dollars += OpenEntry(*job, now).Cost();
    }
  }
  if (r.unleased_since != absl::InfinitePast()) dollars += UnleasedEntry(entry, now).Cost();
  return dollars;
}

void Scheduler::SetOffers(std::vector<Offer> offers, RentalOptions options) {
  absl::MutexLock lock(&mu_);
  offers_ = std::move(offers);
  rental_options_ = options;
  offer_nodes_.clear();
  offer_nodes_.reserve(offers_.size());
  for (const Offer& offer : offers_) {
    Node& node = offer_nodes_.emplace_back();
    node.record.name = absl::StrCat(offer.provider, "/", offer.id);
    node.record.caps = offer.caps;
    ComputeNodeFacts(node);
    node.local = false;  // rented, whatever it advertises
  }
}

void Scheduler::AddOfferCandidates(const Job& job, const Work& work,
                                   std::vector<Candidate>& cs) const {
  for (size_t i = 0; i < offers_.size(); ++i) {
    const Node& node = offer_nodes_[i];
    Candidate& c = cs.emplace_back(MakeCandidate(job, work, node, /*fits_now=*/false, 0));
    c.rental = true;
    if (!CouldEverFit(job.spec.resources, node.record.caps)) {
      c.too_small = true;
      continue;
    }
    c.wait = offers_[i].provisioning_time;
    c.paid_idle = offers_[i].provisioning_time + rental_options_.idle_tail;
  }
}

void Scheduler::PlanRentals(Done<RentalPlan> done) {
  Apply<RentalPlan>([&](Outbox& out) ABSL_NO_THREAD_SAFETY_ANALYSIS { return PlanLocked(out); },
                    std::move(done));
}

absl::StatusOr<RentalPlan> Scheduler::PlanLocked(Outbox& out) {
  RentalPlan plan;
  const absl::Time now = clock_->Now();
  // The rented nodes on their way, and the new ones this plan makes, as copies whose room the
  // plan's jobs take (deques: candidates point into them while more are added).
  std::deque<Node> coming;
  for (const NodeEntry* entry : rented_) {
    const RentalPhase phase = entry->node.record.rental->phase;
    if (!entry->node.connected &&
        (phase == RentalPhase::kProvisioning || phase == RentalPhase::kJoining)) {
      coming.push_back(entry->node);
    }
  }
  std::sort(coming.begin(), coming.end(),
            [](const Node& a, const Node& b) { return a.record.name < b.record.name; });
  std::deque<Node> planned;  // planned[i] is plan.new_nodes[i]
  if (coming.empty() && offers_.empty()) return plan;
  std::vector<std::pair<PendingQueue::Key, Job*>> queue;
  for (const PendingQueue::Group* group : pending_.Groups()) {
    for (const auto& [key, job] : group->jobs) queue.emplace_back(key, job);
  }
  const size_t weighed = std::min(queue.size(), rental_options_.max_jobs);
  std::partial_sort(queue.begin(), queue.begin() + weighed, queue.end(),
                    [](const auto& a, const auto& b) { return a.first < b.first; });
  by_price_.Prepare();
  by_gpu_price_.Prepare();
  std::vector<Candidate> cs;
  std::vector<uint32_t> gpus;
  auto take = [&](Node& node, const Job& job) {
    const bool fits = Fits(job.spec.resources, node, &gpus);
    (void)fits;  // the candidate was made because it fits
    node.alloc_cpu_millis += job.spec.resources.cpu_millis;
    node.alloc_memory_bytes += job.spec.resources.memory_bytes;
    for (uint32_t g : gpus) node.busy_gpus.insert(g);
  };
  for (size_t q = 0; q < weighed; ++q) {
    Job& job = *queue[q].second;
    const Resources& r = job.spec.resources;
    plan.jobs_weighed++;
    const Work work = WorkOf(job);
    const DecisionRules rules = RulesOf(job);
    cs.clear();
    Gather(job, work, rules, nullptr, /*everything=*/false, /*cached=*/true, now, cs);
    const size_t first_rental = cs.size();
    // Where each rental candidate is: 0 coming[i], 1 planned[i], 2 offers_[i].
    std::vector<std::pair<int, size_t>> where;
    for (size_t i = 0; i < coming.size(); ++i) {
      if (!Fits(r, coming[i], &gpus)) continue;
      Candidate& c = cs.emplace_back(MakeCandidate(job, work, coming[i], false, 0));
      c.rental = true;
      c.wait = std::max(coming[i].record.rental->expected_ready - now, absl::ZeroDuration());
      c.paid_idle = rental_options_.idle_tail;
      where.emplace_back(0, i);
    }
    for (size_t i = 0; i < planned.size(); ++i) {
      if (!Fits(r, planned[i], &gpus)) continue;
      Candidate& c = cs.emplace_back(MakeCandidate(job, work, planned[i], false, 0));
      c.rental = true;
      c.wait = offers_[plan.new_nodes[i].offer].provisioning_time;
      c.paid_idle = rental_options_.idle_tail;
      where.emplace_back(1, i);
    }
    const size_t first_offer = cs.size();
    AddOfferCandidates(job, work, cs);
    for (size_t i = 0; i < cs.size() - first_offer; ++i) where.emplace_back(2, i);
    if (cs.size() == first_rental) continue;
    const Choice choice = Decide(rules, now, absl::MakeSpan(cs));
    if (choice.chosen >= 0 && cs[choice.chosen].rental) {
      const Candidate& chosen = cs[choice.chosen];
      std::string message = Summary(rules, now, choice, cs);
      const auto [kind, index] = where[choice.chosen - first_rental];
      const std::string& blocked = kind == 2   ? offers_[index].blocked
                                   : kind == 1 ? offers_[plan.new_nodes[index].offer].blocked
                                               : std::string();
      if (!blocked.empty()) absl::StrAppend(&message, "; not rented now: ", blocked);
      NoteRuntimeBasis(work, message);
      if (job.message != message) {
        job.message = message;
        job.decision =
            RecordDecision(rules, now, choice, cs, job.spec.resources, options_.decision_options);
        NoteRuntimeBasis(work, job.decision.summary);
        PutJob(job, out);
      }
      if (kind == 0) {
        take(coming[index], job);
        plan.waited_for[coming[index].record.name].push_back(job.id);
      } else if (kind == 1) {
        take(planned[index], job);
        plan.new_nodes[index].job_ids.push_back(job.id);
      } else {
        RentalPlan::NewNode& n = plan.new_nodes.emplace_back();
        n.offer = index;
        n.job_ids.push_back(job.id);
        n.project = job.spec.project;
        n.cost = chosen.cost;
        take(planned.emplace_back(offer_nodes_[index]), job);
      }
      continue;
    }
    if (choice.chosen >= 0) continue;  // a node that is not rented: Schedule's to say why
    // Nothing can take it: when money rules out renting, say so, with the cheapest such offer.
    const Candidate* money = nullptr;
    for (size_t i = first_rental; i < cs.size(); ++i) {
      const Candidate& c = cs[i];
      if ((c.verdict == OptionVerdict::kOverBudget || c.verdict == OptionVerdict::kOverMaxCost) &&
          (money == nullptr || c.cost < money->cost)) {
        money = &c;
      }
    }
    if (money == nullptr) continue;
    std::string message;
    if (money->verdict == OptionVerdict::kOverMaxCost) {
      message = absl::StrFormat(
          "waiting: no node can take the job now; renting %s would cost about $%.2f, over its "
          "max_cost $%.2f",
          money->node->record.name, money->cost, rules.max_cost);
    } else {
      const Budget& cap = budgets_.at(job.spec.project);
      message = absl::StrFormat(
          "waiting: no node can take the job now; renting %s would pass project %s's budget of "
          "$%.2f a month: $%.2f spent and committed, about $%.2f more there",
          money->node->record.name, job.spec.project, cap.monthly_limit,
          cap.monthly_limit - rules.budget_room, money->cost);
    }
    if (job.message != message) {
      job.message = message;
      job.decision =
          RecordDecision(rules, now, choice, cs, job.spec.resources, options_.decision_options);
      PutJob(job, out);
    }
  }
  return plan;
}

void Scheduler::RentNode(NodeRecord record, Done<Node> done) {
  Apply<Node>(
      [&](Outbox& out) ABSL_NO_THREAD_SAFETY_ANALYSIS -> absl::StatusOr<Node> {
        if (!IsValidName(record.name)) {
          return absl::InvalidArgumentError(
              absl::StrCat("node name: must be 1-63 characters of letters, digits, '.', '_' or "
                           "'-', got \"",
                           record.name, "\""));
        }
        if (!record.rental || record.rental->provider.empty() ||
            record.rental->owner_project.empty()) {
          return absl::InvalidArgumentError("a rented node names its provider and owner project");
        }
        if (!std::isfinite(record.rental->price_per_hour) || record.rental->price_per_hour < 0) {
          return absl::InvalidArgumentError("rental price_per_hour: must be a finite number >= 0");
        }
        if (FindNode(record.name) != nullptr) {
          return absl::AlreadyExistsError(absl::StrCat("node ", record.name, " exists"));
        }
        Node probe;
        probe.record.caps = record.caps;
        ComputeNodeFacts(probe);
        if (probe.local) {
          return absl::InvalidArgumentError(
              absl::StrCat("a rented node cannot advertise provider \"", record.caps.provider,
                           "\": that names the user's own machines"));
        }
        const absl::Time now = clock_->Now();
        Rental& r = *record.rental;
        r.phase = RentalPhase::kProvisioning;
        r.create_time = now;
        if (r.expected_ready < now) r.expected_ready = now;
        r.ready_time = r.end_time = absl::InfinitePast();
        r.unleased_since = now;
        r.ledger_seq = 0;
        r.closed_cost = 0;
        r.events.clear();
        NoteRentalEvent(r, now, RentalPhase::kProvisioning,
                        r.message.empty()
                            ? absl::StrCat("asked of ", r.provider, " (offer ", r.offer_id, ")")
                            : r.message);
        record.register_time = absl::InfinitePast();
        const std::string name = record.name;
        NodeEntry& entry = EntryFor(name);
        entry.node.record = std::move(record);
        RefreshNodeFacts(entry);
        rented_.insert(&entry);
        spend_[entry.node.record.rental->owner_project];
        spend_version_++;
        PutNode(entry.node.record, out);
        stats_.nodes_total = nodes_.size();
        return View(entry, now);
      },
      std::move(done));
}

void Scheduler::UpdateRental(const std::string& name, RentalUpdate update, Done<Node> done) {
  Apply<Node>(
      [&](Outbox& out) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return UpdateRentalLocked(name, std::move(update), out);
      },
      std::move(done));
}

absl::StatusOr<Node> Scheduler::UpdateRentalLocked(const std::string& name, RentalUpdate update,
                                                   Outbox& out) {
  NodeEntry* found = FindNode(name);
  if (found == nullptr) return absl::NotFoundError(absl::StrCat("node ", name, " not found"));
  NodeEntry& entry = *found;
  if (!entry.node.record.rental) {
    return absl::FailedPreconditionError(absl::StrCat("node ", name, " was not rented"));
  }
  Rental& r = *entry.node.record.rental;
  if (!r.active()) {
    return absl::FailedPreconditionError(absl::StrCat("node ", name, " is gone"));
  }
  const absl::Time now = clock_->Now();
  if (update.instance_id) r.instance_id = *update.instance_id;
  if (update.message) r.message = *update.message;
  if (update.phase && *update.phase == RentalPhase::kReady) {
    return absl::InvalidArgumentError("a rented node becomes READY when its agent joins");
  }
  // A later phase only: a provider's "running" after the agent joined changes nothing.
  if (update.phase && static_cast<int>(*update.phase) > static_cast<int>(r.phase)) {
    const RentalPhase phase = *update.phase;
    if (phase == RentalPhase::kTerminating && update.only_if_unused &&
        entry.node.running_jobs > 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("node ", name, " runs ", entry.node.running_jobs, " jobs"));
    }
    if (phase == RentalPhase::kDraining || phase == RentalPhase::kTerminating) {
      entry.node.record.draining = true;
      if (entry.link) out.commands.push_back([link = entry.link] { link->Drain(); });
    }
    if (phase == RentalPhase::kGone) {
      std::vector<std::string> leased;
      for (const auto& [id, job] : entry.jobs) leased.push_back(id);
      for (const std::string& id : leased) {
        EndLease(jobs_.at(id), absl::StrCat("node ", name, " was given back"), out);
      }
      CloseUnleased(entry, now, out);
      r.end_time = now;
      rented_.erase(&entry);
      spend_version_++;
    }
    r.phase = phase;
    NoteRentalEvent(r, now, phase, update.message.value_or(""));
  }
  PutNode(entry.node.record, out);
  if (update.phase == RentalPhase::kGone) Schedule(out);
  return View(entry, now);
}

// ---------------------------------------------------------------------------------------------
// Feeds

uint64_t Scheduler::SubscribeJobs(absl::AnyInvocable<void(const Job&)> fn) {
  absl::MutexLock lock(&sub_mu_);
  job_subs_[++last_sub_] = std::move(fn);
  job_sub_count_.store(job_subs_.size());
  return last_sub_;
}

uint64_t Scheduler::SubscribeLogs(
    absl::AnyInvocable<void(const std::string&, const LogRecord&)> fn) {
  absl::MutexLock lock(&sub_mu_);
  log_subs_[++last_sub_] = std::move(fn);
  return last_sub_;
}

void Scheduler::Unsubscribe(uint64_t id) {
  absl::MutexLock lock(&sub_mu_);
  job_subs_.erase(id);
  log_subs_.erase(id);
  job_sub_count_.store(job_subs_.size());
}

void Scheduler::WhenDurable(absl::AnyInvocable<void()> fn) {
  uint64_t ticket;
  {
    absl::ReaderMutexLock lock(&mu_);
    ticket = last_ticket_;
  }
  if (ticket == 0) {
    fn();
    return;
  }
  store_->WhenDurable(ticket, [fn = std::move(fn)](absl::Status) mutable { fn(); });
}

// ---------------------------------------------------------------------------------------------
// Money

void Scheduler::SetBudget(Budget budget, Done<Budget> done) {
  Apply<Budget>(
      [&](Outbox& out) ABSL_NO_THREAD_SAFETY_ANALYSIS -> absl::StatusOr<Budget> {
        SCHED_RETURN_IF_ERROR(ValidateBudget(budget));
        budget.update_time = clock_->Now();
        StoreOp op;
        op.kind = StoreOp::Kind::kPutBudget;
        op.budget = budget;
        out.batch.push_back(std::move(op));
        budgets_[budget.project] = budget;
        pending_.Unsettle(budget.project);  // held jobs may fit the new budget, or no longer
        Schedule(out);
        return budget;
      },
      std::move(done));
}

absl::StatusOr<Budget> Scheduler::GetBudget(absl::string_view project) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = budgets_.find(project);
  if (it == budgets_.end()) {
    return absl::NotFoundError(absl::StrCat("project ", project, " has no budget"));
  }
  return it->second;
}

std::vector<Budget> Scheduler::ListBudgets() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<Budget> out;
  for (const auto& [project, budget] : budgets_) out.push_back(budget);
  return out;
}

std::vector<LedgerEntry> Scheduler::Ledger(absl::Time since) const {
  absl::ReaderMutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  std::map<std::pair<std::string, uint64_t>, LedgerEntry> entries;
  for (const auto& [key, entry] : ledger_) {
    if (entry.end >= since) entries.emplace(key, entry);
  }
  for (const auto& [id, expiry] : lease_expiry_) {
    const Job& job = jobs_.at(id);
    if (job.lease_start != absl::InfinitePast() && job.lease_price_per_hour > 0) {
      entries.emplace(std::make_pair(job.id, job.epoch), OpenEntry(job, now));
    }
  }
  for (const NodeEntry* entry : rented_) {
    if (entry->node.record.rental->unleased_since == absl::InfinitePast()) continue;
    LedgerEntry e = UnleasedEntry(*entry, now);
    entries.emplace(std::make_pair(e.job_id, e.epoch), std::move(e));
  }
  std::vector<LedgerEntry> out;
  out.reserve(entries.size());
  for (auto& [key, entry] : entries) out.push_back(std::move(entry));
  return out;
}

double Scheduler::Spent(absl::string_view project, absl::Time from, absl::Time to) const {
  double dollars = 0;
  for (const LedgerEntry& e : Ledger(from)) {
    if (e.project == project) dollars += e.CostWithin(from, to);
  }
  return dollars;
}

double Scheduler::SpentThisMonth(absl::string_view project) const {
  const absl::Time now = clock_->Now();
  return Spent(project, MonthStart(now), now);
}

CostReport Scheduler::Costs(absl::Time since, CostGroup group, const std::string& project) const {
  const absl::Time now = clock_->Now();
  if (since == absl::InfinitePast()) since = MonthStart(now);
  return GroupCosts(Ledger(since), since, now, group, project);
}

std::map<std::string, absl::Duration> Scheduler::OldestPendingAge() const {
  absl::ReaderMutexLock lock(&mu_);
  std::map<std::string, absl::Time> oldest;
  for (const PendingQueue::Group* group : pending_.Groups()) {
    for (const auto& [key, job] : group->jobs) {
      // A job waits from when it last joined the queue: its submit, its not_before, the end
      // of its last attempt, or the end of a hold.
      absl::Time since = std::max({job->create_time, job->spec.not_before, job->queued_since});
      if (!job->attempts.empty()) since = std::max(since, job->attempts.back().end);
      auto [it, added] = oldest.try_emplace(job->spec.project, since);
      if (!added) it->second = std::min(it->second, since);
    }
  }
  const absl::Time now = clock_->Now();
  std::map<std::string, absl::Duration> ages;
  for (const auto& [project, since] : oldest) {
    ages[project] = std::max(now - since, absl::ZeroDuration());
  }
  return ages;
}

SchedulerStats Scheduler::Stats() const {
  absl::ReaderMutexLock lock(&mu_);
  SchedulerStats stats = stats_;
  stats.timeline_reads_total = timeline_reads_;
  stats.timeline_mismatches_total = timeline_mismatches_;
  return stats;
}

}  // namespace sched
