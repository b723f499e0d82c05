#pragma once

// Runs one attempt of a job as a process group of its own.
//
// The job runs in <work_dir>/jobs/<job_id>-<attempt> (created if missing) with the agent's
// environment, then the spec's env, then SCHED_JOB_ID, SCHED_ATTEMPT, SCHED_JOB_NAME,
// SCHED_PROJECT, CUDA_VISIBLE_DEVICES (the GPU indexes comma-joined, "" for none) and
// CUDA_DEVICE_ORDER=PCI_BUS_ID (so CUDA numbers GPUs as NVML and nvidia-smi do),
// SCHED_CHECKPOINT_DIR (<job folder>/checkpoints, created empty), SCHED_METRICS_FILE (the
// absolute path of <job folder>/.sched-metrics, which the job may create and append to:
// metrics_file.h; not created here) and, when `prepare` fetched a checkpoint, SCHED_RESUME_FROM
// (docs/checkpoints.md). stdin is /dev/null; stdout and stderr are pipes read by the runner.
//
// Without setup: `/bin/sh -c <run>`. With setup: one `/bin/sh -c` that evals setup and then,
// only if setup ended with status 0, evals run in the same shell, so that `cd`, `export` and
// `. venv/bin/activate` in setup carry over to run (the proto's "in the same shell"). A failing
// setup ends the job with setup's status and a line on stderr; run is not started.
//
// When the script's shell exits, whatever it left running in its process group is killed.

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace sched::agent {

enum class OutputStream { kStdout, kStderr };

// How the job's shell ended: exit_code when signal is 0, else the signal that killed it.
struct ExitStatus {
  int exit_code = 0;
  int signal = 0;
};

struct RunRequest {
  std::string job_id;  // letters, digits, '.', '_' and '-'; not starting with '.'
  uint32_t attempt = 1;
  std::string job_name;
  std::string project;
  std::string setup;
  std::string run;
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<uint32_t> gpu_indexes;
  std::string work_dir;  // the agent's work folder
  bool has_inputs = false;  // SCHED_INPUTS_DIR is set (the folder prepare fills)
  // Called on the runner's thread once the checkpoint folder exists, before the job starts:
  // brings in what the attempt resumes from. Returns the path for SCHED_RESUME_FROM ("" for
  // none); `note`, if set, is written to the job's stderr once it runs.
  std::function<std::string(const std::string& checkpoint_dir, std::string* note)> prepare;
};

// <work_dir>/jobs/<job_id>-<attempt>
std::string JobFolder(const std::string& work_dir, const std::string& job_id, uint32_t attempt);
// <work_dir>/jobs/<job_id>-<attempt>/checkpoints: SCHED_CHECKPOINT_DIR.
std::string CheckpointFolder(const std::string& work_dir, const std::string& job_id,
                             uint32_t attempt);
// <work_dir>/jobs/<job_id>-<attempt>/.sched-inputs: SCHED_INPUTS_DIR (made absolute), where the
// outputs of the jobs it has as inputs are brought, each in a folder of its input's name.
std::string InputsFolder(const std::string& work_dir, const std::string& job_id, uint32_t attempt);
// <work_dir>/jobs/<job_id>-<attempt>/.sched-metrics: SCHED_METRICS_FILE (made absolute).
std::string MetricsFilePath(const std::string& work_dir, const std::string& job_id,
                            uint32_t attempt);

class JobRunner {
 public:
  // Called from the runner's own thread, in this order: `started` once the script is running
  // (not at all if it never starts), `output` any number of times (each chunk at most
  // kMaxChunkBytes; what one stream had ready is coalesced), then `exited` exactly once, after
  // the last output. `exited` gets an error when the process never started (bad job id, no
  // folder, fork or exec failed: FAILED_PRECONDITION / INTERNAL; killed before it started:
  // CANCELLED). Callbacks must not destroy the runner.
  struct Callbacks {
    std::function<void(pid_t pid)> started;
    std::function<void(OutputStream stream, std::string data)> output;
    std::function<void(absl::StatusOr<ExitStatus> exit)> exited;
  };

  static constexpr size_t kMaxChunkBytes = 64 * 1024;

  // Starts the job on a new thread and returns at once.
  static std::unique_ptr<JobRunner> Start(RunRequest request, Callbacks callbacks);

  // Kills what still runs (no grace) and waits for the thread. Not from a callback.
  ~JobRunner();
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  // SIGTERM to the whole process group now, then SIGKILL to the group if the shell has not
  // exited after `grace`. A later call may shorten the grace, never lengthen it. Before the
  // process started, it never starts. Thread-safe; no effect once the shell has exited.
  void Kill(absl::Duration grace);

  // True once `exited` has returned: destroying the runner then does not block.
  bool done() const { return done_.load(); }

 private:
  JobRunner(RunRequest request, Callbacks callbacks);
  void Main();
  // Reads the job's output and signals its group until the shell has exited and the pipes are
  // drained. Owns the two fds.
  ExitStatus Supervise(pid_t pid, int out_fd, int err_fd);

  const RunRequest request_;
  const Callbacks callbacks_;
  const int wake_fd_;  // eventfd: Kill() wakes the thread

  absl::Mutex mu_;
  bool kill_requested_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time kill_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();

  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace sched::agent
