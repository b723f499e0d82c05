#pragma once

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace sched {

// The one mapping from absl::Status to the status a gRPC client sees.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace sched
