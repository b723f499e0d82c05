#include "server/provision/provider_program.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

extern char** environ;

namespace sched::provision {
namespace {

constexpr size_t kMaxAnswer = 4 << 20;
constexpr size_t kStderrTail = 2048;

// Both ends close on exec; the child's ends are put in place by the spawn's file actions.
bool MakePipe(int fds[2]) { return pipe2(fds, O_CLOEXEC) == 0; }

void CloseIf(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

// write(2) to a pipe whose reader may be gone: EPIPE, without the SIGPIPE that would end this
// process (the signal is held for this thread and taken back if it came).
ssize_t WriteNoSigpipe(int fd, const char* data, size_t size) {
  sigset_t pipe_only, old;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  const ssize_t w = write(fd, data, size);
  const int saved = errno;
  if (w < 0 && saved == EPIPE) {
    const timespec now = {0, 0};
    while (sigtimedwait(&pipe_only, nullptr, &now) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = saved;
  return w;
}

}  // namespace

absl::StatusOr<nlohmann::json> RunProvider(const std::string& program, const std::string& op,
                                           const nlohmann::json& request, absl::Duration timeout,
                                           const std::atomic<bool>* cancel) {
  const std::string what = absl::StrCat("provider program ", program, " ", op);
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  if (!MakePipe(in) || !MakePipe(out) || !MakePipe(err)) {
    for (int* p : {in, out, err}) {
      CloseIf(p[0]);
      CloseIf(p[1]);
    }
    return absl::InternalError(absl::StrCat(what, ": pipe: ", std::strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // A group of its own, so that a timeout kills what it started too; default signal handling.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<char*> argv = {const_cast<char*>(program.c_str()), const_cast<char*>(op.c_str()),
                             nullptr};
  pid_t pid = -1;
  const int spawned = posix_spawnp(&pid, program.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  CloseIf(in[0]);
  CloseIf(out[1]);
  CloseIf(err[1]);
  if (spawned != 0) {
    CloseIf(in[1]);
    CloseIf(out[0]);
    CloseIf(err[0]);
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": cannot start: ", std::strerror(spawned)));
  }
  const std::string input = request.dump() + "\n";
  size_t written = 0;
  std::string answer, errors;
  bool too_long = false;
  for (int fd : {in[1], out[0], err[0]}) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  const absl::Time deadline = absl::Now() + timeout;
  bool timed_out = false, cancelled = false;
  while (out[0] >= 0 || err[0] >= 0) {
    const absl::Duration left = std::min(deadline - absl::Now(), absl::Milliseconds(200));
    if (cancel != nullptr && cancel->load()) {
      cancelled = true;
      break;
    }
    if (deadline <= absl::Now()) {
      timed_out = true;
      break;
    }
    pollfd fds[3];
    int n = 0;
    if (in[1] >= 0) fds[n++] = {in[1], POLLOUT, 0};
    if (out[0] >= 0) fds[n++] = {out[0], POLLIN, 0};
    if (err[0] >= 0) fds[n++] = {err[0], POLLIN, 0};
    const int ready = poll(fds, n, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno != EINTR) break;
    for (int i = 0; i < n && ready > 0; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == in[1]) {
        const ssize_t w = WriteNoSigpipe(in[1], input.data() + written, input.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        if (w < 0 && errno != EAGAIN) written = input.size();  // it closed its stdin: fine
        if (written == input.size()) CloseIf(in[1]);
        continue;
      }
      char buf[65536];
      const ssize_t r = read(fds[i].fd, buf, sizeof(buf));
      if (r > 0) {
        if (fds[i].fd == out[0]) {
          if (answer.size() + r > kMaxAnswer) {
            too_long = true;
          } else {
            answer.append(buf, static_cast<size_t>(r));
          }
        } else {
          errors.append(buf, static_cast<size_t>(r));
          if (errors.size() > 4 * kStderrTail) errors.erase(0, errors.size() - kStderrTail);
        }
      } else if (r == 0 || errno != EAGAIN) {
        if (fds[i].fd == out[0]) {
          CloseIf(out[0]);
        } else {
          CloseIf(err[0]);
        }
      }
    }
  }
  CloseIf(in[1]);
  CloseIf(out[0]);
  CloseIf(err[0]);
  if (timed_out || cancelled) kill(-pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (cancelled) return absl::CancelledError(absl::StrCat(what, ": stopped"));
  if (timed_out) {
    return absl::DeadlineExceededError(absl::StrCat(
        what, ": no answer within ", absl::FormatDuration(timeout), "; its processes were killed"));
  }
  if (errors.size() > kStderrTail) errors.erase(0, errors.size() - kStderrTail);
  const std::string stderr_tail(absl::StripAsciiWhitespace(errors));
  nlohmann::json reply = nlohmann::json::parse(answer, nullptr, /*allow_exceptions=*/false);
  const bool exited_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!exited_ok) {
    std::string why = WIFEXITED(status) ? absl::StrCat("exit code ", WEXITSTATUS(status))
                                        : absl::StrCat("killed by signal ", WTERMSIG(status));
    if (reply.is_object() && reply.contains("error") && reply["error"].is_string()) {
      absl::StrAppend(&why, ": ", reply["error"].get<std::string>());
    } else if (!stderr_tail.empty()) {
      absl::StrAppend(&why, ": ", stderr_tail);
    }
    return absl::UnavailableError(absl::StrCat(what, " failed (", why, ")"));
  }
  if (too_long) {
    return absl::InternalError(absl::StrCat(what, ": answer longer than 4 MiB"));
  }
  if (!reply.is_object()) {
    return absl::InternalError(
        absl::StrCat(what, ": the answer is not one JSON object: ", answer.substr(0, 200)));
  }
  return reply;
}

}  // namespace sched::provision
