#include "agent/runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/metrics_file.h"
#include "server/common/status_macros.h"

extern char** environ;

namespace sched::agent {
namespace {

// $1 is setup, $2 is run (see runner.h).
constexpr char kSetupThenRun[] = R"(__sched_setup=$1 __sched_run=$2
shift 2
eval "$__sched_setup"
__sched_rc=$?
if [ "$__sched_rc" -ne 0 ]; then
  echo "sched: setup failed with exit code $__sched_rc; run not started" >&2
  exit "$__sched_rc"
fi
unset __sched_setup __sched_rc
eval "$__sched_run"
)";

// How long output is still read after the shell exited and its group was killed (a process
// that left the group may hold the pipes open).
constexpr absl::Duration kDrainAfterExit = absl::Seconds(1);
// How often the exit is checked where pidfd_open is missing (Linux < 5.3).
constexpr absl::Duration kExitPollWithoutPidfd = absl::Milliseconds(20);

bool IsValidJobId(const std::string& id) {
  if (id.empty() || id.size() > 128 || id[0] == '.') return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

// Owns one file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  int Release() { return std::exchange(fd_, -1); }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    Reset();
    fd_ = std::exchange(o.fd_, -1);
    return *this;
  }
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  bool open() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

absl::Status MakePipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  read_end = Fd(fds[0]);
  write_end = Fd(fds[1]);
  return absl::OkStatus();
}

// argv and envp for execve, built before fork: the child of a threaded process may only call
// async-signal-safe functions.
struct ExecArgs {
  std::vector<std::string> argv_strings;
  std::vector<std::string> env_strings;
  std::vector<char*> argv;
  std::vector<char*> envp;
};

ExecArgs BuildExecArgs(const RunRequest& r, const std::string& checkpoint_dir,
                       const std::string& metrics_file, const std::string& resume_from) {
  ExecArgs a;
  if (r.setup.empty()) {
    a.argv_strings = {"/bin/sh", "-c", r.run};
  } else {
    a.argv_strings = {"/bin/sh", "-c", kSetupThenRun, "sched-job", r.setup, r.run};
  }
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq != nullptr) env[std::string(*e, eq - *e)] = eq + 1;
  }
  for (const auto& [name, value] : r.env) env[name] = value;
  env["SCHED_JOB_ID"] = r.job_id;
  env["SCHED_ATTEMPT"] = absl::StrCat(r.attempt);
  env["SCHED_JOB_NAME"] = r.job_name;
  env["SCHED_PROJECT"] = r.project;
  env["CUDA_VISIBLE_DEVICES"] = absl::StrJoin(r.gpu_indexes, ",");
  env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID";
  env["SCHED_CHECKPOINT_DIR"] = checkpoint_dir;
  env[kMetricsFileEnv] = metrics_file;
  env.erase("SCHED_INPUTS_DIR");
  if (r.has_inputs) {
    std::error_code ec;
    env["SCHED_INPUTS_DIR"] =
        std::filesystem::absolute(InputsFolder(r.work_dir, r.job_id, r.attempt), ec)
            .lexically_normal()
            .string();
  }
  env.erase("SCHED_RESUME_FROM");
  if (!resume_from.empty()) env["SCHED_RESUME_FROM"] = resume_from;
  for (const auto& [name, value] : env) a.env_strings.push_back(absl::StrCat(name, "=", value));
  for (std::string& s : a.argv_strings) a.argv.push_back(s.data());
  a.argv.push_back(nullptr);
  for (std::string& s : a.env_strings) a.envp.push_back(s.data());
  a.envp.push_back(nullptr);
  return a;
}

// What the child writes on the report pipe when it cannot exec.
struct ChildFailure {
  int step;  // 0: redirect, 1: chdir, 2: execve
  int error;
};

// `from` becomes `to`, open across exec.
bool MoveFd(int from, int to) {
  if (from == to) return fcntl(to, F_SETFD, 0) == 0;
  return dup2(from, to) == to;
}

[[noreturn]] void ChildFail(int report_fd, int step) {
  ChildFailure f{step, errno};
  ssize_t ignored = write(report_fd, &f, sizeof(f));
  (void)ignored;
  _exit(127);
}

// In the child, between fork and exec: async-signal-safe calls only.
[[noreturn]] void RunChild(const ExecArgs& args, const char* folder, int out_fd, int err_fd,
                           int report_fd) {
  setpgid(0, 0);
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0 || !MoveFd(null_fd, 0) || !MoveFd(out_fd, 1) || !MoveFd(err_fd, 2)) {
    ChildFail(report_fd, 0);
  }
  if (chdir(folder) != 0) ChildFail(report_fd, 1);
  execve(args.argv[0], args.argv.data(), args.envp.data());
  ChildFail(report_fd, 2);
}

ExitStatus FromWaitStatus(int status) {
  ExitStatus e;
  if (WIFSIGNALED(status)) {
    e.signal = WTERMSIG(status);
  } else {
    e.exit_code = WEXITSTATUS(status);
  }
  return e;
}

// Whether `pid` has ended, leaving it unreaped so its id keeps naming the process group.
bool HasExited(pid_t pid) {
  siginfo_t info = {};
  return waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

int PollTimeoutMs(absl::Duration wait) {
  if (wait == absl::InfiniteDuration()) return -1;
  if (wait <= absl::ZeroDuration()) return 0;
  return static_cast<int>(absl::ToInt64Milliseconds(
      std::min(absl::Ceil(wait, absl::Milliseconds(1)), absl::Minutes(1))));
}

// A started job: its pid (leader of its own process group) and the read ends of its stdout
// and stderr, owned by the caller.
struct Spawned {
  pid_t pid;
  int out_fd;
  int err_fd;
  std::string note;  // from RunRequest::prepare, for the job's stderr
};

// Creates the folder and forks the job. `cancelled` is asked just before the fork.
absl::StatusOr<Spawned> SpawnJob(const RunRequest& request,
                                 const std::function<bool()>& cancelled) {
  if (!IsValidJobId(request.job_id)) {
    return absl::FailedPreconditionError(
        absl::StrCat("job id \"", request.job_id, "\" cannot name a folder"));
  }
  const std::string folder = JobFolder(request.work_dir, request.job_id, request.attempt);
  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create the job folder ", folder, ": ", ec.message()));
  }
  const std::string checkpoint_dir = CheckpointFolder(request.work_dir, request.job_id,
                                                      request.attempt);
  std::filesystem::create_directories(checkpoint_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create the checkpoint folder ", checkpoint_dir, ": ", ec.message()));
  }
  // Absolute, as the job runs in its folder and may change folders; the agent's work_dir may
  // be relative.
  const std::string metrics_file =
      std::filesystem::absolute(MetricsFilePath(request.work_dir, request.job_id, request.attempt),
                                ec)
          .lexically_normal()
          .string();
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot make the metrics file's path absolute: ", ec.message()));
  }
  // The job sees the checkpoint folder absolute too: it runs in its own folder.
  const std::string checkpoint_env =
      std::filesystem::absolute(checkpoint_dir, ec).lexically_normal().string();
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot make the checkpoint folder's path absolute: ", ec.message()));
  }
  std::string resume_from, note;
  if (request.prepare && !cancelled()) resume_from = request.prepare(checkpoint_dir, &note);
  if (!resume_from.empty()) {
    resume_from = std::filesystem::absolute(resume_from, ec).lexically_normal().string();
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot make the resumed checkpoint's path absolute: ", ec.message()));
    }
  }
  const ExecArgs args = BuildExecArgs(request, checkpoint_env, metrics_file, resume_from);
  Fd out_read, out_write, err_read, err_write, report_read, report_write;
  SCHED_RETURN_IF_ERROR(MakePipe(out_read, out_write));
  SCHED_RETURN_IF_ERROR(MakePipe(err_read, err_write));
  SCHED_RETURN_IF_ERROR(MakePipe(report_read, report_write));
  if (cancelled()) return absl::CancelledError("killed before it started");
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    RunChild(args, folder.c_str(), out_write.get(), err_write.get(), report_write.get());
  }
  setpgid(pid, pid);  // the child does it too; whichever runs first
  report_write.Reset();
  ChildFailure failure;
  ssize_t n;
  do {
    n = read(report_read.get(), &failure, sizeof(failure));
  } while (n < 0 && errno == EINTR);
  if (n == 0) {  // the report pipe closed on exec
    fcntl(out_read.get(), F_SETFL, O_NONBLOCK);
    fcntl(err_read.get(), F_SETFL, O_NONBLOCK);
    return Spawned{pid, out_read.Release(), err_read.Release(), std::move(note)};
  }
  int status;
  waitpid(pid, &status, 0);
  if (n != sizeof(failure)) return absl::InternalError("the job's process failed before exec");
  const char* step = failure.step == 0 ? "redirect" : failure.step == 1 ? "chdir" : "execve";
  return absl::InternalError(
      absl::StrCat("cannot start the job: ", step, ": ", std::strerror(failure.error)));
}

// Reads what `fd` has ready, at most JobRunner::kMaxChunkBytes, into `chunk`. False at end of
// file or on an error.
bool ReadReady(int fd, std::string& chunk) {
  chunk.clear();
  while (chunk.size() < JobRunner::kMaxChunkBytes) {
    const size_t old = chunk.size();
    chunk.resize(JobRunner::kMaxChunkBytes);
    const ssize_t n = read(fd, chunk.data() + old, chunk.size() - old);
    chunk.resize(old + std::max<ssize_t>(n, 0));
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && errno == EAGAIN;
  }
  return true;
}

}  // namespace

std::string JobFolder(const std::string& work_dir, const std::string& job_id, uint32_t attempt) {
  return absl::StrCat(work_dir, "/jobs/", job_id, "-", attempt);
}

std::string InputsFolder(const std::string& work_dir, const std::string& job_id, uint32_t attempt) {
  return JobFolder(work_dir, job_id, attempt) + "/.sched-inputs";
}

std::string CheckpointFolder(const std::string& work_dir, const std::string& job_id,
                             uint32_t attempt) {
  return absl::StrCat(JobFolder(work_dir, job_id, attempt), "/checkpoints");
}

std::string MetricsFilePath(const std::string& work_dir, const std::string& job_id,
                            uint32_t attempt) {
  return absl::StrCat(JobFolder(work_dir, job_id, attempt), "/", kMetricsFileName);
}

std::unique_ptr<JobRunner> JobRunner::Start(RunRequest request, Callbacks callbacks) {
  std::unique_ptr<JobRunner> runner(new JobRunner(std::move(request), std::move(callbacks)));
  runner->thread_ = std::thread([r = runner.get()] { r->Main(); });
  return runner;
}

JobRunner::JobRunner(RunRequest request, Callbacks callbacks)
    : request_(std::move(request)),
      callbacks_(std::move(callbacks)),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

JobRunner::~JobRunner() {
  if (thread_.joinable()) {
    Kill(absl::ZeroDuration());
    thread_.join();
  }
  if (wake_fd_ >= 0) close(wake_fd_);
}

void JobRunner::Kill(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    kill_requested_ = true;
    kill_deadline_ = std::min(kill_deadline_, absl::Now() + grace);
  }
  const uint64_t one = 1;
  ssize_t ignored = write(wake_fd_, &one, sizeof(one));
  (void)ignored;
}

void JobRunner::Main() {
  absl::StatusOr<Spawned> spawned = SpawnJob(request_, [this] {
    absl::MutexLock lock(&mu_);
    return kill_requested_;
  });
  if (!spawned.ok()) {
    callbacks_.exited(spawned.status());
  } else {
    callbacks_.started(spawned->pid);
    if (!spawned->note.empty()) callbacks_.output(OutputStream::kStderr, spawned->note);
    callbacks_.exited(Supervise(spawned->pid, spawned->out_fd, spawned->err_fd));
  }
  done_ = true;
}

ExitStatus JobRunner::Supervise(pid_t pid, int out_fd, int err_fd) {
  Fd pipes[2] = {Fd(out_fd), Fd(err_fd)};
  const OutputStream streams[2] = {OutputStream::kStdout, OutputStream::kStderr};
#ifdef SYS_pidfd_open
  Fd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));  // -1 before Linux 5.3
#else
  Fd pidfd;
#endif
  bool term_sent = false;
  bool kill_sent = false;
  bool exited = false;
  int status = 0;
  absl::Time drain_deadline = absl::InfiniteFuture();
  std::string chunk;
  while (true) {
    const absl::Time now = absl::Now();
    absl::Duration wait = absl::InfiniteDuration();
    if (!exited) {
      bool kill_requested;
      absl::Time kill_deadline;
      {
        absl::MutexLock lock(&mu_);
        kill_requested = kill_requested_;
        kill_deadline = kill_deadline_;
      }
      // Signals go out only while the unreaped leader keeps the group's id from reuse.
      if (kill_requested && !term_sent) {
        kill(-pid, SIGTERM);
        term_sent = true;
      }
      if (term_sent && !kill_sent && now >= kill_deadline) {
        kill(-pid, SIGKILL);
        kill_sent = true;
      }
      if (HasExited(pid)) {
        kill(-pid, SIGKILL);  // what the script left behind in its group
        waitpid(pid, &status, 0);
        exited = true;
        pidfd.Reset();
        drain_deadline = now + kDrainAfterExit;
      } else {
        if (term_sent && !kill_sent) wait = kill_deadline - now;
        if (!pidfd.open()) wait = std::min(wait, kExitPollWithoutPidfd);
      }
    }
    if (exited) {
      if ((!pipes[0].open() && !pipes[1].open()) || now >= drain_deadline) break;
      wait = drain_deadline - now;
    }
    pollfd fds[4];
    nfds_t n = 0;
    for (const Fd& p : pipes) fds[n++] = {p.get(), POLLIN, 0};  // fd -1 is skipped by poll
    fds[n++] = {wake_fd_, POLLIN, 0};
    fds[n++] = {pidfd.get(), POLLIN, 0};
    if (poll(fds, n, PollTimeoutMs(wait)) < 0 && errno != EINTR) break;
    if (fds[2].revents != 0) {
      uint64_t count;
      ssize_t ignored = read(wake_fd_, &count, sizeof(count));
      (void)ignored;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].revents == 0) continue;
      const bool open = ReadReady(pipes[i].get(), chunk);
      if (!chunk.empty()) callbacks_.output(streams[i], std::move(chunk));
      if (!open) pipes[i].Reset();
    }
  }
  return FromWaitStatus(status);
}

}  // namespace sched::agent
