#pragma once
// How the agent proves who it is to schedd.
//
// Without a CA (schedd on this machine's loopback): plaintext, with the token if one is given.
// With a CA (--ca_file, or --ca_pin to learn it from schedd itself and check it against the pin
// before anything is sent): TLS. The agent then keeps a node certificate under
// <work_dir>/identity (node.key 0600, node.crt, ca.crt). With none yet — or one for another node
// name, or one run out — it joins: a certificate request with its join token (AgentService.Join),
// over TLS checked against the CA. From then on it connects with the certificate (mTLS) alone,
// and renews it over mTLS once less than a third of its life is left; the gRPC channel rereads
// the files, so a renewal needs no restart.
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/auth/channel.h"

namespace sched::agent {

struct IdentityOptions {
  std::string server;  // host:port
  std::string node_name;
  std::string work_dir;
  std::string token;    // join token (or, without TLS, the token every call presents)
  std::string ca_file;  // PEM bundle schedd's certificate must chain to
  std::string ca_pin;   // "sha256:<hex>": learn the CA from schedd and check it against this
  absl::Duration timeout = absl::Seconds(10);
};

// The dial options the agent uses. Codes: UNAVAILABLE when schedd cannot be reached (try again);
// UNAUTHENTICATED / PERMISSION_DENIED from schedd or for a pin nothing matches (a person must act);
// FAILED_PRECONDITION when TLS is asked for without a token and there is no certificate yet;
// NOT_FOUND for a CA file that cannot be read.
absl::StatusOr<auth::DialOptions> PrepareIdentity(const IdentityOptions& options);

// Over mTLS, when the certificate in `dial` has less than a third of its life left at `now`:
// asks schedd for a new one for a new key and writes both. True when it renewed.
absl::StatusOr<bool> RenewIfDue(const IdentityOptions& options, const auth::DialOptions& dial,
                                absl::Time now);

}  // namespace sched::agent
