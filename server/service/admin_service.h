#pragma once

#include <string>

#include "grpcpp/grpcpp.h"
#include "sched/v1/admin_service.grpc.pb.h"
#include "server/auth/auth.h"
#include "server/core/scheduler.h"
#include "server/core/store.h"

namespace sched {

// AdminService on gRPC's synchronous API: a backup copies and links files, so it runs on the
// server's own thread pool rather than on the callback threads the scheduler's services share.
class AdminServiceImpl final : public v1::AdminService::Service {
 public:
  // `data_dir`: schedd's data folder, whose tls/, checkpoints/, admin.token and audit.log a
  // backup copies beside the store's checkpoint (store/).
  AdminServiceImpl(Scheduler* scheduler, Store* store, auth::Authorizer* auth, std::string data_dir)
      : scheduler_(scheduler), store_(store), auth_(auth), data_dir_(std::move(data_dir)) {}

  grpc::Status Backup(grpc::ServerContext* ctx, const v1::BackupRequest* req,
                      v1::BackupResponse* resp) override;

 private:
  absl::Status DoBackup(const v1::BackupRequest& req, v1::BackupResponse* resp);

  Scheduler* const scheduler_;
  Store* const store_;
  auth::Authorizer* const auth_;
  const std::string data_dir_;
};

}  // namespace sched
