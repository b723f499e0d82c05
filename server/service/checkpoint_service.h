#pragma once

#include <atomic>
#include <cstdint>

#include "sched/v1/checkpoint_service.grpc.pb.h"
#include "server/auth/auth.h"
#include "server/checkpoint/checkpoint_store.h"
#include "server/core/scheduler.h"

namespace sched {

// CheckpointService on gRPC's synchronous API: its handlers read and write chunk files, so they
// run on the server's own thread pool rather than on the callback threads the scheduler's
// services share. Uploads are fenced: every call names the job, the epoch and the node, and
// only the node holding that lease may upload (Scheduler::CheckLease).
class CheckpointServiceImpl final : public v1::CheckpointService::Service {
 public:
  CheckpointServiceImpl(Scheduler* scheduler, CheckpointStore* store, auth::Authorizer* auth)
      : scheduler_(scheduler), store_(store), auth_(auth) {}

  grpc::Status FindMissingChunks(grpc::ServerContext* ctx, const v1::FindMissingChunksRequest* req,
                                 v1::FindMissingChunksResponse* resp) override;
  grpc::Status PutChunks(grpc::ServerContext* ctx, grpc::ServerReader<v1::PutChunkRequest>* reader,
                         v1::PutChunksResponse* resp) override;
  grpc::Status CommitCheckpoint(grpc::ServerContext* ctx, const v1::CommitCheckpointRequest* req,
                                v1::Checkpoint* resp) override;
  grpc::Status ListCheckpoints(grpc::ServerContext* ctx, const v1::ListCheckpointsRequest* req,
                               v1::ListCheckpointsResponse* resp) override;
  grpc::Status GetCheckpoint(grpc::ServerContext* ctx, const v1::GetCheckpointRequest* req,
                             grpc::ServerWriter<v1::CheckpointPiece>* writer) override;

  // Checkpoint uploads: committed, and refused or failed (at a chunk or at the commit).
  struct UploadCounts {
    uint64_t ok = 0;
    uint64_t failed = 0;
  };
  UploadCounts Uploads() const { return {uploads_ok_.load(), uploads_failed_.load()}; }

 private:
  grpc::Status Commit(grpc::ServerContext* ctx, const v1::CommitCheckpointRequest* req,
                      v1::Checkpoint* resp);
  absl::Status CheckUploader(const auth::Caller& caller, const v1::CheckpointUploader& u) const;
  std::atomic<uint64_t> uploads_ok_{0};
  std::atomic<uint64_t> uploads_failed_{0};

  Scheduler* const scheduler_;
  CheckpointStore* const store_;
  auth::Authorizer* const auth_;
};

}  // namespace sched
