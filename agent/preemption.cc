#include "agent/preemption.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/log.h"

namespace sched::agent {
namespace {

constexpr absl::Duration kAwsDefault = absl::Minutes(2);
constexpr absl::Duration kGcpDefault = absl::Seconds(30);
constexpr absl::Duration kHttpTimeout = absl::Seconds(1);

// Waits until `fd` is ready for `events` or `deadline` passes.
bool WaitFor(int fd, short events, absl::Time deadline) {
  const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
  if (ms <= 0) return false;
  pollfd p{fd, events, 0};
  return poll(&p, 1, static_cast<int>(ms)) == 1;
}

}  // namespace

absl::StatusOr<NoticeSources> ParseNoticeSources(absl::string_view list, bool spot,
                                                 absl::string_view provider,
                                                 const std::string& hook_command) {
  NoticeSources s;
  s.hook = "";
  const std::string l = absl::AsciiStrToLower(absl::StripAsciiWhitespace(list));
  if (l == "none" || l.empty()) return s;
  if (l == "auto") {
    if (!spot) return s;
    s.sigterm = true;
    s.aws = provider == "aws";
    s.gcp = provider == "gcp";
    if (!hook_command.empty()) s.hook = hook_command;
    return s;
  }
  for (absl::string_view part : absl::StrSplit(l, ',', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    if (part == "sigterm") {
      s.sigterm = true;
    } else if (part == "aws") {
      s.aws = true;
    } else if (part == "gcp") {
      s.gcp = true;
    } else if (part == "hook") {
      if (hook_command.empty()) {
        return absl::InvalidArgumentError("preemption_notice: hook needs --preemption_hook");
      }
      s.hook = hook_command;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("preemption_notice: unknown source \"", part,
                       "\" (auto, none, or a list of sigterm, aws, gcp, hook)"));
    }
  }
  return s;
}

absl::StatusOr<HttpResponse> HttpRequest(
    absl::string_view method, absl::string_view url,
    const std::vector<std::pair<std::string, std::string>>& headers, absl::Duration timeout) {
  if (!absl::ConsumePrefix(&url, "http://")) {
    return absl::InvalidArgumentError(absl::StrCat("not an http:// URL: ", url));
  }
  const size_t slash = url.find('/');
  const absl::string_view authority = url.substr(0, slash);
  const std::string path = slash == absl::string_view::npos ? "/" : std::string(url.substr(slash));
  std::string host(authority), port = "80";
  if (const size_t colon = authority.rfind(':'); colon != absl::string_view::npos) {
    host = std::string(authority.substr(0, colon));
    port = std::string(authority.substr(colon + 1));
  }
  const absl::Time deadline = absl::Now() + timeout;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", host));
  }
  const int fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int rc = fd < 0 ? -1 : connect(fd, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);
  if (fd < 0) return absl::UnavailableError("socket failed");
  auto fail = [fd](absl::string_view what) {
    close(fd);
    return absl::UnavailableError(std::string(what));
  };
  if (rc != 0 && errno != EINPROGRESS) return fail(absl::StrCat("cannot connect to ", authority));
  if (!WaitFor(fd, POLLOUT, deadline)) return fail(absl::StrCat("no answer from ", authority));
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return fail(absl::StrCat("cannot connect to ", authority));
  std::string request = absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: ", authority,
                                     "\r\nConnection: close\r\nContent-Length: 0\r\n");
  for (const auto& [name, value] : headers) absl::StrAppend(&request, name, ": ", value, "\r\n");
  request += "\r\n";
  absl::string_view left = request;
  while (!left.empty()) {
    if (!WaitFor(fd, POLLOUT, deadline)) return fail("timed out sending");
    const ssize_t n = send(fd, left.data(), left.size(), MSG_NOSIGNAL);
    if (n <= 0 && errno != EAGAIN) return fail("send failed");
    if (n > 0) left.remove_prefix(n);
  }
  std::string raw;
  char buf[4096];
  while (raw.size() < (1 << 20)) {
    if (!WaitFor(fd, POLLIN, deadline)) return fail("timed out reading");
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EAGAIN) continue;
    if (n <= 0) break;
    raw.append(buf, n);
  }
  close(fd);
  // "HTTP/1.1 200 OK\r\n...\r\n\r\nbody" (Connection: close: the body runs to the end).
  HttpResponse out;
  const size_t head_end = raw.find("\r\n\r\n");
  std::vector<absl::string_view> status_line = absl::StrSplit(raw.substr(0, raw.find("\r\n")), ' ');
  if (head_end == std::string::npos || status_line.size() < 2 ||
      !absl::SimpleAtoi(status_line[1], &out.status)) {
    return absl::UnavailableError(absl::StrCat("no HTTP answer from ", authority));
  }
  out.body = raw.substr(head_end + 4);
  return out;
}

absl::Duration AwsTimeLeft(absl::string_view document, absl::Time now) {
  // The one field needed, without a JSON library: "time": "2026-11-26T12:00:00Z".
  const size_t key = document.find("\"time\"");
  if (key == absl::string_view::npos) return kAwsDefault;
  const size_t open = document.find('"', document.find(':', key) + 1);
  const size_t close = document.find('"', open + 1);
  if (open == absl::string_view::npos || close == absl::string_view::npos) return kAwsDefault;
  absl::Time at;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, document.substr(open + 1, close - open - 1), &at,
                       &err)) {
    return kAwsDefault;
  }
  return std::max(at - now, absl::ZeroDuration());
}

absl::StatusOr<std::optional<absl::Duration>> CheckAws(const std::string& base_url,
                                                       absl::Time now) {
  // IMDSv2: a session token first, then the document with it.
  absl::StatusOr<HttpResponse> token =
      HttpRequest("PUT", base_url + "/latest/api/token",
                  {{"X-aws-ec2-metadata-token-ttl-seconds", "300"}}, kHttpTimeout);
  if (!token.ok()) return token.status();
  if (token->status != 200) {
    return absl::UnavailableError(absl::StrCat("IMDSv2 token: HTTP ", token->status));
  }
  absl::StatusOr<HttpResponse> action =
      HttpRequest("GET", base_url + "/latest/meta-data/spot/instance-action",
                  {{"X-aws-ec2-metadata-token", token->body}}, kHttpTimeout);
  if (!action.ok()) return action.status();
  if (action->status == 404) return std::nullopt;  // no notice
  if (action->status != 200) {
    return absl::UnavailableError(absl::StrCat("spot/instance-action: HTTP ", action->status));
  }
  return AwsTimeLeft(action->body, now);
}

absl::StatusOr<std::optional<absl::Duration>> CheckGcp(const std::string& base_url) {
  absl::StatusOr<HttpResponse> r =
      HttpRequest("GET", base_url + "/computeMetadata/v1/instance/preempted",
                  {{"Metadata-Flavor", "Google"}}, kHttpTimeout);
  if (!r.ok()) return r.status();
  if (r->status != 200) return absl::UnavailableError(absl::StrCat("preempted: HTTP ", r->status));
  if (absl::StripAsciiWhitespace(r->body) == "TRUE") return kGcpDefault;
  return std::nullopt;
}

absl::StatusOr<std::optional<absl::Duration>> CheckHook(const std::string& command) {
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return absl::UnavailableError(absl::StrCat("cannot run ", command));
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p) != nullptr && out.size() < 4096) out += buf;
  const int status = pclose(p);
  if (status != 0) return std::nullopt;
  // The first number it printed is the seconds left.
  for (absl::string_view word :
       absl::StrSplit(out, absl::ByAnyChar(" \t\r\n"), absl::SkipEmpty())) {
    int64_t seconds = 0;
    if (absl::SimpleAtoi(word, &seconds) && seconds >= 0) return absl::Seconds(seconds);
  }
  return absl::Seconds(30);
}

PreemptionWatcher::PreemptionWatcher(NoticeSources sources, Notice notice)
    : sources_(std::move(sources)), notice_(std::move(notice)) {
  if (sources_.aws || sources_.gcp || !sources_.hook.empty()) {
    thread_ = std::thread([this] { Loop(); });
  }
}

PreemptionWatcher::~PreemptionWatcher() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void PreemptionWatcher::Loop() {
  std::string last_error;
  while (!stop_.HasBeenNotified()) {
    struct Look {
      const char* source;
      absl::StatusOr<std::optional<absl::Duration>> got;
    };
    std::vector<Look> looks;
    if (sources_.aws) looks.push_back({"aws", CheckAws(sources_.aws_url, absl::Now())});
    if (sources_.gcp) looks.push_back({"gcp", CheckGcp(sources_.gcp_url)});
    if (!sources_.hook.empty()) looks.push_back({"hook", CheckHook(sources_.hook)});
    for (const Look& look : looks) {
      if (look.got.ok() && look.got->has_value()) {
        notice_(look.source, **look.got);
        return;
      }
      if (!look.got.ok()) {
        std::string error = absl::StrCat(look.source, ": ", look.got.status().message());
        if (error != last_error) Log("preemption notices: %s", error);
        last_error = std::move(error);
      }
    }
    stop_.WaitForNotificationWithTimeout(sources_.poll);
  }
}

}  // namespace sched::agent
