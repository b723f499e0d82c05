// FaultProxy in front of a small echo server: each mode does to the bytes what it promises.
#include "tests/testing/fault_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace sched::testing {
namespace {

using Mode = FaultProxy::Mode;

// Echoes every byte back on each connection; counts what it received.
class EchoServer {
 public:
  EchoServer() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 16);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] {
      while (true) {
        int c = accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        absl::MutexLock lock(&mu_);
        conns_.push_back(c);
        workers_.emplace_back([this, c] {
          char buf[4096];
          ssize_t n;
          while ((n = read(c, buf, sizeof(buf))) > 0) {
            received_ += n;
            (void)!write(c, buf, n);
          }
        });
      }
    });
  }
  ~EchoServer() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    acceptor_.join();
    absl::MutexLock lock(&mu_);
    for (int c : conns_) shutdown(c, SHUT_RDWR);
    for (auto& w : workers_) w.join();
    for (int c : conns_) close(c);
  }
  int port() const { return port_; }
  uint64_t received() const { return received_.load(); }

 private:
  int fd_;
  int port_;
  std::atomic<uint64_t> received_{0};
  std::thread acceptor_;
  absl::Mutex mu_;
  std::vector<int> conns_;
  std::vector<std::thread> workers_;
};

int Dial(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  return fd;
}

// What came back within `timeout_ms`: the bytes, "<closed>" on EOF or reset, "" if nothing.
std::string Receive(int fd, size_t want, int timeout_ms) {
  std::string got;
  while (got.size() < want) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) break;
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return "<closed>";
    got.append(buf, n);
  }
  return got;
}

// Polls `done` for up to five seconds.
template <typename F>
void WaitUntil(F done) {
  for (int i = 0; i < 500 && !done(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void Send(int fd, const std::string& s) {
  ASSERT_EQ(send(fd, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
}

class FaultProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto p = FaultProxy::Start(echo_.port());
    ASSERT_TRUE(p.ok()) << p.status();
    proxy_ = *std::move(p);
  }
  EchoServer echo_;
  std::unique_ptr<FaultProxy> proxy_;
};

// Long enough that bytes which were going to pass would have; the checks that bytes do
// arrive wait much longer.
constexpr int kQuietMs = 300;
constexpr int kArriveMs = 5'000;

TEST_F(FaultProxyTest, PassForwardsBothWays) {
  int fd = Dial(proxy_->port());
  Send(fd, "hello");
  EXPECT_EQ(Receive(fd, 5, kArriveMs), "hello");
  EXPECT_EQ(proxy_->accepted(), 1u);
  close(fd);
}

TEST_F(FaultProxyTest, PartitionHoldsConnectionsOpenAndDeliversLateOnHeal) {
  int old_conn = Dial(proxy_->port());
  Send(old_conn, "a");
  ASSERT_EQ(Receive(old_conn, 1, kArriveMs), "a");

  proxy_->SetMode(Mode::kPartition);
  Send(old_conn, "late");
  EXPECT_EQ(Receive(old_conn, 4, kQuietMs), "") << "bytes crossed a partition, or it reset";
  int new_conn = Dial(proxy_->port());  // accepted, but nothing gets through
  Send(new_conn, "new");
  EXPECT_EQ(Receive(new_conn, 3, kQuietMs), "");
  EXPECT_EQ(echo_.received(), 1u);

  proxy_->SetMode(Mode::kPass);  // the cable is back: what waited arrives, in order
  EXPECT_EQ(Receive(old_conn, 4, kArriveMs), "late");
  EXPECT_EQ(Receive(new_conn, 3, kArriveMs), "new");
  EXPECT_EQ(proxy_->dropped_bytes(), 0u);
  close(old_conn);
  close(new_conn);
}

TEST_F(FaultProxyTest, DropClientToServerLosesOnlyTheClientsBytes) {
  int fd = Dial(proxy_->port());
  proxy_->SetMode(Mode::kDropClientToServer);
  Send(fd, "lost");
  EXPECT_EQ(Receive(fd, 4, kQuietMs), "");
  EXPECT_EQ(echo_.received(), 0u);
  WaitUntil([&] { return proxy_->dropped_bytes() >= 4; });
  EXPECT_EQ(proxy_->dropped_bytes(), 4u);

  // The stream has a hole: healing resets it instead of resuming mid-message.
  proxy_->SetMode(Mode::kPass);
  EXPECT_EQ(Receive(fd, 1, kArriveMs), "<closed>");
  close(fd);
  int fresh = Dial(proxy_->port());
  Send(fresh, "ok");
  EXPECT_EQ(Receive(fresh, 2, kArriveMs), "ok");
  close(fresh);
}

TEST_F(FaultProxyTest, DropServerToClientDeliversButLosesTheReplies) {
  int fd = Dial(proxy_->port());
  proxy_->SetMode(Mode::kDropServerToClient);
  Send(fd, "ping");
  EXPECT_EQ(Receive(fd, 4, kQuietMs), "");
  WaitUntil([&] { return echo_.received() >= 4; });
  EXPECT_EQ(echo_.received(), 4u) << "the client's bytes should still reach the server";
  WaitUntil([&] { return proxy_->dropped_bytes() >= 4; });
  EXPECT_EQ(proxy_->dropped_bytes(), 4u);
  close(fd);
}

TEST_F(FaultProxyTest, ResetAllClosesEveryConnection) {
  int a = Dial(proxy_->port());
  int b = Dial(proxy_->port());
  Send(a, "x");
  Send(b, "y");
  ASSERT_EQ(Receive(a, 1, kArriveMs), "x");
  ASSERT_EQ(Receive(b, 1, kArriveMs), "y");
  proxy_->ResetAll();
  EXPECT_EQ(Receive(a, 1, kArriveMs), "<closed>");
  EXPECT_EQ(Receive(b, 1, kArriveMs), "<closed>");
  close(a);
  close(b);
  int c = Dial(proxy_->port());  // the proxy itself still serves
  Send(c, "z");
  EXPECT_EQ(Receive(c, 1, kArriveMs), "z");
  close(c);
}

}  // namespace
}  // namespace sched::testing
