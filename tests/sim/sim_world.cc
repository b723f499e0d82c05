#include "tests/sim/sim_world.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/common/clock.h"
#include "server/core/agent_link.h"
#include "server/core/scheduler.h"
#include "tests/sim/sim_store.h"

namespace sched::sim {
namespace {

constexpr absl::Duration kLeaseTtl = absl::Seconds(2);
constexpr absl::Duration kHeartbeat = absl::Milliseconds(500);
constexpr absl::Duration kRestartGrace = absl::Seconds(2);
constexpr absl::Duration kTick = absl::Milliseconds(100);
constexpr absl::Duration kAgentTick = absl::Milliseconds(50);
constexpr absl::Duration kClientTimeout = absl::Seconds(3);
// A job this long only ends by cancel: it proves cancels reach agents whatever was lost.
constexpr absl::Duration kForever = absl::Hours(1000);

// What travels between schedd and an agent on one stream (one `conn`).
struct Msg {
  enum Kind {
    // agent -> schedd
    kRegister,
    kHeartbeat,
    kUpdate,
    kLog,
    kClose,
    // schedd -> agent
    kRegisterAck,
    kHeartbeatAck,
    kAssign,
    kCancel,
    kStop,
    kRejected,
    kUpdateAck,
    kStreamEnd,
  };
  explicit Msg(Kind k, uint64_t c = 0) : kind(k), conn(c) {}
  Kind kind;
  uint64_t conn = 0;
  std::vector<JobRef> refs;  // register, heartbeat
  JobReport report;          // update
  std::string job_name;      // assign: the spec's name, which says how long the job runs
  JobRef ref;                // log, assign, cancel, stop, rejected, update ack
  uint64_t session = 0;      // register ack
  absl::Time sent_at;        // heartbeat, echoed by its ack: the lease was renewed no earlier
  absl::StatusCode code = absl::StatusCode::kOk;  // rejected
};

const char* KindName(Msg::Kind k);
std::string Label(const Msg& m);

const char* KindName(Msg::Kind k) {
  static const char* kNames[] = {"register",  "heartbeat", "update",     "log",
                                 "close",     "register_ack", "heartbeat_ack", "assign",
                                 "cancel",    "stop",      "rejected",   "update_ack",
                                 "stream_end"};
  return kNames[k];
}

std::string Label(const Msg& m) {
  std::string label = KindName(m.kind);
  const std::string& id = m.kind == Msg::kUpdate ? m.report.job_id : m.ref.job_id;
  const uint64_t epoch = m.kind == Msg::kUpdate ? m.report.epoch : m.ref.epoch;
  if (!id.empty()) absl::StrAppend(&label, " ", id, "@", epoch);
  if (m.kind == Msg::kUpdate) absl::StrAppend(&label, " ", JobStateName(m.report.state));
  absl::StrAppend(&label, " conn ", m.conn);
  return label;
}

// (terminal, attempt, epoch, rank): never decreases for a job in what is durable.
using Progress = std::tuple<int, uint32_t, uint64_t, int>;
Progress ProgressOf(const Job& job) {
  int rank = job.state == JobState::kPending ? 0 : job.state == JobState::kAssigned ? 1 : 2;
  return {IsTerminal(job.state) ? 1 : 0, job.attempt, job.epoch, IsTerminal(job.state) ? 3 : rank};
}
std::string Describe(const Job& job) {
  return absl::StrFormat("%s %s attempt %d epoch %d node '%s'", job.id, JobStateName(job.state),
                         job.attempt, job.epoch, job.node);
}

struct SimJob {  // a job process on an agent
  uint64_t epoch = 0;
  absl::Time assigned_at;
  absl::Time end_at;
  bool ended = false;
  bool cancel_requested = false;
  int exit_code = 0;  // when it ends by itself
  bool running_sent = false;  // the RUNNING update went out on some stream
  bool final_on_wire = false;
  JobReport final;
};

struct SimAgent {
  std::string name;
  NodeCapabilities caps;
  bool down = false;  // the process is dead
  absl::Time paused_until = absl::InfinitePast();
  std::vector<Msg> inbox;  // what arrived while paused
  uint64_t conn = 0;       // 0: no stream
  bool registered = false;
  absl::Time dialled_at;
  absl::Time redial_at;
  int failed_dials = 0;
  absl::Time last_ack = absl::InfinitePast();
  absl::Time next_heartbeat = absl::InfiniteFuture();
  std::map<std::string, SimJob> jobs;
};

struct ServerConn {  // schedd's side of one stream
  int agent = 0;
  uint64_t generation = 0;
  uint64_t session = 0;  // 0 until the registration is durable
  bool ended = false;
};

struct Partition {
  absl::Time until = absl::InfinitePast();
  bool to_server = false;
  bool to_agent = false;
};

struct Submission {  // one client request id
  JobSpec spec;
  absl::Duration run_time;
  int exit_code = 0;
  std::optional<std::string> job_id;  // once answered
  bool in_flight = false;
  bool unknown = false;  // an attempt's outcome was not known
  uint64_t attempt_serial = 0;
};

class World;

class SimLink final : public AgentLink {
 public:
  SimLink(World* world, int agent, uint64_t conn) : world_(world), agent_(agent), conn_(conn) {}
  void Assign(const Job& job) override;
  void Cancel(const std::string& id, uint64_t epoch) override;
  void Stop(const std::string& id, uint64_t epoch, const std::string&) override;
  void Drain() override {}

 private:
  World* const world_;
  const int agent_;
  const uint64_t conn_;
};

class World {
 public:
  explicit World(const SimOptions& options)
      : options_(options), rng_(options.seed), now_(absl::FromUnixSeconds(1'800'000'000)) {
    result_.seed = options.seed;
    fault_end_ = now_ + options.fault_time;
    clock_.Set(now_);
  }

  SimResult Run();

  // Schedd -> agent, from SimLink and the stream handlers.
  void ToAgent(int agent, Msg msg);

 private:
  // ---- Randomness and time ----
  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  int64_t Between(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }
  absl::Duration Ms(int64_t lo, int64_t hi) { return absl::Milliseconds(Between(lo, hi)); }
  bool Faulty() const { return now_ < fault_end_; }

  void At(absl::Time t, std::string what, std::function<void()> fn) {
    events_.emplace(std::make_pair(t, ++event_serial_), std::make_pair(std::move(what), std::move(fn)));
  }
  void After(absl::Duration d, std::string what, std::function<void()> fn) {
    At(now_ + d, std::move(what), std::move(fn));
  }

  // ---- Set-up ----
  void MakeAgents();
  void MakeJobs();
  void ScheduleFaults();

  // ---- schedd ----
  void StartSchedd();
  void CrashSchedd();
  void MaybeSync();
  void ServerReceive(int agent, const Msg& msg);
  void EndStream(uint64_t conn);

  // ---- network ----
  absl::Duration Delay() {
    if (Faulty() && Chance(0.03)) return Ms(200, 1500);  // late enough to be reordered
    return absl::Microseconds(Between(100, 3000));
  }
  bool Partitioned(int agent, bool to_server) const {
    const Partition& p = partitions_[agent];
    return now_ < p.until && (to_server ? p.to_server : p.to_agent);
  }
  void ToServer(int agent, Msg msg);

  // ---- agents ----
  void AgentTick(int agent);
  void AgentReceive(int agent, const Msg& msg);
  void AgentSend(int agent, Msg msg);
  void AgentDial(int agent);
  void AgentDropStream(int agent);
  void AgentFinishJob(int agent, const std::string& id, SimJob& job);
  void AgentSendFinal(int agent, const std::string& id, SimJob& job);
  std::vector<JobRef> HeldRefs(const SimAgent& a, bool skip_final_on_wire) const;
  void CrashAgent(int agent);

  // ---- clients and operators ----
  enum Operation { kCordon, kDrain, kUncordon };
  void Operate(int agent, Operation op);
  void ClientSubmit(const std::string& request_id);
  void ClientCancel(const std::string& job_id);
  void ClientRetryUnknowns();

  void Trace(const std::string& line) {
    std::printf("%9.3f  %s\n", absl::ToDoubleSeconds(now_ - start_), line.c_str());
  }

  // ---- invariants ----
  void Violation(const std::string& what) {
    if (result_.ok) {
      result_.ok = false;
      result_.violation = absl::StrFormat("step %d, t=%.3fs: %s", result_.steps,
                                          absl::ToDoubleSeconds(now_ - start_), what);
    }
  }
  void OnDurableJob(const Job& job);
  void CheckAfterRestart();
  void CheckStructure();
  bool AllDone();
  void CheckFinal();

  const SimOptions options_;
  std::mt19937_64 rng_;
  absl::Time now_;
  const absl::Time start_ = now_;
  absl::Time fault_end_;
  absl::Duration skew_;  // schedd's clock = now_ + skew_
  FakeClock clock_;
  SimResult result_;
  std::map<std::pair<absl::Time, uint64_t>, std::pair<std::string, std::function<void()>>> events_;
  uint64_t event_serial_ = 0;
  bool touched_scheduler_ = false;

  double drop_p_ = 0;
  double dup_p_ = 0;

  SimDisk disk_;
  std::unique_ptr<SimStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
  uint64_t generation_ = 0;
  bool sync_scheduled_ = false;

  std::vector<SimAgent> agents_;
  std::vector<Partition> partitions_;
  std::map<uint64_t, ServerConn> conns_;
  uint64_t last_conn_ = 0;

  std::map<std::string, Submission> submissions_;  // by request id
  std::map<std::string, std::string> job_request_;  // job id -> request id
  std::set<std::string> acked_cancels_;
  std::map<std::string, const Submission*> by_name_;  // spec name -> its submission

  // What is known durable: the feed, and acknowledged answers.
  std::map<std::string, Job> durable_;
  uint64_t last_assigned_epoch_ = 0;
  std::map<std::string, uint64_t> winner_epoch_;  // accepted final report per job
};

void SimLink::Assign(const Job& job) {
  Msg m{Msg::kAssign, conn_};
  m.ref = {job.id, job.epoch};
  m.job_name = job.spec.name;
  world_->ToAgent(agent_, std::move(m));
}
void SimLink::Cancel(const std::string& id, uint64_t epoch) {
  Msg m{Msg::kCancel, conn_};
  m.ref = {id, epoch};
  world_->ToAgent(agent_, std::move(m));
}
void SimLink::Stop(const std::string& id, uint64_t epoch, const std::string&) {
  Msg m{Msg::kStop, conn_};
  m.ref = {id, epoch};
  world_->ToAgent(agent_, std::move(m));
}

// ---------------------------------------------------------------------------------------------
// Set-up

void World::MakeAgents() {
  const int n = static_cast<int>(Between(2, 10));
  static const char* kModels[] = {"NVIDIA GeForce RTX 3080", "NVIDIA A100-SXM4-80GB"};
  static const int64_t kMemory[] = {10LL << 30, 80LL << 30};
  for (int i = 0; i < n; ++i) {
    SimAgent a;
    a.name = absl::StrCat("node-", i);
    a.caps.cpu_millis = 1000 * Between(2, 16);
    a.caps.memory_bytes = Between(4, 64) << 30;
    const int gpus = static_cast<int>(Between(0, 2));
    const int model = static_cast<int>(Between(0, 1));
    for (int g = 0; g < gpus; ++g) {
      a.caps.gpus.push_back({static_cast<uint32_t>(g), absl::StrCat("GPU-", i, "-", g),
                             kModels[model], kMemory[model]});
    }
    agents_.push_back(std::move(a));
  }
  partitions_.resize(agents_.size());
  result_.agents = n;
}

void World::MakeJobs() {
  const int n = static_cast<int>(Between(10, 50));
  result_.jobs = n;
  for (int i = 0; i < n; ++i) {
    // Every job fits at least one agent: built from one agent's capacity.
    const SimAgent& host = agents_[Between(0, agents_.size() - 1)];
    Submission s;
    s.spec.name = absl::StrCat("job", i);
    s.spec.project = Chance(0.5) ? "alpha" : "beta";
    s.spec.run = "sim";
    s.spec.priority = static_cast<int32_t>(Between(0, 3));
    s.spec.resources.cpu_millis = 500 * Between(1, host.caps.cpu_millis / 500);
    s.spec.resources.memory_bytes = Between(0, host.caps.memory_bytes >> 30) << 30;
    if (!host.caps.gpus.empty() && Chance(0.4)) {
      s.spec.resources.gpus = static_cast<uint32_t>(Between(1, host.caps.gpus.size()));
      if (Chance(0.5)) s.spec.resources.gpu_models = {host.caps.gpus[0].model};
      if (Chance(0.5)) s.spec.resources.gpu_memory_bytes = host.caps.gpus[0].memory_bytes;
    }
    s.run_time = Chance(0.08) ? kForever : Ms(20, 2500);
    s.exit_code = Chance(0.2) ? 1 : 0;
    const std::string rid = absl::StrCat("req-", i);
    const std::string name = s.spec.name;
    by_name_[name] = &submissions_.emplace(rid, std::move(s)).first->second;
    After(Ms(0, absl::ToInt64Milliseconds(options_.fault_time) * 9 / 10), "submit " + rid,
          [this, rid] { ClientSubmit(rid); });
  }
}

void World::ScheduleFaults() {
  drop_p_ = Between(0, 8) / 100.0;
  dup_p_ = Between(0, 5) / 100.0;
  const int64_t span = absl::ToInt64Milliseconds(options_.fault_time);
  for (int i = Between(0, 6); i > 0; --i) {
    After(Ms(0, span), "schedd crash", [this] { CrashSchedd(); });
  }
  for (int i = Between(0, 4); i > 0; --i) {
    const int a = static_cast<int>(Between(0, agents_.size() - 1));
    After(Ms(0, span), "agent crash", [this, a] { CrashAgent(a); });
  }
  for (int i = Between(0, 5); i > 0; --i) {
    const int a = static_cast<int>(Between(0, agents_.size() - 1));
    After(Ms(0, span), absl::StrCat("pause ", agents_[a].name), [this, a] {
      if (agents_[a].down || !Faulty()) return;
      result_.pauses++;
      // Often longer than the lease: a paused cloud box waking up much later.
      agents_[a].paused_until = std::max(agents_[a].paused_until, now_ + Ms(200, 8000));
      At(agents_[a].paused_until, absl::StrCat("wake ", agents_[a].name),
         [this, a] { AgentTick(a); });
    });
  }
  for (int i = Between(0, 5); i > 0; --i) {
    const int a = static_cast<int>(Between(0, agents_.size() - 1));
    After(Ms(0, span), absl::StrCat("partition ", agents_[a].name), [this, a] {
      if (!Faulty()) return;
      result_.partitions++;
      Partition& p = partitions_[a];
      const int64_t kind = Between(0, 2);  // both ways, to schedd only, to the agent only
      p.to_server = kind != 2;
      p.to_agent = kind != 1;
      p.until = now_ + Ms(200, 6000);
    });
  }
  for (int i = Between(0, 3); i > 0; --i) {
    // An operator cordons or drains a node, and later lets it take work again.
    const int a = static_cast<int>(Between(0, agents_.size() - 1));
    const bool drain = Chance(0.5);
    After(Ms(0, span), absl::StrCat(drain ? "drain " : "cordon ", agents_[a].name),
          [this, a, drain] { Operate(a, drain ? kDrain : kCordon); });
    After(Ms(0, span + 2000), absl::StrCat("uncordon ", agents_[a].name),
          [this, a] { Operate(a, kUncordon); });
  }
  for (int i = Between(0, 3); i > 0; --i) {
    After(Ms(0, span), "clock jump", [this] {
      if (!Faulty()) return;
      result_.clock_jumps++;
      // Forward jumps expire leases at once; backward ones are kept small and bounded.
      skew_ += Chance(0.7) ? Ms(100, 20'000) : -Ms(100, 2'000);
      skew_ = std::max(skew_, absl::Seconds(-4));
    });
  }
}

// ---------------------------------------------------------------------------------------------
// schedd

void World::StartSchedd() {
  store_ = std::make_unique<SimStore>(&disk_);
  SchedulerOptions options;
  options.lease_ttl = kLeaseTtl;
  options.heartbeat_interval = kHeartbeat;
  options.restart_grace = kRestartGrace;
  options.max_attempts = 10;
  options.seed = options_.seed;
  // Every other seed shares the (local) nodes by weight; the same choice after every restart.
  if (options_.seed % 2 == 0) options.fair_share = {{"alpha", 3}, {"beta", 1}};
  absl::StatusOr<std::unique_ptr<Scheduler>> s = Scheduler::Create(options, store_.get(), &clock_);
  if (!s.ok()) {
    Violation(absl::StrCat("the store did not reopen: ", s.status().ToString()));
    return;
  }
  scheduler_ = std::move(*s);
  ++generation_;
  scheduler_->SubscribeJobs([this](const Job& job) { OnDurableJob(job); });
  CheckAfterRestart();
  // The timer that calls Tick(), one event per period, until this incarnation dies.
  const uint64_t gen = generation_;
  auto tick = std::make_shared<std::function<void()>>();
  *tick = [this, gen, tick] {
    if (scheduler_ == nullptr || generation_ != gen) return;
    scheduler_->Tick();
    touched_scheduler_ = true;
    MaybeSync();
    After(kTick, "tick", *tick);
  };
  After(kTick, "tick", *tick);
}

void World::CrashSchedd() {
  if (scheduler_ == nullptr || !Faulty()) return;
  result_.schedd_crashes++;
  result_.priority_preemptions += scheduler_->Stats().priority_preemptions_total;
  store_->Crash();
  scheduler_.reset();  // its pending callbacks are gone with the store's queue
  store_.reset();
  // Every open stream breaks; agents notice after a while (or not at all while partitioned).
  for (auto& [conn, sc] : conns_) {
    if (sc.ended) continue;
    sc.ended = true;
    Msg end{Msg::kStreamEnd, conn};
    ToAgent(sc.agent, end);
  }
  After(Ms(50, 2000), "schedd restart", [this] { StartSchedd(); });
}

void World::MaybeSync() {
  if (store_ == nullptr || !store_->has_unsynced() || sync_scheduled_) return;
  sync_scheduled_ = true;
  const uint64_t gen = generation_;
  After(absl::Microseconds(Between(50, 2000)), "sync", [this, gen] {
    sync_scheduled_ = false;
    if (store_ == nullptr || generation_ != gen) return;
    // Group commit syncs what is queued; sometimes only part of it made the sync.
    store_->SyncSome(Chance(0.3) ? static_cast<size_t>(Between(1, 3)) : SIZE_MAX);
    touched_scheduler_ = true;
    MaybeSync();
  });
}

void World::EndStream(uint64_t conn) {
  ServerConn& sc = conns_[conn];
  if (sc.ended) return;
  sc.ended = true;
  if (scheduler_ != nullptr && sc.session != 0 && sc.generation == generation_) {
    scheduler_->DisconnectAgent(agents_[sc.agent].name, sc.session);
  }
  Msg end{Msg::kStreamEnd, conn};
  ToAgent(sc.agent, end);
}

void World::ServerReceive(int agent, const Msg& msg) {
  if (scheduler_ == nullptr) return;  // nobody listens; the agent's stream already broke
  touched_scheduler_ = true;
  const std::string& name = agents_[agent].name;
  auto cit = conns_.find(msg.conn);
  if (msg.kind == Msg::kRegister) {
    if (cit != conns_.end()) return;  // a duplicate of the first message of a stream
    ServerConn& sc = conns_[msg.conn];
    sc.agent = agent;
    sc.generation = generation_;
    const uint64_t conn = msg.conn;
    scheduler_->ConnectAgent(
        name, agents_[agent].caps, msg.refs, std::make_shared<SimLink>(this, agent, conn),
        [this, agent, conn, gen = generation_](absl::StatusOr<uint64_t> session) {
          if (generation_ != gen) return;
          if (!session.ok()) {
            Violation(absl::StrCat("registration refused: ", session.status().ToString()));
            return;
          }
          conns_[conn].session = *session;
          Msg ack{Msg::kRegisterAck, conn};
          ack.session = *session;
          ToAgent(agent, ack);
        });
    MaybeSync();
    return;
  }
  if (cit == conns_.end() || cit->second.ended || cit->second.generation != generation_ ||
      cit->second.session == 0) {
    return;  // a stream this schedd does not know: its end was sent already
  }
  const uint64_t session = cit->second.session;
  switch (msg.kind) {
    case Msg::kHeartbeat: {
      absl::Status s = scheduler_->Heartbeat(name, session, msg.refs);
      if (!s.ok()) {
        EndStream(msg.conn);
      } else {
        Msg ack{Msg::kHeartbeatAck, msg.conn};
        ack.sent_at = msg.sent_at;
        ToAgent(agent, ack);
      }
      break;
    }
    case Msg::kUpdate: {
      const JobReport report = msg.report;
      scheduler_->ReportJob(
          name, session, report,
          [this, agent, conn = msg.conn, report, gen = generation_](absl::StatusOr<Job> job) {
            if (generation_ != gen) return;
            if (!job.ok()) {
              result_.refused_reports++;
              Msg rej{Msg::kRejected, conn};
              rej.ref = {report.job_id, report.epoch};
              rej.code = job.status().code();
              ToAgent(agent, rej);
              return;
            }
            if (!IsTerminal(job->state)) return;
            auto [it, first] = winner_epoch_.emplace(report.job_id, report.epoch);
            if (first) result_.accepted_completions++;
            if (it->second != report.epoch) {
              Violation(absl::StrFormat("job %s: completions of epochs %d and %d both accepted",
                                        report.job_id, it->second, report.epoch));
            }
            if (job->epoch != report.epoch || job->node != agents_[agent].name) {
              Violation(absl::StrCat("job ", report.job_id, ": completion of epoch ",
                                     report.epoch, " from ", agents_[agent].name,
                                     " accepted but the job is ", Describe(*job)));
            }
            Msg ack{Msg::kUpdateAck, conn};
            ack.ref = {report.job_id, report.epoch};
            ToAgent(agent, ack);
          });
      break;
    }
    case Msg::kLog: {
      absl::Status s = scheduler_->AppendLog(name, session, msg.ref, LogStreamKind::kStdout, "x");
      if (s.ok()) {
        absl::StatusOr<Job> job = scheduler_->GetJob(msg.ref.job_id);
        if (!job.ok() || job->epoch != msg.ref.epoch || job->node != name ||
            !IsLeased(job->state)) {
          Violation(absl::StrCat("log of ", msg.ref.job_id, " epoch ", msg.ref.epoch, " from ",
                                 name, " accepted but the job is ",
                                 job.ok() ? Describe(*job) : job.status().ToString()));
        }
      } else if (absl::IsFailedPrecondition(s) || absl::IsNotFound(s)) {
        Msg rej{Msg::kRejected, msg.conn};
        rej.ref = msg.ref;
        rej.code = s.code();
        ToAgent(agent, rej);
      } else {
        EndStream(msg.conn);
      }
      break;
    }
    case Msg::kClose:
      EndStream(msg.conn);
      break;
    default:
      Violation(absl::StrCat("schedd got an agent-bound message: ", KindName(msg.kind)));
  }
  MaybeSync();
}

// ---------------------------------------------------------------------------------------------
// Network

void World::ToServer(int agent, Msg msg) {
  result_.messages++;
  if (Partitioned(agent, /*to_server=*/true) || (Faulty() && Chance(drop_p_))) {
    result_.dropped++;
    if (options_.trace) Trace(absl::StrCat("  dropped ", agents_[agent].name, " -> schedd ", Label(msg)));
    return;
  }
  const int copies = Faulty() && Chance(dup_p_) ? 2 : 1;
  if (copies == 2) result_.duplicated++;
  for (int i = 0; i < copies; ++i) {
    After(Delay(), options_.trace ? absl::StrCat(agents_[agent].name, " -> schedd ", Label(msg)) : "",
          [this, agent, msg] { ServerReceive(agent, msg); });
  }
}

void World::ToAgent(int agent, Msg msg) {
  result_.messages++;
  // A stream's end is seen by the agent even through a partition, once it heals (TCP reset).
  if (msg.kind != Msg::kStreamEnd &&
      (Partitioned(agent, /*to_server=*/false) || (Faulty() && Chance(drop_p_)))) {
    result_.dropped++;
    if (options_.trace) Trace(absl::StrCat("  dropped schedd -> ", agents_[agent].name, " ", Label(msg)));
    return;
  }
  const int copies = msg.kind != Msg::kStreamEnd && Faulty() && Chance(dup_p_) ? 2 : 1;
  if (copies == 2) result_.duplicated++;
  for (int i = 0; i < copies; ++i) {
    After(Delay(), options_.trace ? absl::StrCat("schedd -> ", agents_[agent].name, " ", Label(msg)) : "",
          [this, agent, msg] {
            SimAgent& a = agents_[agent];
            if (a.down) return;
            if (now_ < a.paused_until) {
              a.inbox.push_back(msg);
              return;
            }
            AgentReceive(agent, msg);
          });
  }
}

// ---------------------------------------------------------------------------------------------
// Agents: the real agent's protocol (agent/agent.h), one event at a time.

std::vector<JobRef> World::HeldRefs(const SimAgent& a, bool skip_final_on_wire) const {
  std::vector<JobRef> refs;
  for (const auto& [id, job] : a.jobs) {
    if (skip_final_on_wire && job.final_on_wire) continue;
    refs.push_back({id, job.epoch});
  }
  return refs;
}

void World::AgentSend(int agent, Msg msg) {
  msg.conn = agents_[agent].conn;
  ToServer(agent, std::move(msg));
}

void World::AgentDial(int agent) {
  SimAgent& a = agents_[agent];
  a.conn = ++last_conn_;
  a.registered = false;
  a.dialled_at = now_;
  for (auto& [id, job] : a.jobs) job.final_on_wire = false;
  Msg reg{Msg::kRegister};
  reg.refs = HeldRefs(a, /*skip_final_on_wire=*/false);
  AgentSend(agent, std::move(reg));
}

void World::AgentDropStream(int agent) {
  SimAgent& a = agents_[agent];
  if (a.conn != 0) AgentSend(agent, Msg{Msg::kClose});
  a.conn = 0;
  a.registered = false;
  a.next_heartbeat = absl::InfiniteFuture();
  const int64_t backoff = std::min<int64_t>(2000, 100LL << std::min(a.failed_dials, 5));
  a.failed_dials++;
  a.redial_at = now_ + Ms(backoff / 2, backoff);
}

void World::AgentSendFinal(int agent, const std::string& id, SimJob& job) {
  SimAgent& a = agents_[agent];
  if (!a.registered || job.final_on_wire) return;
  job.final_on_wire = true;
  Msg m{Msg::kUpdate};
  m.report = job.final;
  AgentSend(agent, std::move(m));
}

void World::AgentFinishJob(int agent, const std::string& id, SimJob& job) {
  job.ended = true;
  job.final.job_id = id;
  job.final.epoch = job.epoch;
  if (job.cancel_requested) {
    job.final.state = JobState::kCancelled;
    job.final.exit_code = 143;
  } else {
    job.final.exit_code = job.exit_code;
    job.final.state = job.final.exit_code == 0 ? JobState::kSucceeded : JobState::kFailed;
  }
  if (agents_[agent].registered) {
    Msg log{Msg::kLog};
    log.ref = {id, job.epoch};
    AgentSend(agent, std::move(log));
  }
  AgentSendFinal(agent, id, job);
}

void World::AgentTick(int agent) {
  SimAgent& a = agents_[agent];
  if (a.down || now_ < a.paused_until) return;
  // Woken up: first what the socket buffered, as the reader thread would.
  std::vector<Msg> inbox = std::move(a.inbox);
  a.inbox.clear();
  for (const Msg& m : inbox) AgentReceive(agent, m);
  for (auto& [id, job] : a.jobs) {
    if (!job.ended && now_ >= job.end_at) AgentFinishJob(agent, id, job);
  }
  // Lease watchdog.
  std::vector<std::string> expired;
  for (const auto& [id, job] : a.jobs) {
    if (now_ - std::max(a.last_ack, job.assigned_at) > kLeaseTtl) expired.push_back(id);
  }
  for (const std::string& id : expired) a.jobs.erase(id);
  if (a.conn != 0) {
    const bool silent = a.registered && now_ - a.last_ack > kLeaseTtl;
    const bool never_answered = !a.registered && now_ - a.dialled_at > kLeaseTtl;
    if (silent || never_answered) AgentDropStream(agent);
  }
  if (a.conn == 0 && now_ >= a.redial_at) AgentDial(agent);
  if (a.registered && now_ >= a.next_heartbeat) {
    a.next_heartbeat = now_ + kHeartbeat;
    Msg hb{Msg::kHeartbeat};
    hb.refs = HeldRefs(a, /*skip_final_on_wire=*/true);
    hb.sent_at = now_;
    AgentSend(agent, std::move(hb));
  }
  After(kAgentTick, "", [this, agent] { AgentTick(agent); });
}

void World::AgentReceive(int agent, const Msg& msg) {
  SimAgent& a = agents_[agent];
  if (msg.conn != a.conn) return;  // an old stream: closed on this side
  switch (msg.kind) {
    case Msg::kRegisterAck: {
      if (a.registered) return;
      a.registered = true;
      a.failed_dials = 0;
      a.last_ack = now_;
      a.next_heartbeat = now_ + kHeartbeat;
      for (auto& [id, job] : a.jobs) {
        if (!job.running_sent) {
          job.running_sent = true;
          Msg m{Msg::kUpdate};
          m.report = {id, job.epoch, JobState::kRunning, 0, ""};
          AgentSend(agent, std::move(m));
        }
        if (job.ended) AgentSendFinal(agent, id, job);
      }
      return;
    }
    case Msg::kHeartbeatAck:
      // Dated from when the heartbeat left: an ack read late does not make a lease look fresh.
      a.last_ack = std::max(a.last_ack, msg.sent_at);
      return;
    case Msg::kAssign: {
      // Read after this agent's own view of the lease ran out: as old as that; never run it.
      if (now_ - a.last_ack > kLeaseTtl) return;
      auto it = a.jobs.find(msg.ref.job_id);
      if (it != a.jobs.end()) {
        if (it->second.epoch >= msg.ref.epoch) return;  // a repeat, or older than what runs
        a.jobs.erase(it);
      }
      SimJob& job = a.jobs[msg.ref.job_id];
      job.epoch = msg.ref.epoch;
      job.assigned_at = now_;
      const Submission* sub = by_name_.at(msg.job_name);
      job.end_at = now_ + sub->run_time;
      job.exit_code = sub->exit_code;
      if (a.registered) {
        job.running_sent = true;
        Msg m{Msg::kUpdate};
        m.report = {msg.ref.job_id, job.epoch, JobState::kRunning, 0, ""};
        AgentSend(agent, std::move(m));
      }
      return;
    }
    case Msg::kCancel: {
      auto it = a.jobs.find(msg.ref.job_id);
      if (it == a.jobs.end() || it->second.epoch != msg.ref.epoch || it->second.ended) return;
      it->second.cancel_requested = true;
      // SIGTERM, and the process is gone a moment later.
      it->second.end_at = std::min(it->second.end_at, now_ + Ms(1, 300));
      return;
    }
    case Msg::kStop:
    case Msg::kRejected: {
      if (msg.kind == Msg::kRejected && msg.code != absl::StatusCode::kFailedPrecondition &&
          msg.code != absl::StatusCode::kNotFound) {
        return;
      }
      auto it = a.jobs.find(msg.ref.job_id);
      if (it != a.jobs.end() && it->second.epoch == msg.ref.epoch) a.jobs.erase(it);
      return;
    }
    case Msg::kUpdateAck: {
      auto it = a.jobs.find(msg.ref.job_id);
      if (it != a.jobs.end() && it->second.epoch == msg.ref.epoch && it->second.ended) {
        a.jobs.erase(it);
      }
      return;
    }
    case Msg::kStreamEnd:
      a.conn = 0;  // the stream is gone; no close to send
      AgentDropStream(agent);
      return;
    default:
      Violation(absl::StrCat("agent got a schedd-bound message: ", KindName(msg.kind)));
  }
}

void World::CrashAgent(int agent) {
  SimAgent& a = agents_[agent];
  if (a.down || !Faulty()) return;
  result_.agent_crashes++;
  a.down = true;
  a.jobs.clear();  // its successor kills the orphans (the process ledger)
  a.inbox.clear();
  a.conn = 0;
  a.registered = false;
  After(Ms(100, 4000), absl::StrCat("restart ", a.name), [this, agent] {
    SimAgent& b = agents_[agent];
    b.down = false;
    b.paused_until = absl::InfinitePast();
    b.redial_at = now_;
    b.failed_dials = 0;
    b.last_ack = absl::InfinitePast();
    AgentTick(agent);
  });
}

// ---------------------------------------------------------------------------------------------
// Clients

void World::ClientSubmit(const std::string& rid) {
  Submission& s = submissions_.at(rid);
  if (s.in_flight) return;
  s.in_flight = true;
  const uint64_t serial = ++s.attempt_serial;
  // The call crosses the network, runs, and its answer crosses back unless lost.
  After(Delay(), "submit arrives " + rid, [this, rid, serial] {
    Submission& s = submissions_.at(rid);
    if (scheduler_ == nullptr) {
      s.in_flight = false;  // refused to connect: certainly not applied; try again later
      After(Ms(100, 1000), "submit retry " + rid, [this, rid] { ClientSubmit(rid); });
      return;
    }
    touched_scheduler_ = true;
    scheduler_->Submit(s.spec, rid, [this, rid, serial](absl::StatusOr<SubmitResult> r) {
      if (!r.ok()) {
        Violation(absl::StrCat("submit ", rid, " refused: ", r.status().ToString()));
        return;
      }
      const std::string id = r->job.id;
      if (Faulty() && Chance(drop_p_)) return;  // the answer is lost: the client times out
      After(Delay(), "submit answer " + rid, [this, rid, serial, id] {
        Submission& s = submissions_.at(rid);
        if (s.job_id && *s.job_id != id) {
          Violation(absl::StrCat("request ", rid, " answered with jobs ", *s.job_id, " and ", id));
        }
        s.job_id = id;
        job_request_[id] = rid;
        if (s.attempt_serial == serial) s.in_flight = false;
        // Some jobs are cancelled by their user; the endless ones always are.
        if (s.run_time == kForever || Chance(0.15)) {
          After(Ms(0, 3000), "cancel " + id, [this, id] { ClientCancel(id); });
        }
      });
    });
    MaybeSync();
  });
  After(kClientTimeout, "submit timeout " + rid, [this, rid, serial] {
    Submission& s = submissions_.at(rid);
    if (s.attempt_serial != serial || !s.in_flight || s.job_id) return;
    s.in_flight = false;
    s.unknown = true;  // resolved by a retry with the same request id
    result_.unknown_calls++;
    After(Ms(0, 2000), "submit retry " + rid, [this, rid] { ClientSubmit(rid); });
  });
}

void World::Operate(int agent, Operation op) {
  // Once healed, the operator only gives nodes back: a late cordon retry would keep them.
  if (!Faulty() && op != kUncordon) return;
  if (scheduler_ == nullptr) {  // the call fails; the operator tries again
    After(Ms(100, 1000), "operator retry", [this, agent, op] { Operate(agent, op); });
    return;
  }
  touched_scheduler_ = true;
  const std::string& name = agents_[agent].name;
  auto done = [this, name](absl::StatusOr<Node> node) {
    // A node schedd has not heard of yet is NOT_FOUND; anything else is a bug.
    if (!node.ok() && !absl::IsNotFound(node.status())) {
      Violation(absl::StrCat("operating on ", name, ": ", node.status().ToString()));
    }
  };
  if (op == kDrain) {
    scheduler_->Drain(name, done);
  } else {
    scheduler_->Cordon(name, op == kCordon, done);
  }
  MaybeSync();
}

void World::ClientCancel(const std::string& id) {
  After(Delay(), "cancel arrives " + id, [this, id] {
    if (scheduler_ == nullptr) {
      After(Ms(100, 1000), "cancel retry " + id, [this, id] { ClientCancel(id); });
      return;
    }
    touched_scheduler_ = true;
    auto answered_flag = std::make_shared<bool>(false);
    scheduler_->Cancel(id, "", [this, id, answered_flag](absl::StatusOr<Job> job) {
      *answered_flag = true;
      if (job.ok()) {
        acked_cancels_.insert(id);
      } else if (!absl::IsFailedPrecondition(job.status())) {
        Violation(absl::StrCat("cancel ", id, ": ", job.status().ToString()));
      }
    });
    MaybeSync();
    // Crashed before the answer: unknown; the user tries again.
    After(kClientTimeout, "cancel timeout " + id, [this, id, answered_flag] {
      if (*answered_flag) return;
      result_.unknown_calls++;
      ClientCancel(id);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Invariants

void World::OnDurableJob(const Job& job) {
  auto [it, first] = durable_.try_emplace(job.id, job);
  const uint64_t previous_epoch = first ? 0 : it->second.epoch;
  if (!first) {
    const Job& before = it->second;
    if (ProgressOf(job) < ProgressOf(before)) {
      Violation(absl::StrCat("job went backwards: ", Describe(before), " -> ", Describe(job)));
    }
    if (IsTerminal(before.state) && job.state != before.state) {
      Violation(absl::StrCat("second terminal outcome: ", Describe(before), " -> ",
                             Describe(job)));
    }
    if (job.epoch < before.epoch) {
      Violation(absl::StrCat("epoch decreased: ", Describe(before), " -> ", Describe(job)));
    }
    it->second = job;
  }
  if (IsLeased(job.state) && job.epoch != previous_epoch) {
    // A new assignment: its epoch is larger than every epoch handed out before.
    if (job.epoch <= last_assigned_epoch_) {
      Violation(absl::StrFormat("assignment of %s at epoch %d after epoch %d", job.id, job.epoch,
                                last_assigned_epoch_));
    }
    last_assigned_epoch_ = std::max(last_assigned_epoch_, job.epoch);
  }
  if (job.state == JobState::kCancelled && !job.cancel_requested) {
    Violation(absl::StrCat("cancelled without a cancel request: ", Describe(job)));
  }
}

void World::CheckAfterRestart() {
  // Everything known durable came back, at least as far along as it was seen.
  for (const auto& [id, seen] : durable_) {
    absl::StatusOr<Job> job = scheduler_->GetJob(id);
    if (!job.ok()) {
      Violation(absl::StrCat("after restart, durable job ", id, " is gone: ",
                             job.status().ToString()));
      continue;
    }
    if (ProgressOf(*job) < ProgressOf(seen)) {
      Violation(absl::StrCat("after restart ", Describe(*job), " is behind ", Describe(seen)));
    }
  }
  for (const auto& [rid, s] : submissions_) {
    if (s.job_id && !scheduler_->GetJob(*s.job_id).ok()) {
      Violation(absl::StrCat("after restart, acknowledged job ", *s.job_id, " is gone"));
    }
  }
}

void World::CheckStructure() {
  if (scheduler_ == nullptr) return;
  JobQuery query;
  query.limit = 100000;
  const std::vector<Job> jobs = scheduler_->ListJobs(query).jobs;
  std::map<std::string, std::vector<const Job*>> leased;
  for (const Job& job : jobs) {
    if (IsLeased(job.state)) leased[job.node].push_back(&job);
  }
  for (const Node& node : scheduler_->ListNodes()) {
    const std::vector<const Job*>& on = leased[node.record.name];
    if (node.running_jobs != on.size()) {
      Violation(absl::StrFormat("node %s counts %d jobs but %d are leased to it",
                                node.record.name, node.running_jobs, on.size()));
    }
    int64_t cpu = 0;
    int64_t memory = 0;
    std::set<uint32_t> gpus;
    for (const Job* job : on) {
      cpu += job->spec.resources.cpu_millis;
      memory += job->spec.resources.memory_bytes;
      for (uint32_t g : job->gpu_indexes) {
        if (!gpus.insert(g).second) {
          Violation(absl::StrCat("GPU ", g, " of ", node.record.name, " given twice"));
        }
        if (g >= node.record.caps.gpus.size()) {
          Violation(absl::StrCat("GPU ", g, " of ", node.record.name, " does not exist"));
        }
      }
    }
    if (cpu != node.alloc_cpu_millis || memory != node.alloc_memory_bytes) {
      Violation(absl::StrCat("node ", node.record.name, " allocation out of step with its jobs"));
    }
    if (!node.record.caps.gpus.empty() || node.record.caps.cpu_millis > 0) {
      if (cpu > node.record.caps.cpu_millis || memory > node.record.caps.memory_bytes) {
        Violation(absl::StrCat("node ", node.record.name, " is overcommitted"));
      }
    }
  }
}

bool World::AllDone() {
  if (scheduler_ == nullptr) return false;
  for (const auto& [rid, s] : submissions_) {
    if (!s.job_id) return false;
    absl::StatusOr<Job> job = scheduler_->GetJob(*s.job_id);
    if (!job.ok() || !IsTerminal(job->state)) return false;
    // Terminal in memory is not enough: it must be durable too.
    auto it = durable_.find(*s.job_id);
    if (it == durable_.end() || !IsTerminal(it->second.state)) return false;
  }
  return true;
}

void World::CheckFinal() {
  for (const auto& [rid, s] : submissions_) {
    if (!s.job_id) {
      Violation(absl::StrCat("request ", rid, " never resolved"));
      continue;
    }
    absl::StatusOr<Job> job = scheduler_->GetJob(*s.job_id);
    if (!job.ok()) {
      Violation(absl::StrCat("acknowledged job ", *s.job_id, " missing at the end"));
      continue;
    }
    if (!IsTerminal(job->state)) {
      Violation(absl::StrCat("liveness: job not ended after the faults stopped: ",
                             Describe(*job)));
    }
    if (acked_cancels_.count(job->id) && job->state != JobState::kCancelled) {
      Violation(absl::StrCat("acknowledged cancel, but the job ended ", Describe(*job)));
    }
    if (job->finished_by_agent) {
      auto w = winner_epoch_.find(job->id);
      if (w != winner_epoch_.end() && w->second != job->epoch) {
        Violation(absl::StrCat("final record ", Describe(*job), " is not the accepted epoch ",
                               w->second));
      }
    }
  }
}

SimResult World::Run() {
  MakeAgents();
  MakeJobs();
  ScheduleFaults();
  StartSchedd();
  for (size_t i = 0; i < agents_.size(); ++i) {
    const int a = static_cast<int>(i);
    After(Ms(0, 300), "agent start", [this, a] { AgentTick(a); });
  }
  absl::Time deadline = absl::InfiniteFuture();
  bool healed = false;
  while (!events_.empty() && result_.ok) {
    auto it = events_.begin();
    if (it->first.first > deadline) break;
    now_ = std::max(now_, it->first.first);
    clock_.Set(now_ + skew_);
    std::pair<std::string, std::function<void()>> ev = std::move(it->second);
    events_.erase(it);
    result_.steps++;
    if (options_.trace && !ev.first.empty()) {
      std::printf("%9.3f  %s\n", absl::ToDoubleSeconds(now_ - start_), ev.first.c_str());
    }
    touched_scheduler_ = false;
    ev.second();
    if (touched_scheduler_) CheckStructure();
    if (!healed && now_ >= fault_end_) {
      healed = true;
      // Heal: every partition and pause ends; schedd up; the run now has a bound to finish in.
      for (size_t i = 0; i < agents_.size(); ++i) {
        partitions_[i].until = absl::InfinitePast();
        if (agents_[i].paused_until > now_) {
          agents_[i].paused_until = now_;
          const int a = static_cast<int>(i);
          After(absl::ZeroDuration(), "wake (healed)", [this, a] { AgentTick(a); });
        }
      }
      for (size_t i = 0; i < agents_.size(); ++i) {
        const int a = static_cast<int>(i);
        After(absl::Seconds(1), "uncordon (healed)", [this, a] { Operate(a, kUncordon); });
      }
      absl::Duration work;
      for (const auto& [rid, sub] : submissions_) {
        if (sub.run_time != kForever) work += sub.run_time;
      }
      deadline = now_ + 3 * (kLeaseTtl + kRestartGrace) + absl::Seconds(10) + work +
                 std::max(absl::ZeroDuration(), -skew_);
    }
    if (healed && result_.ok && AllDone()) break;
  }
  result_.sim_time = now_ - start_;
  if (result_.ok) CheckFinal();
  // The run ends like a crash: what is still queued is dropped, so nothing waits on it.
  if (scheduler_ != nullptr) {
    result_.priority_preemptions += scheduler_->Stats().priority_preemptions_total;
  }
  if (store_ != nullptr) store_->Crash();
  scheduler_.reset();
  return result_;
}

}  // namespace

std::string SimResult::Summary() const {
  return absl::StrFormat(
      "seed=%d %s steps=%d sim_time=%.1fs agents=%d jobs=%d schedd_crashes=%d agent_crashes=%d "
      "pauses=%d partitions=%d clock_jumps=%d messages=%d dropped=%d duplicated=%d unknown=%d "
      "refused_reports=%d completions=%d priority_preemptions=%d%s%s",
      seed, ok ? "ok" : "FAILED", steps, absl::ToDoubleSeconds(sim_time), agents, jobs,
      schedd_crashes, agent_crashes, pauses, partitions, clock_jumps, messages, dropped,
      duplicated, unknown_calls, refused_reports, accepted_completions, priority_preemptions,
      ok ? "" : "\n  violation: ", violation);
}

std::string ReplayCommand(uint64_t seed) {
  return absl::StrCat("build/bin/sched-sim --seed=", seed, " --trace");
}

SimResult RunSimulation(const SimOptions& options) {
  World world(options);
  return world.Run();
}

}  // namespace sched::sim
