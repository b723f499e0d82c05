#include "server/auth/channel.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <fstream>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "grpcpp/support/client_interceptor.h"
#include "server/auth/tls.h"

namespace sched::auth {
namespace {

// Adds the token to every call's initial metadata.
class TokenInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit TokenInterceptor(const std::string* header) : header_(header) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"authorization", *header_});
    }
    methods->Proceed();
  }

 private:
  const std::string* const header_;
};

class TokenInterceptorFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(const std::string& token)
      : header_(absl::StrCat("Bearer ", token)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    return new TokenInterceptor(&header_);
  }

 private:
  const std::string header_;  // lives as long as the channel, which owns the factory
};

}  // namespace

std::shared_ptr<grpc::Channel> Dial(const std::string& address, const DialOptions& options,
                                    grpc::ChannelArguments args) {
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!options.cert_file.empty()) {
    auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        options.key_file, options.cert_file, options.ca_file, /*refresh_interval_sec=*/60);
    grpc::experimental::TlsChannelCredentialsOptions tls;
    tls.set_certificate_provider(provider);
    tls.watch_root_certs();
    tls.watch_identity_key_cert_pairs();
    tls.set_certificate_verifier(
        std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
    creds = grpc::experimental::TlsCredentials(tls);
  } else if (!options.ca_pem.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.ca_pem;
    creds = grpc::SslCredentials(ssl);
  }
  if (options.token.empty()) return grpc::CreateCustomChannel(address, creds, args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<TokenInterceptorFactory>(options.token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(address, creds, args,
                                                                 std::move(factories));
}

absl::StatusOr<std::vector<std::string>> FetchServerCertificates(const std::string& address,
                                                                 absl::Duration timeout) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return absl::InternalError("no TLS context");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);  // checked against the pin by the caller
  SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>("\x02h2"), 3);
  BIO* bio = BIO_new_ssl_connect(ctx);
  SSL_CTX_free(ctx);  // the BIO holds its own reference
  if (bio == nullptr) return absl::InternalError("no TLS connection");
  std::unique_ptr<BIO, decltype(&BIO_free_all)> owned(bio, &BIO_free_all);
  BIO_set_conn_hostname(bio, address.c_str());
  SSL* ssl = nullptr;
  BIO_get_ssl(bio, &ssl);
  const std::string host = address.substr(0, address.rfind(':'));
  SSL_set_tlsext_host_name(ssl, host.c_str());
  BIO_set_nbio(bio, 0);
  // Bounded by a socket timeout once connected; the connect itself uses the system's.
  if (BIO_do_connect(bio) <= 0) {
    ERR_clear_error();
    return absl::UnavailableError(absl::StrCat("cannot reach ", address));
  }
  const int fd = static_cast<int>(BIO_get_fd(bio, nullptr));
  struct timeval tv;
  tv.tv_sec = absl::ToInt64Seconds(timeout);
  tv.tv_usec = 0;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (BIO_do_handshake(bio) <= 0) {
    ERR_clear_error();
    return absl::UnavailableError(absl::StrCat("no TLS handshake with ", address));
  }
  std::vector<std::string> out;
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
  for (int i = 0; chain != nullptr && i < sk_X509_num(chain); ++i) {
    BIO* mem = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(mem, sk_X509_value(chain, i));
    char* data = nullptr;
    const long n = BIO_get_mem_data(mem, &data);
    out.emplace_back(data, n);
    BIO_free(mem);
  }
  if (out.empty()) return absl::UnavailableError(absl::StrCat(address, " sent no certificate"));
  return out;
}

absl::StatusOr<std::string> CertificateWithPin(const std::vector<std::string>& chain,
                                               const std::string& pin) {
  for (const std::string& pem : chain) {
    absl::StatusOr<std::string> p = CertificatePin(pem);
    if (p.ok() && *p == pin) return pem;
  }
  return absl::UnauthenticatedError(
      absl::StrCat("no certificate schedd presented has the pin ", pin,
                   ": the address reaches something else, or the pin is wrong"));
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the token file ", path));
  std::string line;
  std::getline(in, line);
  const std::string token(absl::StripAsciiWhitespace(line));
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat(path, " holds no token"));
  return token;
}

}  // namespace sched::auth
