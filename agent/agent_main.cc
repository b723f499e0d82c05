#include "agent/agent_main.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <system_error>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "agent/identity.h"
#include "agent/log.h"
#include "agent/metrics.h"
#include "agent/nvml.h"
#include "agent/owner_watch.h"
#include "agent/preemption.h"
#include "google/protobuf/util/json_util.h"
#include "prometheus/exposer.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace sched::agent {
namespace {

// Jobs get fds 0-2 by dup2; they must not be taken by the agent's own pipes.
void KeepStandardFdsTaken() {
  while (true) {
    const int fd = open("/dev/null", O_RDWR);
    if (fd < 0) return;
    if (fd > 2) {
      close(fd);
      return;
    }
  }
}

int PrintCapabilities(const v1::Capabilities& caps) {
  google::protobuf::util::JsonPrintOptions json;
  json.add_whitespace = true;
  json.always_print_primitive_fields = true;
  json.preserve_proto_field_names = true;
  std::string text;
  if (!google::protobuf::util::MessageToJsonString(caps, &text, json).ok()) return 1;
  std::fputs(text.c_str(), stdout);
  return 0;
}

}  // namespace

int RunAgentMain(MainOptions options) {
  KeepStandardFdsTaken();
  // An ignored signal never reaches sigwait (a shell starts background jobs ignoring SIGINT).
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  options.detect.work_dir = options.agent.work_dir;
  absl::StatusOr<Detected> detected = DetectCapabilities(options.detect);
  if (!detected.ok()) {
    Log("cannot detect this machine: %s", detected.status().ToString());
    return 1;
  }
  if (options.detect_only) return PrintCapabilities(detected->capabilities);
  options.agent.capabilities = detected->capabilities;

  std::error_code ec;
  std::filesystem::create_directories(options.agent.work_dir, ec);
  if (ec) {
    Log("cannot create work_dir %s: %s", options.agent.work_dir, ec.message());
    return 1;
  }

  // Who this agent is to schedd: joins first over TLS when it has no certificate yet. schedd
  // not up yet is waited for; a refused token or pin stops the agent with the reason.
  options.identity.server = options.agent.server;
  options.identity.node_name = options.agent.node_name;
  options.identity.work_dir = options.agent.work_dir;
  for (absl::Duration wait = absl::Seconds(1);; wait = std::min(wait * 2, absl::Seconds(30))) {
    absl::StatusOr<auth::DialOptions> dial = PrepareIdentity(options.identity);
    if (dial.ok()) {
      options.agent.dial = *std::move(dial);
      break;
    }
    if (!absl::IsUnavailable(dial.status()) && !absl::IsDeadlineExceeded(dial.status())) {
      Log("cannot connect to schedd at %s: %s", options.agent.server, dial.status().ToString());
      return 2;
    }
    Log("schedd at %s: %s; trying again in %s", options.agent.server, dial.status().message(),
        absl::FormatDuration(wait));
    const timespec ts = absl::ToTimespec(wait);
    if (sigtimedwait(&stop_signals, nullptr, &ts) > 0) return 0;
  }

  auto registry = std::make_shared<prometheus::Registry>();
  AgentMetrics metrics(*registry);
  // Which node this agent is, to join its series with schedd's sched_node_up{node}.
  prometheus::BuildGauge()
      .Name("sched_agent_info")
      .Help("Always 1; its labels name the node this agent is and its provider.")
      .Register(*registry)
      .Add({{"node", options.agent.node_name}, {"provider", options.agent.capabilities.provider()}})
      .Set(1);
  std::shared_ptr<GpuCollector> gpu_metrics;
  std::unique_ptr<prometheus::Exposer> exposer;
  if (!options.metrics_listen.empty()) {
    try {
      exposer = std::make_unique<prometheus::Exposer>(options.metrics_listen);
    } catch (const std::exception& e) {
      Log("cannot serve metrics on %s: %s", options.metrics_listen, e.what());
      return 1;
    }
    exposer->RegisterCollectable(registry);
    if (const Nvml* nvml = detected->nvml.get()) {
      gpu_metrics = std::make_shared<GpuCollector>([nvml] { return nvml->Sample(); });
      exposer->RegisterCollectable(gpu_metrics);
    }
  }

  const v1::Capabilities& caps = options.agent.capabilities;
  Log("node %s: %.1f CPUs, %d MiB memory, %d GPU(s) (%s), provider %s, $%.4f/h%s; schedd at "
      "%s%s%s",
      options.agent.node_name, caps.cpus(), caps.memory_bytes() >> 20, caps.gpus_size(),
      caps.gpu_detection(), caps.provider(), caps.price_per_hour(), caps.spot() ? " spot" : "",
      options.agent.server, options.metrics_listen.empty() ? "" : ", metrics on ",
      options.metrics_listen);

  absl::StatusOr<NoticeSources> sources = ParseNoticeSources(
      options.preemption_notice, caps.spot(), caps.provider(), options.preemption_hook);
  if (!sources.ok()) {
    Log("--%s", sources.status().message());
    return 2;
  }
  sources->poll = absl::Milliseconds(std::max<int64_t>(options.preemption_poll_ms, 10));
  sources->sigterm_time_left = absl::Seconds(std::max<int64_t>(options.sigterm_notice_seconds, 1));
  sources->aws_url = options.aws_metadata_url;
  sources->gcp_url = options.gcp_metadata_url;
  Log("preemption notices from: %s%s%s%s", sources->sigterm ? "sigterm " : "",
      sources->aws ? "aws " : "", sources->gcp ? "gcp " : "",
      sources->hook.empty() ? (sources->sigterm || sources->aws || sources->gcp ? "" : "none")
                            : "hook");

  // The owner comes first on the user's own machines: their GPUs are watched for processes the
  // agent did not start.
  if (options.owner_first != "auto" && options.owner_first != "on" &&
      options.owner_first != "off") {
    Log("--owner_first: want auto, on or off, got '%s'", options.owner_first);
    return 2;
  }
  const bool own_machine = caps.provider().empty() || caps.provider() == "local";
  if (options.owner_first == "on" || (options.owner_first == "auto" && own_machine)) {
    if (!options.owner_processes_file.empty()) {
      options.agent.gpu_processes = [path = options.owner_processes_file] {
        return ReadGpuProcessesFile(path);
      };
    } else if (const Nvml* nvml = detected->nvml.get()) {
      options.agent.gpu_processes = [nvml] { return nvml->ComputeProcesses(); };
    } else if (options.owner_first == "on") {
      Log("--owner_first=on: no NVML here to see who uses the GPUs (%s)", caps.gpu_detection());
      return 2;
    }
  }
  if (options.agent.gpu_processes) {
    Log("the owner comes first: a GPU another process uses is given back to jobs after %d s "
        "unused",
        options.agent.owner_idle_ms / 1000);
  }

  Agent agent(options.agent, &metrics);
  PreemptionWatcher watcher(*sources, [&agent](const std::string& source, absl::Duration left) {
    agent.Preempt(source, left, /*then_exit=*/true);
  });
  std::atomic<bool> done{false};
  std::thread signals([&] {
    bool noticed = false;
    while (true) {
      int sig = 0;
      sigwait(&stop_signals, &sig);
      if (done.load()) return;  // woken by the main thread below
      if (sig == SIGTERM && sources->sigterm && !noticed) {
        // A spot host's SIGTERM: the machine is going. A second signal stops at once.
        noticed = true;
        agent.Preempt("sigterm", sources->sigterm_time_left, /*then_exit=*/true);
        continue;
      }
      Log("signal %d: shutting down", sig);
      agent.Shutdown();
      return;
    }
  });
  // The node certificate is renewed well before it runs out.
  absl::Notification stop_renewing;
  std::thread renewer([&] {
    const absl::Duration every = absl::Milliseconds(std::max<int64_t>(options.renew_check_ms, 10));
    do {
      absl::StatusOr<bool> renewed = RenewIfDue(options.identity, options.agent.dial, absl::Now());
      if (!renewed.ok()) Log("renewing the node certificate: %s", renewed.status().ToString());
    } while (!stop_renewing.WaitForNotificationWithTimeout(every));
  });
  const absl::Status status = agent.Run();
  stop_renewing.Notify();
  renewer.join();
  done.store(true);
  pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  if (!status.ok()) {
    Log("%s", status.ToString());
    return 1;
  }
  return 0;
}

}  // namespace sched::agent
