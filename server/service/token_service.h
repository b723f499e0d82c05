#pragma once

#include "sched/v1/token_service.grpc.pb.h"
#include "server/auth/auth.h"

namespace sched {

// sched.v1.TokenService: API tokens, admins only.
class TokenServiceImpl final : public v1::TokenService::CallbackService {
 public:
  // `ca_pin`: schedd's CA pin, handed out with each new token (empty without TLS).
  TokenServiceImpl(auth::TokenStore* tokens, auth::Authorizer* auth, std::string ca_pin)
      : tokens_(tokens), auth_(auth), ca_pin_(std::move(ca_pin)) {}

  grpc::ServerUnaryReactor* CreateToken(grpc::CallbackServerContext* ctx,
                                        const v1::CreateTokenRequest* req,
                                        v1::CreateTokenResponse* resp) override;
  grpc::ServerUnaryReactor* ListTokens(grpc::CallbackServerContext* ctx,
                                       const v1::ListTokensRequest* req,
                                       v1::ListTokensResponse* resp) override;
  grpc::ServerUnaryReactor* RevokeToken(grpc::CallbackServerContext* ctx,
                                        const v1::RevokeTokenRequest* req,
                                        v1::Token* resp) override;

 private:
  auth::TokenStore* const tokens_;
  auth::Authorizer* const auth_;
  const std::string ca_pin_;
};

}  // namespace sched
