#include "tests/testing/fault_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace sched::testing {
namespace {

enum Direction { kClientToServer = 0, kServerToClient = 1 };

bool Stalled(FaultProxy::Mode mode) { return mode == FaultProxy::Mode::kPartition; }

bool Dropping(FaultProxy::Mode mode, Direction d) {
  return (mode == FaultProxy::Mode::kDropClientToServer && d == kClientToServer) ||
         (mode == FaultProxy::Mode::kDropServerToClient && d == kServerToClient);
}

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Closes with an RST, as a crashed peer or a middlebox reset would.
void CloseWithReset(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  close(fd);
}

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  return addr;
}

absl::Status Errno(const char* what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

}  // namespace

const char* FaultProxyModeName(FaultProxy::Mode mode) {
  switch (mode) {
    case FaultProxy::Mode::kPass:
      return "pass";
    case FaultProxy::Mode::kPartition:
      return "partition";
    case FaultProxy::Mode::kDropClientToServer:
      return "drop client->server";
    case FaultProxy::Mode::kDropServerToClient:
      return "drop server->client";
  }
  return "unknown";
}

struct FaultProxy::Conn {
  int fd[2] = {-1, -1};    // [kClientToServer]: client side, [kServerToClient]: server side
  std::string pending[2];  // read from fd[d], not yet written to the other side
  bool lost_bytes = false;
  bool dead = false;

  int Source(Direction d) const { return fd[d]; }
  int Sink(Direction d) const { return fd[1 - d]; }
};

absl::StatusOr<std::unique_ptr<FaultProxy>> FaultProxy::Start(int target_port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket");
  sockaddr_in addr = Loopback(0);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 64) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    absl::Status s = Errno("bind/listen");
    close(fd);
    return s;
  }
  SetNonBlocking(fd);
  int wake[2];
  if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    absl::Status s = Errno("pipe");
    close(fd);
    return s;
  }
  std::unique_ptr<FaultProxy> proxy(
      new FaultProxy(fd, wake[0], wake[1], ntohs(addr.sin_port), target_port));
  proxy->thread_ = std::thread([p = proxy.get()] { p->Loop(); });
  return proxy;
}

FaultProxy::FaultProxy(int listen_fd, int wake_read, int wake_write, int port, int target_port)
    : listen_fd_(listen_fd),
      wake_read_(wake_read),
      wake_write_(wake_write),
      port_(port),
      target_port_(target_port) {}

FaultProxy::~FaultProxy() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  Wake();
  thread_.join();
  close(listen_fd_);
  close(wake_read_);
  close(wake_write_);
}

std::string FaultProxy::address() const { return absl::StrCat("127.0.0.1:", port_); }

void FaultProxy::SetMode(Mode mode) {
  {
    absl::MutexLock lock(&mu_);
    mode_ = mode;
  }
  Wake();
}

FaultProxy::Mode FaultProxy::mode() const {
  absl::MutexLock lock(&mu_);
  return mode_;
}

void FaultProxy::ResetAll() {
  {
    absl::MutexLock lock(&mu_);
    reset_requested_ = true;
  }
  Wake();
}

void FaultProxy::Wake() {
  const char byte = 1;
  (void)!write(wake_write_, &byte, 1);
}

void FaultProxy::Loop() {
  std::vector<std::unique_ptr<Conn>> conns;
  Mode applied = Mode::kPass;
  std::vector<pollfd> fds;
  char buf[64 << 10];
  auto close_dead = [&conns] {
    for (auto& c : conns) {
      if (!c->dead) continue;
      CloseWithReset(c->fd[0]);
      CloseWithReset(c->fd[1]);
    }
    conns.erase(std::remove_if(conns.begin(), conns.end(), [](const auto& c) { return c->dead; }),
                conns.end());
  };
  while (true) {
    Mode mode;
    bool reset;
    {
      absl::MutexLock lock(&mu_);
      if (stop_) break;
      mode = mode_;
      reset = std::exchange(reset_requested_, false);
    }
    for (auto& c : conns) {
      // A stream with a hole in it cannot be resumed: reset it once the loss ends.
      if (reset || (mode != applied && c->lost_bytes)) c->dead = true;
    }
    applied = mode;
    close_dead();

    fds.clear();
    fds.push_back({wake_read_, POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    for (auto& c : conns) {
      short events[2] = {0, 0};  // per fd index
      for (Direction d : {kClientToServer, kServerToClient}) {
        if (c->dead || Stalled(mode)) continue;
        if (Dropping(mode, d) || c->pending[d].empty()) {
          events[d] |= POLLIN;  // fd[d] is the source of direction d
        } else {
          events[1 - d] |= POLLOUT;
        }
      }
      for (int i = 0; i < 2; ++i) fds.push_back({events[i] != 0 ? c->fd[i] : -1, events[i], 0});
    }
    if (poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) break;

    if (fds[0].revents != 0) {
      while (read(wake_read_, buf, sizeof(buf)) > 0) {
      }
    }
    {
      // Bytes are moved only under the mode in force now: once SetMode() has returned, no byte
      // moves under the old one. What poll reported is reported again on the next round.
      absl::MutexLock lock(&mu_);
      if (stop_ || mode_ != mode || reset_requested_) continue;
    }
    for (size_t i = 0; i < conns.size(); ++i) {
      Conn& c = *conns[i];
      const pollfd* pfd = &fds[2 + 2 * i];
      for (Direction d : {kClientToServer, kServerToClient}) {
        if (c.dead) break;
        const pollfd& src = pfd[d];
        const pollfd& sink = pfd[1 - d];
        if ((src.events & POLLIN) && (src.revents & (POLLIN | POLLHUP | POLLERR))) {
          ssize_t n = read(c.Source(d), buf, sizeof(buf));
          if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            c.dead = true;
          } else if (n > 0 && Dropping(mode, d)) {
            dropped_bytes_ += n;
            c.lost_bytes = true;
          } else if (n > 0) {
            c.pending[d].append(buf, n);
          }
        }
        const bool can_write = (sink.events & POLLOUT) && (sink.revents & POLLOUT);
        // Fresh bytes are tried at once; the socket buffer usually takes them.
        if (!c.dead && !Stalled(mode) && !Dropping(mode, d) && !c.pending[d].empty() &&
            (can_write || (sink.events & POLLOUT) == 0)) {
          ssize_t n = send(c.Sink(d), c.pending[d].data(), c.pending[d].size(), MSG_NOSIGNAL);
          if (n > 0) {
            c.pending[d].erase(0, n);
          } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            c.dead = true;
          }
        }
        if ((sink.events & POLLOUT) && (sink.revents & (POLLERR | POLLHUP))) c.dead = true;
      }
    }
    close_dead();

    if (fds[1].revents & POLLIN) {
      while (true) {
        int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) break;
        accepted_++;
        int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in target = Loopback(target_port_);
        if (server < 0 ||
            connect(server, reinterpret_cast<sockaddr*>(&target), sizeof(target)) != 0) {
          if (server >= 0) close(server);
          CloseWithReset(client);  // nothing listens there: as the target itself would answer
          continue;
        }
        SetNonBlocking(client);
        SetNonBlocking(server);
        auto c = std::make_unique<Conn>();
        c->fd[kClientToServer] = client;
        c->fd[kServerToClient] = server;
        conns.push_back(std::move(c));
      }
    }
  }
  for (auto& c : conns) {
    CloseWithReset(c->fd[0]);
    CloseWithReset(c->fd[1]);
  }
}

}  // namespace sched::testing
