// schedd's CA: made once with safe permissions, reused, server certificate remade when names
// change, rotation, node certificates from requests, and the certificates that must not verify.
#include "server/auth/tls.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"

namespace sched::auth {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string Read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

mode_t Mode(const fs::path& p) {
  struct stat st;
  EXPECT_EQ(stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 0777;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = fs::path(testing::MakeTempDir("sched_tls_")) / "tls"; }
  void TearDown() override { fs::remove_all(dir_.parent_path()); }
  TlsOptions Options(std::vector<std::string> names = {}) {
    TlsOptions o;
    o.dir = dir_.string();
    o.names = std::move(names);
    return o;
  }
  fs::path dir_;
};

TEST_F(TlsTest, FirstStartMakesACaAndAServerCertificateWithSafePermissions) {
  absl::StatusOr<ServerTls> tls = LoadOrCreateServerTls(Options({"schedd.example", "10.0.0.7"}));
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_EQ(Mode(dir_), 0700u);
  EXPECT_EQ(Mode(dir_ / "ca.key"), 0600u);
  EXPECT_EQ(Mode(dir_ / "server.key"), 0600u);
  EXPECT_EQ(Mode(dir_ / "ca.crt"), 0644u);
  EXPECT_THAT(tls->pin, StartsWith("sha256:"));
  EXPECT_EQ(tls->pin.size(), 7u + 64u);
  EXPECT_EQ(*CertificatePin(Read(dir_ / "ca.crt")), tls->pin);
  EXPECT_TRUE(VerifyCertificate(tls->cert_chain_pem, tls->ca_pem, absl::Now()).ok());
  absl::StatusOr<CertificateInfo> info = ReadCertificate(tls->cert_chain_pem);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->common_name, "schedd");
  EXPECT_GT(info->not_after, absl::Now() + absl::Hours(24 * 360));
  // The names: asked for, and always localhost and 127.0.0.1.
  const std::string text = Read(dir_ / "server.crt");
  EXPECT_EQ(text, tls->cert_chain_pem);
  EXPECT_EQ(Read(dir_ / "server.key"), tls->key_pem);
  EXPECT_THAT(tls->key_pem, HasSubstr("PRIVATE KEY"));
}

TEST_F(TlsTest, ALaterStartReusesThemAndANewNameRemakesOnlyTheServerCertificate) {
  absl::StatusOr<ServerTls> first = LoadOrCreateServerTls(Options({"a.example"}));
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<ServerTls> again = LoadOrCreateServerTls(Options({"a.example"}));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->pin, first->pin);
  EXPECT_EQ(again->cert_chain_pem, first->cert_chain_pem);
  EXPECT_EQ(again->key_pem, first->key_pem);
  absl::StatusOr<ServerTls> more = LoadOrCreateServerTls(Options({"a.example", "b.example"}));
  ASSERT_TRUE(more.ok());
  EXPECT_EQ(more->pin, first->pin);
  EXPECT_NE(more->cert_chain_pem, first->cert_chain_pem);
  EXPECT_TRUE(VerifyCertificate(more->cert_chain_pem, first->ca_pem, absl::Now()).ok());
}

TEST_F(TlsTest, RotationMakesANewCaAndKeepsTrustingTheOldOnesNodeCertificates) {
  absl::StatusOr<ServerTls> first = LoadOrCreateServerTls(Options());
  ASSERT_TRUE(first.ok());
  absl::StatusOr<KeyAndRequest> kr = MakeNodeKeyAndRequest("gpu-1");
  ASSERT_TRUE(kr.ok());
  absl::StatusOr<std::string> old_node = SignNodeCertificate(dir_.string(), kr->csr_pem, "gpu-1");
  ASSERT_TRUE(old_node.ok()) << old_node.status();

  TlsOptions rotate = Options();
  rotate.rotate_ca = true;
  absl::StatusOr<ServerTls> rotated = LoadOrCreateServerTls(rotate);
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_NE(rotated->pin, first->pin);
  EXPECT_EQ(*CertificatePin(rotated->ca_pem), rotated->pin) << "the new CA comes first";
  // The server certificate is from the new CA, and verifies for those who trust it...
  EXPECT_TRUE(VerifyCertificate(rotated->cert_chain_pem, rotated->ca_pem, absl::Now()).ok());
  // ...and, through the new CA's cross-signature it is sent with, for those who still trust
  // only the old one (running agents, schedctl with the old ca.crt).
  EXPECT_TRUE(VerifyCertificate(rotated->cert_chain_pem, first->ca_pem, absl::Now()).ok());
  EXPECT_TRUE(fs::exists(dir_ / "cross.crt"));
  const std::string leaf_only =
      rotated->cert_chain_pem.substr(0, rotated->cert_chain_pem.find("-----END CERTIFICATE-----") +
                                            std::string("-----END CERTIFICATE-----\n").size());
  EXPECT_FALSE(VerifyCertificate(leaf_only, first->ca_pem, absl::Now()).ok());
  EXPECT_TRUE(VerifyCertificate(leaf_only, rotated->ca_pem, absl::Now()).ok());
  // An agent's certificate from the old CA still verifies until it renews...
  EXPECT_TRUE(VerifyCertificate(*old_node, rotated->ca_pem, absl::Now()).ok());
  // ...and after a second rotation it no longer does: only one previous CA is kept.
  ASSERT_TRUE(LoadOrCreateServerTls(rotate).ok());
  EXPECT_FALSE(VerifyCertificate(*old_node, Read(dir_ / "ca.crt"), absl::Now()).ok());
}

TEST_F(TlsTest, NodeCertificatesNameTheNodeSchedGaveAndExpire) {
  absl::StatusOr<ServerTls> tls = LoadOrCreateServerTls(Options());
  ASSERT_TRUE(tls.ok());
  // The request asks for another name: the certificate carries the one schedd chose.
  absl::StatusOr<KeyAndRequest> kr = MakeNodeKeyAndRequest("someone-else");
  ASSERT_TRUE(kr.ok());
  absl::StatusOr<std::string> cert = SignNodeCertificate(dir_.string(), kr->csr_pem, "gpu-1");
  ASSERT_TRUE(cert.ok()) << cert.status();
  absl::StatusOr<CertificateInfo> info = ReadCertificate(*cert);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->common_name, "node:gpu-1");
  EXPECT_EQ(NodeFromCommonName(info->common_name), "gpu-1");
  EXPECT_EQ(NodeFromCommonName("schedd"), "");
  EXPECT_TRUE(VerifyCertificate(*cert, tls->ca_pem, absl::Now()).ok());
  const absl::Status expired =
      VerifyCertificate(*cert, tls->ca_pem, absl::Now() + kNodeCertLifetime + absl::Hours(1));
  EXPECT_EQ(expired.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(expired.message(), HasSubstr("expired"));
  // Another CA's: refused.
  const fs::path other = dir_.parent_path() / "other";
  TlsOptions o;
  o.dir = other.string();
  absl::StatusOr<ServerTls> stranger = LoadOrCreateServerTls(o);
  ASSERT_TRUE(stranger.ok());
  EXPECT_EQ(VerifyCertificate(*cert, stranger->ca_pem, absl::Now()).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(TlsTest, BadRequestsAreRefused) {
  ASSERT_TRUE(LoadOrCreateServerTls(Options()).ok());
  EXPECT_EQ(SignNodeCertificate(dir_.string(), "garbage", "gpu-1").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SignNodeCertificate(dir_.string(), std::string(20000, 'x'), "gpu-1").status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<KeyAndRequest> kr = MakeNodeKeyAndRequest("gpu-1");
  ASSERT_TRUE(kr.ok());
  EXPECT_EQ(SignNodeCertificate(dir_.string(), kr->csr_pem, "../x").status().code(),
            absl::StatusCode::kInvalidArgument);
  // A request signed with a weak key.
  EVP_PKEY* weak = EVP_RSA_gen(1024);
  ASSERT_NE(weak, nullptr);
  X509_REQ* req = X509_REQ_new();
  X509_REQ_set_pubkey(req, weak);
  X509_REQ_sign(req, weak, EVP_sha256());
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509_REQ(bio, req);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  const std::string weak_csr(data, n);
  BIO_free(bio);
  X509_REQ_free(req);
  EVP_PKEY_free(weak);
  const absl::Status s = SignNodeCertificate(dir_.string(), weak_csr, "gpu-1").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("RSA >= 2048"));
  // A bad name for the server certificate.
  EXPECT_EQ(LoadOrCreateServerTls(Options({"bad name"})).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(TlsTest, AHalfMissingCaStopsStartWithAClearMessage) {
  ASSERT_TRUE(LoadOrCreateServerTls(Options()).ok());
  fs::remove(dir_ / "ca.key");
  const absl::Status s = LoadOrCreateServerTls(Options()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("ca.key and ca.crt"));
  EXPECT_TRUE(fs::exists(dir_ / "ca.crt")) << "nothing is overwritten";
}

}  // namespace
}  // namespace sched::auth
