// The sched-agent binary: flags reach the detected capabilities (--detect_only).

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "sched/v1/types.pb.h"

namespace sched::agent {
namespace {

// stdout of `command`, and its exit status in `*status`.
std::string RunCommand(const std::string& command, int* status) {
  FILE* pipe = popen(command.c_str(), "r");
  std::string out;
  if (pipe == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  *status = pclose(pipe);
  return out;
}

std::string AgentBinary() {
  const char* dir = std::getenv("SCHED_BIN_DIR");
  return absl::StrCat(dir != nullptr ? dir : ".", "/bin/sched-agent");
}

TEST(SchedAgentBinary, DetectOnlyPrintsCapabilities) {
  int status = -1;
  const std::string json = RunCommand(
      absl::StrCat("env RUNPOD_POD_ID=pod1 ", AgentBinary(),
                   " --detect_only --gpu_detection=none --price_per_hour=0.4"
                   " --labels=zone=home,tier=spot --work_dir=/tmp/sched-agent-binary-test"),
      &status);
  ASSERT_EQ(status, 0) << json;
  v1::Capabilities caps;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &caps).ok()) << json;
  EXPECT_GT(caps.cpus(), 0);
  EXPECT_GT(caps.memory_bytes(), 0);
  EXPECT_GT(caps.disk_bytes(), 0);
  EXPECT_EQ(caps.gpus_size(), 0);
  EXPECT_EQ(caps.gpu_detection(), "none");
  EXPECT_EQ(caps.provider(), "runpod");
  EXPECT_EQ(caps.price_per_hour(), 0.4);
  EXPECT_EQ(caps.labels().at("zone"), "home");
  EXPECT_EQ(caps.labels().at("tier"), "spot");
  EXPECT_FALSE(caps.hostname().empty());
  EXPECT_FALSE(caps.agent_version().empty());
}

TEST(SchedAgentBinary, BadLabelsExitWithUsageError) {
  int status = -1;
  RunCommand(absl::StrCat(AgentBinary(), " --detect_only --labels=nokey 2>/dev/null"), &status);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
}

}  // namespace
}  // namespace sched::agent
