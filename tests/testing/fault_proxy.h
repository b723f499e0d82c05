#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace sched::testing {

// A TCP proxy that breaks the network on command, for partition tests. It listens on
// 127.0.0.1, port 0, and forwards every accepted connection to 127.0.0.1:target_port. One thread
// moves the bytes of every connection; all public methods are thread-safe.
//
// Modes, switchable at any time; they apply to the connections already open and to new ones:
//   kPass               bytes flow both ways.
//   kPartition          a pulled cable: nothing moves either way, nothing is closed. Bytes sent
//                       meanwhile wait in the socket buffers, so when the mode goes back to kPass
//                       they arrive late and in order, as TCP's retransmissions would deliver
//                       them. New connections are accepted and get nothing through.
//   kDropClientToServer the client's bytes are read and thrown away; the server's still arrive.
//   kDropServerToClient the reverse.
// A connection that lost bytes in a drop mode carries a broken byte stream: leaving the drop
// mode resets it (RST) rather than resume it mid-message. ResetAll() resets every connection
// now, whatever the mode.
class FaultProxy {
 public:
  enum class Mode { kPass, kPartition, kDropClientToServer, kDropServerToClient };

  static absl::StatusOr<std::unique_ptr<FaultProxy>> Start(int target_port);
  // Closes every connection and the listening socket.
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  int port() const { return port_; }
  // "127.0.0.1:<port>", to hand to a client.
  std::string address() const;

  void SetMode(Mode mode);
  Mode mode() const;
  void ResetAll();

  // Connections accepted so far, and bytes thrown away in a drop mode (either direction).
  uint64_t accepted() const { return accepted_.load(); }
  uint64_t dropped_bytes() const { return dropped_bytes_.load(); }

 private:
  struct Conn;

  FaultProxy(int listen_fd, int wake_read, int wake_write, int port, int target_port);
  void Loop();
  void Wake();

  const int listen_fd_;
  const int wake_read_;
  const int wake_write_;
  const int port_;
  const int target_port_;
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> dropped_bytes_{0};

  mutable absl::Mutex mu_;
  Mode mode_ ABSL_GUARDED_BY(mu_) = Mode::kPass;
  bool reset_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

const char* FaultProxyModeName(FaultProxy::Mode mode);

}  // namespace sched::testing
