#pragma once

#include "absl/status/status.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "grpcpp/support/status.h"

namespace sched {

// The one mapping from absl::Status to the status a gRPC client sees.
grpc::Status ToGrpcStatus(const absl::Status& status);

// A unary call of the callback API finished at once with `status`.
inline grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* ctx,
                                             const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// A server stream of the callback API that ends at once with `status` (a refused caller).
template <typename Msg>
grpc::ServerWriteReactor<Msg>* RefuseStream(const absl::Status& status) {
  class Refused final : public grpc::ServerWriteReactor<Msg> {
   public:
    explicit Refused(const absl::Status& s) { this->Finish(ToGrpcStatus(s)); }
    void OnDone() override { delete this; }
  };
  return new Refused(status);
}

// A bidirectional stream of the callback API that ends at once with `status`.
template <typename Req, typename Resp>
grpc::ServerBidiReactor<Req, Resp>* RefuseBidi(const absl::Status& status) {
  class Refused final : public grpc::ServerBidiReactor<Req, Resp> {
   public:
    explicit Refused(const absl::Status& s) { this->Finish(ToGrpcStatus(s)); }
    void OnDone() override { delete this; }
  };
  return new Refused(status);
}

}  // namespace sched
