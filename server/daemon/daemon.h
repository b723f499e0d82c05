#pragma once

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/core/scheduler.h"
#include "server/core/store.h"

namespace grpc {
class Server;
}
namespace prometheus {
class Exposer;
}

namespace sched {

class JobServiceImpl;
class AgentServiceImpl;
class NodeServiceImpl;
class CostServiceImpl;
class CheckpointServiceImpl;
class AdminServiceImpl;
class TokenServiceImpl;
class StreamSlots;
class SubmitRate;
namespace auth {
class TokenStore;
class Authorizer;
class NodeIdentities;
class AuditLog;
}  // namespace auth
class CheckpointStore;
class ServerMetrics;
namespace provision {
class Autoscaler;
}
class RocksDbStore;

struct DaemonOptions {
  // Folder of the embedded store; created if missing. Ignored when a Store is handed in.
  std::string data_dir = "./sched-data";
  // gRPC address; port 0 picks a free one (see Daemon::port()). Beyond loopback (127.0.0.0/8,
  // localhost, [::1], unix sockets) schedd serves TLS and requires tokens (see `tls`).
  std::string listen = "127.0.0.1:7070";
  bool insecure_remote = false;
  // Every call must present an API token (TokenService). On by itself when `listen` is beyond
  // loopback (unless insecure_remote). With no admin token yet, one is made and written to
  // <data_dir>/admin.token (0600).
  bool require_tokens = false;
  // TLS with schedd's own CA (<data_dir>/tls, made on first start): "auto" (on when `listen` is
  // beyond loopback), "on" or "off". With TLS, tokens are required beyond loopback and agents
  // join for a node certificate.
  std::string tls = "auto";
  // Host names and addresses the server certificate names besides localhost and 127.0.0.1.
  std::vector<std::string> tls_names;
  // Make a new CA at start (the previous one stays trusted for agents' certificates).
  bool rotate_ca = false;
  // Who did what (server/auth/audit.h), one JSON line each: empty is <data_dir>/audit.log,
  // "none" keeps none.
  std::string audit_log;
  // How long a node certificate is good for; agents renew it with a third left.
  absl::Duration node_cert_lifetime = absl::Hours(24 * 30);
  // Prometheus /metrics address; empty: no metrics endpoint.
  std::string metrics_listen = "127.0.0.1:7071";
  int64_t lease_ttl_ms = 10'000;
  int64_t heartbeat_interval_ms = 2'000;
  int64_t restart_grace_ms = 10'000;
  int64_t tick_interval_ms = 100;
  uint32_t max_attempts = 10;
  uint64_t max_pending_per_project = 1'000'000;        // 0: no limit
  uint64_t max_log_bytes_per_job = uint64_t{1} << 30;  // 0: no limit
  // Weighted fair share of the user's own machines: "ml=2,research=1" (SchedulerOptions::
  // fair_share); empty: off. A bad list stops schedd with the reason.
  std::string fair_share;
  absl::Duration fair_share_half_life = absl::Hours(1);
  int64_t max_message_bytes = 16 << 20;
  // Sync the store's WAL before acknowledging. Off only for benchmarks that say so.
  bool sync = true;
  // The GPU/provider catalog (deploy/catalog/catalog.yaml) and files merged over it; empty:
  // none, and runtimes are not scaled by GPU speed. A catalog that does not load stops schedd.
  std::string catalog_path;
  std::vector<std::string> catalog_overrides;
  // Checkpoints: chunks under <data_dir>/checkpoints (also when a Store is handed in), the
  // newest `checkpoint_keep` of each job kept, none bigger than max_checkpoint_bytes.
  size_t checkpoint_keep = 3;
  uint64_t max_checkpoint_bytes = uint64_t{64} << 30;
  uint64_t max_checkpoint_bytes_per_project = uint64_t{1} << 40;  // 0: no limit
  // A project's submits per second, with a second's worth in a burst; 0: no limit.
  double submit_rate_per_project = 0;
  // A job spec's encoded size.
  size_t max_spec_bytes = 1 << 20;
  // Streams that stay open (WatchJobs, GetJobLogs, agents' Connect), all callers together, and
  // concurrent calls on one connection.
  int64_t max_open_streams = 20'000;
  int max_streams_per_connection = 1'000;
  // The autoscaler's YAML file (docs/autoscaling.md): providers to rent nodes from, and the
  // caps on what is rented. Empty: no autoscaler.
  std::string autoscale_config;
};

// True for an address only this machine can reach: 127.0.0.0/8, localhost, [::1], unix:...
bool IsLoopbackAddress(absl::string_view address);

// "ml=2,research=1" → {ml: 2, research: 1} (DaemonOptions::fair_share); INVALID_ARGUMENT
// naming the bad item: a project name that is not one, a weight not above 0 (or above 10^6), a
// project named twice. Empty: none.
absl::StatusOr<std::map<std::string, double>> ParseFairShare(absl::string_view text);

// schedd in one object: store, scheduler, gRPC services (with health and reflection), metrics
// and the tick timer. main.cc and the in-process cluster tests both use it.
class Daemon {
 public:
  // Opens the RocksDB store under options.data_dir.
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(DaemonOptions options);
  // Runs on a store the caller owns (it must outlive the Daemon), e.g. a MemoryStore.
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(DaemonOptions options, Store* store,
                                                       const Clock* clock);
  // Stops serving, then closes the store.
  ~Daemon();

  int port() const { return port_; }
  int metrics_port() const;
  Scheduler* scheduler() const { return scheduler_.get(); }
  CheckpointStore* checkpoints() const { return checkpoints_.get(); }
  auth::TokenStore* tokens() const { return tokens_.get(); }
  auth::AuditLog* audit() const { return audit_.get(); }
  // Null without an autoscale config.
  provision::Autoscaler* autoscaler() const { return autoscaler_.get(); }
  // Where the first admin token was written, when tokens are required.
  std::string admin_token_path() const;
  // Serving TLS: the CA's pin ("sha256:<hex>") and certificates (PEM). Empty without TLS.
  const std::string& ca_pin() const { return ca_pin_; }
  const std::string& ca_pem() const { return ca_pem_; }
  std::string tls_dir() const;
  // Blocks until Shutdown().
  void Wait();
  void Shutdown();

 private:
  Daemon() = default;
  absl::Status Init(DaemonOptions options, Store* store, const Clock* clock);
  absl::Status WriteFirstAdminToken();
  absl::Status StartAutoscaler(const Clock* clock);

  DaemonOptions options_;
  std::unique_ptr<RocksDbStore> owned_store_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<auth::AuditLog> audit_;
  std::unique_ptr<StreamSlots> stream_slots_;
  std::unique_ptr<SubmitRate> submit_rate_;
  std::unique_ptr<auth::TokenStore> tokens_;
  std::unique_ptr<auth::Authorizer> authorizer_;
  std::unique_ptr<auth::NodeIdentities> identities_;
  std::string ca_pin_, ca_pem_;
  std::unique_ptr<TokenServiceImpl> token_service_;
  std::unique_ptr<JobServiceImpl> job_service_;
  std::unique_ptr<AgentServiceImpl> agent_service_;
  std::unique_ptr<NodeServiceImpl> node_service_;
  std::unique_ptr<CostServiceImpl> cost_service_;
  std::unique_ptr<CheckpointStore> checkpoints_;
  std::unique_ptr<CheckpointServiceImpl> checkpoint_service_;
  std::unique_ptr<AdminServiceImpl> admin_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::unique_ptr<provision::Autoscaler> autoscaler_;
  bool require_tokens_ = false;
  int port_ = 0;
  absl::Notification stop_;
  std::thread ticker_;
};

}  // namespace sched
