#include "client/resource_view.h"

#include <sstream>

#include "gtest/gtest.h"
#include "tests/client/sample_resources.h"

namespace sched::client {
namespace {

using testing::CloudNode;
using testing::FailedJob;
using testing::kNow;
using testing::LocalNode;
using testing::RunningJob;

google::protobuf::RepeatedPtrField<sched::v1::Job> SampleJobs() {
  google::protobuf::RepeatedPtrField<sched::v1::Job> jobs;
  *jobs.Add() = RunningJob();
  *jobs.Add() = FailedJob();
  return jobs;
}

google::protobuf::RepeatedPtrField<sched::v1::Node> SampleNodes() {
  google::protobuf::RepeatedPtrField<sched::v1::Node> nodes;
  *nodes.Add() = CloudNode();
  *nodes.Add() = LocalNode();
  return nodes;
}

TEST(JobTable, AlignsTheDefaultColumns) {
  std::ostringstream out;
  PrintJobTable(SampleJobs(), /*wide=*/false, kNow, out);
  EXPECT_EQ(out.str(),
            "ID                 NAME     PROJECT   STATE     NODE     ATTEMPT   AGE\n"
            "0123456789abcdef   train    llm       RUNNING   ws1      1         5m30s\n"
            "fedcba9876543210   <none>   default   FAILED    <none>   2         120m\n");
}

TEST(JobTable, WideAddsRequestExitAndMessage) {
  std::ostringstream out;
  PrintJobTable(SampleJobs(), /*wide=*/true, kNow, out);
  EXPECT_EQ(out.str(),
            "ID                 NAME     PROJECT   STATE     NODE     ATTEMPT   AGE     PRIORITY   "
            "GPUS               CPUS   MEMORY   EXIT   MESSAGE\n"
            "0123456789abcdef   train    llm       RUNNING   ws1      1         5m30s   10         "
            "1xH100|A100 24GB   2      8GB      -\n"
            "fedcba9876543210   <none>   default   FAILED    <none>   2         120m    0          "
            "0                  1      -        2      exit code 2\n");
}

TEST(JobTable, ShowsAPendingCancel) {
  sched::v1::Job job = RunningJob();
  job.set_cancel_requested(true);
  const std::vector<std::string> row = JobTableRow(job, /*wide=*/true, kNow);
  EXPECT_EQ(row.back(), "cancel requested");
  EXPECT_EQ(row[3], "RUNNING");
}

TEST(JobTable, UnsetCreateTimeIsUnknownAge) {
  sched::v1::Job job = RunningJob();
  job.clear_create_time();
  EXPECT_EQ(JobTableRow(job, /*wide=*/false, kNow).back(), "<unknown>");
}

TEST(NodeTable, AlignsTheDefaultColumns) {
  std::ostringstream out;
  PrintNodeTable(SampleNodes(), /*wide=*/false, kNow, out);
  EXPECT_EQ(
      out.str(),
      "NAME     STATE      CPUS   MEMORY   GPUS             PROVIDER   PRICE/H   COST   JOBS   AGE\n"
      "vast-1   READY      16     64GiB    2xH100 80GB      vastai     $0.40     -      1      120m\n"
      "ws1      CORDONED   8      32GiB    1xRTX3080 10GB   local      -         -      0      2d5h\n");
}

TEST(NodeTable, ARentedNodeShowsItsPhaseCostAndAgeSinceItWasAskedFor) {
  google::protobuf::RepeatedPtrField<sched::v1::Node> nodes;
  *nodes.Add() = testing::RentedNode();
  std::ostringstream out;
  PrintNodeTable(nodes, /*wide=*/false, kNow, out);
  EXPECT_EQ(out.str(),
            "NAME            STATE     CPUS   MEMORY   GPUS          PROVIDER   PRICE/H   COST    "
            "JOBS   AGE\n"
            "runpod-1a2b3c   JOINING   16     128GiB   1xH100 80GB   runpod     $2.50     $0.21   "
            "0      5m\n");
}

TEST(NodeTable, WideAddsCostAllocationAndHeartbeat) {
  std::ostringstream out;
  google::protobuf::RepeatedPtrField<sched::v1::Node> nodes = SampleNodes();
  nodes[0].mutable_capabilities()->set_spot(true);
  nodes[0].mutable_capabilities()->set_region("EU-SE-1");
  PrintNodeTable(nodes, /*wide=*/true, kNow, out);
  EXPECT_EQ(
      out.str(),
      "NAME     STATE      CPUS   MEMORY   GPUS             PROVIDER   PRICE/H   COST   JOBS   AGE    "
      "SPOT   REGION    INSTANCE-TYPE   ALLOC-CPUS   ALLOC-MEMORY   ALLOC-GPUS   HEARTBEAT\n"
      "vast-1   READY      16     64GiB    2xH100 80GB      vastai     $0.40     -      1      120m   "
      "yes    EU-SE-1   -               2            8GB            0            3s\n"
      "ws1      CORDONED   8      32GiB    1xRTX3080 10GB   local      -         -      0      2d5h   "
      "no     -         -               0            0              -            <unknown>\n");
}

TEST(NodeTable, MarksAdvertisedValuesWithAFootnote) {
  google::protobuf::RepeatedPtrField<sched::v1::Node> nodes;
  *nodes.Add() = testing::AdvertisedNode();
  std::ostringstream out;
  PrintNodeTable(nodes, /*wide=*/true, kNow, out);
  EXPECT_EQ(out.str(),
            "NAME   STATE   CPUS   MEMORY   GPUS              PROVIDER   PRICE/H   COST   JOBS   AGE   "
            "SPOT   REGION    INSTANCE-TYPE   ALLOC-CPUS   ALLOC-MEMORY   ALLOC-GPUS   HEARTBEAT\n"
            "demo   READY   2      8GiB     2xRTX4090 24GB*   vastai*    $0.40     -      0      5m    "
            "yes    us-east   2x4090          0            0              -            <unknown>\n"
            "* advertised: given to the agent (--advertise_gpus, --provider or its config), not "
            "detected\n");
}

TEST(NodeTable, NoFootnoteWithoutAdvertisedValues) {
  std::ostringstream out;
  PrintNodeTable(SampleNodes(), /*wide=*/false, kNow, out);
  EXPECT_EQ(out.str().find("advertised"), std::string::npos) << out.str();
}

TEST(ShortGpuModel, DropsVendorAndTrailingWords) {
  EXPECT_EQ(ShortGpuModel("NVIDIA H100 80GB HBM3"), "H100");
  EXPECT_EQ(ShortGpuModel("NVIDIA GeForce RTX 3080"), "RTX3080");
  EXPECT_EQ(ShortGpuModel("NVIDIA A100-SXM4-40GB"), "A100");
  EXPECT_EQ(ShortGpuModel("NVIDIA A100 80GB PCIe"), "A100");
  EXPECT_EQ(ShortGpuModel("Tesla T4"), "T4");
  EXPECT_EQ(ShortGpuModel("NVIDIA RTX A6000"), "RTXA6000");
  EXPECT_EQ(ShortGpuModel("NVIDIA"), "NVIDIA");
}

TEST(NodeGpuSummary, GroupsByModelAndMemory) {
  sched::v1::Capabilities caps;
  *caps.add_gpus() = testing::Gpu(0, "NVIDIA GeForce RTX 3080", 10 * testing::kGiB);
  *caps.add_gpus() = testing::Gpu(1, "Tesla T4", 15 * testing::kGiB);
  *caps.add_gpus() = testing::Gpu(2, "NVIDIA GeForce RTX 3080", 10 * testing::kGiB);
  EXPECT_EQ(NodeGpuSummary(caps), "2xRTX3080 10GB,1xT4 15GB");
  EXPECT_EQ(NodeGpuSummary(sched::v1::Capabilities()), "-");
  caps.add_advertised("gpus");
  EXPECT_EQ(NodeGpuSummary(caps), "2xRTX3080 10GB,1xT4 15GB*");
}

TEST(GpuRequestSummary, NamesCountModelsAndMemory) {
  sched::v1::Resources r;
  EXPECT_EQ(GpuRequestSummary(r), "0");
  r.set_gpus(2);
  EXPECT_EQ(GpuRequestSummary(r), "2");
  r.set_gpu_memory_bytes(24'000'000'000);
  EXPECT_EQ(GpuRequestSummary(r), "2xany 24GB");
  r.add_gpu_models("H100");
  EXPECT_EQ(GpuRequestSummary(r), "2xH100 24GB");
}

TEST(States, LoseTheirEnumPrefix) {
  EXPECT_EQ(ShortJobState(sched::v1::JOB_STATE_CANCELLED), "CANCELLED");
  EXPECT_EQ(ShortNodeState(sched::v1::NODE_STATE_DRAINING), "DRAINING");
}

}  // namespace
}  // namespace sched::client
