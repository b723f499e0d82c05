// sched-agent: the per-machine agent. Flags fill MainOptions; the rest is in the library.

#include <cstdlib>
#include <map>
#include <random>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "agent/agent_main.h"
#include "agent/detect.h"
#include "agent/labels.h"
#include "agent/log.h"

namespace {

std::string DefaultServer() {
  const char* env = std::getenv("SCHED_SERVER");
  return env != nullptr && *env != '\0' ? env : "127.0.0.1:7070";
}

}  // namespace

ABSL_FLAG(std::string, server, DefaultServer(),
          "schedd's address, host:port (default: $SCHED_SERVER, else 127.0.0.1:7070).");
ABSL_FLAG(std::string, name, sched::agent::Hostname(), "This node's name (default: hostname).");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:7072",
          "host:port serving Prometheus /metrics; empty disables it.");
ABSL_FLAG(std::string, work_dir, "./sched-agent-work",
          "Folder holding the jobs' working folders (jobs/<id>-<attempt>).");
ABSL_FLAG(double, price_per_hour, 0, "What this machine costs per hour, in dollars.");
ABSL_FLAG(std::string, labels, "", "Node labels: k=v,k=v.");
ABSL_FLAG(int64_t, kill_grace_ms, 10'000,
          "How long a job has between SIGTERM and SIGKILL when it is stopped.");
ABSL_FLAG(bool, detect_only, false, "Print the detected capabilities as JSON and exit.");
ABSL_FLAG(std::string, gpu_detection, "auto", "How to find GPUs: auto, nvml, nvidia-smi or none.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("The sched agent: runs the jobs schedd assigns to this machine.");
  absl::ParseCommandLine(argc, argv);
  namespace agent = sched::agent;
  agent::MainOptions options;
  options.agent.server = absl::GetFlag(FLAGS_server);
  options.agent.node_name = absl::GetFlag(FLAGS_name);
  options.agent.work_dir = absl::GetFlag(FLAGS_work_dir);
  options.agent.kill_grace_ms = absl::GetFlag(FLAGS_kill_grace_ms);
  options.agent.random_seed = std::random_device{}();  // agents cut off together spread out
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  options.detect_only = absl::GetFlag(FLAGS_detect_only);
  options.detect.price_per_hour = absl::GetFlag(FLAGS_price_per_hour);
  absl::StatusOr<std::map<std::string, std::string>> labels =
      agent::ParseLabels(absl::GetFlag(FLAGS_labels));
  absl::StatusOr<agent::GpuDetection> gpu_detection =
      agent::ParseGpuDetection(absl::GetFlag(FLAGS_gpu_detection));
  for (const absl::Status& s : {labels.status(), gpu_detection.status()}) {
    if (!s.ok()) {
      agent::Log("--%s", s.message());
      return 2;
    }
  }
  options.detect.labels = *std::move(labels);
  options.detect.gpu_detection = *gpu_detection;
  return agent::RunAgentMain(std::move(options));
}
