#include "agent/owner_watch.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"

namespace sched::agent {

// Found by argument-dependent lookup, so in the type's namespace.
bool operator==(const ForeignProcess& a, const ForeignProcess& b) {
  return a.gpu == b.gpu && a.pid == b.pid && a.name == b.name;
}

namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

absl::Time T(int seconds) { return absl::FromUnixSeconds(1'800'000'000 + seconds); }

TEST(OwnerWatch, AGpuIsTheOwnersFromTheFirstSightUntilIdleForTheWholeTime) {
  OwnerWatch watch(absl::Seconds(30));
  OwnerWatch::Change c = watch.Observe(T(0), {});
  EXPECT_FALSE(c.changed());
  c = watch.Observe(T(1), {{0, 4242, "python3"}});
  EXPECT_THAT(c.taken, ElementsAre(0u));
  EXPECT_THAT(c.returned, IsEmpty());
  EXPECT_THAT(watch.gpus(), ElementsAre(0u));
  EXPECT_EQ(watch.Describe(), "GPU 0: pid 4242 (python3)");
  // Seen again: nothing new. Then gone; 29 s later still the owner's.
  EXPECT_FALSE(watch.Observe(T(10), {{0, 4242, "python3"}}).changed());
  EXPECT_FALSE(watch.Observe(T(20), {}).changed());
  EXPECT_FALSE(watch.Observe(T(39), {}).changed());
  // Another process of the owner's on GPU 1 and a new one on GPU 0 restart its wait.
  c = watch.Observe(T(39), {{1, 7, "blender"}, {0, 99, "game"}});
  EXPECT_THAT(c.taken, ElementsAre(1u));
  EXPECT_EQ(watch.Describe(), "GPU 0: pid 99 (game); GPU 1: pid 7 (blender)");
  EXPECT_FALSE(watch.Observe(T(68), {}).changed());
  c = watch.Observe(T(69), {});
  EXPECT_THAT(c.returned, ElementsAre(0u, 1u));
  EXPECT_THAT(c.taken, IsEmpty());
  EXPECT_THAT(watch.gpus(), IsEmpty());
  EXPECT_EQ(watch.Describe(), "");
}

// A fake /proc: "pid (name) state ppid pgrp ...".
class ForeignProcessesTest : public ::testing::Test {
 protected:
  void SetUp() override { proc_ = testing::MakeTempDir("sched_owner_proc_"); }
  void TearDown() override { std::filesystem::remove_all(proc_); }
  void Proc(int pid, const std::string& name, int ppid, int pgrp) {
    std::filesystem::create_directories(absl::StrCat(proc_, "/", pid));
    std::ofstream(absl::StrCat(proc_, "/", pid, "/stat"))
        << pid << " (" << name << ") S " << ppid << " " << pgrp << " " << pgrp << " 0 -1\n";
  }
  std::string proc_;
};

TEST_F(ForeignProcessesTest, TheJobsProcessesAndTheirDescendantsAreNotTheOwners) {
  Proc(100, "train.py", 50, 100);     // a job's first process, leading its group
  Proc(101, "python3", 100, 100);     // its child, in its group
  Proc(102, "worker) x (y", 101, 102);  // a grandchild that left the group; a name with ") ("
  Proc(103, "dataloader", 102, 102);  // and its child
  Proc(200, "python3", 1, 200);       // the owner's
  Proc(201, "Xorg", 1, 201);          // ignored by name
  Proc(202, "sleep", 202, 202);       // its own parent: the walk stops
  const std::vector<GpuProcess> on_gpus = {{0, 100}, {0, 101}, {1, 102}, {1, 103},
                                           {0, 200}, {1, 201}, {0, 300}, {1, 202}};
  // 300 has no /proc entry (ended, or another PID namespace): left out.
  EXPECT_THAT(ForeignGpuProcesses(on_gpus, {100}, {"Xorg"}, proc_),
              ElementsAre(ForeignProcess{0, 200, "python3"}, ForeignProcess{1, 202, "sleep"}));
  // With no job running, all but the ignored and the missing are the owner's.
  EXPECT_EQ(ForeignGpuProcesses(on_gpus, {}, {"Xorg"}, proc_).size(), 6u);
}

TEST(ForeignProcesses, OnTheRealProcAChildOfARootIsOursAndThisProcessIsNot) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    setpgid(0, 0);
    pause();
    _exit(0);
  }
  const std::vector<GpuProcess> on_gpus = {{0, static_cast<int>(child)},
                                           {1, static_cast<int>(getpid())}};
  const std::vector<ForeignProcess> foreign =
      ForeignGpuProcesses(on_gpus, {static_cast<int>(child)}, {});
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_EQ(foreign.size(), 1u);
  EXPECT_EQ(foreign[0].pid, getpid());
  EXPECT_EQ(foreign[0].gpu, 1u);
  std::string comm;
  std::getline(std::ifstream("/proc/self/comm"), comm);
  EXPECT_EQ(foreign[0].name, comm);
}

TEST(ReadGpuProcessesFile, ReadsLinesSkipsCommentsAndNamesABadLine) {
  const std::string dir = testing::MakeTempDir("sched_owner_file_");
  const std::string path = dir + "/gpus";
  EXPECT_THAT(*ReadGpuProcessesFile(path), IsEmpty());  // no file: none
  std::ofstream(path) << "# gpu pid\n0 4242\n\n1\t77  # the owner's render\n";
  absl::StatusOr<std::vector<GpuProcess>> read = ReadGpuProcessesFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 2u);
  EXPECT_EQ((*read)[0].gpu, 0u);
  EXPECT_EQ((*read)[0].pid, 4242);
  EXPECT_EQ((*read)[1].gpu, 1u);
  EXPECT_EQ((*read)[1].pid, 77);
  for (const char* bad : {"0\n", "x 12\n", "0 -3\n", "0 1 2\n"}) {
    std::ofstream(path) << bad;
    read = ReadGpuProcessesFile(path);
    EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(read.status().message(), HasSubstr(path + ":1: want '<gpu index> <pid>'")) << bad;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sched::agent
