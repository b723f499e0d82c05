#pragma once

// The agent's connection to schedd and the jobs it runs (proto: AgentService.Connect).
//
// The agent dials out, sends Register (listing the jobs it still holds), and after RegisterAck
// heartbeats every heartbeat_interval_ms, listing its jobs. Per job, in this order on the
// stream: JobUpdate RUNNING once the process runs, its output as AgentLogChunks (what could not
// be sent while schedd was unreachable is kept, up to max_buffered_log_bytes a job) and the
// metrics it appends to $SCHED_METRICS_FILE as AgentMetrics (read every 250 ms, and once more
// when the process has ended; at most 1,000 points a message; bad lines are noted on its
// stderr: metrics_file.h; those of a job forgotten are dropped), then one final JobUpdate. The
// final update is kept until UpdateAck and sent again on every new stream; a job whose final
// update is on the wire is left out of heartbeats (schedd would stop it).
//
// Commands: CancelJob: SIGTERM, grace, SIGKILL, then a final CANCELLED. StopJob, or a Rejected
// with FAILED_PRECONDITION or NOT_FOUND: kill and forget, report nothing. Drain: logged
// only; schedd stops sending work, and placement stays its decision. Lease watchdog: a job
// whose lease (the last RegisterAck, or the sending of the heartbeat the last HeartbeatAck
// answers, or its assignment if later) is older than lease_ttl_ms is killed and forgotten, and
// a stream silent that long is dropped and dialled again; an assignment read after the lease
// ran out is not run. Reconnects back off from reconnect_initial_ms to reconnect_max_ms with
// jitter.
//
// Shutdown() kills every running job (grace applies) without reporting it (schedd re-queues it
// when its lease ends), waits up to shutdown_flush_ms for final updates to be acknowledged,
// then closes the stream; Run() returns once every job's process has ended.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/checkpoints.h"
#include "agent/metrics.h"
#include "agent/metrics_file.h"
#include "agent/nvml.h"
#include "agent/owner_watch.h"
#include "agent/process_ledger.h"
#include "agent/runner.h"
#include "grpcpp/grpcpp.h"
#include "sched/v1/agent_service.grpc.pb.h"
#include "server/auth/channel.h"
#include "server/common/clock.h"

namespace sched::agent {

struct MetricsWatch;

class Agent {
 public:
  struct Options {
    std::string server = "127.0.0.1:7070";        // schedd's address, host:port
    auth::DialOptions dial;                       // token or node certificate (identity.h)
    std::string node_name;                        // required
    v1::Capabilities capabilities;                // sent in Register
    std::string work_dir = "./sched-agent-work";  // jobs run in <work_dir>/jobs/<id>-<attempt>
    int64_t kill_grace_ms = 10'000;               // SIGTERM to SIGKILL
    int64_t reconnect_initial_ms = 100;
    int64_t reconnect_max_ms = 5'000;
    uint64_t random_seed = 1;  // reconnect jitter
    int64_t shutdown_flush_ms = 2'000;
    size_t max_buffered_log_bytes = 8 << 20;
    int64_t checkpoint_poll_ms = 500;  // how often job checkpoint folders are looked at
    int checkpoint_threads = 0;        // per transfer; 0: one per core, 2 to 8
    Clock* clock = RealClock::Get();   // leases and heartbeats; must outlive the agent
    // The owner comes first (owner_watch.h): lists the processes on this machine's GPUs, or
    // null when the owner is not watched for (a rented node). Called on the ticker's thread
    // every owner_poll_ms.
    std::function<absl::StatusOr<std::vector<GpuProcess>>()> gpu_processes;
    int64_t owner_poll_ms = 1'000;
    int64_t owner_idle_ms = 300'000;  // a GPU the owner left unused this long is given back
    std::vector<std::string> owner_ignore;  // process names that never count as the owner's
  };

  // `metrics` may be null; otherwise it must outlive the agent.
  explicit Agent(Options options, AgentMetrics* metrics = nullptr);
  // Call after Run() has returned (or when it never ran).
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Serves until Shutdown(); call once. INVALID_ARGUMENT for bad options, or when schedd
  // refuses the registration as invalid (a bad node name, say): retrying would not help.
  absl::Status Run();
  // Thread-safe, returns at once; Run() then winds down.
  void Shutdown();
  // The machine is being taken back (a spot preemption notice from `source`: "sigterm",
  // "aws", "gcp", "hook"), in `time_left`. Tells schedd (which sends no more work), sends every
  // running job SIGTERM so that it writes a last checkpoint, gives it most of the time left,
  // uploads what it published last and reports its end as preempted: schedd queues it again at
  // once, to resume elsewhere. With `then_exit`, Run() returns once every job is reported (or
  // the time is up). Thread-safe; later notices are ignored.
  void Preempt(const std::string& source, absl::Duration time_left, bool then_exit);
  // The GPUs the machine's owner uses now (Options::gpu_processes), as schedd is told them.
  std::set<uint32_t> OwnerGpus() const;

 private:
  struct HeldJob;
  using Stream = grpc::ClientReaderWriter<v1::AgentMessage, v1::ServerMessage>;
  // Names one HeldJob: its id and the serial number it got when assigned.
  using JobToken = std::pair<std::string, uint64_t>;

  // One stream, from dial to end. True if it was registered; sets `refused` when schedd
  // refused the registration for good (INVALID_ARGUMENT).
  bool RunStream(absl::Status& refused);
  void WriterLoop(Stream* stream, grpc::ClientContext* context);
  void TickerLoop();
  void WaitForRunners(std::vector<std::unique_ptr<JobRunner>> runners);

  void Handle(const v1::ServerMessage& msg);
  void OnRegisterAck(const v1::RegisterAck& ack);
  void OnHeartbeatAck();
  void OnAssignment(const v1::Assignment& assignment);
  void OnCancel(const v1::CancelJob& cancel);
  void OnStop(const v1::StopJob& stop);
  void OnRejected(const v1::Rejected& rejected);
  void OnUpdateAck(const v1::UpdateAck& ack);
  void OnDrain();

  void OnStarted(const JobToken& token, pid_t pid);
  void OnOutput(const JobToken& token, OutputStream stream, std::string data);
  void OnExited(const JobToken& token, const absl::StatusOr<ExitStatus>& exit);
  // Reads what the job appended to its metrics file and queues it. The ticker's thread; takes
  // the watch's lock, then mu_.
  void ReadMetrics(const JobToken& token, MetricsWatch& watch);
  // Looks at who uses the GPUs; tells schedd of a change and steps aside the jobs on the
  // owner's GPUs. The ticker's thread, without mu_ held.
  void CheckOwner(absl::Time now);

  HeldJob* FindLocked(const std::string& id, uint64_t epoch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  HeldJob* FindLocked(const JobToken& token) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PushLocked(const std::string& id, HeldJob& job, v1::AgentMessage msg)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PushLogLocked(const std::string& id, HeldJob& job, v1::LogStream stream, std::string data)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The read's notes to the job's stderr log, its samples as AgentMetrics messages.
  void PushMetricsLocked(const std::string& id, HeldJob& job, MetricsFile::Read read)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ForgetLocked(const std::string& id, absl::string_view why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartStreamLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::AgentMessage HeartbeatLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CheckLeasesLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ShutdownStepLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool WriterHasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  ProcessLedger ledger_;  // process groups of running jobs, for a successor to clean up
  const absl::Duration kill_grace_;
  AgentMetrics* const metrics_;
  std::unique_ptr<v1::AgentService::Stub> stub_;
  std::unique_ptr<CheckpointUploader> checkpoints_;
  int failed_dials_ = 0;  // in a row; Run()'s thread only

  mutable absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  bool shutdown_killed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time shutdown_deadline_ ABSL_GUARDED_BY(mu_);
  bool ticker_stop_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t last_serial_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, HeldJob> jobs_ ABSL_GUARDED_BY(mu_);
  // Runners of ended or forgotten jobs, destroyed by the ticker once done().
  std::vector<std::unique_ptr<JobRunner>> reap_ ABSL_GUARDED_BY(mu_);

  // The current stream.
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool registered_ ABSL_GUARDED_BY(mu_) = false;  // RegisterAck seen
  bool stream_ending_ ABSL_GUARDED_BY(mu_) = false;
  bool stream_cancelled_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time stream_started_ ABSL_GUARDED_BY(mu_);
  // One token per outbox item not yet handed to the writer, in the order they were added.
  std::deque<JobToken> send_queue_ ABSL_GUARDED_BY(mu_);
  bool heartbeat_due_ ABSL_GUARDED_BY(mu_) = false;
  // Preemption (Preempt): the notice, and whether schedd still has to be told on this stream.
  bool preempting_ ABSL_GUARDED_BY(mu_) = false;
  bool preempt_exit_ ABSL_GUARDED_BY(mu_) = false;
  bool preempt_notice_due_ ABSL_GUARDED_BY(mu_) = false;
  std::string preempt_source_ ABSL_GUARDED_BY(mu_);
  absl::Time preempt_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  absl::Duration lease_ttl_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  absl::Duration heartbeat_interval_ ABSL_GUARDED_BY(mu_) = absl::Seconds(1);
  // When the leases were last renewed: the RegisterAck's arrival, or the sending of the
  // heartbeat that the latest HeartbeatAck answers.
  absl::Time last_ack_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Send times of the heartbeats on this stream not yet acknowledged, oldest first.
  std::deque<absl::Time> heartbeats_sent_ ABSL_GUARDED_BY(mu_);
  absl::Time next_heartbeat_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // The owner's GPUs, and who uses them ("GPU 0: pid 4242 (python3)"), sent in heartbeats.
  std::unique_ptr<OwnerWatch> owner_watch_;  // the ticker's thread only
  bool owner_error_logged_ = false;          // the ticker's thread only
  std::set<uint32_t> owner_gpus_ ABSL_GUARDED_BY(mu_);
  std::string owner_detail_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sched::agent
