#include "client/describe.h"

#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/sample_resources.h"

namespace sched::client {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(DescribeJob, PrintsEveryFieldAligned) {
  std::ostringstream out;
  DescribeJob(testing::RunningJob(), testing::kNow, out);
  EXPECT_EQ(out.str(),
            "ID:           0123456789abcdef\n"
            "Name:         train\n"
            "Project:      llm\n"
            "State:        RUNNING\n"
            "Message:      <none>\n"
            "Attempt:      1\n"
            "Epoch:        7\n"
            "Node:         ws1\n"
            "GPU Indexes:  0\n"
            "Exit Code:    <none>\n"
            "Priority:     10\n"
            "Request ID:   req-1\n"
            "Created:      2023-11-14T22:07:50Z (5m30s ago)\n"
            "Started:      2023-11-14T22:08:20Z (5m ago)\n"
            "Finished:     <none>\n"
            "Updated:      2023-11-14T22:13:10Z (10s ago)\n"
            "Labels:\n"
            "  team=nlp\n"
            "Resources:\n"
            "  GPUs:        1\n"
            "  GPU Memory:  24GB\n"
            "  GPU Models:  H100, A100\n"
            "  CPUs:        2\n"
            "  Memory:      8GB\n"
            "Cost:\n"
            "  Placement:   prefer-local\n"
            "  Spot:        auto\n"
            "  Deadline:    <none>\n"
            "  Max Cost:    <none>\n"
            "  Runtime:     <not given>\n"
            "  Model:       <none>\n"
            "Env:\n"
            "  EPOCHS=3\n"
            "Setup:\n"
            "  pip install -r requirements.txt\n"
            "Run:\n"
            "  python train.py\n");
}

TEST(DescribeJob, ShowsExitCodeCancelAndMissingParts) {
  sched::v1::Job job = testing::FailedJob();
  job.set_cancel_requested(true);
  std::ostringstream out;
  DescribeJob(job, testing::kNow, out);
  EXPECT_THAT(out.str(), HasSubstr("State:        FAILED (cancel requested)\n"));
  EXPECT_THAT(out.str(), HasSubstr("Exit Code:    2\n"));
  EXPECT_THAT(out.str(), HasSubstr("Message:      exit code 2\n"));
  EXPECT_THAT(out.str(), HasSubstr("Labels:       <none>\n"));
  EXPECT_THAT(out.str(), HasSubstr("  GPU Models:  any\n"));
  EXPECT_THAT(out.str(), HasSubstr("  Memory:      <none>\n"));
  EXPECT_THAT(out.str(), HasSubstr("Setup:        <none>\nRun:\n  exit 2\n"));
}

TEST(DescribeJob, ShowsEveryAttemptWhereItRanHowItEndedAndWhatItResumedFrom) {
  sched::v1::Job job = testing::RunningJob();
  job.set_attempt(2);
  job.set_preemptions(1);
  sched::v1::JobAttempt* first = job.add_attempts();
  first->set_attempt(1);
  first->set_node("spot-1");
  first->set_provider("vastai");
  first->set_spot(true);
  *first->mutable_start_time() = testing::At(testing::kNow - absl::Minutes(30));
  *first->mutable_end_time() = testing::At(testing::kNow - absl::Minutes(10));
  first->set_end_reason("preempted on node spot-1: sigterm preemption notice");
  first->set_preempted(true);
  sched::v1::JobAttempt* second = job.add_attempts();
  second->set_attempt(2);
  second->set_node("ws1");
  second->set_provider("local");
  *second->mutable_start_time() = testing::At(testing::kNow - absl::Minutes(10));
  second->set_resumed_from("step-000120");
  second->set_resumed_from_seq(4);
  std::ostringstream out;
  DescribeJob(job, testing::kNow, out);
  EXPECT_THAT(out.str(),
              HasSubstr("Attempt:      2 (1 lost to preemption, not counted as failures)\n"));
  EXPECT_THAT(
      out.str(),
      HasSubstr("Attempts:\n"
                "  #   NODE     PROVIDER        STARTED   RAN   ENDED"
                "                                                 RESUMED FROM\n"
                "  1   spot-1   vastai (spot)   30m ago   20m   preempted on node spot-1: "
                "sigterm preemption notice   <start>\n"
                "  2   ws1      local           10m ago   10m   <running>"
                "                                             step-000120 (#4)\n"));
}

TEST(DescribeJob, ShowsTheCostFields) {
  sched::v1::Job job = testing::RunningJob();
  sched::v1::JobSpec& spec = *job.mutable_spec();
  spec.set_placement(sched::v1::PLACEMENT_POLICY_CHEAPEST);
  spec.set_spot(sched::v1::SPOT_POLICY_ON_DEMAND);
  spec.mutable_deadline()->set_seconds(absl::ToUnixSeconds(testing::kNow + absl::Hours(11)));
  spec.set_max_cost(7.5);
  spec.mutable_runtime()->set_seconds(9000);
  spec.mutable_runtime()->set_gpu_model("a100-80gb");
  sched::v1::ModelDescription& m = *spec.mutable_model();
  m.set_parameters(7'000'000'000);
  m.set_method("qlora");
  m.set_precision("int4");
  m.set_batch_size(4);
  m.set_gradient_checkpointing(true);
  m.set_lora_rank(64);
  job.mutable_spec()->mutable_resources()->set_gpu_memory_bytes(6'600'000'000);
  job.mutable_spec()->mutable_resources()->set_gpu_memory_estimated(true);
  sched::v1::CostLine spent;
  spent.set_key(job.id());
  spent.set_dollars(1.25);
  spent.set_hours(0.5);
  spent.set_leases(2);
  std::ostringstream out;
  DescribeJob(job, testing::kNow, out, spent);
  EXPECT_THAT(out.str(), HasSubstr("  Spent:       $1.25 (2 leases, 0.50 node-hours)\n"));
  EXPECT_THAT(out.str(), HasSubstr("  GPU Memory:  6.6GB (estimated from the model)\n"));
  EXPECT_THAT(out.str(), HasSubstr("Cost:\n"
                                   "  Placement:   cheapest\n"
                                   "  Spot:        on-demand\n"
                                   "  Deadline:    2023-11-15T09:13:20Z (in 11h)\n"
                                   "  Max Cost:    $7.50\n"
                                   "  Runtime:     2h30m on a100-80gb\n"
                                   "  Model:       7B qlora int4, batch 4, gradient checkpointing, "
                                   "rank 64\n"));
}

TEST(DescribeNode, PrintsCapabilitiesGpusAndAllocation) {
  std::ostringstream out;
  DescribeNode(testing::CloudNode(), testing::kNow, out);
  EXPECT_EQ(out.str(),
            "Name:            vast-1\n"
            "State:           READY\n"
            "Connected:       yes\n"
            "Hostname:        c-123\n"
            "Provider:        vastai\n"
            "Region:          <none>\n"
            "Instance Type:   <none>\n"
            "Spot:            no\n"
            "Price/h:         $0.40\n"
            "Agent Version:   0.1.0\n"
            "GPU Detection:   nvml\n"
            "Registered:      2023-11-14T20:13:20Z (120m ago)\n"
            "Last Heartbeat:  2023-11-14T22:13:17Z (3s ago)\n"
            "Labels:\n"
            "  region=eu\n"
            "Capacity:\n"
            "  CPUs:          16\n"
            "  Memory:        64GiB\n"
            "  Disk:          1TB\n"
            "GPUs:\n"
            "  INDEX   MODEL                   MEMORY   UUID\n"
            "  0       NVIDIA H100 80GB HBM3   80GB     GPU-0\n"
            "  1       NVIDIA H100 80GB HBM3   80GB     GPU-1\n"
            "Allocated:\n"
            "  CPUs:          2 of 16\n"
            "  Memory:        8GB of 64GiB\n"
            "  GPUs:          0 (1 of 2)\n"
            "  Running Jobs:  1\n");
}

TEST(DescribeNode, ARentedNodeShowsItsRentalAndEvents) {
  std::ostringstream out;
  DescribeNode(testing::RentedNode(), testing::kNow, out);
  EXPECT_THAT(out.str(), HasSubstr("State:           JOINING\n"));
  EXPECT_THAT(out.str(),
              HasSubstr("Rental:\n"
                        "  Provider:        runpod\n"
                        "  Offer:           h100-secure\n"
                        "  Instance:        pod-xyz\n"
                        "  Owner Project:   llm\n"
                        "  Phase:           JOINING\n"
                        "  Asked For:       2023-11-14T22:08:20Z (5m ago)\n"
                        "  Expected Ready:  2023-11-14T22:12:20Z (60s ago)\n"
                        "  Joined:          <none>\n"
                        "  Ended:           <none>\n"
                        "  Idle Since:      2023-11-14T22:08:20Z (5m ago)\n"
                        "  Price/h:         $2.50\n"
                        "  Cost So Far:     $0.21\n"
                        "  Message:         the machine is up; waiting for its agent\n"
                        "Events:\n"
                        "  TIME     PHASE          MESSAGE\n"
                        "  5m ago   PROVISIONING   asked of runpod (offer h100-secure, $2.50/h) for "
                        "job 3f2a\n"
                        "  2m ago   JOINING        the machine is up; waiting for its agent\n"));
}

TEST(DescribeNode, MarksAdvertisedValuesAndShowsCost) {
  std::ostringstream out;
  DescribeNode(testing::AdvertisedNode(), testing::kNow, out);
  EXPECT_THAT(out.str(), HasSubstr("Provider:        vastai (advertised)\n"
                                   "Region:          us-east\n"
                                   "Instance Type:   2x4090\n"
                                   "Spot:            yes\n"
                                   "Price/h:         $0.40\n"));
  EXPECT_THAT(out.str(), HasSubstr("GPU Detection:   advertised\n"));
  EXPECT_THAT(out.str(), HasSubstr("GPUs (advertised):\n"
                                   "  INDEX   MODEL                     MEMORY   UUID\n"
                                   "  0       NVIDIA GeForce RTX 4090   24GB     -\n"
                                   "  1       NVIDIA GeForce RTX 4090   24GB     -\n"));
  EXPECT_THAT(out.str(), Not(HasSubstr("Local Price")));
}

TEST(DescribeNode, LocalPriceParts) {
  sched::v1::Node node = testing::LocalNode();
  sched::v1::Capabilities& caps = *node.mutable_capabilities();
  caps.set_price_per_hour(0.105 + 2190.0 / (36 * 730));
  sched::v1::Capabilities::LocalPrice& p = *caps.mutable_local_price();
  p.set_power_watts(350);
  p.set_electricity_dollars_per_kwh(0.30);
  p.set_energy_dollars_per_hour(0.105);
  p.set_hardware_cost_dollars(2190);
  p.set_amortize_months(36);
  p.set_amortization_dollars_per_hour(2190.0 / (36 * 730));
  std::ostringstream out;
  DescribeNode(node, testing::kNow, out);
  EXPECT_THAT(out.str(), HasSubstr("Price/h:         $0.19\n"
                                   "Local Price:\n"
                                   "  Energy:        $0.1050/h (350 W at $0.3/kWh)\n"
                                   "  Hardware:      $0.0833/h ($2190 over 36 months of 730 h)\n"));
}

TEST(DescribeNode, PriceSchedule) {
  sched::v1::Node node = testing::LocalNode();
  sched::v1::Capabilities& caps = *node.mutable_capabilities();
  caps.set_price_per_hour(0.30);
  sched::v1::PriceSchedule& schedule = *caps.mutable_price_schedule();
  schedule.set_utc_offset_minutes(60);
  sched::v1::PriceWindow& peak = *schedule.add_windows();
  peak.set_start_minute(17 * 60);
  peak.set_end_minute(21 * 60);
  peak.set_dollars_per_hour(0.45);
  sched::v1::PriceWindow& night = *schedule.add_windows();
  night.set_start_minute(0);
  night.set_end_minute(7 * 60);
  night.set_dollars_per_hour(0.12);
  std::ostringstream out;
  DescribeNode(node, testing::kNow, out);
  EXPECT_THAT(out.str(), HasSubstr("Price/h:         $0.30\n"
                                   "Price Schedule:  00:00-07:00 $0.12/h, 17:00-21:00 $0.45/h "
                                   "(UTC+01:00); $0.30/h otherwise\n"));
  // No windows: no line.
  caps.clear_price_schedule();
  std::ostringstream plain;
  DescribeNode(node, testing::kNow, plain);
  EXPECT_THAT(plain.str(), Not(HasSubstr("Price Schedule")));
}

TEST(DescribeNode, NodeWithoutGpus) {
  sched::v1::Node node = testing::LocalNode();
  node.mutable_capabilities()->clear_gpus();
  std::ostringstream out;
  DescribeNode(node, testing::kNow, out);
  EXPECT_THAT(out.str(), HasSubstr("GPUs:            <none>\n"));
  EXPECT_THAT(out.str(), HasSubstr("Last Heartbeat:  <none>\n"));
  EXPECT_THAT(out.str(), HasSubstr("  GPUs:          - (0 of 0)\n"));
}

}  // namespace
}  // namespace sched::client

namespace sched::client {
namespace {

TEST(DescribeJob, ASecretShowsItsNameOnly) {
  sched::v1::Job job = testing::RunningJob();
  sched::v1::EnvVar* secret = job.mutable_spec()->add_env();
  secret->set_name("HF_TOKEN");
  secret->set_value("should-never-come-back-but-still-hidden");
  secret->set_secret(true);
  std::ostringstream out;
  DescribeJob(job, testing::kNow, out);
  EXPECT_THAT(out.str(), HasSubstr("Env:\n  EPOCHS=3\n  HF_TOKEN=<secret>\n"));
  EXPECT_THAT(out.str(), ::testing::Not(HasSubstr("should-never")));
}

TEST(DescribeJob, ShowsRestartsHoldsAndLimits) {
  sched::v1::Job job = testing::RunningJob();
  job.set_state(sched::v1::JOB_STATE_PENDING);
  sched::v1::RetryPolicy* retry = job.mutable_spec()->mutable_retry();
  retry->set_max_restarts(3);
  retry->add_exit_codes(75);
  retry->add_exit_codes(137);
  retry->set_backoff_seconds(30);
  retry->set_max_backoff_seconds(600);
  job.set_restarts(1);
  job.mutable_hold_until()->set_seconds(absl::ToUnixSeconds(testing::kNow) + 90);
  job.mutable_spec()->set_max_duration_seconds(6 * 3600);
  job.set_run_seconds(5400.4);
  job.mutable_spec()->mutable_not_before()->set_seconds(absl::ToUnixSeconds(testing::kNow) - 600);
  std::ostringstream out;
  DescribeJob(job, testing::kNow, out);
  EXPECT_THAT(out.str(),
              HasSubstr("Restarts:     1 of 3 (on exit code 75, 137; backoff 30s doubling up to "
                        "10m)\n"));
  EXPECT_THAT(out.str(), HasSubstr("Held Until:"));
  EXPECT_THAT(out.str(), HasSubstr("Max Duration:  6h (1h30m used by ended attempts)\n"));
  EXPECT_THAT(out.str(), HasSubstr("Not Before:"));
  // Once the hold is over, or without a policy, those lines are not shown.
  job.mutable_hold_until()->set_seconds(absl::ToUnixSeconds(testing::kNow) - 1);
  job.mutable_spec()->clear_retry();
  std::ostringstream plain;
  DescribeJob(job, testing::kNow, plain);
  EXPECT_THAT(plain.str(), ::testing::Not(HasSubstr("Held Until")));
  EXPECT_THAT(plain.str(), ::testing::Not(HasSubstr("Restarts")));
}

}  // namespace
}  // namespace sched::client
