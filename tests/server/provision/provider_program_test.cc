// Running provider programs: the request on stdin, the answer on stdout, and what happens when
// a program fails, answers nonsense or hangs.

#include "server/provision/provider_program.h"

#include <sys/stat.h>

#include <fstream>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace sched::provision {
namespace {

using nlohmann::json;
using ::sched::testing::IsOk;
using ::sched::testing::StatusIs;
using ::testing::HasSubstr;

class ProviderProgramTest : public ::testing::Test {
 protected:
  std::string Script(const std::string& body) {
    const std::string path = dir_ + "/provider-" + std::to_string(n_++);
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    chmod(path.c_str(), 0755);
    return path;
  }
  std::string dir_ = ::sched::testing::MakeTempDir("sched_provider_program_");
  int n_ = 0;
};

TEST_F(ProviderProgramTest, TheRequestGoesInAndTheAnswerComesOut) {
  // Echoes the op and the request's node name back.
  const std::string p = Script(
      R"sh(read -r line; name=$(printf '%s' "$line" | sed 's/.*"node_name":"\([^"]*\)".*/\1/'); )sh"
      R"sh(printf '{"op":"%s","node":"%s"}\n' "$1" "$name")sh");
  auto reply = RunProvider(p, "create", json{{"node_name", "n-1"}}, absl::Seconds(10));
  ASSERT_THAT(reply, IsOk());
  EXPECT_EQ((*reply)["op"], "create");
  EXPECT_EQ((*reply)["node"], "n-1");
}

TEST_F(ProviderProgramTest, AFailureCarriesTheProgramsOwnError) {
  const std::string p = Script(R"(echo '{"error": "quota exceeded in us-east"}'; exit 3)");
  EXPECT_THAT(RunProvider(p, "create", json::object(), absl::Seconds(10)),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("exit code 3: quota exceeded in us-east")));
  const std::string q = Script("echo 'traceback: boom' >&2; exit 1");
  EXPECT_THAT(RunProvider(q, "offers", json::object(), absl::Seconds(10)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("traceback: boom")));
}

TEST_F(ProviderProgramTest, AnAnswerThatIsNotAnObjectIsRefused) {
  EXPECT_THAT(RunProvider(Script("echo not json"), "status", json::object(), absl::Seconds(10)),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("not one JSON object")));
  EXPECT_THAT(RunProvider(Script("echo '[1,2]'"), "status", json::object(), absl::Seconds(10)),
              StatusIs(absl::StatusCode::kInternal));
}

TEST_F(ProviderProgramTest, AProgramThatHangsIsKilledWithWhatItStarted) {
  const std::string pidfile = dir_ + "/child.pid";
  // A child that would outlive its parent, then a parent that never answers.
  const std::string p = Script("sleep 300 & echo $! > " + pidfile + "; sleep 300");
  const absl::Time start = absl::Now();
  EXPECT_THAT(RunProvider(p, "create", json::object(), absl::Milliseconds(500)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("no answer within 500ms")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  std::ifstream in(pidfile);
  int child = 0;
  in >> child;
  ASSERT_GT(child, 0);
  // Killed with its group (allow the kernel a moment to reap it).
  bool alive = true;
  for (int i = 0; i < 50 && alive; ++i) {
    alive = kill(child, 0) == 0;
    std::ifstream stat("/proc/" + std::to_string(child) + "/stat");
    std::string pid, comm, state;
    if (stat >> pid >> comm >> state && state == "Z") alive = false;
    if (alive) absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_FALSE(alive);
}

TEST_F(ProviderProgramTest, AMissingProgramSaysSo) {
  EXPECT_THAT(RunProvider(dir_ + "/nope", "offers", json::object(), absl::Seconds(1)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cannot start")));
}

TEST_F(ProviderProgramTest, CancellingKillsTheProgram) {
  std::atomic<bool> cancel{true};
  EXPECT_THAT(
      RunProvider(Script("sleep 300"), "create", json::object(), absl::Seconds(60), &cancel),
      StatusIs(absl::StatusCode::kCancelled));
}

}  // namespace
}  // namespace sched::provision
