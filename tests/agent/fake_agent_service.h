#pragma once

// A scriptable schedd for agent tests: records every AgentMessage, answers Register (and, if
// told to, Heartbeat) by itself, and lets the test send anything else or cut the stream. A
// node name with a space is refused with INVALID_ARGUMENT, as schedd does.

#include <functional>
#include <optional>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "sched/v1/agent_service.grpc.pb.h"

namespace sched::agent {

class FakeAgentService final : public v1::AgentService::Service {
 public:
  struct Received {
    int session;  // 1 for the first stream
    v1::AgentMessage msg;
  };
  using Predicate = std::function<bool(const Received&)>;

  FakeAgentService(uint64_t lease_ttl_ms, uint64_t heartbeat_interval_ms, bool ack_heartbeats)
      : lease_ttl_ms_(lease_ttl_ms),
        heartbeat_interval_ms_(heartbeat_interval_ms),
        ack_heartbeats_(ack_heartbeats) {}

  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::ServerMessage, v1::AgentMessage>* stream) override {
    int session;
    {
      absl::MutexLock lock(&mu_);
      session = ++sessions_;
      context_ = context;
      stream_ = stream;
    }
    grpc::Status result = grpc::Status::OK;
    v1::AgentMessage msg;
    while (stream->Read(&msg)) {
      absl::MutexLock lock(&mu_);
      received_.push_back({session, msg});
      if (msg.has_register_() && msg.register_().node_name().find(' ') != std::string::npos) {
        result = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "node_name: no spaces");
        break;
      }
      v1::ServerMessage reply;
      if (msg.has_register_() && !hold_register_acks_) {
        reply = RegisterAck();
      } else if (msg.has_heartbeat() && ack_heartbeats_) {
        reply.mutable_heartbeat_ack();
      }
      if (reply.msg_case() != v1::ServerMessage::MSG_NOT_SET) stream->Write(reply);
    }
    absl::MutexLock lock(&mu_);
    if (context_ == context) {
      context_ = nullptr;
      stream_ = nullptr;
    }
    return result;
  }

  // While held, Register gets no answer until SendRegisterAck().
  void HoldRegisterAcks(bool hold) {
    absl::MutexLock lock(&mu_);
    hold_register_acks_ = hold;
  }
  bool SendRegisterAck() { return Send(RegisterAck()); }

  // Sends on the current stream; false when there is none.
  bool Send(const v1::ServerMessage& msg) {
    absl::MutexLock lock(&mu_);
    return stream_ != nullptr && stream_->Write(msg);
  }

  // Cuts the current stream, as a network failure would.
  void Break() {
    absl::MutexLock lock(&mu_);
    if (context_ != nullptr) context_->TryCancel();
  }

  // The first message received at or after position `from` that matches, waiting up to
  // `timeout`; its position is stored in `*at` when given.
  std::optional<v1::AgentMessage> WaitFor(const Predicate& match,
                                          absl::Duration timeout = absl::Seconds(5),
                                          size_t from = 0, size_t* at = nullptr) {
    absl::MutexLock lock(&mu_);
    std::optional<size_t> found;
    auto scan = [&] {
      mu_.AssertHeld();
      for (size_t i = from; i < received_.size(); ++i) {
        if (match(received_[i])) {
          found = i;
          return true;
        }
      }
      return false;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&scan), timeout)) return std::nullopt;
    if (at != nullptr) *at = *found;
    return received_[*found].msg;
  }

  std::vector<Received> received() const {
    absl::MutexLock lock(&mu_);
    return received_;
  }
  size_t received_count() const {
    absl::MutexLock lock(&mu_);
    return received_.size();
  }

 private:
  v1::ServerMessage RegisterAck() const {
    v1::ServerMessage msg;
    msg.mutable_register_ack()->set_lease_ttl_ms(lease_ttl_ms_);
    msg.mutable_register_ack()->set_heartbeat_interval_ms(heartbeat_interval_ms_);
    return msg;
  }

  const uint64_t lease_ttl_ms_;
  const uint64_t heartbeat_interval_ms_;
  const bool ack_heartbeats_;
  mutable absl::Mutex mu_;
  int sessions_ ABSL_GUARDED_BY(mu_) = 0;
  bool hold_register_acks_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ServerContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  grpc::ServerReaderWriter<v1::ServerMessage, v1::AgentMessage>* stream_ ABSL_GUARDED_BY(mu_) =
      nullptr;
  std::vector<Received> received_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sched::agent
