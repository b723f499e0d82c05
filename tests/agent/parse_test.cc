// The agent's pure parsers: /proc/meminfo, cgroup limits, provider, labels, nvidia-smi CSV,
// --gpu_detection.

#include <map>
#include <optional>
#include <string>

#include "agent/detect.h"
#include "agent/gpu.h"
#include "agent/labels.h"
#include "agent/nvidia_smi.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sched::agent {
namespace {

using ::sched::testing::IsOkAndHolds;
using ::sched::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

constexpr char kMeminfo[] =
    "MemTotal:       32780412 kB\n"
    "MemFree:         1203340 kB\n"
    "MemAvailable:   20512220 kB\n";

TEST(ParseMemTotal, ReadsKibAsBytes) {
  EXPECT_THAT(ParseMemTotal(kMeminfo), IsOkAndHolds(32780412LL * 1024));
}

TEST(ParseMemTotal, MissingLine) {
  EXPECT_THAT(ParseMemTotal("MemFree: 1 kB\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no MemTotal")));
}

TEST(ParseMemTotal, BadNumber) {
  EXPECT_THAT(ParseMemTotal("MemTotal: lots kB\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not \"N kB\"")));
}

TEST(ParseCgroup, CpuMax) {
  EXPECT_EQ(ParseCgroupCpuMax("200000 100000\n"), std::optional<double>(2.0));
  EXPECT_EQ(ParseCgroupCpuMax("50000 100000"), std::optional<double>(0.5));
  EXPECT_EQ(ParseCgroupCpuMax("max 100000\n"), std::nullopt);
  EXPECT_EQ(ParseCgroupCpuMax(""), std::nullopt);
}

TEST(ParseCgroup, MemoryMax) {
  EXPECT_EQ(ParseCgroupMemoryMax("17179869184\n"), std::optional<int64_t>(17179869184));
  EXPECT_EQ(ParseCgroupMemoryMax("max\n"), std::nullopt);
}

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(DetectProvider, FromEnvironment) {
  EXPECT_EQ(DetectProvider(FakeEnv({{"RUNPOD_POD_ID", "abc123"}})), "runpod");
  EXPECT_EQ(DetectProvider(FakeEnv({{"CONTAINER_ID", "7788"}})), "vastai");
  EXPECT_EQ(DetectProvider(FakeEnv({{"VAST_CONTAINERLABEL", "C.7788"}})), "vastai");
  EXPECT_EQ(DetectProvider(FakeEnv({{"HOME", "/root"}})), "local");
  EXPECT_EQ(DetectProvider(FakeEnv({{"RUNPOD_POD_ID", "a"}, {"CONTAINER_ID", "b"}})), "runpod");
}

TEST(ParseLabels, KeyValuePairs) {
  EXPECT_THAT(
      ParseLabels("zone=home, gpu = rtx3080,empty="),
      IsOkAndHolds(ElementsAre(Pair("empty", ""), Pair("gpu", "rtx3080"), Pair("zone", "home"))));
  EXPECT_THAT(ParseLabels(""), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(ParseLabels("url=http://x/?a=b"),
              IsOkAndHolds(ElementsAre(Pair("url", "http://x/?a=b"))));
}

TEST(ParseLabels, Errors) {
  EXPECT_THAT(ParseLabels("zone"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"zone\" is not key=value")));
  EXPECT_THAT(ParseLabels("a=1,=2"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty key")));
  EXPECT_THAT(ParseLabels("a=1,a=2"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"a\" given twice")));
}

TEST(ParseGpuDetection, Names) {
  EXPECT_THAT(ParseGpuDetection("auto"), IsOkAndHolds(GpuDetection::kAuto));
  EXPECT_THAT(ParseGpuDetection("nvml"), IsOkAndHolds(GpuDetection::kNvml));
  EXPECT_THAT(ParseGpuDetection("nvidia-smi"), IsOkAndHolds(GpuDetection::kNvidiaSmi));
  EXPECT_THAT(ParseGpuDetection("none"), IsOkAndHolds(GpuDetection::kNone));
  EXPECT_THAT(ParseGpuDetection("pci"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got \"pci\"")));
}

MATCHER_P4(Gpu, index, uuid, model, memory_bytes, "") {
  return arg.index == static_cast<uint32_t>(index) && arg.uuid == uuid && arg.model == model &&
         arg.memory_bytes == memory_bytes;
}

TEST(ParseNvidiaSmiCsv, TwoGpus) {
  // Line 1 is what nvidia-smi printed on a real H100 (NVML gave the same UUID, model and
  // 85520809984 bytes there).
  constexpr char kCsv[] =
      "0, GPU-b4d22863-b116-3cfa-b26d-4e20faafcbb3, NVIDIA H100 80GB HBM3, 81559\n"
      "1, GPU-11111111-2222-3333-4444-555555555555, NVIDIA GeForce RTX 3080, 10240\n"
      "\n";
  EXPECT_THAT(ParseNvidiaSmiCsv(kCsv),
              IsOkAndHolds(ElementsAre(Gpu(0, "GPU-b4d22863-b116-3cfa-b26d-4e20faafcbb3",
                                           "NVIDIA H100 80GB HBM3", 85520809984LL),
                                       Gpu(1, "GPU-11111111-2222-3333-4444-555555555555",
                                           "NVIDIA GeForce RTX 3080", 10240LL << 20))));
  EXPECT_THAT(ParseNvidiaSmiCsv(""), IsOkAndHolds(IsEmpty()));
}

TEST(ParseNvidiaSmiCsv, Malformed) {
  EXPECT_THAT(ParseNvidiaSmiCsv("0, GPU-a, NVIDIA H100 80GB HBM3, 81559\n1, GPU-b, 81559\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("line 2 \"1, GPU-b, 81559\": want 4 fields")));
  EXPECT_THAT(ParseNvidiaSmiCsv("0, GPU-a, NVIDIA H100, [N/A]\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("memory.total is not a whole number of MiB")));
  EXPECT_THAT(ParseNvidiaSmiCsv("x, GPU-a, NVIDIA H100, 100\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("index is not a number")));
  EXPECT_THAT(ParseNvidiaSmiCsv("NVIDIA-SMI has failed because it couldn't communicate with "
                                "the NVIDIA driver.\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 1")));
}

}  // namespace
}  // namespace sched::agent
