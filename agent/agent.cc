#include "agent/agent.h"

#include <algorithm>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "agent/backoff.h"
#include "agent/job_end.h"
#include "agent/log.h"
#include "agent/secret_scrubber.h"
#include "server/auth/channel.h"

namespace sched::agent {
namespace {

// How often leases, heartbeats and shutdown are looked at.
constexpr absl::Duration kTick = absl::Milliseconds(20);
// How often the metrics files of running jobs are read.
constexpr absl::Duration kMetricsPoll = absl::Milliseconds(250);
// Points per AgentMetrics message.
constexpr size_t kMaxPointsPerMessage = 1000;
// A stream without RegisterAck for this long is dropped and dialled again.
constexpr absl::Duration kRegisterTimeout = absl::Seconds(30);
// google.rpc.Code values in Rejected.code that mean "this job is not yours".
constexpr int kNotFound = 5;
constexpr int kFailedPrecondition = 9;

bool IsFinalUpdate(const v1::AgentMessage& m) {
  return m.has_update() && m.update().state() != v1::JOB_STATE_RUNNING;
}

v1::AgentMessage Update(const std::string& id, uint64_t epoch, v1::JobState state) {
  v1::AgentMessage msg;
  v1::JobUpdate* u = msg.mutable_update();
  u->set_job_id(id);
  u->set_epoch(epoch);
  u->set_state(state);
  return msg;
}

RunRequest RequestFor(const v1::Job& job, const std::string& work_dir) {
  RunRequest r;
  r.job_id = job.id();
  r.attempt = job.attempt();
  r.job_name = job.spec().name();
  r.project = job.spec().project().empty() ? "default" : job.spec().project();
  r.setup = job.spec().setup();
  r.run = job.spec().run();
  for (const v1::EnvVar& e : job.spec().env()) r.env.emplace_back(e.name(), e.value());
  r.gpu_indexes.assign(job.gpu_indexes().begin(), job.gpu_indexes().end());
  r.work_dir = work_dir;
  r.has_inputs = job.spec().inputs_size() > 0;
  return r;
}

// Brings the newest checkpoint of each job `inputs` names into SCHED_INPUTS_DIR/<name> (what the
// folder or file held, not in a folder of its checkpoint's name). A note for the job's stderr
// for each; one that cannot be fetched is left out and said so.
std::string FetchInputs(CheckpointUploader& uploader, const v1::Job& job,
                        const std::string& work_dir) {
  std::string note;
  const std::string dir = InputsFolder(work_dir, job.id(), job.attempt());
  for (const v1::JobInput& input : job.spec().inputs()) {
    const std::string fetch = absl::StrCat(dir, "/.fetch-", input.name());
    const std::string final_path = absl::StrCat(dir, "/", input.name());
    std::error_code ec;
    std::filesystem::remove_all(fetch, ec);
    std::filesystem::remove_all(final_path, ec);
    std::filesystem::create_directories(fetch, ec);
    absl::StatusOr<checkpoint::Downloaded> got = uploader.FetchNewest(input.job_id(), fetch, job.id());
    if (got.ok()) std::filesystem::rename(got->path, final_path, ec);
    std::filesystem::remove_all(fetch, ec);
    if (!got.ok() || ec) {
      absl::StrAppend(&note, "sched-agent: input ", input.name(), " from job ", input.job_id(),
                      " not brought in: ", got.ok() ? ec.message() : got.status().message(), "\n");
      Log("job %s: input %s from job %s: %s", job.id(), input.name(), input.job_id(),
          got.ok() ? ec.message() : got.status().ToString());
      continue;
    }
    absl::StrAppend(&note,
                    absl::StrFormat("sched-agent: input %s: checkpoint %s of job %s (%d bytes)\n",
                                    input.name(), got->manifest.name(), input.job_id(),
                                    got->manifest.size_bytes()));
  }
  return note;
}

// A job that succeeded leaves its declared outputs: copied into its checkpoint folder under a
// temporary name, then renamed to outputs-<attempt>, its last checkpoint. Empty when done; else
// why not (a declared output missing, or the copy failed).
std::string PublishOutputs(const std::vector<std::string>& outputs, const std::string& job_folder,
                           const std::string& checkpoint_dir, uint32_t attempt) {
  namespace fs = std::filesystem;
  const fs::path staging = fs::path(checkpoint_dir) / absl::StrCat(".tmp-outputs-", attempt);
  std::error_code ec;
  fs::remove_all(staging, ec);
  for (const std::string& output : outputs) {
    std::string relative = output;
    while (!relative.empty() && relative.back() == '/') relative.pop_back();
    const fs::path from = fs::path(job_folder) / relative;
    if (!fs::exists(fs::symlink_status(from, ec))) {
      fs::remove_all(staging, ec);
      return absl::StrCat("declared output ", output, " was not written");
    }
    const fs::path to = staging / relative;
    fs::create_directories(to.parent_path(), ec);
    fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::skip_symlinks, ec);
    if (ec) {
      fs::remove_all(staging, ec);
      return absl::StrCat("cannot copy output ", output, ": ", ec.message());
    }
  }
  fs::rename(staging, fs::path(checkpoint_dir) / absl::StrCat("outputs-", attempt), ec);
  if (ec) return absl::StrCat("cannot publish the outputs: ", ec.message());
  return "";
}

}  // namespace

// What a later attempt resumed from, written by RunRequest::prepare before the job starts.
struct ResumedFrom {
  std::string name;
  uint64_t seq = 0;
};

// A job's metrics file. Its lock is taken before Agent::mu_, never while holding it, and is held
// from a read until what it found is queued: the last read (the job has ended) then cannot be
// overtaken by an earlier one, and its points precede the final update.
struct MetricsWatch {
  explicit MetricsWatch(std::string path) : file(std::move(path)) {}
  absl::Mutex mu;
  MetricsFile file ABSL_GUARDED_BY(mu);
  bool ended ABSL_GUARDED_BY(mu) = false;  // the last read is done
};

struct Agent::HeldJob {
  uint64_t epoch = 0;
  uint32_t attempt = 0;
  std::shared_ptr<ResumedFrom> resumed = std::make_shared<ResumedFrom>();
  bool preempted = false;  // stopped for a preemption notice, or to step aside for the owner
  std::string step_aside;  // with preempted: why it stepped aside ("the machine's owner ...")
  std::vector<uint32_t> gpus;  // the GPUs it was given
  pid_t pid = 0;               // its first process, once started
  std::vector<std::string> outputs;  // spec.outputs: published when it succeeds
  uint64_t serial = 0;
  absl::Time assigned_at;
  std::unique_ptr<JobRunner> runner;  // null once the process has ended
  bool cancel_requested = false;
  bool ended = false;                   // final_update is set
  std::deque<v1::AgentMessage> outbox;  // not yet written, in order
  size_t outbox_log_bytes = 0;
  uint64_t dropped_log_bytes = 0;
  v1::AgentMessage final_update;
  bool final_on_wire = false;  // written on the current stream, waiting for UpdateAck
  // The job's secret values, kept out of its output: one per stream.
  std::unique_ptr<SecretScrubber> scrub_stdout, scrub_stderr;
  // (name, value) of the secrets, for the notes about its metrics file, which quote it.
  std::vector<std::pair<std::string, std::string>> secrets;
  std::shared_ptr<MetricsWatch> metrics_file;
};

Agent::Agent(Options options, AgentMetrics* metrics)
    : options_(std::move(options)),
      ledger_(options_.work_dir + "/pgids"),
      kill_grace_(absl::Milliseconds(options_.kill_grace_ms)),
      metrics_(metrics) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, auth::kKeepaliveTimeMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, auth::kKeepaliveTimeoutMs);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5'000);
  std::shared_ptr<grpc::Channel> channel = auth::Dial(options_.server, options_.dial, args);
  stub_ = v1::AgentService::NewStub(channel);
  CheckpointUploader::Options upload;
  upload.node_name = options_.node_name;
  upload.poll = absl::Milliseconds(std::max<int64_t>(options_.checkpoint_poll_ms, 10));
  upload.threads = options_.checkpoint_threads;
  checkpoints_ = std::make_unique<CheckpointUploader>(std::move(upload), std::move(channel));
  if (options_.gpu_processes) {
    owner_watch_ =
        std::make_unique<OwnerWatch>(absl::Milliseconds(std::max<int64_t>(options_.owner_idle_ms, 0)));
  }
}

std::set<uint32_t> Agent::OwnerGpus() const {
  absl::MutexLock lock(&mu_);
  return owner_gpus_;
}

void Agent::CheckOwner(absl::Time now) {
  absl::StatusOr<std::vector<GpuProcess>> processes = options_.gpu_processes();
  if (!processes.ok()) {
    if (!owner_error_logged_) {
      Log("cannot see who uses the GPUs: %s", processes.status().ToString());
      owner_error_logged_ = true;
    }
    return;
  }
  owner_error_logged_ = false;
  // The jobs' first processes, read after the list: a job that started since is in it, and
  // its processes were not on a GPU yet.
  std::set<int> roots = {static_cast<int>(getpid())};
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, job] : jobs_) {
      if (job.pid > 0) roots.insert(job.pid);
    }
  }
  const OwnerWatch::Change change =
      owner_watch_->Observe(now, ForeignGpuProcesses(*processes, roots, options_.owner_ignore));
  absl::MutexLock lock(&mu_);
  owner_detail_ = owner_watch_->Describe();
  if (change.changed()) {
    owner_gpus_ = owner_watch_->gpus();
    heartbeat_due_ = true;  // schedd hears of it now, not at the next beat
    for (uint32_t gpu : change.taken) Log("the owner is using GPU %d (%s)", gpu, owner_detail_);
    for (uint32_t gpu : change.returned) {
      Log("GPU %d: unused by the owner for %d s, given back to jobs", gpu,
          options_.owner_idle_ms / 1000);
    }
  }
  // Every job on a GPU of the owner's steps aside: SIGTERM, so it checkpoints, and its end goes
  // to schedd as a preemption (it resumes later, here or elsewhere).
  for (auto& [id, job] : jobs_) {
    if (job.runner == nullptr || job.ended || job.preempted || job.cancel_requested) continue;
    for (uint32_t gpu : job.gpus) {
      if (!owner_gpus_.count(gpu)) continue;
      job.preempted = true;
      job.step_aside = absl::StrCat("stepped aside for the machine's owner, who is using GPU ",
                                    gpu, " (", owner_detail_, ")");
      job.runner->Kill(kill_grace_);
      Log("job %s: %s", id, job.step_aside);
      break;
    }
  }
}

Agent::~Agent() = default;

void Agent::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutdown_ = true;
}

void Agent::Preempt(const std::string& source, absl::Duration time_left, bool then_exit) {
  absl::MutexLock lock(&mu_);
  if (preempting_ || shutdown_) return;
  preempting_ = true;
  preempt_exit_ = then_exit;
  preempt_source_ = source;
  preempt_deadline_ = options_.clock->Now() + time_left;
  preempt_notice_due_ = registered_;
  // The job gets most of the time left to write its checkpoint; the rest is for the upload and
  // the report.
  const absl::Duration grace =
      std::max(time_left - std::max(time_left / 4, absl::Seconds(1)), absl::Milliseconds(500));
  int stopping = 0;
  for (auto& [id, job] : jobs_) {
    if (job.runner == nullptr || job.ended) continue;
    job.preempted = true;
    job.runner->Kill(grace);
    stopping++;
  }
  Log("preemption notice (%s), %d s left: %d job(s) get SIGTERM and %d ms for a last "
      "checkpoint",
      source, absl::ToInt64Seconds(time_left), stopping, absl::ToInt64Milliseconds(grace));
}

absl::Status Agent::Run() {
  if (options_.node_name.empty()) return absl::InvalidArgumentError("node_name: empty");
  if (options_.server.empty()) return absl::InvalidArgumentError("server: empty");
  // Jobs a killed predecessor left running belong to nobody now: schedd re-queues them.
  if (int killed = ledger_.KillLeftovers(); killed > 0) {
    Log("killed %d job process group(s) left by an earlier agent", killed);
  }
  std::thread ticker([this] { TickerLoop(); });
  Backoff backoff(absl::Milliseconds(options_.reconnect_initial_ms),
                  absl::Milliseconds(options_.reconnect_max_ms), options_.random_seed);
  absl::Status refused;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (shutdown_) break;
    }
    if (RunStream(refused)) backoff.Reset();
    if (!refused.ok()) break;
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&shutdown_), backoff.Next());
  }
  std::vector<std::unique_ptr<JobRunner>> runners;
  {
    absl::MutexLock lock(&mu_);
    ticker_stop_ = true;
  }
  ticker.join();
  {
    absl::MutexLock lock(&mu_);
    while (!jobs_.empty()) ForgetLocked(jobs_.begin()->first, "shutting down");
    runners = std::move(reap_);
  }
  WaitForRunners(std::move(runners));
  Log("stopped");
  return refused;
}

void Agent::WaitForRunners(std::vector<std::unique_ptr<JobRunner>> runners) {
  // Killed with grace already; past it, destroying a runner kills what is left at once.
  const absl::Time give_up = absl::Now() + kill_grace_ + absl::Seconds(1);
  while (absl::Now() < give_up &&
         !std::all_of(runners.begin(), runners.end(), [](const auto& r) { return r->done(); })) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  runners.clear();
}

bool Agent::RunStream(absl::Status& refused) {
  grpc::ClientContext context;
  v1::AgentMessage hello;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return false;
    StartStreamLocked();
    stream_started_ = options_.clock->Now();
    context_ = &context;  // set first: a cancel may come while the call is being made
    v1::Register* reg = hello.mutable_register_();
    reg->set_node_name(options_.node_name);
    *reg->mutable_capabilities() = options_.capabilities;
    for (const auto& [id, job] : jobs_) {
      v1::JobRef* ref = reg->add_running();
      ref->set_job_id(id);
      ref->set_epoch(job.epoch);
    }
  }
  std::unique_ptr<Stream> stream = stub_->Connect(&context);
  std::thread writer;
  bool registered = false;
  if (stream->Write(hello)) {
    writer = std::thread([&] { WriterLoop(stream.get(), &context); });
    v1::ServerMessage msg;
    while (stream->Read(&msg)) {
      registered = registered || msg.has_register_ack();
      Handle(msg);
    }
  }
  {
    absl::MutexLock lock(&mu_);
    stream_ending_ = true;
    registered_ = false;
    context_ = nullptr;
  }
  if (metrics_ != nullptr) metrics_->SetConnected(false);
  if (writer.joinable()) writer.join();
  const grpc::Status status = stream->Finish();
  const std::string why =
      absl::StrCat("code ", static_cast<int>(status.error_code()), ": ", status.error_message());
  if (!registered && status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
    refused = absl::InvalidArgumentError(absl::StrCat(
        "schedd at ", options_.server, " refused to register this node: ", status.error_message()));
  } else if (registered) {
    failed_dials_ = 0;
    Log("stream to %s ended: %s", options_.server, why);
  } else if (++failed_dials_ % 20 == 1) {  // the first failure, then every 20th
    Log("cannot reach schedd at %s (attempt %d): %s", options_.server, failed_dials_, why);
  }
  return registered;
}

void Agent::StartStreamLocked() {
  registered_ = false;
  stream_ending_ = false;
  stream_cancelled_ = false;
  heartbeat_due_ = false;
  heartbeats_sent_.clear();
  // What the last stream did not deliver goes out again, final updates not acknowledged too.
  send_queue_.clear();
  for (auto& [id, job] : jobs_) {
    if (job.final_on_wire) {
      job.final_on_wire = false;
      job.outbox.push_back(job.final_update);
    }
    for (size_t i = 0; i < job.outbox.size(); ++i) send_queue_.emplace_back(id, job.serial);
  }
}

bool Agent::WriterHasWork() const {
  return stream_ending_ ||
         (registered_ && (heartbeat_due_ || preempt_notice_due_ || !send_queue_.empty()));
}

void Agent::WriterLoop(Stream* stream, grpc::ClientContext* context) {
  while (true) {
    v1::AgentMessage msg;
    std::optional<JobToken> token;  // empty for a heartbeat
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &Agent::WriterHasWork));
      if (stream_ending_) return;
      if (preempt_notice_due_) {
        preempt_notice_due_ = false;
        v1::Preempting* p = msg.mutable_preempting();
        p->set_source(preempt_source_);
        p->set_seconds_left(
            std::max<int64_t>(absl::ToInt64Seconds(preempt_deadline_ - options_.clock->Now()), 0));
      } else if (heartbeat_due_) {
        heartbeat_due_ = false;
        msg = HeartbeatLocked();
        heartbeats_sent_.push_back(options_.clock->Now());
      } else {
        token = std::move(send_queue_.front());
        send_queue_.pop_front();
        HeldJob* job = FindLocked(*token);
        if (job == nullptr || job->outbox.empty()) continue;  // forgotten
        msg = job->outbox.front();
      }
    }
    if (!stream->Write(msg)) {
      context->TryCancel();  // the reader sees the end too
      return;
    }
    if (!token.has_value()) continue;
    absl::MutexLock lock(&mu_);
    HeldJob* job = FindLocked(*token);
    if (job == nullptr || job->outbox.empty()) continue;
    if (IsFinalUpdate(msg)) job->final_on_wire = true;
    if (msg.has_log()) job->outbox_log_bytes -= msg.log().data().size();
    job->outbox.pop_front();
  }
}

v1::AgentMessage Agent::HeartbeatLocked() const {
  v1::AgentMessage msg;
  v1::Heartbeat* hb = msg.mutable_heartbeat();
  for (const auto& [id, job] : jobs_) {
    if (job.final_on_wire) continue;
    v1::JobRef* ref = hb->add_running();
    ref->set_job_id(id);
    ref->set_epoch(job.epoch);
  }
  for (uint32_t gpu : owner_gpus_) hb->add_owner_gpus(gpu);
  if (!owner_gpus_.empty()) hb->set_owner_detail(owner_detail_);
  return msg;
}

void Agent::TickerLoop() {
  absl::Time next_metrics_read = absl::InfinitePast();
  absl::Time next_owner_check = absl::InfinitePast();
  while (true) {
    bool owner_due = false;
    std::vector<std::unique_ptr<JobRunner>> finished;
    std::vector<std::pair<JobToken, std::shared_ptr<MetricsWatch>>> metrics_due;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&ticker_stop_), kTick);
      if (ticker_stop_) return;
      const absl::Time now = options_.clock->Now();
      if (registered_ && now >= next_heartbeat_) {
        heartbeat_due_ = true;
        next_heartbeat_ = now + heartbeat_interval_;
      }
      CheckLeasesLocked(now);
      if (context_ != nullptr && !registered_ && !stream_cancelled_ &&
          now - stream_started_ > kRegisterTimeout) {
        Log("no RegisterAck from schedd in %d s: dialling again",
            absl::ToInt64Seconds(kRegisterTimeout));
        stream_cancelled_ = true;
        context_->TryCancel();
      }
      if (preempting_ && preempt_exit_ && !shutdown_ &&
          (jobs_.empty() || now >= preempt_deadline_)) {
        Log(jobs_.empty() ? "preempted: every job reported; stopping"
                          : "preempted: out of time; stopping");
        shutdown_ = true;
      }
      if (shutdown_) ShutdownStepLocked(now);
      if (owner_watch_ != nullptr && now >= next_owner_check) {
        next_owner_check = now + absl::Milliseconds(std::max<int64_t>(options_.owner_poll_ms, 10));
        owner_due = true;
      }
      if (now >= next_metrics_read) {
        next_metrics_read = now + kMetricsPoll;
        for (const auto& [id, job] : jobs_) {
          if (job.runner != nullptr && !job.ended) {
            metrics_due.emplace_back(JobToken(id, job.serial), job.metrics_file);
          }
        }
      }
      auto done =
          std::partition(reap_.begin(), reap_.end(), [](const auto& r) { return !r->done(); });
      std::move(done, reap_.end(), std::back_inserter(finished));
      reap_.erase(done, reap_.end());
    }
    finished.clear();  // joins the runners' threads, outside the lock
    // Also outside the lock: reading files must not hold up the stream.
    for (const auto& [token, watch] : metrics_due) ReadMetrics(token, *watch);
    if (owner_due) CheckOwner(options_.clock->Now());
  }
}

void Agent::ReadMetrics(const JobToken& token, MetricsWatch& watch) {
  absl::MutexLock watch_lock(&watch.mu);
  if (watch.ended) return;
  MetricsFile::Read read = watch.file.ReadNew(/*final=*/false);
  if (read.samples.empty() && read.notes.empty()) return;
  absl::MutexLock lock(&mu_);
  HeldJob* job = FindLocked(token);
  if (job == nullptr) return;  // forgotten (lease lost, stopped): its metrics go with it
  PushMetricsLocked(token.first, *job, std::move(read));
}

void Agent::CheckLeasesLocked(absl::Time now) {
  if (lease_ttl_ <= absl::ZeroDuration()) return;
  std::vector<std::string> expired;
  for (const auto& [id, job] : jobs_) {
    if (now - std::max(last_ack_, job.assigned_at) > lease_ttl_) expired.push_back(id);
  }
  for (const std::string& id : expired) ForgetLocked(id, "its lease ran out: no ack from schedd");
  if (registered_ && context_ != nullptr && !stream_cancelled_ && now - last_ack_ > lease_ttl_) {
    Log("no ack from schedd for %d ms: dialling again", absl::ToInt64Milliseconds(now - last_ack_));
    stream_cancelled_ = true;
    context_->TryCancel();
  }
}

void Agent::ShutdownStepLocked(absl::Time now) {
  if (!shutdown_killed_) {
    shutdown_killed_ = true;
    shutdown_deadline_ = now + absl::Milliseconds(options_.shutdown_flush_ms);
    std::vector<std::string> running;
    for (const auto& [id, job] : jobs_) {
      if (!job.ended) running.push_back(id);
    }
    for (const std::string& id : running) ForgetLocked(id, "shutting down");
  }
  if (context_ != nullptr && !stream_cancelled_ && (jobs_.empty() || now >= shutdown_deadline_)) {
    stream_cancelled_ = true;
    context_->TryCancel();
  }
}

// ---- Messages from schedd (the reader thread) ----

void Agent::Handle(const v1::ServerMessage& msg) {
  switch (msg.msg_case()) {
    case v1::ServerMessage::kRegisterAck:
      return OnRegisterAck(msg.register_ack());
    case v1::ServerMessage::kHeartbeatAck:
      return OnHeartbeatAck();
    case v1::ServerMessage::kAssignment:
      return OnAssignment(msg.assignment());
    case v1::ServerMessage::kCancel:
      return OnCancel(msg.cancel());
    case v1::ServerMessage::kStop:
      return OnStop(msg.stop());
    case v1::ServerMessage::kRejected:
      return OnRejected(msg.rejected());
    case v1::ServerMessage::kUpdateAck:
      return OnUpdateAck(msg.update_ack());
    case v1::ServerMessage::kDrain:
      return OnDrain();
    case v1::ServerMessage::MSG_NOT_SET:
      return;
  }
}

void Agent::OnHeartbeatAck() {
  absl::MutexLock lock(&mu_);
  // schedd renewed the leases when it read the heartbeat, which left here no earlier than this:
  // an ack read late (by an agent that was paused) does not make an old lease look fresh.
  if (heartbeats_sent_.empty()) return;
  last_ack_ = std::max(last_ack_, heartbeats_sent_.front());
  heartbeats_sent_.pop_front();
}

void Agent::OnStop(const v1::StopJob& stop) {
  absl::MutexLock lock(&mu_);
  if (FindLocked(stop.job_id(), stop.epoch()) != nullptr) {
    ForgetLocked(stop.job_id(), absl::StrCat("schedd stopped it: ", stop.reason()));
  }
}

void Agent::OnUpdateAck(const v1::UpdateAck& ack) {
  absl::MutexLock lock(&mu_);
  HeldJob* job = FindLocked(ack.job_id(), ack.epoch());
  if (job != nullptr && job->ended) jobs_.erase(ack.job_id());
}

void Agent::OnDrain() {
  absl::MutexLock lock(&mu_);
  // schedd stops placing work here; it alone decides, so a later assignment (after an
  // uncordon) still runs.
  Log("draining: schedd sends no more work; %d job(s) held", jobs_.size());
}

void Agent::OnRegisterAck(const v1::RegisterAck& ack) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.clock->Now();
  lease_ttl_ = absl::Milliseconds(ack.lease_ttl_ms());
  heartbeat_interval_ = ack.heartbeat_interval_ms() > 0
                            ? absl::Milliseconds(ack.heartbeat_interval_ms())
                            : absl::Seconds(1);
  registered_ = true;
  if (preempting_) preempt_notice_due_ = true;  // a new stream: say it again
  last_ack_ = now;
  next_heartbeat_ = now + heartbeat_interval_;
  if (metrics_ != nullptr) metrics_->SetConnected(true);
  Log("registered with %s as %s (lease %d ms, heartbeat %d ms, %d job(s) held)", options_.server,
      options_.node_name, ack.lease_ttl_ms(), ack.heartbeat_interval_ms(), jobs_.size());
}

void Agent::OnAssignment(const v1::Assignment& assignment) {
  const v1::Job& job = assignment.job();
  const uint64_t epoch = assignment.epoch();
  absl::MutexLock lock(&mu_);
  if (job.id().empty()) {
    Log("assignment without a job id ignored");
    return;
  }
  if (shutdown_) {
    Log("job %s: assignment ignored, shutting down", job.id());
    return;
  }
  if (preempting_) {
    Log("job %s: assignment ignored, this machine is being taken back", job.id());
    return;
  }
  // Read after this agent's lease ran out (it was paused, or cut off): the assignment is as old
  // as that, schedd has given the job to another node or will when this one registers again
  // without it. Running it would make a zombie copy.
  if (const absl::Duration silent = options_.clock->Now() - last_ack_;
      lease_ttl_ > absl::ZeroDuration() && silent > lease_ttl_) {
    Log("job %s: assignment ignored: it came %d ms after the last renewal, past the lease",
        job.id(), absl::ToInt64Milliseconds(silent));
    return;
  }
  if (auto it = jobs_.find(job.id()); it != jobs_.end()) {
    if (it->second.epoch >= epoch) return;  // a repeat, or older than what runs
    ForgetLocked(job.id(), "assigned again with a newer epoch");
  }
  HeldJob& held = jobs_[job.id()];
  held.epoch = epoch;
  held.attempt = job.attempt();
  held.gpus.assign(job.gpu_indexes().begin(), job.gpu_indexes().end());
  held.outputs.assign(job.spec().outputs().begin(), job.spec().outputs().end());
  held.serial = ++last_serial_;
  held.assigned_at = options_.clock->Now();
  std::vector<std::pair<std::string, std::string>> secrets;
  for (const v1::EnvVar& e : job.spec().env()) {
    if (e.secret()) secrets.emplace_back(e.name(), e.value());
  }
  held.scrub_stdout = std::make_unique<SecretScrubber>(secrets);
  held.scrub_stderr = std::make_unique<SecretScrubber>(secrets);
  held.secrets = std::move(secrets);
  held.metrics_file =
      std::make_shared<MetricsWatch>(MetricsFilePath(options_.work_dir, job.id(), job.attempt()));
  const JobToken token(job.id(), held.serial);
  JobRunner::Callbacks callbacks;
  callbacks.started = [this, token](pid_t pid) { OnStarted(token, pid); };
  callbacks.output = [this, token](OutputStream stream, std::string data) {
    OnOutput(token, stream, std::move(data));
  };
  callbacks.exited = [this, token](absl::StatusOr<ExitStatus> exit) { OnExited(token, exit); };
  RunRequest request = RequestFor(job, options_.work_dir);
  if (job.attempt() > 1 || job.spec().inputs_size() > 0) {
    // The outputs of the jobs it has as inputs come in first; a later attempt then resumes
    // from the job's newest checkpoint, wherever it was made.
    request.prepare = [uploader = checkpoints_.get(), id = job.id(), resumed = held.resumed,
                       job, work_dir = options_.work_dir](const std::string& dir,
                                                          std::string* note) -> std::string {
      *note = FetchInputs(*uploader, job, work_dir);
      if (job.attempt() <= 1) return "";
      absl::StatusOr<checkpoint::Downloaded> got = uploader->FetchNewest(id, dir);
      if (got.ok()) {
        resumed->name = got->manifest.name();
        resumed->seq = got->manifest.seq();
        absl::StrAppend(
            note, absl::StrFormat("sched-agent: resuming from checkpoint %s (#%d, %d bytes)\n",
                                  got->manifest.name(), got->manifest.seq(),
                                  got->manifest.size_bytes()));
        return got->path;
      }
      if (got.status().code() != absl::StatusCode::kNotFound) {
        absl::StrAppend(note, "sched-agent: starting without a checkpoint: ",
                        got.status().message(), "\n");
      }
      Log("job %s: no checkpoint to resume from: %s", id, got.status().message());
      return "";
    };
  }
  held.runner = JobRunner::Start(std::move(request), std::move(callbacks));
}

void Agent::OnCancel(const v1::CancelJob& cancel) {
  absl::MutexLock lock(&mu_);
  HeldJob* job = FindLocked(cancel.job_id(), cancel.epoch());
  if (job == nullptr) {
    Log("job %s: cancel for a job not held (epoch %d)", cancel.job_id(), cancel.epoch());
    return;
  }
  if (job->ended) return;
  job->cancel_requested = true;
  job->runner->Kill(kill_grace_);
}

void Agent::OnRejected(const v1::Rejected& rejected) {
  absl::MutexLock lock(&mu_);
  Log("job %s: schedd rejected a report (code %d): %s", rejected.job_id(), rejected.code(),
      rejected.message());
  if (rejected.code() != kFailedPrecondition && rejected.code() != kNotFound) return;
  if (FindLocked(rejected.job_id(), rejected.epoch()) != nullptr) {
    ForgetLocked(rejected.job_id(), "schedd says it is no longer this agent's");
  }
}

// ---- Events of the jobs' runners (their threads) ----

static std::string LedgerKey(const std::pair<std::string, uint64_t>& token) {
  return absl::StrCat(token.first, "-", token.second);
}

void Agent::OnStarted(const JobToken& token, pid_t pid) {
  if (metrics_ != nullptr) metrics_->ProcessStarted();
  ledger_.Record(LedgerKey(token), pid);  // the job leads its own process group
  absl::MutexLock lock(&mu_);
  HeldJob* job = FindLocked(token);
  if (job == nullptr) return;
  Log("job %s: started, pid %d", token.first, pid);
  job->pid = pid;
  checkpoints_->Watch(token.first, job->epoch, job->attempt,
                      CheckpointFolder(options_.work_dir, token.first, job->attempt));
  v1::AgentMessage running = Update(token.first, job->epoch, v1::JOB_STATE_RUNNING);
  running.mutable_update()->set_resumed_from(job->resumed->name);
  running.mutable_update()->set_resumed_from_seq(job->resumed->seq);
  PushLocked(token.first, *job, std::move(running));
}

void Agent::OnOutput(const JobToken& token, OutputStream stream, std::string data) {
  absl::MutexLock lock(&mu_);
  HeldJob* job = FindLocked(token);
  if (job == nullptr) return;
  SecretScrubber& scrub = stream == OutputStream::kStdout ? *job->scrub_stdout : *job->scrub_stderr;
  if (scrub.active()) {
    data = scrub.Feed(data);
    if (data.empty()) return;
  }
  PushLogLocked(token.first, *job,
                stream == OutputStream::kStdout ? v1::LOG_STREAM_STDOUT : v1::LOG_STREAM_STDERR,
                std::move(data));
}

void Agent::OnExited(const JobToken& token, const absl::StatusOr<ExitStatus>& exit) {
  if (exit.ok() && metrics_ != nullptr) metrics_->ProcessEnded();
  ledger_.Erase(LedgerKey(token));
  // A job that succeeded publishes its declared outputs as its last checkpoint.
  std::string outputs_failed;
  {
    std::vector<std::string> outputs;
    uint32_t attempt = 0;
    {
      absl::MutexLock lock(&mu_);
      if (HeldJob* job = FindLocked(token); job != nullptr && !job->cancel_requested) {
        outputs = job->outputs;
        attempt = job->attempt;
      }
    }
    if (!outputs.empty() && exit.ok() && exit->exit_code == 0 && exit->signal == 0) {
      outputs_failed = PublishOutputs(outputs, JobFolder(options_.work_dir, token.first, attempt),
                                      CheckpointFolder(options_.work_dir, token.first, attempt),
                                      attempt);
    }
  }
  // What the job published last goes up before its end is reported, while the lease holds.
  checkpoints_->Flush(token.first);
  std::shared_ptr<MetricsWatch> watch;
  {
    absl::MutexLock lock(&mu_);
    HeldJob* job = FindLocked(token);
    if (job == nullptr) return;
    watch = job->metrics_file;
  }
  // The last of the metrics (the line without its '\n' too) is queued before the final update;
  // the watch's lock, held to the end, keeps a read of the ticker from coming after it.
  absl::MutexLock watch_lock(&watch->mu);
  watch->ended = true;
  MetricsFile::Read last_metrics = watch->file.ReadNew(/*final=*/true);
  absl::MutexLock lock(&mu_);
  HeldJob* job = FindLocked(token);
  if (job == nullptr) return;
  reap_.push_back(std::move(job->runner));
  checkpoints_->Unwatch(token.first);
  // What the scrubbers held back (the end of the output could have begun a secret).
  if (std::string out = job->scrub_stdout->Flush(); !out.empty()) {
    PushLogLocked(token.first, *job, v1::LOG_STREAM_STDOUT, std::move(out));
  }
  if (std::string err = job->scrub_stderr->Flush(); !err.empty()) {
    PushLogLocked(token.first, *job, v1::LOG_STREAM_STDERR, std::move(err));
  }
  PushMetricsLocked(token.first, *job, std::move(last_metrics));
  JobEnd end = DescribeJobEnd(exit, job->cancel_requested);
  if (!outputs_failed.empty()) {
    PushLogLocked(token.first, *job, v1::LOG_STREAM_STDERR,
                  absl::StrCat("sched-agent: ", outputs_failed, "\n"));
    end.state = v1::JOB_STATE_FAILED;
    end.message = outputs_failed;
    end.result = JobResult::kFailed;
  }
  Log("job %s: %s", token.first, end.message);
  if (job->dropped_log_bytes > 0) PushLogLocked(token.first, *job, v1::LOG_STREAM_STDERR, "");
  v1::AgentMessage msg = Update(token.first, job->epoch, end.state);
  msg.mutable_update()->set_exit_code(end.exit_code);
  msg.mutable_update()->set_message(end.message);
  if (job->preempted && !job->cancel_requested) {
    // schedd queues it again; the state only has to be a final one.
    msg.mutable_update()->set_state(v1::JOB_STATE_CANCELLED);
    msg.mutable_update()->set_preempted(true);
    msg.mutable_update()->set_message(
        job->step_aside.empty()
            ? absl::StrCat(preempt_source_, " preemption notice; the job ", end.message)
            : absl::StrCat(job->step_aside, "; the job ", end.message));
  }
  job->ended = true;
  job->final_update = msg;
  PushLocked(token.first, *job, std::move(msg));
  if (metrics_ != nullptr) metrics_->JobFinished(end.result);
}

// ---- Held jobs ----

Agent::HeldJob* Agent::FindLocked(const std::string& id, uint64_t epoch) {
  auto it = jobs_.find(id);
  return it != jobs_.end() && it->second.epoch == epoch ? &it->second : nullptr;
}

Agent::HeldJob* Agent::FindLocked(const JobToken& token) {
  auto it = jobs_.find(token.first);
  return it != jobs_.end() && it->second.serial == token.second ? &it->second : nullptr;
}

void Agent::PushLocked(const std::string& id, HeldJob& job, v1::AgentMessage msg) {
  job.outbox.push_back(std::move(msg));
  send_queue_.emplace_back(id, job.serial);
}

void Agent::PushLogLocked(const std::string& id, HeldJob& job, v1::LogStream stream,
                          std::string data) {
  if (job.outbox_log_bytes + data.size() > options_.max_buffered_log_bytes) {
    job.dropped_log_bytes += data.size();
    return;
  }
  if (job.dropped_log_bytes > 0) {
    const uint64_t dropped = std::exchange(job.dropped_log_bytes, 0);
    PushLogLocked(id, job, v1::LOG_STREAM_STDERR,
                  absl::StrCat("[sched-agent: ", dropped,
                               " bytes of output dropped while schedd was unreachable]\n"));
  }
  if (data.empty()) return;
  // Joins the last chunk when that one is not the one being written (the front).
  if (job.outbox.size() >= 2 && job.outbox.back().has_log() &&
      job.outbox.back().log().stream() == stream &&
      job.outbox.back().log().data().size() + data.size() <= JobRunner::kMaxChunkBytes) {
    job.outbox.back().mutable_log()->mutable_data()->append(data);
    job.outbox_log_bytes += data.size();
    return;
  }
  v1::AgentMessage msg;
  v1::AgentLogChunk* chunk = msg.mutable_log();
  chunk->set_job_id(id);
  chunk->set_epoch(job.epoch);
  chunk->set_stream(stream);
  job.outbox_log_bytes += data.size();
  chunk->set_data(std::move(data));
  PushLocked(id, job, std::move(msg));
}

void Agent::PushMetricsLocked(const std::string& id, HeldJob& job, MetricsFile::Read read) {
  for (const std::string& note : read.notes) {
    SecretScrubber scrub(job.secrets);  // a note quotes the bad line
    PushLogLocked(id, job, v1::LOG_STREAM_STDERR, absl::StrCat(scrub.Feed(note), scrub.Flush()));
  }
  std::vector<MetricSample>& samples = read.samples;
  for (size_t begin = 0; begin < samples.size(); begin += kMaxPointsPerMessage) {
    const size_t end = std::min(samples.size(), begin + kMaxPointsPerMessage);
    v1::AgentMessage msg;
    v1::AgentMetrics* metrics = msg.mutable_metrics();
    metrics->set_job_id(id);
    metrics->set_epoch(job.epoch);
    metrics->mutable_points()->Reserve(static_cast<int>(end - begin));
    for (size_t i = begin; i < end; ++i) {
      v1::MetricPoint* point = metrics->add_points();
      point->set_step(samples[i].step);
      point->set_name(std::move(samples[i].name));
      point->set_value(samples[i].value);
    }
    PushLocked(id, job, std::move(msg));
  }
}

void Agent::ForgetLocked(const std::string& id, absl::string_view why) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  HeldJob& job = it->second;
  checkpoints_->Unwatch(id);
  if (job.runner != nullptr) {
    Log("job %s: killing it and forgetting it: %s", id, why);
    job.runner->Kill(kill_grace_);
    reap_.push_back(std::move(job.runner));
  } else {
    Log("job %s: forgetting it: %s", id, why);
  }
  jobs_.erase(it);
}

}  // namespace sched::agent
