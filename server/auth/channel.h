#pragma once
// The one way schedctl, the agent and tests dial schedd: the address, the token every call
// presents, and (later) TLS.
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/channel_arguments.h"

namespace sched::auth {

// Keepalive, one schedule for both ends: a connection quiet this long is pinged, and dropped
// when the ping is not answered within the timeout; schedd accepts pings this far apart (less
// than the time, or it would close agents' connections for pinging too often).
inline constexpr int kKeepaliveTimeMs = 30'000;
inline constexpr int kKeepaliveTimeoutMs = 10'000;
inline constexpr int kMinPingIntervalMs = 10'000;
static_assert(kMinPingIntervalMs < kKeepaliveTimeMs, "schedd would refuse the agents' pings");

struct DialOptions {
  // "<id>.<secret>", sent on every call as `authorization: Bearer ...`; empty: none.
  std::string token;
  // TLS: the CA certificates (PEM) schedd's certificate must chain to; empty: plaintext.
  std::string ca_pem;
  // mTLS: files with the client's certificate and key, and the CA bundle (ca_file, which then
  // replaces ca_pem); reread when they change, so a renewed certificate is used without a
  // restart. Empty: no client certificate.
  std::string cert_file, key_file, ca_file;
};

std::shared_ptr<grpc::Channel> Dial(const std::string& address, const DialOptions& options,
                                    grpc::ChannelArguments args = {});

// Reaches a TLS endpoint at `address` without checking its certificate, and returns the
// certificates it presented (PEM, in order) — to be checked against a pin before anything is
// sent. UNAVAILABLE when it cannot connect or the handshake fails.
absl::StatusOr<std::vector<std::string>> FetchServerCertificates(const std::string& address,
                                                                 absl::Duration timeout);

// Of `chain`, the certificate whose pin ("sha256:<hex>") is `pin`: UNAUTHENTICATED when none
// is (someone else answered at that address, or the pin is wrong).
absl::StatusOr<std::string> CertificateWithPin(const std::vector<std::string>& chain,
                                               const std::string& pin);

// The token in `path` (the first line, surrounding spaces trimmed): NOT_FOUND when the file is
// missing, INVALID_ARGUMENT when it holds no token.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

}  // namespace sched::auth
