#pragma once

#include "sched/v1/job_service.grpc.pb.h"
#include "server/auth/auth.h"
#include "server/core/scheduler.h"
#include "server/service/limits.h"

namespace sched {

// sched.v1.JobService over the callback API. Translates and nothing more.
class JobServiceImpl final : public v1::JobService::CallbackService {
 public:
  JobServiceImpl(Scheduler* scheduler, auth::Authorizer* auth, ServiceLimits limits = {})
      : scheduler_(scheduler), auth_(auth), limits_(limits) {}

  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* ctx,
                                      const v1::SubmitJobRequest* req,
                                      v1::SubmitJobResponse* resp) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* ctx, const v1::GetJobRequest* req,
                                   v1::Job* resp) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx,
                                     const v1::ListJobsRequest* req,
                                     v1::ListJobsResponse* resp) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx,
                                      const v1::CancelJobRequest* req, v1::Job* resp) override;
  grpc::ServerWriteReactor<v1::WatchJobsResponse>* WatchJobs(
      grpc::CallbackServerContext* ctx, const v1::WatchJobsRequest* req) override;
  grpc::ServerWriteReactor<v1::LogChunk>* GetJobLogs(grpc::CallbackServerContext* ctx,
                                                     const v1::GetJobLogsRequest* req) override;
  grpc::ServerUnaryReactor* EstimateJob(grpc::CallbackServerContext* ctx,
                                        const v1::EstimateJobRequest* req,
                                        v1::EstimateJobResponse* resp) override;
  grpc::ServerUnaryReactor* GetSweep(grpc::CallbackServerContext* ctx,
                                     const v1::GetSweepRequest* req,
                                     v1::SweepStatus* resp) override;

 private:
  // INVALID_ARGUMENT for a spec over limits_.max_spec_bytes.
  absl::Status CheckSpecSize(const v1::JobSpec& spec) const;

  Scheduler* const scheduler_;
  auth::Authorizer* const auth_;
  const ServiceLimits limits_;
};

}  // namespace sched
