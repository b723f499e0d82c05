#include "server/service/token_service.h"

#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"
#include "server/service/status.h"

namespace sched {

grpc::ServerUnaryReactor* TokenServiceImpl::CreateToken(grpc::CallbackServerContext* ctx,
                                                        const v1::CreateTokenRequest* req,
                                                        v1::CreateTokenResponse* resp) {
  absl::Status status = [&]() -> absl::Status {
    SCHED_ASSIGN_OR_RETURN(auth::Caller caller, auth_->Check(*ctx, auth::Action::kTokens));
    absl::StatusOr<v1::CreateTokenResponse> made =
        tokens_->Create(*req, caller.authenticated ? caller.token_id : "local");
    auth_->Audit(*ctx, caller, absl::StrCat("token_create ", auth::RoleName(req->role())),
                 made.ok() ? absl::StrCat("token ", made->token().id()) : "", "", made.status());
    SCHED_ASSIGN_OR_RETURN(*resp, std::move(made));
    resp->set_ca_pin(ca_pin_);
    return absl::OkStatus();
  }();
  return FinishUnary(ctx, status);
}

grpc::ServerUnaryReactor* TokenServiceImpl::ListTokens(grpc::CallbackServerContext* ctx,
                                                       const v1::ListTokensRequest* req,
                                                       v1::ListTokensResponse* resp) {
  absl::Status status = auth_->Check(*ctx, auth::Action::kTokens).status();
  if (status.ok()) {
    for (v1::Token& t : tokens_->List()) *resp->add_tokens() = std::move(t);
  }
  return FinishUnary(ctx, status);
}

grpc::ServerUnaryReactor* TokenServiceImpl::RevokeToken(grpc::CallbackServerContext* ctx,
                                                        const v1::RevokeTokenRequest* req,
                                                        v1::Token* resp) {
  absl::Status status = [&]() -> absl::Status {
    SCHED_ASSIGN_OR_RETURN(auth::Caller caller, auth_->Check(*ctx, auth::Action::kTokens));
    absl::StatusOr<v1::Token> revoked = tokens_->Revoke(req->id());
    auth_->Audit(*ctx, caller, "token_revoke", absl::StrCat("token ", req->id().substr(0, 64)), "",
                 revoked.status());
    SCHED_ASSIGN_OR_RETURN(*resp, std::move(revoked));
    return absl::OkStatus();
  }();
  return FinishUnary(ctx, status);
}

}  // namespace sched
