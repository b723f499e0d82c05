#include "client/sched_client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"

namespace sched::client {

using sched::v1::Job;
using sched::v1::Node;

absl::Status FromGrpcStatus(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

SchedClient::SchedClient(std::shared_ptr<grpc::Channel> channel, ClientOptions options)
    : options_(std::move(options)),
      jobs_(sched::v1::JobService::NewStub(channel)),
      nodes_(sched::v1::NodeService::NewStub(channel)),
      costs_(sched::v1::CostService::NewStub(channel)),
      checkpoints_(sched::v1::CheckpointService::NewStub(channel)),
      tokens_(sched::v1::TokenService::NewStub(channel)),
      admin_(sched::v1::AdminService::NewStub(channel)) {}

template <typename Stub, typename Request, typename Response>
absl::StatusOr<Response> SchedClient::Unary(Stub& stub,
                                            grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                                         const Request&, Response*),
                                            const Request& request) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
  Response response;
  grpc::Status status = (stub.*method)(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<sched::v1::SubmitJobResponse> SchedClient::SubmitJob(const sched::v1::JobSpec& spec,
                                                                    const std::string& request_id) {
  sched::v1::SubmitJobRequest request;
  *request.mutable_spec() = spec;
  request.set_request_id(request_id);
  const RetryPolicy& retry = options_.submit_retry;
  absl::Duration backoff = retry.initial_backoff;
  for (int attempt = 1;; ++attempt) {
    absl::StatusOr<sched::v1::SubmitJobResponse> response =
        Unary(*jobs_, &sched::v1::JobService::Stub::SubmitJob, request);
    const absl::StatusCode code = response.status().code();
    const bool transient =
        code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded;
    if (response.ok() || !transient || attempt >= retry.max_attempts) return response;
    absl::SleepFor(backoff);
    backoff = std::min(retry.max_backoff, backoff * retry.backoff_multiplier);
  }
}

absl::StatusOr<sched::v1::EstimateJobResponse> SchedClient::EstimateJob(
    const sched::v1::JobSpec& spec) {
  sched::v1::EstimateJobRequest request;
  *request.mutable_spec() = spec;
  return Unary(*jobs_, &sched::v1::JobService::Stub::EstimateJob, request);
}

absl::StatusOr<sched::v1::SweepStatus> SchedClient::GetSweep(const std::string& sweep_id) {
  sched::v1::GetSweepRequest request;
  request.set_sweep_id(sweep_id);
  return Unary(*jobs_, &sched::v1::JobService::Stub::GetSweep, request);
}

absl::StatusOr<Job> SchedClient::GetJob(const std::string& job_id) {
  sched::v1::GetJobRequest request;
  request.set_job_id(job_id);
  return Unary(*jobs_, &sched::v1::JobService::Stub::GetJob, request);
}

absl::StatusOr<sched::v1::ListJobsResponse> SchedClient::ListAllJobs(
    sched::v1::ListJobsRequest request, std::optional<uint32_t> limit) {
  constexpr uint32_t kMaxPageSize = 5000;
  sched::v1::ListJobsResponse all;
  while (true) {
    if (limit) request.set_page_size(std::min(kMaxPageSize, *limit - all.jobs_size()));
    absl::StatusOr<sched::v1::ListJobsResponse> page =
        Unary(*jobs_, &sched::v1::JobService::Stub::ListJobs, request);
    if (!page.ok()) return page.status();
    for (Job& job : *page->mutable_jobs()) {
      if (limit && static_cast<uint32_t>(all.jobs_size()) >= *limit) break;
      *all.add_jobs() = std::move(job);
    }
    if (page->next_page_token().empty() ||
        (limit && static_cast<uint32_t>(all.jobs_size()) >= *limit)) {
      return all;
    }
    if (page->next_page_token() == request.page_token()) {
      return absl::InternalError(
          absl::StrCat("server repeated page token \"", request.page_token(), "\""));
    }
    request.set_page_token(page->next_page_token());
  }
}

absl::StatusOr<Job> SchedClient::CancelJob(const std::string& job_id, const std::string& reason) {
  sched::v1::CancelJobRequest request;
  request.set_job_id(job_id);
  request.set_reason(reason);
  return Unary(*jobs_, &sched::v1::JobService::Stub::CancelJob, request);
}

namespace {

template <typename Response>
absl::Status ReadAll(grpc::ClientReader<Response>& reader,
                     const std::function<void(const Response&)>& on_message) {
  Response message;
  while (reader.Read(&message)) on_message(message);
  return FromGrpcStatus(reader.Finish());
}

}  // namespace

absl::Status SchedClient::WatchJobs(
    const sched::v1::WatchJobsRequest& request,
    const std::function<void(const sched::v1::WatchJobsResponse&)>& on_change) {
  grpc::ClientContext context;
  auto reader = jobs_->WatchJobs(&context, request);
  return ReadAll(*reader, on_change);
}

absl::Status SchedClient::GetJobLogs(
    const sched::v1::GetJobLogsRequest& request,
    const std::function<void(const sched::v1::LogChunk&)>& on_chunk) {
  grpc::ClientContext context;
  auto reader = jobs_->GetJobLogs(&context, request);
  return ReadAll(*reader, on_chunk);
}

absl::StatusOr<sched::v1::Budget> SchedClient::SetBudget(
    const sched::v1::SetBudgetRequest& request) {
  return Unary(*costs_, &sched::v1::CostService::Stub::SetBudget, request);
}

absl::StatusOr<sched::v1::Budget> SchedClient::GetBudget(const std::string& project) {
  sched::v1::GetBudgetRequest request;
  request.set_project(project);
  return Unary(*costs_, &sched::v1::CostService::Stub::GetBudget, request);
}

absl::StatusOr<sched::v1::ListBudgetsResponse> SchedClient::ListBudgets() {
  return Unary(*costs_, &sched::v1::CostService::Stub::ListBudgets,
               sched::v1::ListBudgetsRequest());
}

absl::StatusOr<sched::v1::CostReport> SchedClient::GetCostReport(
    const sched::v1::GetCostReportRequest& request) {
  return Unary(*costs_, &sched::v1::CostService::Stub::GetCostReport, request);
}

absl::StatusOr<sched::v1::CostAdvice> SchedClient::GetCostAdvice(
    const sched::v1::GetCostAdviceRequest& request) {
  return Unary(*costs_, &sched::v1::CostService::Stub::GetCostAdvice, request);
}

absl::StatusOr<sched::v1::ListCheckpointsResponse> SchedClient::ListCheckpoints(
    const std::string& job_id) {
  sched::v1::ListCheckpointsRequest request;
  request.set_job_id(job_id);
  return Unary(*checkpoints_, &sched::v1::CheckpointService::Stub::ListCheckpoints, request);
}

absl::StatusOr<checkpoint::Downloaded> SchedClient::DownloadCheckpoint(
    const std::string& job_id, uint64_t seq, const std::string& dest_dir) {
  return checkpoint::Download(*checkpoints_, job_id, seq, dest_dir, absl::InfiniteDuration());
}

absl::StatusOr<sched::v1::CreateTokenResponse> SchedClient::CreateToken(
    const sched::v1::CreateTokenRequest& request) {
  return Unary(*tokens_, &sched::v1::TokenService::Stub::CreateToken, request);
}

absl::StatusOr<sched::v1::ListTokensResponse> SchedClient::ListTokens() {
  return Unary(*tokens_, &sched::v1::TokenService::Stub::ListTokens,
               sched::v1::ListTokensRequest());
}

absl::StatusOr<sched::v1::Token> SchedClient::RevokeToken(const std::string& id) {
  sched::v1::RevokeTokenRequest request;
  request.set_id(id);
  return Unary(*tokens_, &sched::v1::TokenService::Stub::RevokeToken, request);
}

absl::StatusOr<sched::v1::ListNodesResponse> SchedClient::ListNodes() {
  return Unary(*nodes_, &sched::v1::NodeService::Stub::ListNodes, sched::v1::ListNodesRequest());
}

absl::StatusOr<Node> SchedClient::GetNode(const std::string& name) {
  sched::v1::GetNodeRequest request;
  request.set_name(name);
  return Unary(*nodes_, &sched::v1::NodeService::Stub::GetNode, request);
}

absl::StatusOr<Node> SchedClient::Cordon(const std::string& name, bool uncordon) {
  sched::v1::CordonRequest request;
  request.set_name(name);
  request.set_uncordon(uncordon);
  return Unary(*nodes_, &sched::v1::NodeService::Stub::Cordon, request);
}

absl::StatusOr<Node> SchedClient::Drain(const std::string& name) {
  sched::v1::DrainRequest request;
  request.set_name(name);
  return Unary(*nodes_, &sched::v1::NodeService::Stub::Drain, request);
}

absl::StatusOr<sched::v1::RevokeNodeResponse> SchedClient::RevokeNode(const std::string& name) {
  sched::v1::RevokeNodeRequest request;
  request.set_name(name);
  return Unary(*nodes_, &sched::v1::NodeService::Stub::RevokeNode, request);
}

absl::StatusOr<sched::v1::BackupResponse> SchedClient::Backup(
    const sched::v1::BackupRequest& request) {
  return Unary(*admin_, &sched::v1::AdminService::Stub::Backup, request);
}

}  // namespace sched::client
