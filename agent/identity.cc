#include "agent/identity.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "agent/log.h"
#include "grpcpp/client_context.h"
#include "sched/v1/agent_service.grpc.pb.h"
#include "server/auth/tls.h"
#include "server/common/status_macros.h"

namespace sched::agent {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Whole or not at all: a temporary file with `mode`, synced, renamed over `path`.
absl::Status WriteFile(const fs::path& path, const std::string& data, mode_t mode) {
  const std::string tmp = path.string() + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot write ", tmp, ": ", std::strerror(errno)));
  }
  const bool ok = write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
                  fchmod(fd, mode) == 0 && fsync(fd) == 0;
  close(fd);
  std::error_code ec;
  if (ok) fs::rename(tmp, path, ec);
  if (!ok || ec) {
    fs::remove(tmp, ec);
    return absl::FailedPreconditionError(absl::StrCat("cannot write ", path.string()));
  }
  return absl::OkStatus();
}

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

fs::path Dir(const IdentityOptions& o) { return fs::path(o.work_dir) / "identity"; }

auth::DialOptions MtlsOptions(const IdentityOptions& o) {
  auth::DialOptions d;
  d.cert_file = (Dir(o) / "node.crt").string();
  d.key_file = (Dir(o) / "node.key").string();
  d.ca_file = (Dir(o) / "ca.crt").string();
  return d;
}

// Key first, then certificate: a reader never pairs a new certificate with an old key for long
// (the channel rereads both).
absl::Status SaveIdentity(const IdentityOptions& o, const std::string& key_pem,
                          const v1::NodeCertificate& cert) {
  SCHED_RETURN_IF_ERROR(WriteFile(Dir(o) / "ca.crt", cert.ca_pem(), 0644));
  SCHED_RETURN_IF_ERROR(WriteFile(Dir(o) / "node.key", key_pem, 0600));
  return WriteFile(Dir(o) / "node.crt", cert.certificate_pem(), 0644);
}

// The CA to trust: the file, or the certificate schedd presents whose pin is the one given.
absl::StatusOr<std::string> TrustedCa(const IdentityOptions& o) {
  if (!o.ca_file.empty()) return ReadFile(o.ca_file);
  SCHED_ASSIGN_OR_RETURN(std::vector<std::string> chain,
                         auth::FetchServerCertificates(o.server, o.timeout));
  return auth::CertificateWithPin(chain, o.ca_pin);
}

// The certificate under identity/ if it names this node, chains to `ca_pem` and is not run out.
bool UsableCertificate(const IdentityOptions& o, const std::string& ca_pem) {
  absl::StatusOr<std::string> cert = ReadFile(Dir(o) / "node.crt");
  if (!cert.ok() || !fs::exists(Dir(o) / "node.key")) return false;
  absl::StatusOr<auth::CertificateInfo> info = auth::ReadCertificate(*cert);
  return info.ok() && auth::NodeFromCommonName(info->common_name) == o.node_name &&
         auth::VerifyCertificate(*cert, ca_pem, absl::Now() + absl::Seconds(2)).ok();
}

}  // namespace

absl::StatusOr<auth::DialOptions> PrepareIdentity(const IdentityOptions& o) {
  if (o.ca_file.empty() && o.ca_pin.empty()) {
    auth::DialOptions plain;
    plain.token = o.token;
    return plain;
  }
  SCHED_ASSIGN_OR_RETURN(std::string ca_pem, TrustedCa(o));
  std::error_code ec;
  fs::create_directories(Dir(o), ec);
  if (ec || chmod(Dir(o).c_str(), 0700) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot make ", Dir(o).string(), " (0700)"));
  }
  if (UsableCertificate(o, ca_pem)) return MtlsOptions(o);
  if (o.token.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no node certificate in ", Dir(o).string(),
        " yet: give a join token (--token_file, $SCHED_TOKEN_FILE or $SCHED_TOKEN) to join"));
  }
  SCHED_ASSIGN_OR_RETURN(auth::KeyAndRequest kr, auth::MakeNodeKeyAndRequest(o.node_name));
  auth::DialOptions join;
  join.token = o.token;
  join.ca_pem = ca_pem;
  auto stub = v1::AgentService::NewStub(auth::Dial(o.server, join));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + o.timeout));
  v1::JoinRequest req;
  req.set_node_name(o.node_name);
  req.set_csr_pem(kr.csr_pem);
  v1::NodeCertificate cert;
  SCHED_RETURN_IF_ERROR(FromGrpc(stub->Join(&ctx, req, &cert)));
  SCHED_RETURN_IF_ERROR(SaveIdentity(o, kr.key_pem, cert));
  Log("joined schedd at %s as node %s: certificate until %s", o.server, o.node_name,
      absl::FormatTime(absl::FromUnixSeconds(cert.expire_time().seconds())));
  return MtlsOptions(o);
}

absl::StatusOr<bool> RenewIfDue(const IdentityOptions& o, const auth::DialOptions& dial,
                                absl::Time now) {
  if (dial.cert_file.empty()) return false;
  SCHED_ASSIGN_OR_RETURN(std::string pem, ReadFile(dial.cert_file));
  SCHED_ASSIGN_OR_RETURN(auth::CertificateInfo info, auth::ReadCertificate(pem));
  const absl::Duration lifetime = info.not_after - info.not_before - auth::kNodeCertBackdate;
  if (now < info.not_after - lifetime / 3) return false;
  SCHED_ASSIGN_OR_RETURN(auth::KeyAndRequest kr, auth::MakeNodeKeyAndRequest(o.node_name));
  auto stub = v1::AgentService::NewStub(auth::Dial(o.server, dial));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + o.timeout));
  v1::RenewCertificateRequest req;
  req.set_csr_pem(kr.csr_pem);
  v1::NodeCertificate cert;
  SCHED_RETURN_IF_ERROR(FromGrpc(stub->RenewCertificate(&ctx, req, &cert)));
  SCHED_RETURN_IF_ERROR(SaveIdentity(o, kr.key_pem, cert));
  Log("renewed the node certificate: until %s",
      absl::FormatTime(absl::FromUnixSeconds(cert.expire_time().seconds())));
  return true;
}

}  // namespace sched::agent
