#include "server/core/scheduler.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "server/common/failpoint.h"
#include "server/common/status_macros.h"
#include "server/core/gpu_memory.h"
#include "server/core/job_spec_validation.h"
#include "server/cost/runtime_estimate.h"

namespace sched {
namespace {

absl::Status StaleSession(const std::string& name) {
  return absl::FailedPreconditionError(
      absl::StrCat("session of node ", name, " is no longer current: reconnect"));
}

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
  }
  return "UNKNOWN";
}

Scheduler::Scheduler(SchedulerOptions options, Store* store, const Clock* clock,
                     std::unique_ptr<Placer> placer)
    : options_(std::move(options)),
      store_(store),
      clock_(clock),
      placer_(placer ? std::move(placer) : std::make_unique<BestFitPlacer>()),
      rng_(options_.seed != 0 ? options_.seed : std::random_device{}()) {}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(SchedulerOptions options, Store* store,
                                                             const Clock* clock,
                                                             std::unique_ptr<Placer> placer) {
  if (options.lease_ttl <= absl::ZeroDuration() ||
      options.heartbeat_interval >= options.lease_ttl) {
    return absl::InvalidArgumentError("heartbeat_interval must be positive and below lease_ttl");
  }
  std::unique_ptr<Scheduler> s(new Scheduler(std::move(options), store, clock, std::move(placer)));
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
    nodes_[name].node.record = std::move(record);
  }
  for (LedgerEntry& entry : state.ledger) {
    auto key = std::make_pair(entry.job_id, entry.epoch);
    ledger_[key] = std::move(entry);
  }
  for (Budget& budget : state.budgets) {
    std::string project = budget.project;
    budgets_[project] = std::move(budget);
  }
  for (Job& loaded : state.jobs) {
    std::string id = loaded.id;
    auto [it, inserted] = jobs_.emplace(id, std::move(loaded));
    if (!inserted) return absl::DataLossError(absl::StrCat("job ", id, " stored twice"));
    Job& job = it->second;
    by_seq_[job.seq] = &job;
    if (!job.request_id.empty()) by_request_id_[job.request_id] = &job;
    last_seq_ = std::max(last_seq_, job.seq);
    last_epoch_ = std::max(last_epoch_, job.epoch);
    stats_.jobs_by_state[static_cast<int>(job.state)]++;
    if (job.state == JobState::kPending) pending_.Add(&job, /*settled=*/false);
    if (IsLeased(job.state)) {
      lease_expiry_[job.id] = lease_end;
      NodeEntry& entry = nodes_[job.node];
      if (entry.node.record.name.empty()) entry.node.record.name = job.node;
      Allocate(entry, job);
    }
  }
  stats_.nodes_total = nodes_.size();
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Commit plumbing

void Scheduler::Seal(Outbox& out) {
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
  job.state = state;
  job.update_time = clock_->Now();
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
      return SubmitResult{*it->second, true};
    }
  }
  SCHED_RETURN_IF_ERROR(ValidateAndDefaultJobSpec(spec, clock_->Now()));
  SCHED_RETURN_IF_ERROR(EstimateGpuMemory(spec));
  Job job;
  job.id = NewJobId();
  job.seq = ++last_seq_;
  job.spec = std::move(spec);
  job.state = JobState::kPending;
  job.attempt = 1;
  job.create_time = job.update_time = clock_->Now();
  job.request_id = std::move(request_id);
  auto [it, inserted] = jobs_.emplace(job.id, std::move(job));
  Job& stored = it->second;
  by_seq_[stored.seq] = &stored;
  if (!stored.request_id.empty()) by_request_id_[stored.request_id] = &stored;
  pending_.Add(&stored, /*settled=*/true);  // Schedule() tries it on every node below
  stats_.jobs_by_state[static_cast<int>(JobState::kPending)]++;
  stats_.submits_total++;
  PutJob(stored, out);
  Schedule(out, &stored);
  return SubmitResult{stored, false};
}

std::string Scheduler::NewJobId() {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(16, '0');
  while (true) {
    uint64_t v = rng_();
    for (int i = 15; i >= 0; --i, v >>= 4) id[i] = kHex[v & 0xf];
    if (!jobs_.count(id)) return id;
  }
}

absl::StatusOr<std::string> Scheduler::ResolveJobId(absl::string_view id_or_prefix) const {
  absl::ReaderMutexLock lock(&mu_);
  return ResolveLocked(id_or_prefix);
}

absl::StatusOr<std::string> Scheduler::ResolveLocked(absl::string_view prefix) const {
  if (prefix.empty()) return absl::InvalidArgumentError("job_id: required");
  auto it = jobs_.lower_bound(std::string(prefix));
  if (it == jobs_.end() || !absl::StartsWith(it->first, prefix)) {
    return absl::NotFoundError(absl::StrCat("job ", prefix, " not found"));
  }
  if (it->first.size() == prefix.size()) return it->first;
  auto next = std::next(it);
  if (next != jobs_.end() && absl::StartsWith(next->first, prefix)) {
    return absl::InvalidArgumentError(
        absl::StrCat("job id prefix ", prefix, " is ambiguous: matches ", it->first, ", ",
                     next->first, " and maybe more; give more characters"));
  }
  return it->first;
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
    pending_.Remove(job);
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
  NodeEntry& entry = nodes_[job.node];
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
  for (const auto& [name, entry] : nodes_) nodes.push_back(entry.node);
  return nodes;
}

absl::StatusOr<Node> Scheduler::GetNode(absl::string_view name) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = nodes_.find(std::string(name));
  if (it == nodes_.end()) return absl::NotFoundError(absl::StrCat("node ", name, " not found"));
  return it->second.node;
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
  auto it = nodes_.find(std::string(name));
  if (it == nodes_.end()) return absl::NotFoundError(absl::StrCat("node ", name, " not found"));
  NodeEntry& entry = it->second;
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
  return entry.node;
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
  NodeEntry& entry = nodes_[name];
  NodeRecord& record = entry.node.record;
  const bool is_new = record.name.empty() || record.register_time == absl::InfinitePast();
  if (is_new) {
    record.name = name;
    record.register_time = now;
  }
  record.caps = std::move(caps);
  PutNode(record, out);
  stats_.nodes_total = nodes_.size();
  if (!entry.node.connected) stats_.agents_connected++;
  entry.node.connected = true;
  entry.node.last_heartbeat = now;
  entry.link = std::move(link);
  entry.session = ++last_session_;
  // Jobs leased here that the agent no longer holds were lost with its previous process or
  // stream: back to the queue.
  std::set<std::string> held;
  for (const JobRef& ref : running) held.insert(ref.job_id);
  std::vector<std::string> lost;
  for (const std::string& id : entry.jobs) {
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
  auto it = nodes_.find(name);
  if (it == nodes_.end() || it->second.session != session || !it->second.node.connected) return;
  it->second.node.connected = false;
  it->second.link.reset();
  stats_.agents_connected--;
}

absl::StatusOr<Scheduler::NodeEntry*> Scheduler::SessionNode(const std::string& name,
                                                             uint64_t session) {
  auto it = nodes_.find(name);
  if (it == nodes_.end() || it->second.session != session || !it->second.node.connected) {
    return StaleSession(name);
  }
  return &it->second;
}

absl::StatusOr<Job*> Scheduler::LeasedJob(const std::string& node, const JobRef& ref) {
  auto it = jobs_.find(ref.job_id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("job ", ref.job_id, " not found"));
  Job& job = it->second;
  if (job.epoch != ref.epoch || job.node != node || !IsLeased(job.state)) {
    stats_.stale_reports_total++;
    return absl::FailedPreconditionError(
        absl::StrFormat("stale epoch %d for job %s on node %s: the job is %s at epoch %d%s",
                        ref.epoch, job.id, node, JobStateName(job.state), job.epoch,
                        job.node.empty() ? "" : absl::StrCat(" on node ", job.node)));
  }
  return &job;
}

void Scheduler::RenewLeases(NodeEntry& entry, const std::vector<JobRef>& refs, Outbox& out) {
  const absl::Time expiry = clock_->Now() + options_.lease_ttl;
  for (const JobRef& ref : refs) {
    absl::StatusOr<Job*> job = LeasedJob(entry.node.record.name, ref);
    if (job.ok()) {
      lease_expiry_[ref.job_id] = expiry;
      // The cancel sent earlier may have been lost with a stream: say it again until it ends.
      if ((*job)->cancel_requested && entry.link) {
        out.commands.push_back(
            [link = entry.link, ref] { link->Cancel(ref.job_id, ref.epoch); });
      }
    } else if (entry.link) {
      out.commands.push_back(
          [link = entry.link, ref, reason = std::string(job.status().message())] {
            link->Stop(ref.job_id, ref.epoch, reason);
          });
    }
  }
}

absl::Status Scheduler::Heartbeat(const std::string& name, uint64_t session,
                                  const std::vector<JobRef>& running) {
  Outbox out;
  {
    absl::MutexLock lock(&mu_);
    SCHED_ASSIGN_OR_RETURN(NodeEntry * entry, SessionNode(name, session));
    entry->node.last_heartbeat = clock_->Now();
    RenewLeases(*entry, running, out);
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
      PutJob(job, out);
    }
    return job;
  }
  if (!IsTerminal(report.state)) {
    return absl::InvalidArgumentError(
        absl::StrCat("state: an agent reports RUNNING, SUCCEEDED, FAILED or CANCELLED, not ",
                     JobStateName(report.state)));
  }
  JobState final_state = report.state;
  std::string message = report.message;
  if (job.cancel_requested) {
    final_state = JobState::kCancelled;
    message = job.message;
  } else if (final_state == JobState::kCancelled) {
    final_state = JobState::kFailed;
    message = absl::StrCat("stopped by the agent: ", report.message);
  }
  MeterLease(job, out);
  Release(job);
  SetState(job, final_state);
  if (job.start_time == absl::InfinitePast()) job.start_time = now;
  job.finish_time = now;
  job.exit_code = report.exit_code;
  job.message = std::move(message);
  job.finished_by_agent = true;
  PutJob(job, out);
  Schedule(out);
  return job;
}

absl::Status Scheduler::AppendLog(const std::string& name, uint64_t session, const JobRef& ref,
                                  LogStreamKind stream, std::string data) {
  LogRecord record;
  {
    absl::MutexLock lock(&mu_);
    SCHED_RETURN_IF_ERROR(SessionNode(name, session).status());
    SCHED_ASSIGN_OR_RETURN(Job * job, LeasedJob(name, ref));
    record.attempt = job->attempt;
  }
  record.stream = stream;
  record.data = std::move(data);
  record.time = clock_->Now();
  SCHED_ASSIGN_OR_RETURN(record.index, store_->AppendLog(ref.job_id, record));
  absl::MutexLock lock(&sub_mu_);
  for (auto& [id, fn] : log_subs_) fn(ref.job_id, record);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<LogRecord>> Scheduler::ReadLogs(const std::string& job_id,
                                                           uint64_t from_index, size_t max) const {
  return store_->ReadLogs(job_id, from_index, max);
}

// ---------------------------------------------------------------------------------------------
// Time

void Scheduler::Tick() {
  Outbox out;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    for (auto& [name, entry] : nodes_) {
      if (entry.node.connected && entry.node.last_heartbeat + options_.lease_ttl < now) {
        // Silent but its stream is open (a paused machine): stop trusting the session.
        entry.node.connected = false;
        entry.link.reset();
        stats_.agents_connected--;
      }
    }
    std::vector<std::string> expired;
    for (const auto& [id, expiry] : lease_expiry_) {
      if (expiry < now) expired.push_back(id);
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
    }
    if (!expired.empty() || new_month) Schedule(out);
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
  for (uint32_t gpu : job.gpu_indexes) node.busy_gpus.insert(gpu);
  node.running_jobs++;
  entry.jobs.insert(job.id);
}

void Scheduler::Release(Job& job) {
  lease_expiry_.erase(job.id);
  auto it = nodes_.find(job.node);
  if (it == nodes_.end() || !it->second.jobs.erase(job.id)) return;
  Node& node = it->second.node;
  node.alloc_cpu_millis -= job.spec.resources.cpu_millis;
  node.alloc_memory_bytes -= job.spec.resources.memory_bytes;
  for (uint32_t gpu : job.gpu_indexes) node.busy_gpus.erase(gpu);
  node.running_jobs--;
  GainedRoom(it->second);
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
  e.start = job.lease_start;
  e.end = std::max(now, job.lease_start);
  return e;
}

void Scheduler::MeterLease(Job& job, Outbox& out) {
  if (job.lease_start != absl::InfinitePast() && job.lease_price_per_hour > 0) {
    LedgerEntry e = OpenEntry(job, clock_->Now());
    StoreOp op;
    op.kind = StoreOp::Kind::kPutLedger;
    op.ledger = e;
    out.batch.push_back(std::move(op));
    ledger_[{e.job_id, e.epoch}] = std::move(e);
    pending_.Unsettle(job.spec.project);  // what the project has committed just changed
  }
  job.lease_start = absl::InfinitePast();
  job.lease_price_per_hour = 0;
  job.lease_provider.clear();
}

void Scheduler::Assign(Job& job, NodeEntry& entry, std::vector<uint32_t> gpus, Outbox& out) {
  pending_.Remove(job);
  SetState(job, JobState::kAssigned);
  job.epoch = ++last_epoch_;
  job.node = entry.node.record.name;
  job.gpu_indexes = std::move(gpus);
  job.message.clear();
  job.finished_by_agent = false;
  job.lease_start = clock_->Now();
  job.lease_price_per_hour = entry.node.record.caps.price_per_hour;
  job.lease_provider = entry.node.record.caps.provider;
  lease_expiry_[job.id] = clock_->Now() + options_.lease_ttl;
  Allocate(entry, job);
  stats_.assignments_total++;
  PutJob(job, out);
  out.commands.push_back([link = entry.link, job] {
    MaybeCrashAt(kFailpointBeforeSendAssignment);
    link->Assign(job);
  });
}

void Scheduler::EndLease(Job& job, const std::string& reason, Outbox& out) {
  const std::string node = job.node;
  const uint64_t epoch = job.epoch;
  MeterLease(job, out);
  Release(job);
  if (job.cancel_requested) {
    SetState(job, JobState::kCancelled);
    job.finish_time = job.update_time;
  } else if (job.attempt >= options_.max_attempts) {
    SetState(job, JobState::kFailed);
    job.finish_time = job.update_time;
    job.message = absl::StrCat("gave up after ", job.attempt, " attempts; last: ", reason);
  } else {
    SetState(job, JobState::kPending);
    job.attempt++;
    job.node.clear();
    job.gpu_indexes.clear();
    job.message = reason;
    pending_.Add(&job, /*settled=*/false);
  }
  PutJob(job, out);
  auto it = nodes_.find(node);
  if (it != nodes_.end() && it->second.link) {
    out.commands.push_back(
        [link = it->second.link, id = job.id, epoch, reason] { link->Stop(id, epoch, reason); });
  }
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

absl::Duration Scheduler::Reservation(const Job& job, const Node* node) const {
  if (job.spec.runtime <= absl::ZeroDuration()) return options_.budget_reservation;
  if (node == nullptr) {
    auto it = nodes_.find(job.node);
    if (it != nodes_.end()) node = &it->second.node;
  }
  const cost::Catalog* catalog = options_.catalog.get();
  const uint32_t gpus = job.spec.resources.gpus;
  if (catalog == nullptr || node == nullptr || gpus == 0 || node->record.caps.gpus.empty()) {
    return job.spec.runtime;
  }
  const cost::GpuAllocation from{job.spec.runtime_gpu_model.empty()
                                     ? catalog->reference_gpu().key
                                     : job.spec.runtime_gpu_model,
                                 static_cast<int32_t>(gpus)};
  const cost::GpuAllocation to{node->record.caps.gpus.front().model, static_cast<int32_t>(gpus)};
  absl::StatusOr<absl::Duration> scaled =
      cost::ScaleRuntime(*catalog, job.spec.runtime, from, to);
  return scaled.ok() ? *scaled : job.spec.runtime;  // a GPU the catalog does not know: as given
}

double Scheduler::SpentAndCommitted(const std::string& project) const {
  const absl::Time now = clock_->Now();
  const absl::Time month = MonthStart(now);
  double dollars = 0;
  for (const auto& [key, entry] : ledger_) {
    if (entry.project == project) dollars += entry.CostWithin(month, now);
  }
  for (const auto& [id, expiry] : lease_expiry_) {
    const Job& job = jobs_.at(id);
    if (job.spec.project != project || job.lease_price_per_hour <= 0 ||
        job.lease_start == absl::InfinitePast()) {
      continue;
    }
    dollars += OpenEntry(job, now).CostWithin(month, now);
    const absl::Duration left = Reservation(job, nullptr) - (now - job.lease_start);
    if (left > absl::ZeroDuration()) {
      dollars += job.lease_price_per_hour * absl::ToDoubleHours(left);
    }
  }
  return dollars;
}

std::vector<const Node*> Scheduler::Affordable(const Job& job, const Budget* cap,
                                               const std::vector<const Node*>& nodes,
                                               std::string& why) {
  const double base = cap != nullptr ? SpentAndCommitted(job.spec.project) : 0;
  std::vector<const Node*> ok;
  ok.reserve(nodes.size());
  for (const Node* node : nodes) {
    const double price = node->record.caps.price_per_hour;
    if (price <= 0) {  // free: a budget never holds back work that costs nothing
      ok.push_back(node);
      continue;
    }
    const double expected = price * absl::ToDoubleHours(Reservation(job, node));
    if (job.spec.max_cost > 0 && expected > job.spec.max_cost + 1e-9) {
      if (why.empty()) {
        why = absl::StrFormat("waiting: on %s it would cost about $%.2f, over its max_cost $%.2f",
                              node->record.name, expected, job.spec.max_cost);
      }
      continue;
    }
    if (cap != nullptr && base + expected > cap->monthly_limit + 1e-9) {
      if (why.empty()) {
        why = absl::StrFormat(
            "waiting: project %s's budget of $%.2f a month would be passed: $%.2f spent and "
            "committed, about $%.2f more on %s",
            job.spec.project, cap->monthly_limit, base, expected, node->record.name);
      }
      continue;
    }
    ok.push_back(node);
  }
  return ok;
}

std::optional<Placement> Scheduler::PlaceWithin(Job& job, const std::vector<const Node*>& nodes,
                                                Outbox& out) {
  auto b = budgets_.find(job.spec.project);
  const Budget* cap = b != budgets_.end() && b->second.hard_cap ? &b->second : nullptr;
  if (cap == nullptr && job.spec.max_cost <= 0) return placer_->Place(job.spec, nodes);
  std::string why;
  std::optional<Placement> placement = placer_->Place(job.spec, Affordable(job, cap, nodes, why));
  if (!placement && !why.empty() && job.message != why && placer_->Place(job.spec, nodes)) {
    job.message = why;  // it fits; only money holds it back
    PutJob(job, out);
  }
  return placement;
}

bool Scheduler::TryPlace(Job& job, const std::vector<const Node*>& nodes, Outbox& out) {
  std::optional<Placement> placement = PlaceWithin(job, nodes, out);
  if (!placement) return false;
  Assign(job, nodes_.at(placement->node->record.name), std::move(placement->gpu_indexes), out);
  return true;
}

void Scheduler::Schedule(Outbox& out, Job* only) {
  if (only != nullptr) {
    // Queued jobs that ask the same already fit no node with room: neither does this one.
    const PendingQueue::Group* group = pending_.GroupOf(*only);
    if (group != nullptr && group->settled && group->jobs.size() > 1) return;
    std::vector<const Node*> open = OpenNodes();
    if (!open.empty()) TryPlace(*only, open, out);
    return;
  }
  // A settled group fits no node that had room at the end of the last pass, and those nodes
  // have only lost room since; so it is tried on the nodes that gained room. An unsettled group
  // is tried on every node with room.
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
  std::vector<const PendingQueue::Group*> live;
  for (const PendingQueue::Group* group : pending_.Groups()) {
    if (!group->settled && !open_known) {
      open = OpenNodes();
      open_room = MostRoom::Of(open);
      open_known = true;
    }
    // Most groups fail this cheap test when one job's end freed a little room.
    if ((group->settled ? grown_room : open_room).MayFit(group->resources)) live.push_back(group);
  }
  // The same outcome as walking the whole queue in order and placing each job that fits: each
  // round places the first job, in queue order, that fits now. Room only shrinks within a pass,
  // so a group that fits nowhere leaves the pass.
  while (!live.empty()) {
    const PendingQueue::Group* best = nullptr;
    std::optional<Placement> best_placement;
    for (size_t i = 0; i < live.size();) {
      const PendingQueue::Group* group = live[i];
      std::optional<Placement> p;
      if (group->first != nullptr) {
        p = PlaceWithin(*group->first, group->settled ? grown : open, out);
      }
      if (!p) {
        live[i] = live.back();
        live.pop_back();
        continue;
      }
      if (best == nullptr || group->first_key < best->first_key) {
        best = group;
        best_placement = std::move(p);
      }
      ++i;
    }
    if (best == nullptr) break;
    Job& job = *best->first;
    Assign(job, nodes_.at(best_placement->node->record.name),
           std::move(best_placement->gpu_indexes), out);
  }
  pending_.SettleAll();
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

SchedulerStats Scheduler::Stats() const {
  absl::ReaderMutexLock lock(&mu_);
  return stats_;
}

}  // namespace sched
