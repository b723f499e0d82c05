#pragma once
// The one way schedctl, the agent and tests dial schedd: the address, the token every call
// presents, and (later) TLS.
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/channel_arguments.h"

namespace sched::auth {

struct DialOptions {
  // "<id>.<secret>", sent on every call as `authorization: Bearer ...`; empty: none.
  std::string token;
};

std::shared_ptr<grpc::Channel> Dial(const std::string& address, const DialOptions& options,
                                    grpc::ChannelArguments args = {});

// The token in `path` (the first line, surrounding spaces trimmed): NOT_FOUND when the file is
// missing, INVALID_ARGUMENT when it holds no token.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

}  // namespace sched::auth
