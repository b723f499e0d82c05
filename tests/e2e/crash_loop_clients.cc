#include "tests/e2e/crash_loop_clients.h"

#include <chrono>
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace sched::crash_loop {
namespace {

constexpr auto kCallTimeout = std::chrono::seconds(2);

void SetDeadline(grpc::ClientContext& ctx) {
  ctx.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
}

void Pause(absl::Duration d) { std::this_thread::sleep_for(absl::ToChronoMicroseconds(d)); }

}  // namespace

JobView ToView(const v1::Job& job) {
  JobView v;
  v.id = job.id();
  v.request_id = job.request_id();
  v.state = static_cast<State>(job.state());
  v.attempt = job.attempt();
  v.epoch = job.epoch();
  v.cancel_requested = job.cancel_requested();
  v.exit_code = job.exit_code();
  return v;
}

std::shared_ptr<grpc::Channel> FastReconnectChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

bool IsUnknownOutcome(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INTERNAL:  // also what a torn connection can look like
      return true;
    default:
      return false;
  }
}

v1::JobSpec SpecFor(const std::string& request_id) {
  const size_t h = std::hash<std::string>()(request_id);
  v1::JobSpec spec;
  spec.set_name("crash-loop");
  // One job in ten runs a second, long enough for a cancel to catch it running.
  const std::string sleep = h % 10 == 0 ? "1" : absl::StrCat("0.0", (h / 10) % 5);
  spec.set_run(absl::StrCat("sleep ", sleep, "; exit ", (h / 50) % 3));
  spec.mutable_resources()->set_cpus(0.1);
  return spec;
}

// ---------------------------------------------------------------------------------------------

Workers::Workers(std::string address, History* history, int count, uint64_t seed,
                 absl::Duration max_pause, std::function<size_t()> backlog, size_t max_backlog)
    : address_(std::move(address)),
      history_(history),
      max_pause_(max_pause),
      backlog_(std::move(backlog)),
      max_backlog_(max_backlog) {
  for (int w = 0; w < count; ++w) threads_.emplace_back([this, w, seed] { Run(w, seed + w); });
}

Workers::~Workers() { Stop(); }

void Workers::Stop() {
  stop_ = true;
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void Workers::Run(int worker, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto stub = v1::JobService::NewStub(FastReconnectChannel(address_));
  for (int n = 0; !stop_.load(); ++n) {
    const bool full = backlog_() >= max_backlog_;
    std::string cancel_id;
    if (full || rng() % 5 == 0) {
      absl::MutexLock lock(&mu_);
      if (!acked_.empty()) cancel_id = acked_[rng() % acked_.size()];
    }
    if (!cancel_id.empty()) {
      Cancel(*stub, worker, cancel_id);
    } else if (!full) {
      Submit(*stub, worker, absl::StrCat("s", seed, "-w", worker, "-", n));
    }
    if (full) Pause(absl::Milliseconds(50));
    Pause(max_pause_ * std::uniform_real_distribution<double>(0, 1)(rng));
  }
}

void Workers::Submit(v1::JobService::Stub& stub, int worker, const std::string& request_id) {
  v1::SubmitJobRequest req;
  *req.mutable_spec() = SpecFor(request_id);
  req.set_request_id(request_id);
  v1::SubmitJobResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx);
  const uint64_t op = history_->Invoke(worker, OpKind::kSubmit, request_id);
  grpc::Status s = stub.SubmitJob(&ctx, req, &resp);
  if (s.ok()) {
    history_->Ok(op, ToView(resp.job()), resp.existing());
    absl::MutexLock lock(&mu_);
    acked_.push_back(resp.job().id());
  } else {
    RecordError(op, s);
  }
}

void Workers::Cancel(v1::JobService::Stub& stub, int worker, const std::string& job_id) {
  v1::CancelJobRequest req;
  req.set_job_id(job_id);
  req.set_reason("crash loop");
  v1::Job resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx);
  const uint64_t op = history_->Invoke(worker, OpKind::kCancel, job_id);
  grpc::Status s = stub.CancelJob(&ctx, req, &resp);
  if (s.ok()) {
    history_->Ok(op, ToView(resp));
  } else {
    RecordError(op, s);
  }
}

void Workers::RecordError(uint64_t op, const grpc::Status& s) {
  if (IsUnknownOutcome(s.error_code())) {
    history_->Unknown(op, s.error_code(), s.error_message());
    Pause(absl::Milliseconds(100));  // schedd is probably down
  } else {
    history_->Fail(op, s.error_code(), s.error_message());
  }
}

// ---------------------------------------------------------------------------------------------

Watcher::Watcher(std::string address, const std::string& jsonl_path)
    : address_(std::move(address)) {
  if (!jsonl_path.empty()) out_.open(jsonl_path);
  thread_ = std::thread([this] { Run(); });
}

Watcher::~Watcher() { Stop(); }

void Watcher::Stop() {
  stop_ = true;
  {
    absl::MutexLock lock(&mu_);
    if (context_ != nullptr) context_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

size_t Watcher::unfinished() const {
  absl::MutexLock lock(&mu_);
  return unfinished_;
}

std::vector<JobView> Watcher::events() const {
  absl::MutexLock lock(&mu_);
  return events_;
}

void Watcher::Record(const v1::WatchJobsResponse& resp, int subscription) {
  JobView v = ToView(resp.job());
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = last_.try_emplace(v.id, v);
  if (!inserted) {
    const JobView& l = it->second;
    if (l.state == v.state && l.attempt == v.attempt && l.epoch == v.epoch &&
        l.cancel_requested == v.cancel_requested && l.exit_code == v.exit_code) {
      return;
    }
    unfinished_ -= !IsTerminal(l.state);
    it->second = v;
  }
  unfinished_ += !IsTerminal(v.state);
  if (out_.is_open()) {
    out_ << "{\"sub\":" << subscription << ",\"initial\":" << (resp.initial() ? "true" : "false")
         << ",\"job\":\"" << v.id << "\",\"state\":\"" << StateName(v.state)
         << "\",\"attempt\":" << v.attempt << ",\"epoch\":" << v.epoch
         << ",\"cancel_requested\":" << (v.cancel_requested ? "true" : "false")
         << ",\"exit_code\":" << v.exit_code << "}\n";
  }
  events_.push_back(std::move(v));
}

void Watcher::Run() {
  auto stub = v1::JobService::NewStub(FastReconnectChannel(address_));
  for (int subscription = 1; !stop_.load(); ++subscription) {
    grpc::ClientContext ctx;
    {
      absl::MutexLock lock(&mu_);
      if (stop_.load()) break;
      context_ = &ctx;
    }
    auto reader = stub->WatchJobs(&ctx, v1::WatchJobsRequest());
    v1::WatchJobsResponse resp;
    bool any = false;
    while (reader->Read(&resp)) {
      any = true;
      Record(resp, subscription);
    }
    reader->Finish();
    if (any) subscriptions_++;
    {
      absl::MutexLock lock(&mu_);
      context_ = nullptr;
    }
    Pause(absl::Milliseconds(10));
  }
}

// ---------------------------------------------------------------------------------------------

namespace {

// Calls `call` until it gives a definite answer or `deadline` passes.
grpc::Status Retry(absl::Time deadline, const std::function<grpc::Status(grpc::ClientContext&)>& call) {
  while (true) {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    grpc::Status s = call(ctx);
    if (!IsUnknownOutcome(s.error_code()) || absl::Now() > deadline) return s;
    Pause(absl::Milliseconds(50));
  }
}

}  // namespace

int ResolveUnknowns(v1::JobService::Stub& stub, History& history, absl::Time deadline) {
  int resolved = 0;
  for (const Op& op : history.ops()) {
    if (op.outcome != Outcome::kUnknown) continue;
    if (op.kind == OpKind::kSubmit) {
      v1::SubmitJobRequest req;
      *req.mutable_spec() = SpecFor(op.key);
      req.set_request_id(op.key);
      v1::SubmitJobResponse resp;
      const uint64_t retry = history.Invoke(-1, OpKind::kSubmit, op.key);
      grpc::Status s = Retry(deadline, [&](grpc::ClientContext& ctx) {
        return stub.SubmitJob(&ctx, req, &resp);
      });
      if (!s.ok()) {
        history.Fail(retry, s.error_code(), s.error_message());
        continue;
      }
      history.Ok(retry, ToView(resp.job()), resp.existing());
      history.Resolve(op.id, resp.existing() ? Resolution::kApplied : Resolution::kNotApplied);
    } else {
      v1::GetJobRequest req;
      req.set_job_id(op.key);
      v1::Job job;
      grpc::Status s =
          Retry(deadline, [&](grpc::ClientContext& ctx) { return stub.GetJob(&ctx, req, &job); });
      if (!s.ok()) continue;
      history.Resolve(op.id,
                      job.cancel_requested() ? Resolution::kApplied : Resolution::kNotApplied);
    }
    resolved++;
  }
  return resolved;
}

bool ListAll(v1::JobService::Stub& stub, std::vector<JobView>& out) {
  out.clear();
  std::string token;
  do {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    v1::ListJobsRequest req;
    req.set_page_size(5000);
    req.set_page_token(token);
    v1::ListJobsResponse resp;
    if (!stub.ListJobs(&ctx, req, &resp).ok()) return false;
    for (const v1::Job& job : resp.jobs()) out.push_back(ToView(job));
    token = resp.next_page_token();
  } while (!token.empty());
  return true;
}

}  // namespace sched::crash_loop
