#pragma once

// The agent's half of checkpoints (docs/checkpoints.md): it watches the checkpoint folder of
// every job it runs and uploads what the job publishes there, while the job keeps running; and
// before a later attempt starts it brings the job's newest checkpoint in.
//
// One thread looks at the watched folders every `poll`. In each it takes the newest published
// entry (by modification time, then name) not uploaded yet and uploads it; older ones not yet
// uploaded are skipped, the newer one supersedes them. An upload that fails for want of schedd
// is tried again at the next look, and sends only the chunks that did not arrive; one refused
// because the lease is gone (FAILED_PRECONDITION, NOT_FOUND) ends the watch.

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "sched/v1/checkpoint_service.grpc.pb.h"
#include "server/checkpoint/checkpoint_transfer.h"

namespace sched::agent {

class CheckpointUploader {
 public:
  struct Options {
    std::string node_name;
    absl::Duration poll = absl::Milliseconds(500);
    absl::Duration call_timeout = absl::Minutes(10);  // each RPC of an upload or download
    // An upload's parallel streams and hashing threads, a download's checking threads; 0: one
    // per core, 2 to 8.
    int threads = 0;
  };

  CheckpointUploader(Options options, std::shared_ptr<grpc::Channel> channel);
  // Stops the thread; an upload under way is finished or fails first.
  ~CheckpointUploader();
  CheckpointUploader(const CheckpointUploader&) = delete;
  CheckpointUploader& operator=(const CheckpointUploader&) = delete;

  // Uploads what job `job_id` publishes in `dir` under lease `epoch`. What `dir` holds already
  // (a checkpoint brought in for the attempt to resume from) counts as uploaded.
  void Watch(const std::string& job_id, uint64_t epoch, uint32_t attempt, const std::string& dir);
  void Unwatch(const std::string& job_id);
  // The job ended: uploads what it published last, if that is not uploaded yet, then stops
  // watching it. Blocks for the upload, so that a job's final checkpoint is in schedd before
  // its end is reported.
  void Flush(const std::string& job_id);

  // The job's newest checkpoint into `dest_dir`; NOT_FOUND when it has none. `for_job`: the
  // job held here that has it as an input.
  absl::StatusOr<checkpoint::Downloaded> FetchNewest(const std::string& job_id,
                                                     const std::string& dest_dir,
                                                     const std::string& for_job = "");

  // For metrics and tests.
  uint64_t uploads() const;
  uint64_t bytes_sent() const;

 private:
  checkpoint::TransferOptions Transfer() const;

  struct Watched {
    uint64_t epoch = 0;
    uint32_t attempt = 0;
    std::string dir;
    std::set<std::string> done;  // uploaded, skipped as superseded, or there at the start
    std::string last_error;      // logged once until it changes
    bool busy = false;           // a look is under way
  };
  void Loop();
  // One look at one folder; false when the watch should end.
  bool LookAt(const std::string& job_id, Watched& w);

  const Options options_;
  std::unique_ptr<v1::CheckpointService::Stub> stub_;
  absl::Notification stop_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Watched> watched_ ABSL_GUARDED_BY(mu_);
  uint64_t uploads_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t bytes_sent_ ABSL_GUARDED_BY(mu_) = 0;

  std::thread thread_;  // last: starts once the rest is ready
};

}  // namespace sched::agent
