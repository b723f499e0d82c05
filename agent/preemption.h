#pragma once

// Where a preemption notice comes from (docs/checkpoints.md, "Preemption"):
//   sigterm  SIGTERM to the agent itself (RunPod and most container hosts: a few seconds);
//   aws      EC2 IMDSv2 spot/instance-action (two minutes' notice);
//   gcp      the GCE metadata server's instance/preempted (about thirty seconds);
//   hook     a command run every poll: exit status 0 is a notice, and the first number it
//            prints is the seconds left (other providers).
// The sources other than sigterm are polled by PreemptionWatcher; sigterm is the agent's
// signal thread's (agent_main.cc).

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace sched::agent {

struct NoticeSources {
  bool sigterm = false;
  bool aws = false;
  bool gcp = false;
  std::string hook;  // a shell command; empty: none
  std::string aws_url = "http://169.254.169.254";
  std::string gcp_url = "http://metadata.google.internal";
  absl::Duration poll = absl::Seconds(2);
  absl::Duration sigterm_time_left = absl::Seconds(10);  // what a SIGTERM leaves
};

// "auto", "none" or a comma-separated list of sigterm, aws, gcp and hook. "auto": on a spot
// node, sigterm, plus aws or gcp by its provider; nothing on other nodes. "hook" needs
// `hook_command`. INVALID_ARGUMENT naming a bad value.
absl::StatusOr<NoticeSources> ParseNoticeSources(absl::string_view list, bool spot,
                                                 absl::string_view provider,
                                                 const std::string& hook_command);

struct HttpResponse {
  int status = 0;
  std::string body;
};
// One HTTP/1.1 request to `url` (http://host[:port]/path; no TLS: the metadata servers are
// plain HTTP on the local link). UNAVAILABLE when it cannot connect or gets no answer in time.
absl::StatusOr<HttpResponse> HttpRequest(
    absl::string_view method, absl::string_view url,
    const std::vector<std::pair<std::string, std::string>>& headers, absl::Duration timeout);

// The time left that an AWS instance-action document ({"action": "terminate", "time":
// "2026-11-26T12:00:00Z"}) gives, from `now`; two minutes when it has no readable time.
absl::Duration AwsTimeLeft(absl::string_view document, absl::Time now);
// One look at each source: the time left when a notice is out, nullopt when none is.
absl::StatusOr<std::optional<absl::Duration>> CheckAws(const std::string& base_url, absl::Time now);
absl::StatusOr<std::optional<absl::Duration>> CheckGcp(const std::string& base_url);
absl::StatusOr<std::optional<absl::Duration>> CheckHook(const std::string& command);

// Polls the aws, gcp and hook sources every `poll` until one gives notice, then calls
// `notice(source, time_left)` once and stops. Failures to reach a source are logged once.
class PreemptionWatcher {
 public:
  using Notice = std::function<void(const std::string& source, absl::Duration time_left)>;
  PreemptionWatcher(NoticeSources sources, Notice notice);
  ~PreemptionWatcher();
  PreemptionWatcher(const PreemptionWatcher&) = delete;
  PreemptionWatcher& operator=(const PreemptionWatcher&) = delete;

 private:
  void Loop();
  const NoticeSources sources_;
  const Notice notice_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace sched::agent
