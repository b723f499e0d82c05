#pragma once

#include <deque>
#include <functional>
#include <optional>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "grpcpp/support/status.h"

namespace sched {

// Serializes writes on one server stream of the callback API: one write in flight, the rest
// queued. Shared with producers on other threads (scheduler feeds, agent links) that may try to
// send after the RPC has ended; such sends are dropped.
//
// Every Finish of the RPC must go through Finish() here, so the RPC cannot end (and its reactor
// be deleted) while a write is being started.
template <typename Msg>
class StreamSender {
 public:
  using StartWriteFn = std::function<void(const Msg*)>;
  using FinishFn = std::function<void(grpc::Status)>;

  StreamSender(StartWriteFn start_write, FinishFn finish)
      : start_write_(std::move(start_write)), finish_(std::move(finish)) {}

  // Queues `msg`. False when the stream is finishing or gone.
  bool Send(Msg msg) {
    const Msg* next = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return false;
      queue_.push_back(std::move(msg));
      if (writing_) return true;
      writing_ = true;
      next = &queue_.front();
    }
    start_write_(next);  // deque elements stay put while others are pushed
    return true;
  }

  // Ends the RPC with `status` once the queued writes are out. Later calls are ignored.
  void Finish(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;
      finishing_ = true;
      status_ = std::move(status);
      if (writing_) return;
    }
    finish_(status_);
  }

  // To be called from the reactor's OnWriteDone.
  void OnWriteDone(bool ok) {
    const Msg* next = nullptr;
    {
      absl::MutexLock lock(&mu_);
      queue_.pop_front();
      if (!ok) {
        // The peer is gone: nothing more can be written.
        queue_.clear();
        if (!finishing_) {
          finishing_ = true;
          status_ = grpc::Status(grpc::StatusCode::CANCELLED, "stream broken");
        }
      }
      if (!queue_.empty()) {
        next = &queue_.front();
      } else {
        writing_ = false;
        if (!finishing_) return;
      }
    }
    if (next != nullptr) {
      start_write_(next);
    } else {
      finish_(status_);
    }
  }

  size_t queued() const {
    absl::MutexLock lock(&mu_);
    return queue_.size();
  }

 private:
  const StartWriteFn start_write_;
  const FinishFn finish_;
  mutable absl::Mutex mu_;
  std::deque<Msg> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_;
};

}  // namespace sched
