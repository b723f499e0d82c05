#include "server/auth/tls.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace sched::auth {
namespace {

namespace fs = std::filesystem;

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(X509_REQ* p) const { X509_REQ_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
  void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
  void operator()(BIGNUM* p) const { BN_free(p); }
  void operator()(ASN1_TIME* p) const { ASN1_TIME_free(p); }
};
template <typename T>
using Owned = std::unique_ptr<T, Free>;

// The OpenSSL error queue, emptied, as text.
std::string SslErrors() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

absl::Status SslError(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", SslErrors()));
}

Owned<BIO> MemBio(absl::string_view data) {
  return Owned<BIO>(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, n);
}

std::string KeyPem(EVP_PKEY* key) {
  Owned<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  return BioText(bio.get());
}

std::string CertPem(X509* cert) {
  Owned<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  return BioText(bio.get());
}

absl::StatusOr<Owned<X509>> ParseCert(absl::string_view pem) {
  Owned<BIO> bio = MemBio(pem);
  Owned<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("not a PEM certificate");
  }
  return cert;
}

std::vector<Owned<X509>> ParseCerts(absl::string_view pem) {
  std::vector<Owned<X509>> out;
  Owned<BIO> bio = MemBio(pem);
  while (X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) out.emplace_back(c);
  ERR_clear_error();
  return out;
}

absl::StatusOr<Owned<EVP_PKEY>> ParseKey(absl::string_view pem) {
  Owned<BIO> bio = MemBio(pem);
  Owned<EVP_PKEY> key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("not a PEM private key");
  }
  return key;
}

absl::StatusOr<Owned<EVP_PKEY>> NewKey() {
  Owned<EVP_PKEY> key(EVP_EC_gen("P-256"));
  if (key == nullptr) return SslError("making a key");
  return key;
}

absl::StatusOr<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Written whole or not at all: to a temporary file with `mode`, synced, then renamed.
absl::Status WriteFile(const fs::path& path, absl::string_view data, mode_t mode) {
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

absl::Status SetRandomSerial(X509* cert) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return SslError("random serial");
  bytes[0] &= 0x7f;  // positive
  Owned<BIGNUM> bn(BN_bin2bn(bytes, sizeof(bytes), nullptr));
  if (bn == nullptr || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) {
    return SslError("setting the serial");
  }
  return absl::OkStatus();
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return SslError(absl::StrCat("extension ", value));
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  if (!ok) return SslError(absl::StrCat("adding extension ", value));
  return absl::OkStatus();
}

// A certificate for `subject_key` named `cn`, signed by `issuer_key` (self-signed when `issuer`
// is null), valid from `backdate` ago until `lifetime` from now.
absl::StatusOr<Owned<X509>> MakeCert(EVP_PKEY* subject_key, const std::string& cn, X509* issuer,
                                     EVP_PKEY* issuer_key, absl::Duration lifetime,
                                     absl::Duration backdate,
                                     const std::vector<std::pair<int, std::string>>& exts) {
  Owned<X509> cert(X509_new());
  if (cert == nullptr || X509_set_version(cert.get(), 2) != 1) return SslError("new certificate");
  if (absl::Status s = SetRandomSerial(cert.get()); !s.ok()) return s;
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -absl::ToInt64Seconds(backdate));
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), absl::ToInt64Seconds(lifetime));
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("sched"), -1, -1, 0);
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                 0) != 1) {
    return SslError("naming the certificate");
  }
  X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  if (X509_set_pubkey(cert.get(), subject_key) != 1) return SslError("setting the key");
  X509* signer = issuer != nullptr ? issuer : cert.get();
  for (const auto& [nid, value] : exts) {
    if (absl::Status s = AddExtension(cert.get(), signer, nid, value); !s.ok()) return s;
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) == 0) return SslError("signing");
  return cert;
}

absl::Time AsnTime(const ASN1_TIME* t) {
  struct tm tm = {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  return absl::FromTM(tm, absl::UTCTimeZone());
}

bool SignedBy(X509* cert, X509* ca) {
  EVP_PKEY* ca_key = X509_get0_pubkey(ca);
  const bool ok = ca_key != nullptr && X509_verify(cert, ca_key) == 1;
  ERR_clear_error();
  return ok;
}

// Whether `cert` names every one of `names` in its subject alternative names.
bool NamesAll(X509* cert, const std::vector<std::string>& names) {
  for (const std::string& n : names) {
    const bool ip = !n.empty() && (std::isdigit(static_cast<unsigned char>(n[0])) ||
                                   n.find(':') != std::string::npos);
    const int match = ip ? X509_check_ip_asc(cert, n.c_str(), 0)
                         : X509_check_host(cert, n.c_str(), n.size(), 0, nullptr);
    if (match != 1) return false;
  }
  return true;
}

std::string SanList(const std::vector<std::string>& names) {
  std::vector<std::string> parts;
  for (const std::string& n : names) {
    const bool ip = !n.empty() && (std::isdigit(static_cast<unsigned char>(n[0])) ||
                                   n.find(':') != std::string::npos);
    parts.push_back(absl::StrCat(ip ? "IP:" : "DNS:", n));
  }
  return absl::StrJoin(parts, ",");
}

// The names a server certificate must carry: `names`, and always localhost and 127.0.0.1.
std::vector<std::string> ServerNames(std::vector<std::string> names) {
  for (const char* always : {"localhost", "127.0.0.1"}) {
    if (std::find(names.begin(), names.end(), always) == names.end()) names.push_back(always);
  }
  names.erase(std::remove(names.begin(), names.end(), ""), names.end());
  return names;
}

absl::Status CheckName(absl::string_view what, absl::string_view n) {
  if (n.empty() || n.size() > 253 || !std::all_of(n.begin(), n.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' ||
               c == '_';
      })) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", n, "\" must be 1 to 253 letters, digits, '.', '-', '_' or ':'"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ReadCaBundle(const std::string& dir) {
  return ReadFile(fs::path(dir) / "ca.crt");
}

absl::StatusOr<std::string> CertificatePin(absl::string_view pem) {
  absl::StatusOr<Owned<X509>> cert = ParseCert(pem);
  if (!cert.ok()) return cert.status();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert->get(), EVP_sha256(), digest, &len) != 1) return SslError("pin");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return absl::StrCat("sha256:", hex);
}

absl::StatusOr<ServerTls> LoadOrCreateServerTls(const TlsOptions& options) {
  const fs::path dir(options.dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || chmod(dir.c_str(), 0700) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot make ", dir.string(), " (0700)"));
  }
  for (const std::string& n : options.names) {
    if (absl::Status s = CheckName("--tls_name", n); !s.ok()) return s;
  }
  // The CA.
  std::string ca_bundle;
  Owned<EVP_PKEY> ca_key;
  Owned<X509> ca;
  {
    absl::StatusOr<std::string> key_pem = ReadFile(dir / "ca.key");
    absl::StatusOr<std::string> cert_pem = ReadFile(dir / "ca.crt");
    if (key_pem.ok() != cert_pem.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "one of ca.key and ca.crt is missing in ", dir.string(),
          ": restore it from a backup, or move both away to make a new CA (every agent must "
          "then join again)"));
    }
    if (key_pem.ok() && !options.rotate_ca) {
      absl::StatusOr<Owned<EVP_PKEY>> k = ParseKey(*key_pem);
      absl::StatusOr<Owned<X509>> c = ParseCert(*cert_pem);
      if (!k.ok() || !c.ok()) {
        return absl::DataLossError(absl::StrCat("the CA in ", dir.string(), " does not parse"));
      }
      if (X509_check_private_key(c->get(), k->get()) != 1) {
        ERR_clear_error();
        return absl::DataLossError(absl::StrCat("ca.key does not match ca.crt in ", dir.string()));
      }
      ca_key = *std::move(k);
      ca = *std::move(c);
      ca_bundle = *cert_pem;
    } else {
      absl::StatusOr<Owned<EVP_PKEY>> k = NewKey();
      if (!k.ok()) return k.status();
      unsigned char id[4];
      RAND_bytes(id, sizeof(id));
      const std::string cn =
          absl::StrCat("sched CA ", absl::Hex(id[0] << 24 | id[1] << 16 | id[2] << 8 | id[3]));
      absl::StatusOr<Owned<X509>> c =
          MakeCert(k->get(), cn, nullptr, k->get(), kCaLifetime, absl::Hours(1),
                   // pathlen 1: room for the next CA's cross-signature under this one.
                   {{NID_basic_constraints, "critical,CA:TRUE,pathlen:1"},
                    {NID_key_usage, "critical,keyCertSign,cRLSign"},
                    {NID_subject_key_identifier, "hash"}});
      if (!c.ok()) return c.status();
      // After a rotation the old CA stays trusted for the agents' certificates it signed, and
      // the new CA is signed by the old one too (cross.crt, sent with the server certificate),
      // so agents and clients that trust only the old CA still trust this schedd.
      ca_bundle = CertPem(c->get());
      std::error_code gone;
      fs::remove(dir / "cross.crt", gone);
      if (cert_pem.ok()) {
        std::vector<Owned<X509>> old = ParseCerts(*cert_pem);
        absl::StatusOr<Owned<EVP_PKEY>> old_key = ParseKey(*key_pem);
        if (!old.empty() && old_key.ok()) {
          ca_bundle += CertPem(old.front().get());
          absl::StatusOr<Owned<X509>> cross =
              MakeCert(k->get(), cn, old.front().get(), old_key->get(), kCaLifetime, absl::Hours(1),
                       {{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                        {NID_key_usage, "critical,keyCertSign,cRLSign"},
                        {NID_subject_key_identifier, "hash"},
                        {NID_authority_key_identifier, "keyid"}});
          if (!cross.ok()) return cross.status();
          if (absl::Status s = WriteFile(dir / "cross.crt", CertPem(cross->get()), 0644); !s.ok()) {
            return s;
          }
        }
      }
      ca_key = *std::move(k);
      ca = *std::move(c);
      if (absl::Status s = WriteFile(dir / "ca.key", KeyPem(ca_key.get()), 0600); !s.ok()) {
        return s;
      }
      if (absl::Status s = WriteFile(dir / "ca.crt", ca_bundle, 0644); !s.ok()) return s;
    }
  }
  // The server certificate.
  const std::vector<std::string> names = ServerNames(options.names);
  ServerTls out;
  out.ca_pem = ca_bundle;
  absl::StatusOr<std::string> key_pem = ReadFile(dir / "server.key");
  absl::StatusOr<std::string> cert_pem = ReadFile(dir / "server.crt");
  bool fresh = false;
  if (key_pem.ok() && cert_pem.ok()) {
    absl::StatusOr<Owned<EVP_PKEY>> k = ParseKey(*key_pem);
    absl::StatusOr<Owned<X509>> c = ParseCert(*cert_pem);
    if (k.ok() && c.ok() && X509_check_private_key(c->get(), k->get()) == 1 &&
        SignedBy(c->get(), ca.get()) && NamesAll(c->get(), names)) {
      const absl::Time from = AsnTime(X509_get0_notBefore(c->get()));
      const absl::Time to = AsnTime(X509_get0_notAfter(c->get()));
      fresh = absl::Now() < to - (to - from) / 10;
    }
    ERR_clear_error();
  }
  if (!fresh) {
    absl::StatusOr<Owned<EVP_PKEY>> k = NewKey();
    if (!k.ok()) return k.status();
    absl::StatusOr<Owned<X509>> c =
        MakeCert(k->get(), "schedd", ca.get(), ca_key.get(), kServerCertLifetime, absl::Hours(1),
                 {{NID_basic_constraints, "critical,CA:FALSE"},
                  {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
                  {NID_ext_key_usage, "serverAuth"},
                  {NID_subject_alt_name, SanList(names)},
                  {NID_authority_key_identifier, "keyid"}});
    if (!c.ok()) return c.status();
    key_pem = KeyPem(k->get());
    // The chain: the current CA, or its cross-signature by the previous CA after a rotation
    // (clients that trust the new CA find it among their roots either way).
    std::string issuer = CertPem(ca.get());
    if (absl::StatusOr<std::string> cross = ReadFile(dir / "cross.crt"); cross.ok()) {
      absl::StatusOr<Owned<X509>> x = ParseCert(*cross);
      if (x.ok() && EVP_PKEY_eq(X509_get0_pubkey(x->get()), ca_key.get()) == 1) {
        issuer = *cross;
      }
      ERR_clear_error();
    }
    cert_pem = CertPem(c->get()) + issuer;
    if (absl::Status s = WriteFile(dir / "server.key", *key_pem, 0600); !s.ok()) return s;
    if (absl::Status s = WriteFile(dir / "server.crt", *cert_pem, 0644); !s.ok()) return s;
  }
  out.key_pem = *key_pem;
  out.cert_chain_pem = *cert_pem;
  absl::StatusOr<std::string> pin = CertificatePin(CertPem(ca.get()));
  if (!pin.ok()) return pin.status();
  out.pin = *pin;
  return out;
}

absl::StatusOr<KeyAndRequest> MakeNodeKeyAndRequest(absl::string_view node) {
  absl::StatusOr<Owned<EVP_PKEY>> key = NewKey();
  if (!key.ok()) return key.status();
  Owned<X509_REQ> req(X509_REQ_new());
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  const std::string cn = absl::StrCat("node:", node);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  if (X509_REQ_set_pubkey(req.get(), key->get()) != 1 ||
      X509_REQ_sign(req.get(), key->get(), EVP_sha256()) == 0) {
    return SslError("making the certificate request");
  }
  Owned<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(bio.get(), req.get());
  return KeyAndRequest{KeyPem(key->get()), BioText(bio.get())};
}

namespace {

// The request in `csr_pem`, if it parses, its signature verifies and its key is strong enough.
absl::StatusOr<Owned<X509_REQ>> ParseRequest(absl::string_view csr_pem) {
  if (csr_pem.size() > 16 * 1024) {
    return absl::InvalidArgumentError("the certificate request is over 16 KiB");
  }
  Owned<BIO> bio = MemBio(csr_pem);
  Owned<X509_REQ> req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (req == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("the certificate request is not a PEM CSR");
  }
  EVP_PKEY* key = X509_REQ_get0_pubkey(req.get());
  if (key == nullptr || X509_REQ_verify(req.get(), key) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("the certificate request's signature does not verify");
  }
  const int type = EVP_PKEY_get_base_id(key);
  const bool strong = (type == EVP_PKEY_EC && EVP_PKEY_get_bits(key) >= 256) ||
                      (type == EVP_PKEY_RSA && EVP_PKEY_get_bits(key) >= 2048);
  if (!strong) {
    return absl::InvalidArgumentError("the key must be EC P-256 or stronger, or RSA >= 2048");
  }
  return req;
}

}  // namespace

absl::Status CheckCertificateRequest(absl::string_view csr_pem) {
  return ParseRequest(csr_pem).status();
}

absl::StatusOr<std::string> SignNodeCertificate(const std::string& dir, absl::string_view csr_pem,
                                                absl::string_view node, absl::Duration lifetime) {
  if (absl::Status s = CheckName("node name", node); !s.ok()) return s;
  absl::StatusOr<Owned<X509_REQ>> req = ParseRequest(csr_pem);
  if (!req.ok()) return req.status();
  EVP_PKEY* key = X509_REQ_get0_pubkey(req->get());
  absl::StatusOr<std::string> ca_key_pem = ReadFile(fs::path(dir) / "ca.key");
  absl::StatusOr<std::string> ca_pem = ReadFile(fs::path(dir) / "ca.crt");
  if (!ca_key_pem.ok() || !ca_pem.ok()) {
    return absl::FailedPreconditionError("schedd has no CA (it runs without TLS)");
  }
  absl::StatusOr<Owned<EVP_PKEY>> ca_key = ParseKey(*ca_key_pem);
  absl::StatusOr<Owned<X509>> ca = ParseCert(*ca_pem);
  if (!ca_key.ok() || !ca.ok()) return absl::DataLossError("the CA does not parse");
  // The name is the one schedd checked (the join's or the renewing node's), never the request's.
  absl::StatusOr<Owned<X509>> cert = MakeCert(key, absl::StrCat("node:", node), ca->get(),
                                              ca_key->get(), lifetime, kNodeCertBackdate,
                                              {{NID_basic_constraints, "critical,CA:FALSE"},
                                               {NID_key_usage, "critical,digitalSignature"},
                                               {NID_ext_key_usage, "clientAuth"},
                                               {NID_authority_key_identifier, "keyid"}});
  if (!cert.ok()) return cert.status();
  return CertPem(cert->get());
}

absl::StatusOr<CertificateInfo> ReadCertificate(absl::string_view pem) {
  absl::StatusOr<Owned<X509>> cert = ParseCert(pem);
  if (!cert.ok()) return cert.status();
  CertificateInfo info;
  char cn[256] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert->get()), NID_commonName, cn, sizeof(cn));
  info.common_name = cn;
  Owned<BIGNUM> serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert->get()), nullptr));
  if (serial != nullptr) {
    char* hex = BN_bn2hex(serial.get());
    info.serial_hex = hex;
    OPENSSL_free(hex);
  }
  info.not_before = AsnTime(X509_get0_notBefore(cert->get()));
  info.not_after = AsnTime(X509_get0_notAfter(cert->get()));
  return info;
}

absl::Status VerifyCertificate(absl::string_view cert_pem, absl::string_view ca_pem,
                               absl::Time now) {
  std::vector<Owned<X509>> certs = ParseCerts(cert_pem);
  if (certs.empty()) return absl::UnauthenticatedError("not a certificate");
  Owned<X509_STORE> store(X509_STORE_new());
  for (Owned<X509>& ca : ParseCerts(ca_pem)) X509_STORE_add_cert(store.get(), ca.get());
  // The certificates after the first are the chain it came with (not trusted by themselves).
  std::unique_ptr<STACK_OF(X509), void (*)(STACK_OF(X509)*)> chain(
      sk_X509_new_null(), [](STACK_OF(X509) * s) { sk_X509_free(s); });
  for (size_t i = 1; i < certs.size(); ++i) sk_X509_push(chain.get(), certs[i].get());
  Owned<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), certs[0].get(), chain.get());
  X509_STORE_CTX_set_time(ctx.get(), 0, absl::ToTimeT(now));
  const int ok = X509_verify_cert(ctx.get());
  const int err = X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  if (ok != 1) {
    return absl::UnauthenticatedError(
        absl::StrCat("the certificate does not verify: ", X509_verify_cert_error_string(err)));
  }
  return absl::OkStatus();
}

std::string NodeFromCommonName(absl::string_view common_name) {
  if (!absl::ConsumePrefix(&common_name, "node:")) return "";
  return std::string(common_name);
}

}  // namespace sched::auth
