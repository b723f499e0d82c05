#pragma once

// The crash loop's clients: workers that submit and cancel while schedd is being killed, a
// watcher that records every WatchJobs event across restarts, and what settles the run after
// the last kill (resolving unknown calls, reading the final state).

#include <atomic>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "sched/v1/job_service.grpc.pb.h"
#include "tests/e2e/crash_loop_history.h"

namespace sched::crash_loop {

JobView ToView(const v1::Job& job);
// A channel that dials again quickly after schedd comes back (gRPC's default backoff would leave
// it idle for seconds).
std::shared_ptr<grpc::Channel> FastReconnectChannel(const std::string& address);
// Codes after which the call may or may not have taken effect.
bool IsUnknownOutcome(grpc::StatusCode code);
// The job a request id stands for: `sleep 0.0N; exit K`, a few of them longer, chosen from the
// request id so that a retry sends the same job.
v1::JobSpec SpecFor(const std::string& request_id);

// `count` threads submitting jobs with fresh request ids and cancelling random acknowledged
// ones, recording every call in `history`. While `backlog()` (jobs not yet ended) is at
// `max_backlog` or more they only cancel, so the agents can drain the queue in a bounded time
// after the last kill.
class Workers {
 public:
  Workers(std::string address, History* history, int count, uint64_t seed,
          absl::Duration max_pause, std::function<size_t()> backlog, size_t max_backlog);
  ~Workers();
  void Stop();  // joins

 private:
  void Run(int worker, uint64_t seed);
  void Submit(v1::JobService::Stub& stub, int worker, const std::string& request_id);
  void Cancel(v1::JobService::Stub& stub, int worker, const std::string& job_id);
  // Records a call that did not succeed as unknown or failed, by its status code.
  void RecordError(uint64_t op, const grpc::Status& s);

  const std::string address_;
  History* const history_;
  const absl::Duration max_pause_;
  const std::function<size_t()> backlog_;
  const size_t max_backlog_;
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  std::vector<std::string> acked_ ABSL_GUARDED_BY(mu_);  // job ids
  std::vector<std::thread> threads_;
};

// Subscribes to WatchJobs and subscribes again whenever the stream ends. Records an event when
// it differs from the last one recorded for that job, so the snapshot each restart sends does
// not pile up.
class Watcher {
 public:
  // Every recorded event is also written to `jsonl_path` (when not empty), for post-mortems.
  Watcher(std::string address, const std::string& jsonl_path);
  ~Watcher();
  void Stop();  // joins
  std::vector<JobView> events() const;
  int subscriptions() const { return subscriptions_.load(); }
  // Jobs seen whose last recorded state is not terminal.
  size_t unfinished() const;

 private:
  void Run();
  void Record(const v1::WatchJobsResponse& resp, int subscription);

  const std::string address_;
  std::atomic<bool> stop_{false};
  std::atomic<int> subscriptions_{0};
  mutable absl::Mutex mu_;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::vector<JobView> events_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, JobView> last_ ABSL_GUARDED_BY(mu_);
  size_t unfinished_ ABSL_GUARDED_BY(mu_) = 0;
  std::ofstream out_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// After the last kill, with schedd up: settles every unknown call in `history`. A submit is
// sent again with its request id (existing: it had been applied; new: it had not, and now is);
// a cancel is settled by reading its job (cancel_requested: applied). Retries each call until
// `deadline`. Returns how many were resolved.
int ResolveUnknowns(v1::JobService::Stub& stub, History& history, absl::Time deadline);

// Every job, by ListJobs pages; false if a page could not be read.
bool ListAll(v1::JobService::Stub& stub, std::vector<JobView>& out);

}  // namespace sched::crash_loop
