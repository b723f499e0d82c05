#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "sched/v1/agent_service.grpc.pb.h"
#include "server/auth/auth.h"
#include "server/core/scheduler.h"
#include "server/service/limits.h"
#include "server/service/stream_sender.h"

namespace sched {

// The agent streams open now, by node, so a revoked node can be cut off at once.
class AgentStreams {
 public:
  using Sender = StreamSender<v1::ServerMessage>;
  void Add(const std::string& node, const std::shared_ptr<Sender>& sender);
  void Remove(const std::string& node, const Sender* sender);
  // Ends every stream of `node` with `status`: how many there were.
  int CutOff(const std::string& node, const grpc::Status& status);

 private:
  absl::Mutex mu_;
  std::multimap<std::string, std::weak_ptr<Sender>> live_ ABSL_GUARDED_BY(mu_);
};

struct AgentServiceOptions {
  // Serving TLS: where the CA is (auth/tls.h), and the node certificates it signed. Null / empty
  // without TLS: Join and RenewCertificate answer FAILED_PRECONDITION.
  auth::NodeIdentities* identities = nullptr;
  std::string tls_dir;
  const Clock* clock = nullptr;
  absl::Duration node_cert_lifetime = absl::Hours(24 * 30);
  // Each Connect stream takes a place while it is open; null: no cap.
  StreamSlots* streams = nullptr;
};

// sched.v1.AgentService: one bidirectional Connect stream per agent, opened by the agent; and
// over TLS, the node certificates agents join with.
class AgentServiceImpl final : public v1::AgentService::CallbackService {
 public:
  AgentServiceImpl(Scheduler* scheduler, auth::Authorizer* auth, AgentServiceOptions options = {})
      : scheduler_(scheduler), auth_(auth), options_(std::move(options)) {}

  grpc::ServerBidiReactor<v1::AgentMessage, v1::ServerMessage>* Connect(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* Join(grpc::CallbackServerContext* ctx, const v1::JoinRequest* req,
                                 v1::NodeCertificate* resp) override;
  grpc::ServerUnaryReactor* RenewCertificate(grpc::CallbackServerContext* ctx,
                                             const v1::RenewCertificateRequest* req,
                                             v1::NodeCertificate* resp) override;

  AgentStreams* streams() { return &streams_; }

 private:
  // Signs `csr_pem` for `node` and records the certificate.
  absl::Status Issue(const std::string& node, const std::string& csr_pem,
                     const std::map<std::string, std::string>& labels, v1::NodeCertificate* resp);

  Scheduler* const scheduler_;
  auth::Authorizer* const auth_;
  const AgentServiceOptions options_;
  AgentStreams streams_;
};

}  // namespace sched
