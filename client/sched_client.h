#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/status.h"
#include "sched/v1/admin_service.grpc.pb.h"
#include "sched/v1/checkpoint_service.grpc.pb.h"
#include "sched/v1/cost_service.grpc.pb.h"
#include "sched/v1/job_service.grpc.pb.h"
#include "sched/v1/node_service.grpc.pb.h"
#include "sched/v1/token_service.grpc.pb.h"
#include "server/checkpoint/checkpoint_transfer.h"

namespace sched::client {

// How SubmitJob is retried on UNAVAILABLE and DEADLINE_EXCEEDED. Every attempt carries the
// same request id, so the server makes at most one job.
struct RetryPolicy {
  int max_attempts = 4;
  absl::Duration initial_backoff = absl::Milliseconds(200);
  double backoff_multiplier = 2.0;
  absl::Duration max_backoff = absl::Seconds(2);
};

struct ClientOptions {
  // Deadline of each unary call (each page of a list, each submit attempt). Streams have none.
  absl::Duration timeout = absl::Seconds(10);
  RetryPolicy submit_retry;
};

// The gRPC status as an absl::Status with the same code and message.
absl::Status FromGrpcStatus(const grpc::Status& status);

// The schedd API as the CLI uses it: plain calls returning absl::Status. Job ids may be unique
// prefixes; the server resolves them. Not thread-safe; the channel is shared.
class SchedClient {
 public:
  SchedClient(std::shared_ptr<grpc::Channel> channel, ClientOptions options);

  // Retries per options.submit_retry with the same request_id.
  absl::StatusOr<sched::v1::SubmitJobResponse> SubmitJob(const sched::v1::JobSpec& spec,
                                                         const std::string& request_id);
  absl::StatusOr<sched::v1::Job> GetJob(const std::string& job_id);
  absl::StatusOr<sched::v1::SweepStatus> GetSweep(const std::string& sweep_id);
  absl::StatusOr<sched::v1::EstimateJobResponse> EstimateJob(const sched::v1::JobSpec& spec);
  // Reads pages from `request.page_token` on until the last one, or until `limit` jobs have
  // been read. The reply holds every job read and no page token.
  absl::StatusOr<sched::v1::ListJobsResponse> ListAllJobs(sched::v1::ListJobsRequest request,
                                                          std::optional<uint32_t> limit);
  absl::StatusOr<sched::v1::Job> CancelJob(const std::string& job_id, const std::string& reason);
  // Calls `on_change` for each message until the server ends the stream. OK when it ends
  // cleanly.
  absl::Status WatchJobs(const sched::v1::WatchJobsRequest& request,
                         const std::function<void(const sched::v1::WatchJobsResponse&)>& on_change);
  absl::Status GetJobLogs(const sched::v1::GetJobLogsRequest& request,
                          const std::function<void(const sched::v1::LogChunk&)>& on_chunk);

  absl::StatusOr<sched::v1::ListNodesResponse> ListNodes();
  absl::StatusOr<sched::v1::Node> GetNode(const std::string& name);
  absl::StatusOr<sched::v1::Node> Cordon(const std::string& name, bool uncordon);
  absl::StatusOr<sched::v1::Node> Drain(const std::string& name);
  // Closes the node's agent stream and refuses its certificates from now; NOT_FOUND for an
  // unknown node.
  absl::StatusOr<sched::v1::RevokeNodeResponse> RevokeNode(const std::string& name);
  absl::StatusOr<sched::v1::BackupResponse> Backup(const sched::v1::BackupRequest& request);

  absl::StatusOr<sched::v1::Budget> SetBudget(const sched::v1::SetBudgetRequest& request);
  absl::StatusOr<sched::v1::Budget> GetBudget(const std::string& project);
  absl::StatusOr<sched::v1::ListBudgetsResponse> ListBudgets();
  absl::StatusOr<sched::v1::CostReport> GetCostReport(
      const sched::v1::GetCostReportRequest& request);
  absl::StatusOr<sched::v1::CostAdvice> GetCostAdvice(
      const sched::v1::GetCostAdviceRequest& request);

  // The job's checkpoints, oldest first.
  absl::StatusOr<sched::v1::ListCheckpointsResponse> ListCheckpoints(const std::string& job_id);
  // Checkpoint `seq` (0: the newest) into `dest_dir`/<name>, each file checked against its
  // sha256; nothing is left behind on failure. A stream: no deadline. ALREADY_EXISTS when
  // `dest_dir`/<name> exists; NOT_FOUND when the job or the checkpoint is unknown.
  absl::StatusOr<checkpoint::Downloaded> DownloadCheckpoint(const std::string& job_id, uint64_t seq,
                                                            const std::string& dest_dir);

  // The reply holds the secret, the only time schedd gives it out.
  absl::StatusOr<sched::v1::CreateTokenResponse> CreateToken(
      const sched::v1::CreateTokenRequest& request);
  // Every token, without secrets.
  absl::StatusOr<sched::v1::ListTokensResponse> ListTokens();
  // NOT_FOUND for an unknown id; revoking twice is fine.
  absl::StatusOr<sched::v1::Token> RevokeToken(const std::string& id);

 private:
  // One unary call with the configured deadline.
  template <typename Stub, typename Request, typename Response>
  absl::StatusOr<Response> Unary(Stub& stub,
                                 grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                                              Response*),
                                 const Request& request);

  ClientOptions options_;
  std::unique_ptr<sched::v1::JobService::Stub> jobs_;
  std::unique_ptr<sched::v1::NodeService::Stub> nodes_;
  std::unique_ptr<sched::v1::CostService::Stub> costs_;
  std::unique_ptr<sched::v1::CheckpointService::Stub> checkpoints_;
  std::unique_ptr<sched::v1::TokenService::Stub> tokens_;
  std::unique_ptr<sched::v1::AdminService::Stub> admin_;
};

}  // namespace sched::client
