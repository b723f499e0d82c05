// What GetCostAdvice gathers from the Scheduler's state, without a server.
#include "server/service/cost_advice.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sched {
namespace {

using ::sched::testing::IsOk;
using ::sched::testing::StatusIs;
using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::HasSubstr;

constexpr int64_t kGiB = int64_t{1} << 30;
const absl::Time kUntil = absl::FromUnixSeconds(1'800'000'000);
const absl::Time kSince = kUntil - absl::Hours(24 * 7);

Node MakeNode(const std::string& name, const std::string& provider,
              std::vector<std::pair<std::string, int64_t>> gpus, int64_t memory_gib = 32) {
  Node n;
  n.record.name = name;
  n.record.caps.provider = provider;
  n.record.caps.cpu_millis = 8000;
  n.record.caps.memory_bytes = memory_gib * kGiB;
  for (size_t i = 0; i < gpus.size(); ++i) {
    n.record.caps.gpus.push_back(
        {static_cast<uint32_t>(i), "GPU-" + name, gpus[i].first, gpus[i].second});
  }
  return n;
}

// ws: the user's RTX 3080 box with a local price; box2: a local machine without GPUs; den: the
// user's, under a provider name of its own but priced from a local price; rented: RunPod A100.
std::vector<Node> Nodes() {
  Node ws = MakeNode("ws", "", {{"NVIDIA GeForce RTX 3080", 10240LL << 20}});
  LocalPrice price;
  price.power_watts = 500;
  price.electricity_dollars_per_kwh = 0.20;
  ws.record.caps.local_price = price;
  Node den = MakeNode("den", "mine", {{"NVIDIA GeForce RTX 3060", 12LL << 30}}, 16);
  den.record.caps.local_price = LocalPrice{};
  return {MakeNode("box2", "local", {}, 128), ws, den,
          MakeNode("rented", "runpod", {{"NVIDIA A100-SXM4-80GB", 80 * kGiB}})};
}

TEST(PickLocalNodeTest, TheLocalNodeWithTheMostGpuMemoryOrTheOneNamed) {
  const std::vector<Node> nodes = Nodes();
  absl::StatusOr<const Node*> picked = PickLocalNode(nodes, "");
  ASSERT_THAT(picked, IsOk());
  EXPECT_EQ((*picked)->record.name, "den");  // 12 GiB beats the 3080's 10 GiB; rented is not ours
  picked = PickLocalNode(nodes, "ws");
  ASSERT_THAT(picked, IsOk());
  EXPECT_EQ((*picked)->record.name, "ws");
  EXPECT_THAT(PickLocalNode(nodes, "rented"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("node rented is not a local machine (provider runpod): advice is for "
                          "machines you own")));
  EXPECT_THAT(PickLocalNode(nodes, "nope"),
              StatusIs(absl::StatusCode::kNotFound, Eq("node nope not found")));
  EXPECT_THAT(PickLocalNode({nodes[3]}, ""),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no local machine")));
}

TEST(PickLocalNodeTest, WhatIsLocal) {
  EXPECT_TRUE(IsLocalNode(MakeNode("a", "", {}).record.caps));
  EXPECT_TRUE(IsLocalNode(MakeNode("a", "Local", {}).record.caps));
  EXPECT_FALSE(IsLocalNode(MakeNode("a", "vastai", {}).record.caps));
  Node priced = MakeNode("a", "vastai", {});
  priced.record.caps.local_price = LocalPrice{};
  EXPECT_TRUE(IsLocalNode(priced.record.caps));
}

TEST(LocalMachineOfTest, GpusRamCpusAndTheLocalPrice) {
  Node ws = Nodes()[1];
  ws.record.caps.gpus.push_back({1, "GPU-b", "NVIDIA GeForce RTX 3080", 10000LL << 20});
  cost::LocalMachine m = LocalMachineOf(ws);
  EXPECT_EQ(m.name, "ws");
  EXPECT_EQ(m.gpu_model, "NVIDIA GeForce RTX 3080");
  EXPECT_EQ(m.gpu_count, 2);
  EXPECT_EQ(m.gpu_memory_bytes, 10000LL << 20);  // the smaller card's
  EXPECT_EQ(m.memory_bytes, 32 * kGiB);
  EXPECT_EQ(m.cpu_millis, 8000);
  EXPECT_EQ(m.power_watts, 500);
  EXPECT_EQ(m.electricity_usd_per_kwh, 0.20);
  EXPECT_EQ(LocalMachineOf(Nodes()[0]).power_watts, 0);  // no local price: unknown
}

LedgerEntry Entry(const std::string& job, const std::string& node, const std::string& provider,
                  double price, absl::Time start, absl::Duration length) {
  LedgerEntry e;
  e.job_id = job;
  e.project = "llm";
  e.node = node;
  e.provider = provider;
  e.price_per_hour = price;
  e.start = start;
  e.end = start + length;
  return e;
}

Job MakeJob(const std::string& id, LocalBlocker blocker, uint32_t gpus) {
  Job j;
  j.id = id;
  j.spec.name = "train-" + id;
  j.spec.project = "llm";
  j.spec.resources.gpus = gpus;
  j.spec.resources.gpu_memory_bytes = 20 * kGiB;
  j.spec.resources.gpu_models = {"A100"};
  j.spec.resources.memory_bytes = 48 * kGiB;
  j.spec.resources.cpu_millis = 2000;
  j.decision.local_blocker = blocker;
  return j;
}

TEST(GatherAdviceInputTest, CloudSpendAndTheRunsTooBigForHome) {
  const std::vector<Node> nodes = Nodes();
  absl::flat_hash_map<std::string, Job> jobs;
  for (const Job& j : {MakeJob("big", LocalBlocker::kTooSmall, 1),
                       MakeJob("busy", LocalBlocker::kBusy, 1),
                       MakeJob("gone", LocalBlocker::kTooSmall, 2),
                       MakeJob("cpu", LocalBlocker::kTooSmall, 0),
                       MakeJob("home", LocalBlocker::kNone, 1),
                       MakeJob("den", LocalBlocker::kTooSmall, 1)}) {
    jobs[j.id] = j;
  }
  const std::vector<LedgerEntry> ledger = {
      // Started before the window: only the hour inside counts.
      Entry("big", "rented", "runpod", 3.0, kSince - absl::Hours(1), absl::Hours(2)),
      Entry("busy", "rented", "runpod", 3.0, kSince + absl::Hours(5), absl::Hours(2)),
      // The node is gone: its GPU model is unknown.
      Entry("gone", "old", "vastai", 2.0, kSince + absl::Hours(10), absl::Hours(1)),
      Entry("cpu", "rented", "runpod", 0.5, kSince + absl::Hours(20), absl::Hours(4)),
      Entry("home", "ws", "", 0.1, kSince + absl::Hours(30), absl::Hours(3)),
      Entry("den", "den", "mine", 0.1, kSince + absl::Hours(40), absl::Hours(3)),
      Entry("unknown-job", "x", "aws", 1.0, kSince + absl::Hours(50), absl::Hours(1)),
      Entry("big", "rented", "runpod", 3.0, kUntil - absl::Minutes(30), absl::Hours(1)),
  };
  AdviceWindow w = GatherAdviceInput(ledger, jobs, nodes, nodes[1], kSince, kUntil);
  EXPECT_EQ(w.input.machine.name, "ws");
  EXPECT_DOUBLE_EQ(w.input.window_days, 7);
  // 3 + 6 + 2 + 2 + 1 + 1.5: local nodes (ws, den) are not cloud spend.
  EXPECT_DOUBLE_EQ(w.cloud_usd, 15.5);
  ASSERT_EQ(w.input.runs.size(), 4u);
  const cost::CloudRun& big = w.input.runs[0];
  EXPECT_EQ(big.job_id, "big");
  EXPECT_EQ(big.job_name, "train-big");
  EXPECT_EQ(big.project, "llm");
  EXPECT_DOUBLE_EQ(big.dollars, 3.0);
  EXPECT_DOUBLE_EQ(big.hours, 1.0);
  EXPECT_EQ(big.ran_on.model, "NVIDIA A100-SXM4-80GB");
  EXPECT_EQ(big.ran_on.count, 1);
  EXPECT_EQ(big.needs.gpus, 1);
  EXPECT_EQ(big.needs.gpu_memory_bytes, 20 * kGiB);
  EXPECT_THAT(big.needs.gpu_models, ElementsAre("A100"));
  EXPECT_EQ(big.needs.memory_bytes, 48 * kGiB);
  EXPECT_EQ(big.needs.cpu_millis, 2000);

  const cost::CloudRun& gone = w.input.runs[1];
  EXPECT_EQ(gone.job_id, "gone");
  EXPECT_EQ(gone.ran_on.model, "");
  EXPECT_EQ(gone.ran_on.count, 2);

  const cost::CloudRun& cpu = w.input.runs[2];
  EXPECT_TRUE(cpu.ran_on.cpu_only());
  EXPECT_DOUBLE_EQ(cpu.dollars, 2.0);

  // The lease still running at the end of the window: the half hour so far.
  EXPECT_EQ(w.input.runs[3].job_id, "big");
  EXPECT_THAT(w.input.runs[3].hours, DoubleNear(0.5, 1e-12));
}

}  // namespace
}  // namespace sched
