#include "client/structured_output.h"

#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "sched/v1/job_service.pb.h"
#include "tests/client/sample_resources.h"
#include "tests/testing/status_matchers.h"
#include "yaml-cpp/yaml.h"

namespace sched::client {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::sched::testing::IsOk;
using ::testing::HasSubstr;

TEST(ToJson, UsesTheCanonicalMappingAndParsesBack) {
  sched::v1::ListJobsResponse jobs;
  *jobs.add_jobs() = testing::RunningJob();
  *jobs.add_jobs() = testing::FailedJob();
  absl::StatusOr<std::string> json = ToJson(jobs);
  ASSERT_THAT(json, IsOk());
  EXPECT_THAT(*json, HasSubstr("\"gpuMemoryBytes\": \"24000000000\""));
  EXPECT_THAT(*json, HasSubstr("\"state\": \"JOB_STATE_RUNNING\""));
  EXPECT_THAT(*json, HasSubstr("\"createTime\": \"2023-11-14T22:07:50Z\""));
  EXPECT_EQ(json->back(), '\n');

  sched::v1::ListJobsResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(*json, &parsed).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(parsed, jobs)) << parsed.DebugString();
}

TEST(ToYaml, IsTheJsonDocumentAsYaml) {
  const sched::v1::Node node = testing::CloudNode();
  absl::StatusOr<std::string> yaml = ToYaml(node);
  ASSERT_THAT(yaml, IsOk());
  // Strings YAML would read as something else stay quoted.
  EXPECT_THAT(*yaml, HasSubstr("memoryBytes: \"68719476736\""));
  EXPECT_THAT(*yaml, HasSubstr("registerTime: \"2023-11-14T20:13:20Z\""));
  EXPECT_THAT(*yaml, HasSubstr("name: vast-1\n"));
  EXPECT_THAT(*yaml, HasSubstr("connected: true\n"));

  const YAML::Node doc = YAML::Load(*yaml);
  EXPECT_EQ(doc["name"].as<std::string>(), "vast-1");
  EXPECT_EQ(doc["state"].as<std::string>(), "NODE_STATE_READY");
  EXPECT_EQ(doc["capabilities"]["gpus"].size(), 2u);
  EXPECT_EQ(doc["capabilities"]["gpus"][1]["model"].as<std::string>(), "NVIDIA H100 80GB HBM3");
  EXPECT_DOUBLE_EQ(doc["capabilities"]["pricePerHour"].as<double>(), 0.4);
  EXPECT_EQ(doc["capabilities"]["labels"]["region"].as<std::string>(), "eu");
  EXPECT_EQ(doc["allocatedGpuIndexes"][0].as<int>(), 0);
}

TEST(ToYaml, QuotesStringsThatLookLikeOtherTypes) {
  sched::v1::JobSpec spec;
  spec.set_name("true");
  spec.set_project("0123");
  spec.set_run("echo: hi");
  (*spec.mutable_labels())["k"] = "";
  absl::StatusOr<std::string> yaml = ToYaml(spec);
  ASSERT_THAT(yaml, IsOk());
  const YAML::Node doc = YAML::Load(*yaml);
  EXPECT_EQ(doc["name"].Tag(), "!") << *yaml;
  EXPECT_EQ(doc["name"].as<std::string>(), "true");
  EXPECT_EQ(doc["project"].Tag(), "!") << *yaml;
  EXPECT_EQ(doc["project"].as<std::string>(), "0123");
  EXPECT_EQ(doc["run"].as<std::string>(), "echo: hi");
  EXPECT_EQ(doc["labels"]["k"].as<std::string>(), "");
}

}  // namespace
}  // namespace sched::client
