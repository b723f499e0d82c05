#pragma once

#include "sched/v1/node_service.grpc.pb.h"
#include "server/auth/auth.h"
#include "server/core/scheduler.h"

namespace sched {

class NodeServiceImpl final : public v1::NodeService::CallbackService {
 public:
  NodeServiceImpl(Scheduler* scheduler, auth::Authorizer* auth)
      : scheduler_(scheduler), auth_(auth) {}

  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* ctx,
                                      const v1::ListNodesRequest* req,
                                      v1::ListNodesResponse* resp) override;
  grpc::ServerUnaryReactor* GetNode(grpc::CallbackServerContext* ctx, const v1::GetNodeRequest* req,
                                    v1::Node* resp) override;
  grpc::ServerUnaryReactor* Cordon(grpc::CallbackServerContext* ctx, const v1::CordonRequest* req,
                                   v1::Node* resp) override;
  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* ctx, const v1::DrainRequest* req,
                                  v1::Node* resp) override;

 private:
  Scheduler* const scheduler_;
  auth::Authorizer* const auth_;
};

}  // namespace sched
