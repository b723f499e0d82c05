#include "server/service/job_service.h"

#include <algorithm>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"
#include "server/convert/convert.h"
#include "server/service/status.h"
#include "server/service/stream_sender.h"

namespace sched {
namespace {

constexpr uint32_t kDefaultPageSize = 500;
constexpr uint32_t kMaxPageSize = 5000;
constexpr size_t kLogReadBatch = 256;

absl::StatusOr<std::vector<JobState>> StatesFromProto(
    const google::protobuf::RepeatedField<int>& states) {
  std::vector<JobState> out;
  for (int s : states) {
    SCHED_ASSIGN_OR_RETURN(JobState state, JobStateFromProto(static_cast<v1::JobState>(s)));
    out.push_back(state);
  }
  return out;
}

// A job as callers see it: secret variables' values left out.
void ShowJob(const Job& job, v1::Job* out) {
  JobToProto(job, out);
  RedactSecrets(out);
}

template <typename Response>
grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

bool Matches(const v1::WatchJobsRequest& req, const std::vector<JobState>& states,
             const std::string& job_id, const auth::Caller& caller, const Job& job) {
  if (!job_id.empty() && job.id != job_id) return false;
  if (!caller.InProject(job.spec.project)) return false;
  if (!req.project().empty() && job.spec.project != req.project()) return false;
  if (states.empty()) return true;
  return std::find(states.begin(), states.end(), job.state) != states.end();
}

// WatchJobs: the current state of the matching jobs, then each change. The snapshot is read from
// memory, which can be ahead of the disk, so it is sent only once what it shows is durable: a
// watcher never sees a state that a crash could take back. Changes published meanwhile are held
// and sent after it; a change the snapshot already showed (same or older update_time) is
// dropped then and later, so a job's versions never go backwards on the stream.
class WatchReactor final : public grpc::ServerWriteReactor<v1::WatchJobsResponse> {
 public:
  WatchReactor(Scheduler* scheduler, const v1::WatchJobsRequest& req, auth::Caller caller,
               StreamSlots* slots)
      : scheduler_(scheduler),
        slots_(slots),
        caller_(std::move(caller)),
        sender_(std::make_shared<StreamSender<v1::WatchJobsResponse>>(
            [this](const v1::WatchJobsResponse* m) { StartWrite(m); },
            [this](grpc::Status s) { Finish(std::move(s)); })) {
    absl::Status status = Start(req);
    if (!status.ok()) sender_->Finish(ToGrpcStatus(status));
  }

  void OnWriteDone(bool ok) override { sender_->OnWriteDone(ok); }
  void OnCancel() override { sender_->Finish(grpc::Status::CANCELLED); }
  void OnDone() override {
    if (sub_ != 0) scheduler_->Unsubscribe(sub_);
    if (slots_ != nullptr) slots_->Give();
    delete this;
  }

 private:
  struct Shared {
    absl::Mutex mu;
    bool snapshot_sent ABSL_GUARDED_BY(mu) = false;
    std::vector<Job> held ABSL_GUARDED_BY(mu);
    // update_time of each job as the snapshot showed it.
    absl::flat_hash_map<std::string, absl::Time> seen ABSL_GUARDED_BY(mu);
  };

  // Sends `job` unless the snapshot showed this version or a later one.
  static void SendIfNewer(Shared& shared, const Job& job,
                          StreamSender<v1::WatchJobsResponse>& sender)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shared.mu) {
    auto it = shared.seen.find(job.id);
    if (it != shared.seen.end()) {
      if (job.update_time <= it->second) return;
      shared.seen.erase(it);
    }
    v1::WatchJobsResponse resp;
    ShowJob(job, resp.mutable_job());
    sender.Send(std::move(resp));
  }

  absl::Status Start(const v1::WatchJobsRequest& req) {
    SCHED_ASSIGN_OR_RETURN(std::vector<JobState> states, StatesFromProto(req.states()));
    std::string job_id;
    if (!req.job_id().empty()) {
      SCHED_ASSIGN_OR_RETURN(job_id, scheduler_->ResolveJobId(req.job_id()));
    }
    auto shared = std::make_shared<Shared>();
    sub_ = scheduler_->SubscribeJobs(
        [req, states, job_id, caller = caller_, shared, sender = sender_](const Job& job) {
          if (!Matches(req, states, job_id, caller, job)) return;
          absl::MutexLock lock(&shared->mu);
          if (!shared->snapshot_sent) {
            shared->held.push_back(job);
          } else {
            SendIfNewer(*shared, job, *sender);
          }
        });
    auto snapshot = std::make_shared<std::vector<v1::WatchJobsResponse>>();
    absl::flat_hash_map<std::string, absl::Time> seen;
    if (!req.skip_initial()) {
      JobQuery query;
      query.states = states;
      query.project = req.project();
      query.limit = kMaxPageSize;
      do {
        JobPage page = scheduler_->ListJobs(query);
        for (const Job& job : page.jobs) {
          if (!job_id.empty() && job.id != job_id) continue;
          if (!caller_.InProject(job.spec.project)) continue;
          seen[job.id] = job.update_time;
          v1::WatchJobsResponse& resp = snapshot->emplace_back();
          ShowJob(job, resp.mutable_job());
          resp.set_initial(true);
        }
        query.after_seq = page.next_after_seq;
      } while (query.after_seq != 0);
    }
    scheduler_->WhenDurable([shared, snapshot, seen = std::move(seen), sender = sender_]() mutable {
      for (v1::WatchJobsResponse& resp : *snapshot) sender->Send(std::move(resp));
      absl::MutexLock lock(&shared->mu);
      shared->seen = std::move(seen);
      for (const Job& job : shared->held) SendIfNewer(*shared, job, *sender);
      shared->held.clear();
      shared->snapshot_sent = true;
    });
    return absl::OkStatus();
  }

  Scheduler* const scheduler_;
  StreamSlots* const slots_;
  const auth::Caller caller_;
  std::shared_ptr<StreamSender<v1::WatchJobsResponse>> sender_;
  uint64_t sub_ = 0;
};

// GetJobLogs: reads the stored output in batches, one write at a time; with `follow`, waits for
// new output until the job has ended and everything stored was sent.
class LogsReactor final : public grpc::ServerWriteReactor<v1::LogChunk> {
 public:
  LogsReactor(Scheduler* scheduler, const v1::GetJobLogsRequest& req, const auth::Caller& caller,
              StreamSlots* slots)
      : scheduler_(scheduler), slots_(slots), follow_(req.follow()), attempt_(req.attempt()) {
    absl::StatusOr<Job> job = scheduler_->GetJob(req.job_id());
    absl::Status allowed =
        job.ok() ? auth::Authorizer::CheckProject(caller, auth::Action::kRead, job->spec.project)
                 : job.status();
    if (!allowed.ok()) {
      Finish(ToGrpcStatus(allowed));
      return;
    }
    job_id_ = job->id;
    if (follow_) {
      sub_logs_ = scheduler_->SubscribeLogs([this](const std::string& job_id, const LogRecord&) {
        if (job_id == job_id_) Wake();
      });
      sub_jobs_ = scheduler_->SubscribeJobs([this](const Job& job) {
        if (job.id == job_id_ && IsTerminal(job.state)) Wake();
      });
    }
    Pump();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok && !finished_) {
        finished_ = true;
        end_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "stream broken");
      }
      if (finished_) {
        // End() was called during the write and left the Finish to us.
        Finish(end_status_);
        return;
      }
    }
    Pump();
  }
  void OnCancel() override { End(grpc::Status::CANCELLED); }
  void OnDone() override {
    if (sub_logs_ != 0) scheduler_->Unsubscribe(sub_logs_);
    if (sub_jobs_ != 0) scheduler_->Unsubscribe(sub_jobs_);
    if (slots_ != nullptr) slots_->Give();
    delete this;
  }

 private:
  void Wake() {
    {
      absl::MutexLock lock(&mu_);
      woken_ = true;
      if (!waiting_) return;
      waiting_ = false;
    }
    Pump();
  }

  // Sends the next stored chunk, waits, or ends the stream. Never runs twice at once: it is
  // entered only with no write in flight and not waiting.
  void Pump() {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (finished_) return;
        woken_ = false;
      }
      if (batch_.empty()) {
        // Note the job's state before reading, so output stored before it ended is read.
        absl::StatusOr<Job> job = scheduler_->GetJob(job_id_);
        const bool ended = !job.ok() || IsTerminal(job->state);
        absl::StatusOr<std::vector<LogRecord>> records =
            scheduler_->ReadLogs(job_id_, next_index_, kLogReadBatch);
        if (!records.ok()) {
          End(ToGrpcStatus(records.status()));
          return;
        }
        for (LogRecord& r : *records) {
          next_index_ = r.index + 1;
          if (attempt_ == 0 || r.attempt == attempt_) batch_.push_back(std::move(r));
        }
        if (batch_.empty()) {
          if (!records->empty()) continue;
          if (!follow_ || ended) {
            End(grpc::Status::OK);
            return;
          }
          absl::MutexLock lock(&mu_);
          if (woken_) continue;
          waiting_ = true;
          return;
        }
      }
      v1::LogChunk& chunk = out_;
      LogRecord& r = batch_.front();
      chunk.set_job_id(job_id_);
      chunk.set_attempt(r.attempt);
      chunk.set_stream(LogStreamToProto(r.stream));
      chunk.set_data(std::move(r.data));
      batch_.pop_front();
      {
        absl::MutexLock lock(&mu_);
        if (finished_) return;
        writing_ = true;
      }
      StartWrite(&out_);
      return;
    }
  }

  void End(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
      end_status_ = status;
      if (writing_) return;  // OnWriteDone finishes
    }
    Finish(std::move(status));
  }

  Scheduler* const scheduler_;
  StreamSlots* const slots_;
  const bool follow_;
  const uint32_t attempt_;
  std::string job_id_;
  uint64_t next_index_ = 1;
  std::deque<LogRecord> batch_;
  v1::LogChunk out_;
  uint64_t sub_logs_ = 0;
  uint64_t sub_jobs_ = 0;
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool waiting_ ABSL_GUARDED_BY(mu_) = false;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status end_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::Status JobServiceImpl::CheckSpecSize(const v1::JobSpec& spec) const {
  const size_t bytes = spec.ByteSizeLong();
  if (bytes > limits_.max_spec_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("the job spec is ", bytes,
                                                   " bytes, over the limit of ",
                                                   limits_.max_spec_bytes, " (--max_spec_bytes)"));
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* JobServiceImpl::SubmitJob(grpc::CallbackServerContext* ctx,
                                                    const v1::SubmitJobRequest* req,
                                                    v1::SubmitJobResponse* resp) {
  if (absl::Status s = CheckSpecSize(req->spec()); !s.ok()) {
    return Reply<v1::SubmitJobResponse>(ctx, s);
  }
  absl::StatusOr<JobSpec> spec = JobSpecFromProto(req->spec());
  if (!spec.ok()) return Reply<v1::SubmitJobResponse>(ctx, spec.status());
  absl::StatusOr<auth::Caller> caller = auth_->Check(*ctx, auth::Action::kSubmit, spec->project);
  if (!caller.ok()) return Reply<v1::SubmitJobResponse>(ctx, caller.status());
  if (limits_.submits != nullptr) {
    if (absl::Status s = limits_.submits->Take(spec->project.empty() ? "default" : spec->project);
        !s.ok()) {
      return Reply<v1::SubmitJobResponse>(ctx, s);
    }
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  std::string project = spec->project;
  scheduler_->Submit(std::move(*spec), req->request_id(),
                     [this, ctx, reactor, resp, caller = *std::move(caller),
                      project = std::move(project)](absl::StatusOr<SubmitResult> result) {
                       std::string target;
                       if (result.ok()) {
                         ShowJob(result->job, resp->mutable_job());
                         resp->set_existing(result->existing);
                         resp->set_sweep_id(result->sweep_id);
                         for (const std::string& id : result->job_ids) resp->add_job_ids(id);
                         target = result->sweep_id.empty()
                                      ? absl::StrCat("job ", result->job.id)
                                      : absl::StrCat("sweep ", result->sweep_id, " (",
                                                     result->job_ids.size(), " jobs)");
                       }
                       auth_->Audit(*ctx, caller, "submit", target, project, result.status());
                       reactor->Finish(ToGrpcStatus(result.status()));
                     });
  return reactor;
}

grpc::ServerUnaryReactor* JobServiceImpl::EstimateJob(grpc::CallbackServerContext* ctx,
                                                      const v1::EstimateJobRequest* req,
                                                      v1::EstimateJobResponse* resp) {
  absl::Status status = [&]() -> absl::Status {
    SCHED_RETURN_IF_ERROR(CheckSpecSize(req->spec()));
    SCHED_ASSIGN_OR_RETURN(JobSpec spec, JobSpecFromProto(req->spec()));
    SCHED_RETURN_IF_ERROR(auth_->Check(*ctx, auth::Action::kRead, spec.project).status());
    SCHED_ASSIGN_OR_RETURN(Decision decision, scheduler_->Estimate(std::move(spec)));
    DecisionToProto(decision, resp->mutable_decision());
    return absl::OkStatus();
  }();
  return Reply<v1::EstimateJobResponse>(ctx, status);
}

grpc::ServerUnaryReactor* JobServiceImpl::GetSweep(grpc::CallbackServerContext* ctx,
                                                   const v1::GetSweepRequest* req,
                                                   v1::SweepStatus* resp) {
  absl::Status status = [&]() -> absl::Status {
    SCHED_ASSIGN_OR_RETURN(auth::Caller caller, auth_->Check(*ctx, auth::Action::kRead));
    SCHED_ASSIGN_OR_RETURN(SweepView sweep, scheduler_->GetSweep(req->sweep_id()));
    if (sweep.runs.empty()) return absl::NotFoundError("sweep has no runs");
    SCHED_RETURN_IF_ERROR(auth::Authorizer::CheckProject(caller, auth::Action::kRead,
                                                         sweep.runs.front().spec.project));
    resp->set_id(sweep.id);
    // The sweep's spec: its first run's, less that run's own parameters.
    JobSpec spec = sweep.runs.front().spec;
    const auto& own = sweep.runs.front().parameters;
    spec.env.erase(std::remove_if(spec.env.begin(), spec.env.end(),
                                  [&](const auto& e) {
                                    return own.count(e.first) > 0 ||
                                           absl::StartsWith(e.first, "SCHED_");
                                  }),
                   spec.env.end());
    Job shown_spec;
    shown_spec.spec = std::move(spec);
    v1::Job tmp;
    ShowJob(shown_spec, &tmp);
    *resp->mutable_spec() = tmp.spec();
    for (const Job& run : sweep.runs) ShowJob(run, resp->add_runs());
    resp->set_best_index(sweep.best_index);
    return absl::OkStatus();
  }();
  return Reply<v1::SweepStatus>(ctx, status);
}

grpc::ServerUnaryReactor* JobServiceImpl::GetJob(grpc::CallbackServerContext* ctx,
                                                 const v1::GetJobRequest* req, v1::Job* resp) {
  absl::Status status = [&]() -> absl::Status {
    SCHED_ASSIGN_OR_RETURN(auth::Caller caller, auth_->Check(*ctx, auth::Action::kRead));
    SCHED_ASSIGN_OR_RETURN(Job job, scheduler_->GetJob(req->job_id()));
    SCHED_RETURN_IF_ERROR(
        auth::Authorizer::CheckProject(caller, auth::Action::kRead, job.spec.project));
    ShowJob(job, resp);
    return absl::OkStatus();
  }();
  return Reply<v1::Job>(ctx, status);
}

grpc::ServerUnaryReactor* JobServiceImpl::ListJobs(grpc::CallbackServerContext* ctx,
                                                   const v1::ListJobsRequest* req,
                                                   v1::ListJobsResponse* resp) {
  absl::Status status = [&]() -> absl::Status {
    SCHED_ASSIGN_OR_RETURN(auth::Caller caller,
                           auth_->Check(*ctx, auth::Action::kRead, req->project()));
    JobQuery query;
    SCHED_ASSIGN_OR_RETURN(query.states, StatesFromProto(req->states()));
    query.project = req->project();
    // A caller scoped to one project lists that one; to several, a page holds only theirs.
    if (query.project.empty() && caller.projects.size() == 1) query.project = caller.projects[0];
    query.limit = req->page_size() == 0 ? kDefaultPageSize
                                        : std::min<uint32_t>(req->page_size(), kMaxPageSize);
    if (!req->page_token().empty() && !absl::SimpleAtoi(req->page_token(), &query.after_seq)) {
      return absl::InvalidArgumentError(
          "page_token: not a token this server gave out; pass next_page_token unchanged");
    }
    JobPage page = scheduler_->ListJobs(query);
    for (const Job& job : page.jobs) {
      if (caller.InProject(job.spec.project)) ShowJob(job, resp->add_jobs());
    }
    if (page.next_after_seq != 0) resp->set_next_page_token(absl::StrCat(page.next_after_seq));
    return absl::OkStatus();
  }();
  return Reply<v1::ListJobsResponse>(ctx, status);
}

grpc::ServerUnaryReactor* JobServiceImpl::CancelJob(grpc::CallbackServerContext* ctx,
                                                    const v1::CancelJobRequest* req,
                                                    v1::Job* resp) {
  auth::Caller caller;
  std::string project;
  absl::Status allowed = [&]() -> absl::Status {
    SCHED_ASSIGN_OR_RETURN(caller, auth_->Check(*ctx, auth::Action::kCancel));
    SCHED_ASSIGN_OR_RETURN(Job job, scheduler_->GetJob(req->job_id()));
    project = job.spec.project;
    return auth::Authorizer::CheckProject(caller, auth::Action::kCancel, job.spec.project);
  }();
  if (!allowed.ok()) return Reply<v1::Job>(ctx, allowed);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  scheduler_->Cancel(req->job_id(), req->reason(),
                     [this, ctx, reactor, resp, caller = std::move(caller),
                      project = std::move(project)](absl::StatusOr<Job> job) {
                       if (job.ok()) ShowJob(*job, resp);
                       auth_->Audit(*ctx, caller, "cancel",
                                    job.ok() ? absl::StrCat("job ", job->id) : "", project,
                                    job.status());
                       reactor->Finish(ToGrpcStatus(job.status()));
                     });
  return reactor;
}

grpc::ServerWriteReactor<v1::WatchJobsResponse>* JobServiceImpl::WatchJobs(
    grpc::CallbackServerContext* ctx, const v1::WatchJobsRequest* req) {
  absl::StatusOr<auth::Caller> caller = auth_->Check(*ctx, auth::Action::kRead, req->project());
  if (!caller.ok()) return RefuseStream<v1::WatchJobsResponse>(caller.status());
  if (limits_.streams != nullptr) {
    if (absl::Status s = limits_.streams->Take(); !s.ok()) {
      return RefuseStream<v1::WatchJobsResponse>(s);
    }
  }
  return new WatchReactor(scheduler_, *req, *std::move(caller), limits_.streams);
}

grpc::ServerWriteReactor<v1::LogChunk>* JobServiceImpl::GetJobLogs(
    grpc::CallbackServerContext* ctx, const v1::GetJobLogsRequest* req) {
  absl::StatusOr<auth::Caller> caller = auth_->Check(*ctx, auth::Action::kRead);
  if (!caller.ok()) return RefuseStream<v1::LogChunk>(caller.status());
  if (limits_.streams != nullptr) {
    if (absl::Status s = limits_.streams->Take(); !s.ok()) return RefuseStream<v1::LogChunk>(s);
  }
  return new LogsReactor(scheduler_, *req, *caller, limits_.streams);
}

}  // namespace sched
