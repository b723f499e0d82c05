#include "agent/process_ledger.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"

namespace sched::agent {
namespace {

// A child leading its own process group, sleeping.
pid_t SpawnGroupLeader() {
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sleep", "sleep", "30", nullptr);
    _exit(127);
  }
  setpgid(pid, pid);
  return pid;
}

TEST(ProcessLedgerTest, KillsTheRecordedGroupAndForgetsIt) {
  const std::string dir = testing::MakeTempDir("ledger_");
  ProcessLedger ledger(dir + "/pgids");
  pid_t pid = SpawnGroupLeader();
  ledger.Record("job-1", pid);
  EXPECT_TRUE(std::filesystem::exists(dir + "/pgids/job-1"));
  // A fresh ledger over the same folder: what a restarted agent sees.
  EXPECT_EQ(ProcessLedger(dir + "/pgids").KillLeftovers(), 1);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_TRUE(std::filesystem::is_empty(dir + "/pgids"));
  std::filesystem::remove_all(dir);
}

TEST(ProcessLedgerTest, LeavesAReusedPidAlone) {
  const std::string dir = testing::MakeTempDir("ledger_");
  pid_t pid = SpawnGroupLeader();
  std::filesystem::create_directories(dir + "/pgids");
  // Recorded with another start time: the pid now names some other process.
  std::ofstream(dir + "/pgids/job-2") << pid << " " << ProcessStartTime(pid) + 12345 << "\n";
  EXPECT_EQ(ProcessLedger(dir + "/pgids").KillLeftovers(), 0);
  EXPECT_EQ(kill(pid, 0), 0) << "an unrelated process was killed";
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  std::filesystem::remove_all(dir);
}

TEST(ProcessLedgerTest, ErasedRecordsAreNotKilled) {
  const std::string dir = testing::MakeTempDir("ledger_");
  ProcessLedger ledger(dir + "/pgids");
  pid_t pid = SpawnGroupLeader();
  ledger.Record("job-3", pid);
  ledger.Erase("job-3");
  EXPECT_EQ(ledger.KillLeftovers(), 0);
  EXPECT_EQ(kill(pid, 0), 0);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  std::filesystem::remove_all(dir);
}

TEST(ProcessLedgerTest, StartTimeOfSelfIsKnownAndOfNobodyIsZero) {
  EXPECT_GT(ProcessStartTime(getpid()), 0u);
  EXPECT_EQ(ProcessStartTime(0x7ffffff0), 0u);
}

}  // namespace
}  // namespace sched::agent
