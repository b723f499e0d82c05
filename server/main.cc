// schedd: the central daemon. Flags fill DaemonOptions; everything else is in sched_daemon.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "server/common/failpoint.h"
#include "server/common/memory.h"
#include "server/daemon/daemon.h"

ABSL_FLAG(std::string, data_dir, "./sched-data", "Folder of the embedded store.");
ABSL_FLAG(std::string, listen, "127.0.0.1:7070",
          "gRPC listen address (host:port). Beyond loopback schedd serves TLS and requires "
          "tokens.");
ABSL_FLAG(std::string, tls, "auto",
          "TLS with schedd's own CA under <data_dir>/tls: auto (on when --listen is beyond "
          "loopback), on, or off.");
ABSL_FLAG(std::vector<std::string>, tls_name, {},
          "Host names and IP addresses (comma-separated) the server certificate names, besides "
          "localhost and 127.0.0.1: those agents and clients dial.");
ABSL_FLAG(absl::Duration, node_cert_lifetime, absl::Hours(24 * 30),
          "How long an agent's node certificate is good for (agents renew it with a third "
          "left).");
ABSL_FLAG(std::string, audit_log, "",
          "Who did what, one JSON line each: submits, cancels, budgets, tokens, nodes joined and "
          "revoked, refused calls. Default <data_dir>/audit.log; \"none\" keeps none.");
ABSL_FLAG(double, submit_rate_per_project, 0,
          "Submits per second each project may make, a second's worth in a burst; 0: no limit.");
ABSL_FLAG(uint64_t, max_spec_bytes, 1 << 20, "The largest job spec, encoded, in bytes.");
ABSL_FLAG(int64_t, max_open_streams, 20'000,
          "Streams open at once (watches, followed logs, agents), all callers together.");
ABSL_FLAG(int32_t, max_streams_per_connection, 1'000, "Concurrent calls on one connection.");
ABSL_FLAG(uint64_t, max_checkpoint_bytes_per_project, uint64_t{1} << 40,
          "Bytes of checkpoints a project keeps, each at its full size; 0: no limit.");
ABSL_FLAG(bool, rotate_ca, false,
          "Make a new CA at start; agents' certificates from the previous one stay good until "
          "they renew. Clients need the new ca.crt (or pin).");
ABSL_FLAG(bool, require_tokens, false,
          "Every call must present an API token (schedctl token create). On by itself when "
          "--listen is beyond loopback. The first admin token is written to "
          "<data_dir>/admin.token.");
ABSL_FLAG(bool, insecure_remote_no_tls_no_auth, false,
          "With --tls=off, listen on an address other machines can reach without TLS or "
          "authentication: anyone who reaches it can run code on every node.");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:7071",
          "Prometheus /metrics address; empty disables it.");
ABSL_FLAG(int64_t, lease_ttl_ms, 10'000,
          "A job goes back to the queue when its agent has not renewed the lease for this long.");
ABSL_FLAG(int64_t, heartbeat_interval_ms, 2'000, "How often agents heartbeat.");
ABSL_FLAG(int64_t, restart_grace_ms, 10'000,
          "Extra lease time after a start, so agents can reconnect.");
ABSL_FLAG(uint32_t, max_attempts, 10, "Lease expiries after which a job ends FAILED.");
ABSL_FLAG(uint64_t, max_pending_per_project, 1'000'000,
          "Submits to a project with this many jobs pending are refused (RESOURCE_EXHAUSTED); "
          "0: no limit.");
ABSL_FLAG(uint64_t, max_log_bytes_per_job, uint64_t{1} << 30,
          "Output kept per job (since schedd started); past it a line says so and the rest is "
          "dropped. 0: no limit.");
ABSL_FLAG(std::string, fair_share, "",
          "Weighted fair share of the user's own machines between projects: ml=2,research=1 "
          "(projects not named weigh 1); empty: queue order alone.");
ABSL_FLAG(absl::Duration, fair_share_half_life, absl::Hours(1),
          "How fast past use of the user's machines is forgotten for fair share.");
ABSL_FLAG(uint32_t, checkpoint_keep, 3,
          "Checkpoints kept per job (the newest); older ones and the chunks only they used go.");
ABSL_FLAG(bool, unsafe_no_sync, false,
          "Acknowledge writes before the WAL is synced. Loses acknowledged jobs on power loss; "
          "for benchmarks only.");
ABSL_FLAG(std::string, failpoints, "",
          "Test harnesses only: crash on purpose at named points, e.g. "
          "store.after_sync_before_reply=crash@0.01. Empty: $SCHED_FAILPOINTS, else none.");
ABSL_FLAG(uint64_t, failpoint_seed, 0, "Seed for probabilistic failpoints; 0 picks one.");
ABSL_FLAG(std::string, catalog, "",
          "GPU/provider catalog YAML. Empty: $SCHED_CATALOG, else deploy/catalog/catalog.yaml "
          "beside the build, else /usr/share/sched/catalog.yaml, else none.");
ABSL_FLAG(std::string, autoscale_config, "",
          "YAML file of the autoscaler: providers to rent nodes from when pending jobs need "
          "them, and the caps on what is rented (docs/autoscaling.md). Empty: no autoscaler.");
ABSL_FLAG(std::vector<std::string>, catalog_override, {},
          "Catalog files merged over the catalog, in order (comma-separated).");

namespace {

// The catalog schedd uses when --catalog is not given; empty when there is none.
std::string FindCatalog(const char* argv0) {
  if (const char* env = std::getenv("SCHED_CATALOG"); env != nullptr && *env != '\0') return env;
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::canonical("/proc/self/exe", ec);
  std::vector<std::filesystem::path> candidates;
  if (!ec) candidates.push_back(exe.parent_path() / "../../deploy/catalog/catalog.yaml");
  candidates.push_back("/usr/share/sched/catalog.yaml");
  for (const auto& path : candidates) {
    if (std::filesystem::exists(path, ec)) return std::filesystem::weakly_canonical(path, ec);
  }
  (void)argv0;
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  sched::KeepFreedMemoryForReuse();
  absl::SetProgramUsageMessage("schedd: the sched daemon. schedd --data_dir=DIR [--listen=ADDR]");
  absl::ParseCommandLine(argc, argv);
  // Lock-order checking costs a graph update on every lock; tests run with it, production not.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // SIGINT/SIGTERM are taken by a thread with sigwait, outside any signal handler.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::string failpoints = absl::GetFlag(FLAGS_failpoints);
  if (failpoints.empty() && std::getenv("SCHED_FAILPOINTS") != nullptr) {
    failpoints = std::getenv("SCHED_FAILPOINTS");
  }
  if (!failpoints.empty()) {
    uint64_t seed = absl::GetFlag(FLAGS_failpoint_seed);
    if (seed == 0) seed = std::random_device{}();
    if (absl::Status s = sched::ConfigureFailpoints(failpoints, seed); !s.ok()) {
      std::fprintf(stderr, "schedd: %s\n", std::string(s.message()).c_str());
      return 2;
    }
    std::fprintf(stderr,
                 "schedd: FAILPOINTS ARMED (%s, seed %llu): this process will crash on "
                 "purpose\n",
                 failpoints.c_str(), static_cast<unsigned long long>(seed));
  }

  sched::DaemonOptions options;
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.listen = absl::GetFlag(FLAGS_listen);
  options.insecure_remote = absl::GetFlag(FLAGS_insecure_remote_no_tls_no_auth);
  options.require_tokens = absl::GetFlag(FLAGS_require_tokens);
  options.tls = absl::GetFlag(FLAGS_tls);
  options.tls_names = absl::GetFlag(FLAGS_tls_name);
  options.rotate_ca = absl::GetFlag(FLAGS_rotate_ca);
  options.audit_log = absl::GetFlag(FLAGS_audit_log);
  options.submit_rate_per_project = absl::GetFlag(FLAGS_submit_rate_per_project);
  options.max_spec_bytes = absl::GetFlag(FLAGS_max_spec_bytes);
  options.max_open_streams = absl::GetFlag(FLAGS_max_open_streams);
  options.max_streams_per_connection = absl::GetFlag(FLAGS_max_streams_per_connection);
  options.max_checkpoint_bytes_per_project = absl::GetFlag(FLAGS_max_checkpoint_bytes_per_project);
  options.node_cert_lifetime = absl::GetFlag(FLAGS_node_cert_lifetime);
  if (options.node_cert_lifetime < absl::Seconds(10)) {
    std::fprintf(stderr, "schedd: --node_cert_lifetime must be at least 10s\n");
    return 2;
  }
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  options.lease_ttl_ms = absl::GetFlag(FLAGS_lease_ttl_ms);
  options.heartbeat_interval_ms = absl::GetFlag(FLAGS_heartbeat_interval_ms);
  options.restart_grace_ms = absl::GetFlag(FLAGS_restart_grace_ms);
  options.max_attempts = absl::GetFlag(FLAGS_max_attempts);
  options.checkpoint_keep = absl::GetFlag(FLAGS_checkpoint_keep);
  options.max_pending_per_project = absl::GetFlag(FLAGS_max_pending_per_project);
  options.fair_share = absl::GetFlag(FLAGS_fair_share);
  options.fair_share_half_life = absl::GetFlag(FLAGS_fair_share_half_life);
  options.max_log_bytes_per_job = absl::GetFlag(FLAGS_max_log_bytes_per_job);
  options.sync = !absl::GetFlag(FLAGS_unsafe_no_sync);
  options.catalog_path = absl::GetFlag(FLAGS_catalog);
  if (options.catalog_path.empty()) options.catalog_path = FindCatalog(argv[0]);
  options.catalog_overrides = absl::GetFlag(FLAGS_catalog_override);
  options.autoscale_config = absl::GetFlag(FLAGS_autoscale_config);
  if (options.catalog_path.empty()) {
    std::fprintf(stderr, "schedd: no GPU catalog found; runtimes are not scaled by GPU speed\n");
  } else {
    std::fprintf(stderr, "schedd: catalog %s\n", options.catalog_path.c_str());
  }

  absl::StatusOr<std::unique_ptr<sched::Daemon>> daemon = sched::Daemon::Start(options);
  if (!daemon.ok()) {
    std::fprintf(stderr, "schedd: %s\n", daemon.status().ToString().c_str());
    return 1;
  }
  std::thread([&stop_signals, d = daemon->get()] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    d->Shutdown();
  }).detach();
  std::fprintf(stderr, "schedd: serving gRPC on port %d, metrics on port %d, data in %s\n",
               (*daemon)->port(), (*daemon)->metrics_port(), options.data_dir.c_str());
  if (!(*daemon)->ca_pin().empty()) {
    std::fprintf(stderr, "schedd: TLS with CA %s (pin %s)\n",
                 ((*daemon)->tls_dir() + "/ca.crt").c_str(), (*daemon)->ca_pin().c_str());
  }
  (*daemon)->Wait();
  std::fprintf(stderr, "schedd: shutting down\n");
  daemon->reset();
  return 0;
}
