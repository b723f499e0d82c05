// Preemption notice sources: which are on, the metadata servers' answers (against a fake
// HTTP server on loopback that checks the headers each expects), the hook, and the watcher.
#include "agent/preemption.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sched::agent {
namespace {

using ::testing::HasSubstr;

// Answers each request with what `answer` returns for its request line and headers.
class FakeHttpServer {
 public:
  using Answer = std::function<std::pair<int, std::string>(const std::string& request)>;
  explicit FakeHttpServer(Answer answer) : answer_(std::move(answer)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(fd_, 16);
    thread_ = std::thread([this] {
      while (true) {
        const int c = accept(fd_, nullptr, nullptr);
        if (c < 0 || stop_) {
          if (c >= 0) close(c);
          return;
        }
        std::string request;
        char buf[4096];
        while (request.find("\r\n\r\n") == std::string::npos) {
          const ssize_t n = read(c, buf, sizeof buf);
          if (n <= 0) break;
          request.append(buf, n);
        }
        {
          std::lock_guard<std::mutex> lock(mu_);
          requests_.push_back(request);
        }
        const auto [status, body] = answer_(request);
        const std::string response = absl::StrCat(
            "HTTP/1.1 ", status, " X\r\nContent-Length: ", body.size(), "\r\n\r\n", body);
        write(c, response.data(), response.size());
        close(c);
      }
    });
  }
  ~FakeHttpServer() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_); }
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  Answer answer_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> requests_;
  std::thread thread_;
};

TEST(NoticeSourcesTest, AutoFollowsTheNodeAndListsAreChecked) {
  auto aws = ParseNoticeSources("auto", /*spot=*/true, "aws", "");
  ASSERT_TRUE(aws.ok());
  EXPECT_TRUE(aws->sigterm);
  EXPECT_TRUE(aws->aws);
  EXPECT_FALSE(aws->gcp);
  auto gcp = ParseNoticeSources("auto", true, "gcp", "");
  ASSERT_TRUE(gcp.ok());
  EXPECT_TRUE(gcp->gcp);
  EXPECT_FALSE(gcp->aws);
  auto on_demand = ParseNoticeSources("auto", /*spot=*/false, "aws", "");
  ASSERT_TRUE(on_demand.ok());
  EXPECT_FALSE(on_demand->sigterm || on_demand->aws || on_demand->gcp);
  auto listed = ParseNoticeSources("sigterm, hook", false, "", "check-notice");
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->sigterm);
  EXPECT_EQ(listed->hook, "check-notice");
  auto none = ParseNoticeSources("none", true, "aws", "");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->sigterm || none->aws);
  auto unknown = ParseNoticeSources("sigterm,azure", true, "", "");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(), HasSubstr("azure"));
  EXPECT_EQ(ParseNoticeSources("hook", true, "", "").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(NoticeSourcesTest, AwsTimeLeftComesFromTheDocument) {
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  const std::string at =
      absl::FormatTime(absl::RFC3339_sec, now + absl::Seconds(90), absl::UTCTimeZone());
  EXPECT_EQ(AwsTimeLeft(absl::StrCat("{\"action\": \"terminate\", \"time\": \"", at, "\"}"), now),
            absl::Seconds(90));
  EXPECT_EQ(AwsTimeLeft("{\"action\": \"stop\"}", now), absl::Minutes(2));
  EXPECT_EQ(AwsTimeLeft("{\"time\": \"yesterday\"}", now), absl::Minutes(2));
  EXPECT_EQ(AwsTimeLeft(absl::StrCat("{\"time\": \"",
                                     absl::FormatTime(absl::RFC3339_sec, now - absl::Seconds(5),
                                                      absl::UTCTimeZone()),
                                     "\"}"),
                        now),
            absl::ZeroDuration());
}

TEST(NoticeSourcesTest, AwsAsksWithAnImdsV2TokenAndReadsTheNotice) {
  std::atomic<bool> noticed{false};
  const absl::Time now = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));  // whole seconds
  FakeHttpServer imds([&](const std::string& r) -> std::pair<int, std::string> {
    if (absl::StartsWith(r, "PUT /latest/api/token ")) {
      if (!absl::StrContains(r, "X-aws-ec2-metadata-token-ttl-seconds: ")) return {400, ""};
      return {200, "tok-123"};
    }
    if (absl::StartsWith(r, "GET /latest/meta-data/spot/instance-action ")) {
      if (!absl::StrContains(r, "X-aws-ec2-metadata-token: tok-123")) return {401, ""};
      if (!noticed) return {404, "Not Found"};
      return {200, absl::StrCat("{\"action\": \"terminate\", \"time\": \"",
                                absl::FormatTime(absl::RFC3339_sec, now + absl::Seconds(100),
                                                 absl::UTCTimeZone()),
                                "\"}")};
    }
    return {404, ""};
  });
  auto quiet = CheckAws(imds.url(), now);
  ASSERT_TRUE(quiet.ok()) << quiet.status();
  EXPECT_FALSE(quiet->has_value());
  noticed = true;
  auto notice = CheckAws(imds.url(), now);
  ASSERT_TRUE(notice.ok()) << notice.status();
  ASSERT_TRUE(notice->has_value());
  EXPECT_EQ(**notice, absl::Seconds(100));
  EXPECT_EQ(imds.requests().size(), 4u);  // a token before each look
}

TEST(NoticeSourcesTest, GcpAsksWithTheMetadataFlavorHeader) {
  std::atomic<bool> preempted{false};
  FakeHttpServer metadata([&](const std::string& r) -> std::pair<int, std::string> {
    if (!absl::StartsWith(r, "GET /computeMetadata/v1/instance/preempted ")) return {404, ""};
    if (!absl::StrContains(r, "Metadata-Flavor: Google")) return {403, ""};
    return {200, preempted ? "TRUE" : "FALSE"};
  });
  auto quiet = CheckGcp(metadata.url());
  ASSERT_TRUE(quiet.ok()) << quiet.status();
  EXPECT_FALSE(quiet->has_value());
  preempted = true;
  auto notice = CheckGcp(metadata.url());
  ASSERT_TRUE(notice.ok());
  ASSERT_TRUE(notice->has_value());
  EXPECT_EQ(**notice, absl::Seconds(30));
}

TEST(NoticeSourcesTest, UnreachableServersAreUnavailableNotANotice) {
  FakeHttpServer closed([](const std::string&) { return std::make_pair(500, std::string()); });
  const std::string gone = closed.url();
  auto aws = CheckAws(gone, absl::Now());  // HTTP 500 on the token
  EXPECT_EQ(aws.status().code(), absl::StatusCode::kUnavailable);
  auto nothing = CheckGcp("http://127.0.0.1:1");
  EXPECT_EQ(nothing.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(HttpRequest("GET", "https://x/", {}, absl::Seconds(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(NoticeSourcesTest, HookSaysByItsExitStatusAndTheFirstNumberItPrints) {
  auto quiet = CheckHook("exit 1");
  ASSERT_TRUE(quiet.ok());
  EXPECT_FALSE(quiet->has_value());
  auto notice = CheckHook("echo 'leaving in 45 seconds'; exit 0");
  ASSERT_TRUE(notice.ok());
  ASSERT_TRUE(notice->has_value());
  EXPECT_EQ(**notice, absl::Seconds(45));
  auto unsaid = CheckHook("true");
  ASSERT_TRUE(unsaid.ok());
  EXPECT_EQ(**unsaid, absl::Seconds(30));
}

TEST(NoticeSourcesTest, TheWatcherCallsOnceWhenASourceGivesNotice) {
  char dir[] = "/tmp/sched_preempt_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string flag = absl::StrCat(dir, "/notice");
  NoticeSources sources;
  sources.hook = absl::StrCat("test -e ", flag, " && cat ", flag);
  sources.poll = absl::Milliseconds(20);
  absl::Notification called;
  std::atomic<int> calls{0};
  std::string source;
  absl::Duration left;
  {
    PreemptionWatcher watcher(sources, [&](const std::string& s, absl::Duration d) {
      source = s;
      left = d;
      calls++;
      called.Notify();
    });
    absl::SleepFor(absl::Milliseconds(100));
    EXPECT_FALSE(called.HasBeenNotified());
    std::FILE* f = std::fopen(flag.c_str(), "w");
    std::fputs("12\n", f);
    std::fclose(f);
    EXPECT_TRUE(called.WaitForNotificationWithTimeout(absl::Seconds(5)));
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(source, "hook");
  EXPECT_EQ(left, absl::Seconds(12));
  std::remove(flag.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace sched::agent
