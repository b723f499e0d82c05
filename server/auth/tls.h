#pragma once
// schedd's own certificate authority, made with OpenSSL on first start, and what agents and
// clients need to trust it:
//
//   <data_dir>/tls/ca.key       the CA's private key (0600)
//   <data_dir>/tls/ca.crt       the CA certificate, and after a rotation the previous one too
//                               (agents' certificates from either are accepted)
//   <data_dir>/tls/server.key   schedd's key (0600)
//   <data_dir>/tls/server.crt   schedd's certificate, signed by the CA, then the CA certificate
//                               (after a rotation: the new CA signed by the previous one)
//   <data_dir>/tls/cross.crt    after a rotation: the new CA's key signed by the previous CA, so
//                               whoever trusts only the previous CA still trusts schedd
//
// The folder is 0700. A client that holds the CA certificate (or its pin, "sha256:<hex of the
// DER>") can check it is talking to this schedd. Agents send a certificate request with their
// join token and get back a certificate naming their node (CN "node:<name>"), good for
// kNodeCertLifetime, which they renew before it runs out.
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sched::auth {

inline constexpr absl::Duration kCaLifetime = absl::Hours(24 * 3650);
inline constexpr absl::Duration kServerCertLifetime = absl::Hours(24 * 365);
inline constexpr absl::Duration kNodeCertLifetime = absl::Hours(24 * 30);
// Node certificates are valid from this long before they are made (clocks a little behind).
inline constexpr absl::Duration kNodeCertBackdate = absl::Minutes(5);

struct ServerTls {
  std::string ca_pem;          // every trusted CA certificate (the current one first)
  std::string key_pem;         // schedd's key
  std::string cert_chain_pem;  // schedd's certificate, then the current CA's
  std::string pin;             // "sha256:<hex>" of the current CA certificate
};

struct TlsOptions {
  std::string dir;                 // <data_dir>/tls
  std::vector<std::string> names;  // host names and IP addresses for the server certificate
  // Make a new CA (the old certificate is kept in ca.crt so agents' certificates from it stay
  // good until they renew) and a new server certificate.
  bool rotate_ca = false;
};

// Loads the CA and server certificate from `options.dir`, making whatever is missing: a CA on
// first start; a server certificate when there is none, it is not from the current CA, it does
// not name every one of `options.names`, or it has less than a tenth of its life left.
absl::StatusOr<ServerTls> LoadOrCreateServerTls(const TlsOptions& options);

// ca.crt in `dir`: every CA schedd trusts, the current one first.
absl::StatusOr<std::string> ReadCaBundle(const std::string& dir);

// "sha256:<64 hex>" of the first certificate in `pem`.
absl::StatusOr<std::string> CertificatePin(absl::string_view pem);

// A new EC P-256 key (PEM) and a certificate request for it naming `node` (PEM).
struct KeyAndRequest {
  std::string key_pem;
  std::string csr_pem;
};
absl::StatusOr<KeyAndRequest> MakeNodeKeyAndRequest(absl::string_view node);

// INVALID_ARGUMENT unless `csr_pem` is a PEM certificate request whose signature verifies, for
// an EC P-256 (or stronger) or RSA >= 2048 key.
absl::Status CheckCertificateRequest(absl::string_view csr_pem);

// Signs `csr_pem` for node `node` with the CA in `dir`: a client certificate with CN
// "node:<node>", valid for `lifetime` (from kNodeCertBackdate before now). INVALID_ARGUMENT when
// the request does not parse, its signature is wrong, or its key is not EC P-256 / RSA >= 2048.
absl::StatusOr<std::string> SignNodeCertificate(const std::string& dir, absl::string_view csr_pem,
                                                absl::string_view node,
                                                absl::Duration lifetime = kNodeCertLifetime);

// Facts about the first certificate in `pem`.
struct CertificateInfo {
  std::string common_name;
  std::string serial_hex;
  absl::Time not_before;
  absl::Time not_after;
};
absl::StatusOr<CertificateInfo> ReadCertificate(absl::string_view pem);

// Whether the first certificate in `cert_pem` chains to one of the CAs in `ca_pem` (through
// the certificates after it in `cert_pem`, if any) and is within its validity at `now`: OK, or
// UNAUTHENTICATED saying why.
absl::Status VerifyCertificate(absl::string_view cert_pem, absl::string_view ca_pem,
                               absl::Time now);

// The node a certificate's common name names ("node:<name>" → "<name>"), or empty.
std::string NodeFromCommonName(absl::string_view common_name);

}  // namespace sched::auth
