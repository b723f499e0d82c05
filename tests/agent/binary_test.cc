// The sched-agent binary: flags reach the detected capabilities (--detect_only).

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

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

TEST(SchedAgentBinary, AdvertisedGpusAndCostReachCapabilities) {
  int status = -1;
  const std::string json = RunCommand(
      absl::StrCat(AgentBinary(),
                   " --detect_only --advertise_gpus='2x NVIDIA GeForce RTX 4090:24GB'"
                   " --price_per_hour=0.4 --spot=true --provider=vastai --region=us-east"
                   " --instance_type=vast-2x4090 --work_dir=/tmp/sched-agent-binary-test"),
      &status);
  ASSERT_EQ(status, 0) << json;
  v1::Capabilities caps;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &caps).ok()) << json;
  ASSERT_EQ(caps.gpus_size(), 2);
  EXPECT_EQ(caps.gpus(1).index(), 1u);
  EXPECT_EQ(caps.gpus(1).model(), "NVIDIA GeForce RTX 4090");
  EXPECT_EQ(caps.gpus(1).memory_bytes(), int64_t{24} << 30);
  EXPECT_EQ(caps.gpu_detection(), "advertised");
  EXPECT_TRUE(caps.spot());
  EXPECT_EQ(caps.region(), "us-east");
  EXPECT_EQ(caps.instance_type(), "vast-2x4090");
  EXPECT_EQ(caps.provider(), "vastai");
  EXPECT_EQ(caps.price_per_hour(), 0.4);
  ASSERT_EQ(caps.advertised_size(), 2);
  EXPECT_EQ(caps.advertised(0), "gpus");
}

TEST(SchedAgentBinary, ConfigFileWithFlagsOverIt) {
  const std::string config = "/tmp/sched-agent-binary-test.yaml";
  FILE* f = std::fopen(config.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("power_watts: 350\nelectricity_per_kwh: 0.30\nregion: home\n", f);
  std::fclose(f);
  int status = -1;
  const std::string json = RunCommand(
      absl::StrCat(AgentBinary(), " --detect_only --gpu_detection=none --config=", config,
                   " --electricity_per_kwh=0.20 --work_dir=/tmp/sched-agent-binary-test"),
      &status);
  ASSERT_EQ(status, 0) << json;
  v1::Capabilities caps;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &caps).ok()) << json;
  EXPECT_DOUBLE_EQ(caps.price_per_hour(), 0.35 * 0.20);
  EXPECT_EQ(caps.local_price().electricity_dollars_per_kwh(), 0.20);
  EXPECT_EQ(caps.region(), "home");
  std::remove(config.c_str());
}

TEST(SchedAgentBinary, PriceScheduleInTheMachinesTimeZone) {
  int status = -1;
  // POSIX TZ: "IST-05:30" is 5 h 30 min east of UTC.
  std::string json =
      RunCommand(absl::StrCat("env TZ=IST-05:30 ", AgentBinary(),
                              " --detect_only --gpu_detection=none --price_per_hour=0.3"
                              " --price_schedule='00:00-07:00=0.12, 17:00-21:00=0.45'"
                              " --work_dir=/tmp/sched-agent-binary-test"),
                 &status);
  ASSERT_EQ(status, 0) << json;
  v1::Capabilities caps;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &caps).ok()) << json;
  ASSERT_EQ(caps.price_schedule().windows_size(), 2);
  EXPECT_EQ(caps.price_schedule().windows(1).start_minute(), 17u * 60);
  EXPECT_EQ(caps.price_schedule().windows(1).dollars_per_hour(), 0.45);
  EXPECT_EQ(caps.price_schedule().utc_offset_minutes(), 330);
  // An offset in the text wins.
  json = RunCommand(absl::StrCat("env TZ=IST-05:30 ", AgentBinary(),
                                 " --detect_only --gpu_detection=none --price_per_hour=0.3"
                                 " --price_schedule='UTC-02:00; 00:00-07:00=0.12'"
                                 " --work_dir=/tmp/sched-agent-binary-test"),
                    &status);
  ASSERT_EQ(status, 0) << json;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &caps).ok()) << json;
  EXPECT_EQ(caps.price_schedule().utc_offset_minutes(), -120);
}

TEST(SchedAgentBinary, BadCostFlagsNameTheFlagAndExitBeforeConnecting) {
  struct Case {
    std::string flags;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"--advertise_gpus='2x RTX 4090'", "--advertise_gpus: \"2x RTX 4090\" has no memory"},
           {"--power_watts=-1", "--power_watts: want more than 0"},
           {"--power_watts=300", "power_watts: given without electricity_per_kwh"},
           {"--provider='Vast AI'", "--provider: want 1 to 63 of a-z"},
           {"--config=/nonexistent/agent.yaml", "--config=/nonexistent/agent.yaml: cannot open"},
           {"--price_per_hour=0.3 --price_schedule=24:00-06:00=0.1",
            "price_schedule: \"24:00-06:00=0.1\": 24:00 is allowed only as an end"},
       }) {
    int status = -1;
    // No --detect_only: the agent would dial schedd if it got past its flags.
    const std::string out =
        RunCommand(absl::StrCat(AgentBinary(), " --server=127.0.0.1:1 --metrics_listen= ", c.flags,
                                " --work_dir=/tmp/sched-agent-binary-test 2>&1"),
                   &status);
    ASSERT_TRUE(WIFEXITED(status)) << c.flags;
    EXPECT_EQ(WEXITSTATUS(status), 2) << c.flags << ": " << out;
    EXPECT_NE(out.find(c.message), std::string::npos) << c.flags << ": " << out;
  }
}

TEST(SchedAgentBinary, CheckpointThreadsOutOfRangeExitBeforeConnecting) {
  for (const std::string value : {"-1", "65"}) {
    int status = -1;
    const std::string out = RunCommand(
        absl::StrCat(AgentBinary(), " --server=127.0.0.1:1 --metrics_listen= --checkpoint_threads=",
                     value, " --work_dir=/tmp/sched-agent-binary-test 2>&1"),
        &status);
    ASSERT_TRUE(WIFEXITED(status)) << value;
    EXPECT_EQ(WEXITSTATUS(status), 2) << value << ": " << out;
    EXPECT_NE(out.find(absl::StrCat("--checkpoint_threads=", value,
                                    ": give 0 (one per core, 2 to 8) or 1 to 64")),
              std::string::npos)
        << out;
  }
}

}  // namespace
}  // namespace sched::agent

namespace sched::agent {
namespace {

// A join token given in $SCHED_TOKEN is not left where jobs (run as the same user) could read
// it: not in the environment they inherit, and not in /proc/<agent>/environ either.
TEST(SchedAgentBinary, AJoinTokenInTheEnvironmentIsWipedFromProcEnviron) {
  const std::string work = "/tmp/sched-agent-binary-test-token";
  const std::string secret = "tokid.s3cr3t-value-that-must-not-linger";
  const std::string pidfile = work + ".pid";
  // The agent dials a port nothing serves and keeps retrying; its environment is read meanwhile.
  int status = -1;
  RunCommand(absl::StrCat("mkdir -p ", work, "; SCHED_TOKEN='", secret, "\n' ", AgentBinary(),
                          " --server=127.0.0.1:1 --name=token-test --metrics_listen= "
                          "--gpu_detection=none --work_dir=",
                          work, " >/dev/null 2>&1 & echo $! > ", pidfile),
             &status);
  ASSERT_EQ(status, 0);
  int pid = 0;
  for (int i = 0; i < 50 && pid == 0; ++i) {
    FILE* f = std::fopen(pidfile.c_str(), "r");
    if (f != nullptr) {
      if (std::fscanf(f, "%d", &pid) != 1) pid = 0;
      std::fclose(f);
    }
  }
  ASSERT_GT(pid, 0);
  // Long enough to be past reading its flags and the environment.
  RunCommand("sleep 0.5", &status);
  const std::string environ =
      RunCommand(absl::StrCat("tr '\\0' '\\n' < /proc/", pid, "/environ"), &status);
  RunCommand(absl::StrCat("kill -9 ", pid, "; rm -rf ", work, " ", pidfile), &status);
  EXPECT_NE(environ.find("SCHED_TOKEN="), std::string::npos) << "the variable's slot stays";
  EXPECT_EQ(environ.find("s3cr3t"), std::string::npos) << environ;
}

}  // namespace
}  // namespace sched::agent
