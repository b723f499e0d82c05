#include "server/daemon/daemon.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "prometheus/exposer.h"
#include "server/auth/auth.h"
#include "server/auth/channel.h"
#include "server/auth/tls.h"
#include "server/checkpoint/checkpoint_store.h"
#include "server/common/status_macros.h"
#include "server/core/job_spec_validation.h"
#include "server/cost/catalog_yaml.h"
#include "server/metrics/metrics.h"
#include "server/provision/autoscaler.h"
#include "server/service/admin_service.h"
#include "server/service/agent_service.h"
#include "server/service/checkpoint_service.h"
#include "server/service/cost_service.h"
#include "server/service/job_service.h"
#include "server/service/limits.h"
#include "server/service/node_service.h"
#include "server/service/token_service.h"
#include "server/store/rocksdb_store.h"

namespace sched {

absl::StatusOr<std::map<std::string, double>> ParseFairShare(absl::string_view text) {
  std::map<std::string, double> weights;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    item = absl::StripAsciiWhitespace(item);
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    const std::string project(absl::StripAsciiWhitespace(kv.first));
    double weight = 0;
    if (!IsValidName(project) || !absl::SimpleAtod(absl::StripAsciiWhitespace(kv.second), &weight) ||
        !(weight > 0) || weight > 1e6) {
      return absl::InvalidArgumentError(absl::StrCat(
          "fair_share: want project=weight pairs with weights above 0 (ml=2,research=1), got '",
          item, "'"));
    }
    if (!weights.emplace(project, weight).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("fair_share: project ", project, " is named twice"));
    }
  }
  return weights;
}

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(DaemonOptions options) {
  std::error_code ec;
  std::filesystem::create_directories(options.data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create data_dir ", options.data_dir, ": ", ec.message()));
  }
  RocksDbStoreOptions store_options;
  store_options.path = (std::filesystem::path(options.data_dir) / "store").string();
  store_options.sync = options.sync;
  SCHED_ASSIGN_OR_RETURN(std::unique_ptr<RocksDbStore> store,
                         RocksDbStore::Open(std::move(store_options)));
  std::unique_ptr<Daemon> d(new Daemon());
  d->owned_store_ = std::move(store);
  SCHED_RETURN_IF_ERROR(d->Init(std::move(options), d->owned_store_.get(), RealClock::Get()));
  return d;
}

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(DaemonOptions options, Store* store,
                                                      const Clock* clock) {
  std::unique_ptr<Daemon> d(new Daemon());
  SCHED_RETURN_IF_ERROR(d->Init(std::move(options), store, clock));
  return d;
}

bool IsLoopbackAddress(absl::string_view address) {
  if (absl::StartsWith(address, "unix:") || absl::StartsWith(address, "unix-abstract:")) {
    return true;
  }
  absl::string_view host = address;
  if (absl::StartsWith(host, "ipv4:")) host.remove_prefix(5);
  if (absl::StartsWith(host, "ipv6:")) host.remove_prefix(5);
  if (absl::StartsWith(host, "[")) {
    const size_t close = host.find(']');
    return close != absl::string_view::npos && host.substr(1, close - 1) == "::1";
  }
  host = host.substr(0, host.rfind(':'));
  if (host == "localhost") return true;
  // 127.a.b.c, all four parts numbers.
  std::vector<absl::string_view> parts = absl::StrSplit(host, '.');
  if (parts.size() != 4 || parts[0] != "127") return false;
  for (absl::string_view p : parts) {
    int n = -1;
    if (p.empty() || p.size() > 3 || !absl::SimpleAtoi(p, &n) || n < 0 || n > 255) return false;
  }
  return true;
}

absl::Status Daemon::Init(DaemonOptions options, Store* store, const Clock* clock) {
  options_ = std::move(options);
  const bool loopback = IsLoopbackAddress(options_.listen);
  if (options_.tls != "auto" && options_.tls != "on" && options_.tls != "off") {
    return absl::InvalidArgumentError(
        absl::StrCat("tls: \"", options_.tls, "\" is not auto, on or off"));
  }
  const bool tls = options_.tls == "on" || (options_.tls == "auto" && !loopback);
  if (!loopback && !tls) {
    if (!options_.insecure_remote) {
      return absl::FailedPreconditionError(absl::StrCat(
          "listen: ", options_.listen,
          " can be reached from other machines, and --tls=off: "
          "anyone who reaches it could read tokens off the wire, run code on every node and "
          "spend every budget. Drop --tls=off (TLS with schedd's own CA is the default beyond "
          "loopback), or pass --insecure_remote_no_tls_no_auth to accept that risk"));
    }
    std::fprintf(stderr,
                 "schedd: WARNING: listening on %s WITHOUT TLS OR AUTHENTICATION "
                 "(--insecure_remote_no_tls_no_auth): anyone who can reach this address can run "
                 "code on every node\n",
                 options_.listen.c_str());
  }
  SchedulerOptions so;
  so.lease_ttl = absl::Milliseconds(options_.lease_ttl_ms);
  so.heartbeat_interval = absl::Milliseconds(options_.heartbeat_interval_ms);
  so.restart_grace = absl::Milliseconds(options_.restart_grace_ms);
  so.max_attempts = options_.max_attempts;
  so.max_pending_per_project = options_.max_pending_per_project;
  so.max_log_bytes_per_job = options_.max_log_bytes_per_job;
  SCHED_ASSIGN_OR_RETURN(so.fair_share, ParseFairShare(options_.fair_share));
  if (options_.fair_share_half_life <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("fair_share_half_life: must be more than 0");
  }
  so.fair_share_half_life = options_.fair_share_half_life;
  if (!options_.catalog_path.empty()) {
    absl::StatusOr<cost::Catalog> catalog =
        cost::LoadCatalog(options_.catalog_path, options_.catalog_overrides);
    if (!catalog.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("catalog: ", catalog.status().message()));
    }
    so.catalog = std::make_shared<const cost::Catalog>(*std::move(catalog));
  }
  SCHED_ASSIGN_OR_RETURN(scheduler_, Scheduler::Create(so, store, clock));

  std::vector<ServerMetrics::ExtraCounter> extra;
  if (RocksDbStore* rocks = owned_store_.get()) {
    extra.push_back({"sched_store_batches_total", "Batches committed to the store.",
                     [rocks] { return static_cast<double>(rocks->batches_committed()); }});
    extra.push_back({"sched_store_syncs_total",
                     "Synced store writes; batches per sync is the group-commit factor.",
                     [rocks] { return static_cast<double>(rocks->syncs()); }});
  }
  metrics_ = std::make_unique<ServerMetrics>(scheduler_.get(), std::move(extra));
  SCHED_ASSIGN_OR_RETURN(tokens_, auth::TokenStore::Open(store, clock));
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (tls) {
    auth::TlsOptions tls_options;
    tls_options.dir = tls_dir();
    tls_options.names = options_.tls_names;
    tls_options.rotate_ca = options_.rotate_ca;
    SCHED_ASSIGN_OR_RETURN(auth::ServerTls server_tls, auth::LoadOrCreateServerTls(tls_options));
    SCHED_ASSIGN_OR_RETURN(identities_, auth::NodeIdentities::Open(store));
    ca_pin_ = server_tls.pin;
    ca_pem_ = server_tls.ca_pem;
    // Agents present their node certificates; clients with tokens present none.
    grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = server_tls.ca_pem;
    ssl.pem_key_cert_pairs.push_back({server_tls.key_pem, server_tls.cert_chain_pem});
    credentials = grpc::SslServerCredentials(ssl);
  }
  // Beyond loopback with TLS, tokens are always required.
  const bool require_tokens = options_.require_tokens || (!loopback && tls);
  require_tokens_ = require_tokens;
  if (require_tokens) SCHED_RETURN_IF_ERROR(WriteFirstAdminToken());
  const std::string audit_path =
      options_.audit_log.empty() ? (std::filesystem::path(options_.data_dir) / "audit.log").string()
                                 : (options_.audit_log == "none" ? "" : options_.audit_log);
  if (!audit_path.empty()) {
    std::error_code made_dir;
    std::filesystem::create_directories(std::filesystem::path(audit_path).parent_path(), made_dir);
  }
  SCHED_ASSIGN_OR_RETURN(audit_, auth::AuditLog::Open(audit_path));
  authorizer_ =
      std::make_unique<auth::Authorizer>(tokens_.get(), require_tokens, identities_.get());
  authorizer_->set_audit(audit_.get());
  token_service_ = std::make_unique<TokenServiceImpl>(tokens_.get(), authorizer_.get(), ca_pin_);
  stream_slots_ = std::make_unique<StreamSlots>(options_.max_open_streams);
  submit_rate_ = std::make_unique<SubmitRate>(options_.submit_rate_per_project, clock);
  ServiceLimits limits;
  limits.streams = stream_slots_.get();
  limits.submits = submit_rate_.get();
  limits.max_spec_bytes = options_.max_spec_bytes;
  job_service_ = std::make_unique<JobServiceImpl>(scheduler_.get(), authorizer_.get(), limits);
  AgentServiceOptions agent_options;
  agent_options.identities = identities_.get();
  agent_options.tls_dir = tls ? tls_dir() : "";
  agent_options.clock = clock;
  agent_options.node_cert_lifetime = options_.node_cert_lifetime;
  agent_options.streams = stream_slots_.get();
  agent_service_ =
      std::make_unique<AgentServiceImpl>(scheduler_.get(), authorizer_.get(), agent_options);
  node_service_ = std::make_unique<NodeServiceImpl>(
      scheduler_.get(), authorizer_.get(), agent_service_->streams(), identities_.get(), clock);
  cost_service_ = std::make_unique<CostServiceImpl>(scheduler_.get(), authorizer_.get());
  CheckpointStoreOptions checkpoint_options;
  checkpoint_options.root = (std::filesystem::path(options_.data_dir) / "checkpoints").string();
  checkpoint_options.keep_per_job = std::max<size_t>(options_.checkpoint_keep, 1);
  checkpoint_options.max_checkpoint_bytes = options_.max_checkpoint_bytes;
  checkpoint_options.max_project_bytes = options_.max_checkpoint_bytes_per_project;
  SCHED_ASSIGN_OR_RETURN(checkpoints_, CheckpointStore::Open(std::move(checkpoint_options), store));
  checkpoint_service_ = std::make_unique<CheckpointServiceImpl>(
      scheduler_.get(), checkpoints_.get(), authorizer_.get());
  admin_service_ = std::make_unique<AdminServiceImpl>(scheduler_.get(), store,
                                                      authorizer_.get(), options_.data_dir);
  {
    CheckpointServiceImpl* checkpoints = checkpoint_service_.get();
    metrics_->AddFamily([checkpoints] {
      const CheckpointServiceImpl::UploadCounts n = checkpoints->Uploads();
      return ServerMetrics::MakeFamily(
          "sched_checkpoint_uploads_total",
          "Checkpoint uploads schedd committed (ok) or refused or failed (failed).",
          prometheus::MetricType::Counter,
          {{static_cast<double>(n.ok), {{"result", "ok"}}},
           {static_cast<double>(n.failed), {{"result", "failed"}}}});
    });
    const std::string data_dir = options_.data_dir;
    metrics_->AddFamily([data_dir] {
      struct statvfs fs {};
      const bool known = statvfs(data_dir.c_str(), &fs) == 0;
      // Left out, not 0, when the filesystem cannot be read: 0 would read as a full disk.
      std::vector<ServerMetrics::LabeledValue> free;
      if (known) free.push_back({static_cast<double>(fs.f_bavail) * fs.f_frsize, {}});
      return ServerMetrics::MakeFamily(
          "sched_store_disk_free_bytes",
          "Bytes free to schedd on the filesystem holding its data folder.",
          prometheus::MetricType::Gauge, std::move(free));
    });
    metrics_->AddFamily([data_dir] {
      struct statvfs fs {};
      const bool known = statvfs(data_dir.c_str(), &fs) == 0;
      std::vector<ServerMetrics::LabeledValue> size;
      if (known) size.push_back({static_cast<double>(fs.f_blocks) * fs.f_frsize, {}});
      return ServerMetrics::MakeFamily("sched_store_disk_size_bytes",
                                       "Size of the filesystem holding schedd's data folder.",
                                       prometheus::MetricType::Gauge, std::move(size));
    });
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen, credentials, &port_);
  builder.RegisterService(job_service_.get());
  builder.RegisterService(agent_service_.get());
  builder.RegisterService(node_service_.get());
  builder.RegisterService(cost_service_.get());
  builder.RegisterService(checkpoint_service_.get());
  builder.RegisterService(token_service_.get());
  builder.RegisterService(admin_service_.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(options_.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options_.max_message_bytes));
  // Agents keep one stream open for hours: keepalive finds dead peers behind NATs.
  // The same schedule the agent keeps (auth/channel.h), with room for its pings.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, auth::kKeepaliveTimeMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, auth::kKeepaliveTimeoutMs);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             auth::kMinPingIntervalMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options_.max_streams_per_connection);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(metrics_->InterceptorFactory());
  builder.experimental().SetInterceptorCreators(std::move(creators));
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.listen));
  }
  if (!options_.metrics_listen.empty()) {
    try {
      exposer_ = std::make_unique<prometheus::Exposer>(options_.metrics_listen);
    } catch (const std::exception& e) {
      server_->Shutdown();
      return absl::UnavailableError(
          absl::StrCat("cannot serve metrics on ", options_.metrics_listen, ": ", e.what()));
    }
    exposer_->RegisterCollectable(metrics_->registry());
    exposer_->RegisterCollectable(metrics_->scheduler_collector());
  }
  if (!options_.autoscale_config.empty()) SCHED_RETURN_IF_ERROR(StartAutoscaler(clock));
  ticker_ = std::thread([this] {
    const absl::Duration every = absl::Milliseconds(options_.tick_interval_ms);
    while (!stop_.WaitForNotificationWithTimeout(every)) scheduler_->Tick();
  });
  return absl::OkStatus();
}

absl::Status Daemon::StartAutoscaler(const Clock* clock) {
  SCHED_ASSIGN_OR_RETURN(provision::AutoscaleConfig config,
                         provision::LoadAutoscaleConfig(options_.autoscale_config));
  provision::Autoscaler::Deps deps;
  deps.scheduler = scheduler_.get();
  deps.clock = clock;
  deps.catalog = scheduler_->options().catalog.get();
  deps.ca_pin = ca_pin_;
  deps.registry = metrics_->registry();
  // What agents of rented nodes dial, unless the config says: the address schedd serves, with
  // a wildcard host made this machine's loopback (remote providers need schedd_address).
  std::string host = options_.listen.substr(0, options_.listen.rfind(':'));
  if (host == "0.0.0.0" || host == "[::]" || host.empty()) {
    if (config.schedd_address.empty()) {
      std::fprintf(stderr,
                   "schedd: autoscaler: schedd_address not set; rented nodes are told to dial "
                   "127.0.0.1:%d, which only works for nodes on this machine\n",
                   port_);
    }
    host = "127.0.0.1";
  }
  deps.schedd_address = absl::StrCat(host, ":", port_);
  if (require_tokens_) {
    auth::TokenStore* tokens = tokens_.get();
    const bool tls = !ca_pin_.empty();
    deps.join_token = [tokens, tls](const std::string& node,
                                    absl::Duration ttl) -> absl::StatusOr<std::string> {
      v1::CreateTokenRequest req;
      req.set_role(v1::ROLE_AGENT);
      // With TLS the token is spent once, on the join, for a node certificate: it need not
      // outlive the provisioning. Without TLS the agent presents it on every call.
      if (tls) req.mutable_ttl()->set_seconds(absl::ToInt64Seconds(ttl));
      req.set_uses(1);
      req.set_description(absl::StrCat("join token of rented node ", node));
      SCHED_ASSIGN_OR_RETURN(v1::CreateTokenResponse made, tokens->Create(req, "autoscaler"));
      return made.secret();
    };
  }
  autoscaler_ = std::make_unique<provision::Autoscaler>(std::move(config), std::move(deps));
  autoscaler_->Start();
  return absl::OkStatus();
}

std::string Daemon::tls_dir() const {
  return (std::filesystem::path(options_.data_dir) / "tls").string();
}

std::string Daemon::admin_token_path() const {
  return (std::filesystem::path(options_.data_dir) / "admin.token").string();
}

absl::Status Daemon::WriteFirstAdminToken() {
  if (tokens_->HasAdmin()) return absl::OkStatus();
  v1::CreateTokenRequest req;
  req.set_role(v1::ROLE_ADMIN);
  req.set_description("first admin token, made at start");
  SCHED_ASSIGN_OR_RETURN(v1::CreateTokenResponse made, tokens_->Create(req, "bootstrap"));
  const std::string path = admin_token_path();
  const std::string tmp = path + ".tmp";
  std::error_code made_dir;
  std::filesystem::create_directories(options_.data_dir, made_dir);
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot write ", tmp, ": ", std::strerror(errno)));
  }
  const std::string line = made.secret() + "\n";
  const bool ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
                  fchmod(fd, 0600) == 0 && fsync(fd) == 0;
  close(fd);
  std::error_code ec;
  if (ok) std::filesystem::rename(tmp, path, ec);
  if (!ok || ec) {
    std::filesystem::remove(tmp, ec);
    return absl::FailedPreconditionError(absl::StrCat("cannot write ", path));
  }
  std::fprintf(stderr, "schedd: made the first admin token %s: its secret is in %s (mode 0600)\n",
               made.token().id().c_str(), path.c_str());
  return absl::OkStatus();
}

int Daemon::metrics_port() const {
  if (!exposer_) return 0;
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

void Daemon::Wait() { stop_.WaitForNotification(); }

void Daemon::Shutdown() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
}

Daemon::~Daemon() {
  Shutdown();
  if (ticker_.joinable()) ticker_.join();
  autoscaler_.reset();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  exposer_.reset();
  checkpoint_service_.reset();
  admin_service_.reset();
  checkpoints_.reset();
  scheduler_.reset();  // waits for in-flight store callbacks
  owned_store_.reset();
}

}  // namespace sched
