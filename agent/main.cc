// sched-agent: the per-machine agent. Flags fill MainOptions; the rest is in the library.

#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "agent/agent_main.h"
#include "agent/config_file.h"
#include "agent/detect.h"
#include "agent/labels.h"
#include "agent/log.h"
#include "agent/node_settings.h"
#include "server/auth/channel.h"
#include "server/common/memory.h"
#include "server/common/status_macros.h"

namespace {

std::string DefaultServer() {
  const char* env = std::getenv("SCHED_SERVER");
  return env != nullptr && *env != '\0' ? env : "127.0.0.1:7070";
}

}  // namespace

ABSL_FLAG(std::string, server, DefaultServer(),
          "schedd's address, host:port (default: $SCHED_SERVER, else 127.0.0.1:7070).");
ABSL_FLAG(std::string, token_file, "",
          "File holding the API token (role agent) this agent presents to schedd; default: "
          "$SCHED_TOKEN_FILE. $SCHED_TOKEN, when set, is the token itself.");
ABSL_FLAG(std::string, ca_file, "",
          "schedd's CA certificate (PEM, <data_dir>/tls/ca.crt there): connect over TLS, join with "
          "the token for a node certificate, then use that. Default: $SCHED_CA_FILE.");
ABSL_FLAG(std::string, ca_pin, "",
          "sha256:<hex> of schedd's CA certificate (schedctl token create prints it): learn the "
          "CA from schedd and check it against this before sending the token. Default: "
          "$SCHED_CA_PIN.");
ABSL_FLAG(int64_t, renew_check_ms, 3'600'000,
          "How often the node certificate is looked at; it is renewed once a third of its life "
          "is left.");
ABSL_FLAG(std::string, name, sched::agent::Hostname(), "This node's name (default: hostname).");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:7072",
          "host:port serving Prometheus /metrics; empty disables it.");
ABSL_FLAG(std::string, work_dir, "./sched-agent-work",
          "Folder holding the jobs' working folders (jobs/<id>-<attempt>).");
ABSL_FLAG(std::string, labels, "", "Node labels: k=v,k=v.");
ABSL_FLAG(int64_t, kill_grace_ms, 10'000,
          "How long a job has between SIGTERM and SIGKILL when it is stopped.");
ABSL_FLAG(int64_t, checkpoint_poll_ms, 500,
          "How often the jobs' checkpoint folders are looked at for new checkpoints to upload.");
ABSL_FLAG(int32_t, checkpoint_threads, 0,
          "Threads a checkpoint upload hashes on and parallel streams it sends over, and threads a "
          "download checks chunks on: 0 for one per core (2 to 8), or 1 to 64.");
ABSL_FLAG(std::string, preemption_notice, "auto",
          "Where preemption notices come from: auto (on a spot node: sigterm, plus aws or gcp by "
          "provider), none, or a list of sigterm, aws, gcp, hook.");
ABSL_FLAG(std::string, preemption_hook, "",
          "A command run every --preemption_poll_ms: exit status 0 is a preemption notice, and "
          "the first number it prints is the seconds left.");
ABSL_FLAG(int64_t, preemption_poll_ms, 2'000, "How often aws, gcp and the hook are asked.");
ABSL_FLAG(int64_t, sigterm_notice_seconds, 10,
          "The time a SIGTERM notice leaves for the jobs' last checkpoints and reports.");
ABSL_FLAG(std::string, aws_metadata_url, "http://169.254.169.254", "EC2 instance metadata.");
ABSL_FLAG(std::string, gcp_metadata_url, "http://metadata.google.internal", "GCE metadata server.");
ABSL_FLAG(std::string, owner_first, "auto",
          "Step jobs aside when a process the agent did not start uses their GPU: auto (on this "
          "machine when it is the user's own, not rented, and NVML works), on or off.");
ABSL_FLAG(int64_t, owner_idle_seconds, 300,
          "A GPU the owner used goes back to jobs once no process of theirs used it this long.");
ABSL_FLAG(int64_t, owner_poll_ms, 1'000, "How often the processes on the GPUs are looked at.");
ABSL_FLAG(std::string, owner_ignore, "",
          "Process names (comma-separated) that never count as the owner's use of a GPU.");
ABSL_FLAG(std::string, owner_processes_file, "",
          "Read the processes on the GPUs from this file ('<gpu> <pid>' lines) instead of NVML: "
          "for tests on machines without one.");
ABSL_FLAG(bool, detect_only, false, "Print the detected capabilities as JSON and exit.");
ABSL_FLAG(std::string, gpu_detection, "auto", "How to find GPUs: auto, nvml, nvidia-smi or none.");
ABSL_FLAG(std::string, config, "",
          "A YAML file setting any of the node's settings below by the flags' names; flags win.");
ABSL_FLAG(std::optional<double>, price_per_hour, std::nullopt,
          "What this machine costs per hour, in dollars (else computed from --power_watts and "
          "the other local price parts, else 0).");
ABSL_FLAG(std::optional<bool>, spot, std::nullopt,
          "--spot=true: spot (preemptible) capacity the provider may take back.");
ABSL_FLAG(std::optional<std::string>, provider, std::nullopt,
          "Where the machine is rented (vastai, runpod, aws, local...), in place of the detected "
          "one.");
ABSL_FLAG(std::optional<std::string>, region, std::nullopt, "The provider's region or zone.");
ABSL_FLAG(std::optional<std::string>, instance_type, std::nullopt,
          "The provider's name for the machine type.");
ABSL_FLAG(std::optional<double>, power_watts, std::nullopt,
          "Local price: the machine's power draw while running jobs, in watts (with "
          "--electricity_per_kwh).");
ABSL_FLAG(std::optional<double>, electricity_per_kwh, std::nullopt,
          "Local price: the electricity tariff in dollars per kWh.");
ABSL_FLAG(std::optional<double>, hardware_cost, std::nullopt,
          "Local price: what the hardware cost in dollars, amortized over --amortize_months.");
ABSL_FLAG(std::optional<double>, amortize_months, std::nullopt,
          "Local price: months (of 730 hours) over which --hardware_cost is spread.");
ABSL_FLAG(std::optional<std::string>, price_schedule, std::nullopt,
          "Prices by time of day; the price per hour applies outside them: "
          "\"00:00-07:00=0.12, 17:00-21:00=0.45\" in dollars per hour, or \"22:00-06:00=0.08/kwh\" "
          "as a tariff (with --power_watts). In this machine's time zone unless it starts "
          "\"UTC+HH:MM;\".");
ABSL_FLAG(std::string, advertise_gpus, "",
          "GPUs to report instead of detecting them, given to jobs like real ones: "
          "\"[COUNTx ]MODEL:MEMORY[,...]\", e.g. \"2x NVIDIA GeForce RTX 4090:24GB\".");

namespace {

namespace agent = sched::agent;
namespace auth = sched::auth;

// The node settings given as flags; errors start with the flag's name.
absl::StatusOr<agent::NodeSettings> SettingsFromFlags() {
  agent::NodeSettings s;
  if (const std::string labels = absl::GetFlag(FLAGS_labels); !labels.empty()) {
    SCHED_ASSIGN_OR_RETURN(s.labels, agent::ParseLabels(labels));
  }
  if (const std::string gpus = absl::GetFlag(FLAGS_advertise_gpus); !gpus.empty()) {
    SCHED_ASSIGN_OR_RETURN(s.advertise_gpus, agent::ParseAdvertisedGpus(gpus));
  }
  s.price_per_hour = absl::GetFlag(FLAGS_price_per_hour);
  s.spot = absl::GetFlag(FLAGS_spot);
  s.provider = absl::GetFlag(FLAGS_provider);
  s.region = absl::GetFlag(FLAGS_region);
  s.instance_type = absl::GetFlag(FLAGS_instance_type);
  s.power_watts = absl::GetFlag(FLAGS_power_watts);
  s.electricity_per_kwh = absl::GetFlag(FLAGS_electricity_per_kwh);
  s.hardware_cost = absl::GetFlag(FLAGS_hardware_cost);
  s.amortize_months = absl::GetFlag(FLAGS_amortize_months);
  s.price_schedule = absl::GetFlag(FLAGS_price_schedule);
  SCHED_RETURN_IF_ERROR(agent::ValidateNodeSettings(s));
  return s;
}

// The config file's settings with the flags' over them, checked together; a price schedule
// that names no UTC offset is in `utc_offset_minutes`.
absl::StatusOr<agent::NodeSettings> Settings(int32_t utc_offset_minutes) {
  agent::NodeSettings settings;
  if (const std::string path = absl::GetFlag(FLAGS_config); !path.empty()) {
    absl::StatusOr<agent::NodeSettings> file = agent::LoadAgentConfig(path);
    if (!file.ok()) {
      return absl::Status(file.status().code(), absl::StrCat("--config=", file.status().message()));
    }
    settings = *std::move(file);
  }
  absl::StatusOr<agent::NodeSettings> flags = SettingsFromFlags();
  if (!flags.ok()) {
    return absl::Status(flags.status().code(), absl::StrCat("--", flags.status().message()));
  }
  settings = agent::Overlay(std::move(settings), *flags);
  SCHED_RETURN_IF_ERROR(agent::ResolvePrice(settings, utc_offset_minutes).status());
  return settings;
}

}  // namespace

int main(int argc, char** argv) {
  sched::KeepFreedMemoryForReuse();
  absl::SetProgramUsageMessage("The sched agent: runs the jobs schedd assigns to this machine.");
  absl::ParseCommandLine(argc, argv);
  agent::MainOptions options;
  options.agent.server = absl::GetFlag(FLAGS_server);
  options.agent.node_name = absl::GetFlag(FLAGS_name);
  {
    std::string token_file = absl::GetFlag(FLAGS_token_file);
    const char* env_file = std::getenv("SCHED_TOKEN_FILE");
    if (token_file.empty() && env_file != nullptr) token_file = env_file;
    const char* env_token = std::getenv("SCHED_TOKEN");
    if (!token_file.empty()) {
      absl::StatusOr<std::string> token = auth::ReadTokenFile(token_file);
      if (!token.ok()) {
        agent::Log("--token_file: %s", token.status().message());
        return 2;
      }
      options.identity.token = *std::move(token);
    } else if (env_token != nullptr) {
      // Trimmed like a token file's line (a Secret made from a file ends in a newline).
      options.identity.token = std::string(absl::StripAsciiWhitespace(env_token));
      // The value is overwritten where it lies, not only unset: /proc/<pid>/environ shows the
      // environment the process started with, and jobs run as this user could read it there.
      std::memset(const_cast<char*>(env_token), 'x', std::strlen(env_token));
    }
    options.identity.ca_file = absl::GetFlag(FLAGS_ca_file);
    options.identity.ca_pin = absl::GetFlag(FLAGS_ca_pin);
    if (options.identity.ca_file.empty() && std::getenv("SCHED_CA_FILE") != nullptr) {
      options.identity.ca_file = std::getenv("SCHED_CA_FILE");
    }
    if (options.identity.ca_pin.empty() && std::getenv("SCHED_CA_PIN") != nullptr) {
      options.identity.ca_pin = std::getenv("SCHED_CA_PIN");
    }
    options.renew_check_ms = absl::GetFlag(FLAGS_renew_check_ms);
    // Jobs inherit the agent's environment: the token must not reach them.
    unsetenv("SCHED_TOKEN");
    unsetenv("SCHED_TOKEN_FILE");
  }
  options.agent.work_dir = absl::GetFlag(FLAGS_work_dir);
  options.agent.kill_grace_ms = absl::GetFlag(FLAGS_kill_grace_ms);
  options.agent.checkpoint_poll_ms = absl::GetFlag(FLAGS_checkpoint_poll_ms);
  options.agent.checkpoint_threads = absl::GetFlag(FLAGS_checkpoint_threads);
  if (options.agent.checkpoint_threads < 0 || options.agent.checkpoint_threads > 64) {
    agent::Log("--checkpoint_threads=%d: give 0 (one per core, 2 to 8) or 1 to 64",
               options.agent.checkpoint_threads);
    return 2;
  }
  options.owner_first = absl::GetFlag(FLAGS_owner_first);
  options.owner_processes_file = absl::GetFlag(FLAGS_owner_processes_file);
  options.agent.owner_idle_ms = absl::GetFlag(FLAGS_owner_idle_seconds) * 1000;
  options.agent.owner_poll_ms = absl::GetFlag(FLAGS_owner_poll_ms);
  options.agent.owner_ignore =
      absl::StrSplit(absl::GetFlag(FLAGS_owner_ignore), ',', absl::SkipEmpty());
  options.agent.random_seed = std::random_device{}();  // agents cut off together spread out
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  options.detect_only = absl::GetFlag(FLAGS_detect_only);
  options.preemption_notice = absl::GetFlag(FLAGS_preemption_notice);
  options.preemption_hook = absl::GetFlag(FLAGS_preemption_hook);
  options.preemption_poll_ms = absl::GetFlag(FLAGS_preemption_poll_ms);
  options.sigterm_notice_seconds = absl::GetFlag(FLAGS_sigterm_notice_seconds);
  options.aws_metadata_url = absl::GetFlag(FLAGS_aws_metadata_url);
  options.gcp_metadata_url = absl::GetFlag(FLAGS_gcp_metadata_url);
  absl::StatusOr<agent::GpuDetection> gpu_detection =
      agent::ParseGpuDetection(absl::GetFlag(FLAGS_gpu_detection));
  if (!gpu_detection.ok()) {
    agent::Log("--%s", gpu_detection.status().message());
    return 2;
  }
  // The time zone's offset as the agent starts: a daylight-saving change needs a restart.
  const int32_t utc_offset_minutes = agent::LocalUtcOffsetMinutes(absl::Now());
  absl::StatusOr<agent::NodeSettings> settings = Settings(utc_offset_minutes);
  if (!settings.ok()) {
    agent::Log("%s", settings.status().message());
    return 2;
  }
  options.detect.gpu_detection = *gpu_detection;
  options.detect.settings = *std::move(settings);
  options.detect.utc_offset_minutes = utc_offset_minutes;
  return agent::RunAgentMain(std::move(options));
}
