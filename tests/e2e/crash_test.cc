// kill -9 of schedd while clients submit: nothing acknowledged is lost, and retried request ids
// never make a second job.
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "sched/v1/job_service.grpc.pb.h"
#include "tests/testing/subprocess.h"

namespace sched {
namespace {

using ::sched::testing::BinaryPath;
using ::sched::testing::MakeTempDir;
using ::sched::testing::PickFreePort;
using ::sched::testing::Subprocess;
using ::sched::testing::WaitForPort;

class SchedProcess {
 public:
  SchedProcess(std::string data_dir, int port) : data_dir_(std::move(data_dir)), port_(port) {}
  void Start() {
    proc_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("schedd"), "--data_dir=" + data_dir_,
                                 absl::StrCat("--listen=127.0.0.1:", port_), "--metrics_listen="},
        data_dir_ + "/schedd.log");
    ASSERT_TRUE(WaitForPort(port_, 10'000)) << "schedd did not start";
  }
  void Kill() { proc_->Signal(SIGKILL); }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  std::string data_dir_;
  int port_;
  std::unique_ptr<Subprocess> proc_;
};

std::vector<v1::Job> ListAll(v1::JobService::Stub& stub) {
  std::vector<v1::Job> out;
  std::string token;
  do {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ListJobsRequest req;
    req.set_page_size(5000);
    req.set_page_token(token);
    v1::ListJobsResponse resp;
    grpc::Status s = stub.ListJobs(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!s.ok()) break;
    out.insert(out.end(), resp.jobs().begin(), resp.jobs().end());
    token = resp.next_page_token();
  } while (!token.empty());
  return out;
}

TEST(CrashTest, KillDuringSubmitsLosesNothingAcknowledged) {
  const std::string dir = MakeTempDir("sched_crash_");
  SchedProcess schedd(dir, PickFreePort());
  ASSERT_NO_FATAL_FAILURE(schedd.Start());

  std::mutex mu;
  std::map<std::string, std::string> acked;  // request id -> job id
  std::set<std::string> unknown;             // request ids whose outcome we did not see
  constexpr int kRounds = 3;
  constexpr int kThreads = 8;
  for (int round = 0; round < kRounds; ++round) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int t = 0; t < kThreads; ++t) {
      clients.emplace_back([&, t] {
        auto channel = grpc::CreateChannel(schedd.address(), grpc::InsecureChannelCredentials());
        auto stub = v1::JobService::NewStub(channel);
        for (int i = 0; !stop.load(); ++i) {
          const std::string rid = absl::StrCat("r", round, "-t", t, "-", i);
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
          v1::SubmitJobRequest req;
          req.set_request_id(rid);
          req.mutable_spec()->set_name("crash");
          req.mutable_spec()->set_run("true");
          v1::SubmitJobResponse resp;
          grpc::Status s = stub->SubmitJob(&ctx, req, &resp);
          std::lock_guard<std::mutex> lock(mu);
          if (s.ok()) {
            acked[rid] = resp.job().id();
          } else {
            unknown.insert(rid);
            return;  // schedd is down: this client stops for the round
          }
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    schedd.Kill();
    stop = true;
    for (auto& c : clients) c.join();
    ASSERT_NO_FATAL_FAILURE(schedd.Start());
  }
  std::printf("acknowledged %zu submits, %zu unknown, across %d kills\n", acked.size(),
              unknown.size(), kRounds);
  ASSERT_GT(acked.size(), 100u) << "too few submits to prove anything";

  auto stub = v1::JobService::NewStub(
      grpc::CreateChannel(schedd.address(), grpc::InsecureChannelCredentials()));
  std::vector<v1::Job> jobs = ListAll(*stub);
  std::map<std::string, std::string> by_request;
  for (const v1::Job& j : jobs) {
    EXPECT_TRUE(by_request.emplace(j.request_id(), j.id()).second)
        << "two jobs for request " << j.request_id();
  }
  for (const auto& [rid, id] : acked) {
    auto it = by_request.find(rid);
    ASSERT_NE(it, by_request.end()) << "acknowledged submit " << rid << " lost";
    EXPECT_EQ(it->second, id);
  }
  // Each unknown call, retried, resolves to exactly one job.
  for (const std::string& rid : unknown) {
    grpc::ClientContext ctx;
    v1::SubmitJobRequest req;
    req.set_request_id(rid);
    req.mutable_spec()->set_name("crash");
    req.mutable_spec()->set_run("true");
    v1::SubmitJobResponse resp;
    ASSERT_TRUE(stub->SubmitJob(&ctx, req, &resp).ok());
    auto it = by_request.find(rid);
    if (it != by_request.end()) {
      EXPECT_TRUE(resp.existing());
      EXPECT_EQ(resp.job().id(), it->second);
    } else {
      EXPECT_FALSE(resp.existing());
    }
  }
  EXPECT_EQ(ListAll(*stub).size(), by_request.size() + [&] {
    size_t fresh = 0;
    for (const std::string& rid : unknown) fresh += by_request.count(rid) ? 0 : 1;
    return fresh;
  }());
  schedd.Kill();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sched
