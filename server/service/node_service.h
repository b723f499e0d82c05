#pragma once

#include "sched/v1/node_service.grpc.pb.h"
#include "server/auth/auth.h"
#include "server/core/scheduler.h"
#include "server/service/agent_service.h"

namespace sched {

class NodeServiceImpl final : public v1::NodeService::CallbackService {
 public:
  // `identities` null: schedd serves no TLS, and revoking a node only closes its streams.
  NodeServiceImpl(Scheduler* scheduler, auth::Authorizer* auth, AgentStreams* streams,
                  auth::NodeIdentities* identities, const Clock* clock)
      : scheduler_(scheduler),
        auth_(auth),
        streams_(streams),
        identities_(identities),
        clock_(clock) {}

  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* ctx,
                                      const v1::ListNodesRequest* req,
                                      v1::ListNodesResponse* resp) override;
  grpc::ServerUnaryReactor* GetNode(grpc::CallbackServerContext* ctx, const v1::GetNodeRequest* req,
                                    v1::Node* resp) override;
  grpc::ServerUnaryReactor* Cordon(grpc::CallbackServerContext* ctx, const v1::CordonRequest* req,
                                   v1::Node* resp) override;
  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* ctx, const v1::DrainRequest* req,
                                  v1::Node* resp) override;
  grpc::ServerUnaryReactor* RevokeNode(grpc::CallbackServerContext* ctx,
                                       const v1::RevokeNodeRequest* req,
                                       v1::RevokeNodeResponse* resp) override;

 private:
  // `then`, after the outcome is written to the audit log.
  Done<Node> Audited(grpc::CallbackServerContext* ctx, const auth::Caller& caller,
                     std::string action, const std::string& node, Done<Node> then);

  Scheduler* const scheduler_;
  auth::Authorizer* const auth_;
  AgentStreams* const streams_;
  auth::NodeIdentities* const identities_;
  const Clock* const clock_;
};

}  // namespace sched
