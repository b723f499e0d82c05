#include "server/service/node_service.h"

#include "server/convert/convert.h"
#include "server/service/status.h"

namespace sched {
namespace {

Done<Node> FinishWithNode(grpc::ServerUnaryReactor* reactor, v1::Node* resp) {
  return [reactor, resp](absl::StatusOr<Node> node) {
    if (node.ok()) NodeToProto(*node, resp);
    reactor->Finish(ToGrpcStatus(node.status()));
  };
}

}  // namespace

grpc::ServerUnaryReactor* NodeServiceImpl::ListNodes(grpc::CallbackServerContext* ctx,
                                                     const v1::ListNodesRequest* req,
                                                     v1::ListNodesResponse* resp) {
  if (absl::Status s = auth_->Check(*ctx, auth::Action::kRead).status(); !s.ok()) {
    return FinishUnary(ctx, s);
  }
  for (const Node& node : scheduler_->ListNodes()) NodeToProto(node, resp->add_nodes());
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* NodeServiceImpl::GetNode(grpc::CallbackServerContext* ctx,
                                                   const v1::GetNodeRequest* req, v1::Node* resp) {
  if (absl::Status s = auth_->Check(*ctx, auth::Action::kRead).status(); !s.ok()) {
    return FinishUnary(ctx, s);
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  FinishWithNode(reactor, resp)(scheduler_->GetNode(req->name()));
  return reactor;
}

grpc::ServerUnaryReactor* NodeServiceImpl::Cordon(grpc::CallbackServerContext* ctx,
                                                  const v1::CordonRequest* req, v1::Node* resp) {
  if (absl::Status s = auth_->Check(*ctx, auth::Action::kOperate).status(); !s.ok()) {
    return FinishUnary(ctx, s);
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  scheduler_->Cordon(req->name(), !req->uncordon(), FinishWithNode(reactor, resp));
  return reactor;
}

grpc::ServerUnaryReactor* NodeServiceImpl::Drain(grpc::CallbackServerContext* ctx,
                                                 const v1::DrainRequest* req, v1::Node* resp) {
  if (absl::Status s = auth_->Check(*ctx, auth::Action::kOperate).status(); !s.ok()) {
    return FinishUnary(ctx, s);
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  scheduler_->Drain(req->name(), FinishWithNode(reactor, resp));
  return reactor;
}

}  // namespace sched
