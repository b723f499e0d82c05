#include "server/service/node_service.h"

#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"
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

Done<Node> NodeServiceImpl::Audited(grpc::CallbackServerContext* ctx, const auth::Caller& caller,
                                    std::string action, const std::string& node, Done<Node> then) {
  return [this, ctx, caller, action = std::move(action), node = node.substr(0, 253),
          then = std::move(then)](absl::StatusOr<Node> result) mutable {
    auth_->Audit(*ctx, caller, action, absl::StrCat("node ", node), "", result.status());
    then(std::move(result));
  };
}

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
  absl::StatusOr<auth::Caller> caller = auth_->Check(*ctx, auth::Action::kOperate);
  if (!caller.ok()) return FinishUnary(ctx, caller.status());
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  scheduler_->Cordon(req->name(), !req->uncordon(),
                     Audited(ctx, *caller, req->uncordon() ? "uncordon" : "cordon", req->name(),
                             FinishWithNode(reactor, resp)));
  return reactor;
}

grpc::ServerUnaryReactor* NodeServiceImpl::Drain(grpc::CallbackServerContext* ctx,
                                                 const v1::DrainRequest* req, v1::Node* resp) {
  absl::StatusOr<auth::Caller> caller = auth_->Check(*ctx, auth::Action::kOperate);
  if (!caller.ok()) return FinishUnary(ctx, caller.status());
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  scheduler_->Drain(req->name(),
                    Audited(ctx, *caller, "drain", req->name(), FinishWithNode(reactor, resp)));
  return reactor;
}

grpc::ServerUnaryReactor* NodeServiceImpl::RevokeNode(grpc::CallbackServerContext* ctx,
                                                      const v1::RevokeNodeRequest* req,
                                                      v1::RevokeNodeResponse* resp) {
  absl::StatusOr<auth::Caller> caller = auth_->Check(*ctx, auth::Action::kOperate);
  if (!caller.ok()) return FinishUnary(ctx, caller.status());
  const absl::Status status = [&]() -> absl::Status {
    if (req->name().empty()) return absl::InvalidArgumentError("name: the node to revoke");
    int certificates = 0;
    if (identities_ != nullptr) {
      SCHED_ASSIGN_OR_RETURN(certificates, identities_->Revoke(req->name(), clock_->Now()));
    }
    const int closed = streams_->CutOff(
        req->name(), grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                  absl::StrCat("node ", req->name(), " was revoked")));
    if (certificates == 0 && closed == 0 && !scheduler_->GetNode(req->name()).ok()) {
      return absl::NotFoundError(absl::StrCat("no node ", req->name()));
    }
    resp->set_name(req->name());
    resp->set_streams_closed(closed);
    return absl::OkStatus();
  }();
  auth_->Audit(*ctx, *caller, "node_revoke", absl::StrCat("node ", req->name().substr(0, 253)), "",
               status);
  return FinishUnary(ctx, status);
}

}  // namespace sched
