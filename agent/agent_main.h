#pragma once

#include <string>

#include "agent/agent.h"
#include "agent/detect.h"
#include "agent/identity.h"

namespace sched::agent {

// Everything sched-agent's flags set.
struct MainOptions {
  // server, node_name, work_dir and kill_grace_ms come from flags; capabilities are detected.
  Agent::Options agent;
  // work_dir is taken from agent.work_dir.
  DetectOptions detect;
  // host:port for /metrics; empty: no metrics endpoint.
  std::string metrics_listen = "127.0.0.1:7072";
  // Print the detected Capabilities as JSON on stdout and return.
  bool detect_only = false;
  // Preemption notices (agent/preemption.h): "auto", "none" or a list of sigterm, aws, gcp,
  // hook; the hook's command; how often the polled sources are asked; and the metadata
  // servers' addresses (tests point them at a fake).
  std::string preemption_notice = "auto";
  std::string preemption_hook;
  int64_t preemption_poll_ms = 2'000;
  int64_t sigterm_notice_seconds = 10;
  std::string aws_metadata_url = "http://169.254.169.254";
  // Token, CA file or pin (identity.h); server, node name and work_dir come from `agent`.
  IdentityOptions identity;
  // How often the node certificate is looked at for renewal.
  int64_t renew_check_ms = 3'600'000;
  std::string gcp_metadata_url = "http://metadata.google.internal";
  // The owner comes first (owner_watch.h): "auto" (on for the user's own machines, where NVML
  // works), "on" or "off". The processes come from NVML, or from owner_processes_file when set.
  std::string owner_first = "auto";
  std::string owner_processes_file;
};

// The whole agent process: detects the machine, serves metrics, runs the Agent until SIGINT or
// SIGTERM. Returns the process exit code. Call before any other thread exists (it blocks
// SIGINT and SIGTERM in every thread to take them with sigwait).
int RunAgentMain(MainOptions options);

}  // namespace sched::agent
