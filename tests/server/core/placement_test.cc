#include "server/core/placement.h"

#include <cmath>
#include <memory>
#include <optional>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "absl/strings/str_cat.h"
#include "server/core/scheduler.h"
#include "server/store/memory_store.h"
#include "tests/testing/fake_agent_link.h"
#include "tests/testing/status_matchers.h"

namespace sched {
namespace {

using ::sched::testing::FakeAgentLink;
using ::sched::testing::IsOk;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

constexpr int64_t kGiB = int64_t{1} << 30;

Job MakeJob(uint64_t seq, int64_t cpu_millis, int32_t priority = 0, uint32_t gpus = 0) {
  Job job;
  job.id = absl::StrCat("job-", seq);
  job.seq = seq;
  job.spec.priority = priority;
  job.spec.resources.cpu_millis = cpu_millis;
  job.spec.resources.gpus = gpus;
  return job;
}

Node MakeNode(std::string name, int cpus, int64_t mem, std::vector<GpuDevice> gpus = {}) {
  Node node;
  node.record.name = std::move(name);
  node.record.caps.cpu_millis = cpus * 1000;
  node.record.caps.memory_bytes = mem;
  node.record.caps.gpus = std::move(gpus);
  node.connected = true;
  return node;
}

std::vector<uint64_t> Seqs(const PendingQueue::Group& group) {
  std::vector<uint64_t> seqs;
  for (const auto& [key, job] : group.jobs) seqs.push_back(job->seq);
  return seqs;
}

// ---- PendingQueue

TEST(PendingQueueTest, GroupsJobsByResourcesInPriorityThenAgeOrder) {
  Job a = MakeJob(1, 1000), b = MakeJob(2, 2000), c = MakeJob(3, 1000, /*priority=*/5),
      d = MakeJob(4, 1000);
  PendingQueue queue;
  for (Job* job : {&a, &b, &c, &d}) queue.Add(job, /*settled=*/true);
  EXPECT_EQ(queue.size(), 4u);
  ASSERT_THAT(queue.Groups(), SizeIs(2));
  const PendingQueue::Group* one_cpu = queue.GroupOf(a);
  ASSERT_NE(one_cpu, nullptr);
  EXPECT_EQ(one_cpu->resources.cpu_millis, 1000);
  EXPECT_THAT(Seqs(*one_cpu), ElementsAre(3u, 1u, 4u));  // priority 5 first, then oldest
  EXPECT_EQ(one_cpu->first, &c);
  EXPECT_THAT(Seqs(*queue.GroupOf(b)), ElementsAre(2u));

  queue.Remove(d);  // not the first: the first stays
  EXPECT_EQ(one_cpu->first, &c);
  queue.Remove(c);
  EXPECT_EQ(one_cpu->first, &a);
  EXPECT_EQ(one_cpu->first_key, PendingQueue::KeyOf(a));
  queue.Remove(a);
  EXPECT_EQ(one_cpu->first, nullptr);
  EXPECT_EQ(queue.GroupOf(a), nullptr);
  Job urgent = MakeJob(9, 2000, /*priority=*/1);
  queue.Add(&urgent, true);
  EXPECT_EQ(queue.GroupOf(b)->first, &urgent);
}

TEST(PendingQueueTest, GpuWishesMakeDistinctGroups) {
  Job plain = MakeJob(1, 1000, 0, /*gpus=*/1);
  Job h100 = MakeJob(2, 1000, 0, 1);
  h100.spec.resources.gpu_models = {"H100"};
  Job big = MakeJob(3, 1000, 0, 1);
  big.spec.resources.gpu_memory_bytes = 40 * kGiB;
  PendingQueue queue;
  for (Job* job : {&plain, &h100, &big}) queue.Add(job, true);
  EXPECT_THAT(queue.Groups(), SizeIs(3));
}

TEST(PendingQueueTest, RemoveAndSettle) {
  Job a = MakeJob(1, 1000), b = MakeJob(2, 2000);
  PendingQueue queue;
  queue.Add(&a, /*settled=*/true);
  queue.Add(&b, /*settled=*/false);  // back from a lost lease
  EXPECT_TRUE(queue.GroupOf(a)->settled);
  EXPECT_FALSE(queue.GroupOf(b)->settled);

  queue.Remove(a);
  queue.Remove(a);  // absent: no-op
  EXPECT_EQ(queue.size(), 1u);
  EXPECT_EQ(queue.GroupOf(a), nullptr);
  EXPECT_THAT(queue.Groups(), SizeIs(1));

  queue.SettleAll();
  EXPECT_TRUE(queue.GroupOf(b)->settled);
  queue.Remove(b);
  EXPECT_TRUE(queue.empty());
  EXPECT_THAT(queue.Groups(), IsEmpty());
}

// ---- Fits

TEST(FitsTest, GpuModelIgnoresCaseAndGpuMemoryIsAMinimum) {
  Node node = MakeNode("n", 8, 64 * kGiB,
                       {{0, "u0", "NVIDIA GeForce RTX 3080", 10 * kGiB},
                        {1, "u1", "NVIDIA A100-SXM4-80GB", 80 * kGiB},
                        {2, "u2", "NVIDIA A100-SXM4-80GB", 80 * kGiB}});
  node.busy_gpus = {1};
  std::vector<uint32_t> gpus;
  Resources r;
  r.cpu_millis = 1000;
  r.gpus = 1;
  r.gpu_models = {"a100"};
  ASSERT_TRUE(Fits(r, node, &gpus));
  EXPECT_THAT(gpus, ElementsAre(2u));  // GPU 1 is busy
  r.gpus = 2;
  EXPECT_FALSE(Fits(r, node, &gpus));
  r.gpu_models = {"nothing", "RTX"};
  r.gpus = 1;
  ASSERT_TRUE(Fits(r, node, &gpus));
  EXPECT_THAT(gpus, ElementsAre(0u));
  r.gpu_memory_bytes = 24 * kGiB;
  EXPECT_FALSE(Fits(r, node, &gpus));  // the 3080 has 10 GiB
  r.gpu_models = {};
  ASSERT_TRUE(Fits(r, node, &gpus));
  EXPECT_THAT(gpus, ElementsAre(2u));
  r.gpus = 3;
  EXPECT_FALSE(Fits(r, node, &gpus));  // more than the node has free
}

TEST(MostRoomTest, BoundsWhatAnyOneNodeHasFree) {
  Node a = MakeNode("a", 8, 16 * kGiB);
  a.alloc_cpu_millis = 6000;
  Node b = MakeNode("b", 4, 64 * kGiB,
                    {{0, "u0", "L4", 24 * kGiB}, {1, "u1", "A100", 80 * kGiB}});
  b.busy_gpus = {1};
  MostRoom room = MostRoom::Of({&a, &b});
  EXPECT_EQ(room.cpu_millis, 4000);
  EXPECT_EQ(room.memory_bytes, 64 * kGiB);
  EXPECT_EQ(room.gpus, 1u);
  EXPECT_EQ(room.gpu_memory_bytes, 24 * kGiB);  // the A100 is busy
  Resources r;
  r.cpu_millis = 4000;
  EXPECT_TRUE(room.MayFit(r));
  r.gpus = 1;
  r.gpu_memory_bytes = 40 * kGiB;
  EXPECT_FALSE(room.MayFit(r));
  r.gpus = 2;
  r.gpu_memory_bytes = 0;
  EXPECT_FALSE(room.MayFit(r));
  r = Resources{};
  r.cpu_millis = 1000;
  EXPECT_FALSE(MostRoom::Of({}).MayFit(r));
}

// ---- PriceIndex

// Walks `index` for `r` and returns the names of the nodes it was shown, in order.
std::vector<std::string> Shown(const PriceIndex& index, const Resources& r,
                               double stop_after = HUGE_VAL) {
  std::vector<std::string> names;
  index.Walk(r, [&](double key, const Node& node) {
    if (key > stop_after) return false;
    names.push_back(node.record.name);
    return true;
  });
  return names;
}

TEST(PriceIndexTest, WalksInKeyOrderAndPassesOverBlocksWhereNothingFits) {
  // 300 nodes of 8 CPUs, node i priced i; every node full but 40 (in the second block) and 90
  // (in the third). More than kLoose, so that the first Prepare lays them out.
  constexpr int kNodes = 300;
  static_assert(kNodes > PriceIndex::kLoose);
  std::vector<Node> nodes;
  nodes.reserve(kNodes);
  for (int i = 0; i < kNodes; ++i) {
    nodes.push_back(MakeNode(absl::StrCat("n", i), 8, 32 * kGiB));
    nodes.back().alloc_cpu_millis = i == 40 || i == 90 ? 0 : 8000;
  }
  std::vector<size_t> slots(kNodes, PriceIndex::kNone);
  PriceIndex index;
  for (int i = kNodes - 1; i >= 0; --i) index.Insert(i, &nodes[i], &slots[i]);
  Resources r;
  r.cpu_millis = 2000;
  // Before Prepare, all are loose: a walk shows every node, cheapest first.
  std::vector<std::string> all = Shown(index, r);
  ASSERT_THAT(all, SizeIs(kNodes));
  EXPECT_EQ(all.front(), "n0");
  EXPECT_EQ(all.back(), absl::StrCat("n", kNodes - 1));
  EXPECT_EQ(slots[0], PriceIndex::kNone);
  index.Prepare();
  EXPECT_EQ(slots[0], 0u);
  EXPECT_EQ(slots[kNodes - 1], static_cast<size_t>(kNodes - 1));
  // Laid out: only the nodes with room are shown, in order; the full ones are passed over
  // (whole blocks of them without a look).
  EXPECT_THAT(Shown(index, r), ElementsAre("n40", "n90"));
  // The walk stops where fn says.
  EXPECT_THAT(Shown(index, r, /*stop_after=*/50), ElementsAre("n40"));
  // The index learns of room gained and lost when the node is touched.
  nodes[5].alloc_cpu_millis = 0;
  EXPECT_THAT(Shown(index, r), ElementsAre("n40", "n90"));  // not yet touched
  index.Touch(&slots[5]);
  EXPECT_THAT(Shown(index, r), ElementsAre("n5", "n40", "n90"));
  nodes[40].alloc_cpu_millis = 8000;
  index.Touch(&slots[40]);
  EXPECT_THAT(Shown(index, r), ElementsAre("n5", "n90"));
  // Room that a job needs only part of: 4 CPUs free on n90.
  nodes[90].alloc_cpu_millis = 4000;
  index.Touch(&slots[90]);
  r.cpu_millis = 6000;
  EXPECT_THAT(Shown(index, r), ElementsAre("n5"));
  r.cpu_millis = 4000;
  EXPECT_THAT(Shown(index, r), ElementsAre("n5", "n90"));
  // Asking for more than any node has free shows nothing.
  r.cpu_millis = 16000;
  EXPECT_THAT(Shown(index, r), IsEmpty());
  // A node erased leaves a hole and is not shown; the layout stays until Prepare finds more
  // than kLoose holes and loose nodes.
  r.cpu_millis = 2000;
  index.Erase(5, &nodes[5], &slots[5]);
  EXPECT_EQ(slots[5], PriceIndex::kNone);
  index.Prepare();
  std::vector<std::string> after = Shown(index, r);
  EXPECT_THAT(after, Not(::testing::Contains("n5")));
  EXPECT_THAT(after, ::testing::Contains("n90"));
  EXPECT_EQ(slots[6], 6u);
  index.Touch(&slots[5]);  // a node not in the index: nothing happens
  // A node inserted since is loose: always shown, in key order among the others.
  Node x = MakeNode("x", 8, 32 * kGiB);
  size_t x_slot = 0;
  index.Insert(40.5, &x, &x_slot);
  EXPECT_EQ(x_slot, PriceIndex::kNone);
  EXPECT_THAT(Shown(index, r), ElementsAre("x", "n90"));
  EXPECT_THAT(Shown(index, r, /*stop_after=*/40), IsEmpty());
  // A loose node is shown even when full: the walk's caller checks.
  x.alloc_cpu_millis = 8000;
  EXPECT_THAT(Shown(index, r), ElementsAre("x", "n90"));
  x.alloc_cpu_millis = 0;
  // More than kLoose loose nodes: Prepare lays the blocks out again, holes gone.
  std::vector<Node> more;
  more.reserve(PriceIndex::kLoose);
  std::vector<size_t> more_slots(PriceIndex::kLoose);
  for (size_t i = 0; i < PriceIndex::kLoose; ++i) {
    more.push_back(MakeNode(absl::StrCat("m", i), 8, 32 * kGiB));
    more.back().alloc_cpu_millis = 8000;
    index.Insert(1000 + i, &more.back(), &more_slots[i]);
  }
  index.Prepare();
  EXPECT_EQ(slots[6], 5u);
  EXPECT_EQ(x_slot, 40u);  // n0..n40 without n5, then x
  EXPECT_EQ(more_slots[0], static_cast<size_t>(kNodes));  // without n5, with x
  // Laid out, x is shown for its room; the full m nodes are not.
  EXPECT_THAT(Shown(index, r), ElementsAre("x", "n90"));
  more[0].alloc_cpu_millis = 0;
  index.Touch(&more_slots[0]);
  EXPECT_THAT(Shown(index, r), ElementsAre("x", "n90", "m0"));
}

// ---- The Scheduler's placement pass

template <typename T, typename F>
absl::StatusOr<T> Call(F f) {
  std::optional<absl::StatusOr<T>> out;
  f([&out](absl::StatusOr<T> r) { out = std::move(r); });
  return out.value_or(absl::InternalError("done was not called"));
}

NodeCapabilities Caps(int cpus, int64_t mem, std::vector<GpuDevice> gpus = {}) {
  NodeCapabilities c;
  c.cpu_millis = cpus * 1000;
  c.memory_bytes = mem;
  c.gpus = std::move(gpus);
  return c;
}

class PlacementPassTest : public ::testing::Test {
 protected:
  PlacementPassTest() {
    SchedulerOptions o;
    o.lease_ttl = absl::Seconds(10);
    o.heartbeat_interval = absl::Seconds(2);
    o.restart_grace = absl::Seconds(1);
    o.seed = 7;
    scheduler_ = std::move(Scheduler::Create(o, &store_, &clock_).value());
  }

  Job Submit(int64_t cpu_millis, int64_t memory = 0, uint32_t gpus = 0, int32_t priority = 0) {
    JobSpec spec;
    spec.run = "true";
    spec.priority = priority;
    spec.resources.cpu_millis = cpu_millis;
    spec.resources.memory_bytes = memory;
    spec.resources.gpus = gpus;
    auto r = Call<SubmitResult>(
        [&](auto done) { scheduler_->Submit(std::move(spec), "", std::move(done)); });
    EXPECT_THAT(r, IsOk());
    return r.ok() ? r->job : Job{};
  }

  uint64_t Connect(const std::string& name, NodeCapabilities caps, std::vector<JobRef> running = {}) {
    auto s = Call<uint64_t>([&](auto done) {
      scheduler_->ConnectAgent(name, std::move(caps), std::move(running),
                               std::make_shared<FakeAgentLink>(), std::move(done));
    });
    EXPECT_THAT(s, IsOk());
    sessions_[name] = s.value_or(0);
    return s.value_or(0);
  }

  void Finish(const Job& job) {
    Job now = scheduler_->GetJob(job.id).value();
    auto r = Call<Job>([&](auto done) {
      scheduler_->ReportJob(now.node, sessions_[now.node],
                            JobReport{now.id, now.epoch, JobState::kSucceeded, 0, ""},
                            std::move(done));
    });
    EXPECT_THAT(r, IsOk());
  }

  std::vector<Job> InState(JobState state) {
    JobQuery q;
    q.states = {state};
    q.limit = 100000;
    return scheduler_->ListJobs(q).jobs;
  }

  // What the old whole-queue pass guaranteed after every call: no queued job fits a node that
  // takes work.
  void ExpectNoPendingJobFitsAnywhere() {
    std::vector<uint32_t> gpus;
    for (const Job& job : InState(JobState::kPending)) {
      for (const Node& node : scheduler_->ListNodes()) {
        if (!node.Schedulable()) continue;
        EXPECT_FALSE(Fits(job.spec.resources, node, &gpus))
            << "job " << job.id << " (" << job.spec.resources.cpu_millis << " mCPU, "
            << job.spec.resources.gpus << " GPUs) waits although node " << node.record.name
            << " has room";
      }
    }
  }

  FakeClock clock_;
  MemoryStore store_;
  std::unique_ptr<Scheduler> scheduler_;
  std::map<std::string, uint64_t> sessions_;
};

TEST_F(PlacementPassTest, FreedRoomGoesToTheFirstQueuedJobThatFits) {
  Connect("n", Caps(4, 16 * kGiB));
  Job running = Submit(4000);
  Job big = Submit(3000, 0, 0, /*priority=*/1);
  Job old_small = Submit(1000);
  Job new_small = Submit(1000);
  Job high_small = Submit(1000, 0, 0, /*priority=*/1);
  EXPECT_EQ(big.state, JobState::kPending);
  Finish(running);
  // In queue order: big (priority 1) fits, then high_small, then old_small; new_small waits.
  EXPECT_EQ(scheduler_->GetJob(big.id)->state, JobState::kAssigned);
  EXPECT_EQ(scheduler_->GetJob(high_small.id)->state, JobState::kAssigned);
  EXPECT_EQ(scheduler_->GetJob(old_small.id)->state, JobState::kPending);
  EXPECT_EQ(scheduler_->GetJob(new_small.id)->state, JobState::kPending);
  ExpectNoPendingJobFitsAnywhere();
}

TEST_F(PlacementPassTest, JobBackFromAnExpiredLeaseGoesToANodeThatHadRoomAllAlong) {
  Connect("a", Caps(1, 8 * kGiB));
  Job x = Submit(1000);  // to a (best fit: one CPU left there is none)
  ASSERT_EQ(x.node, "a");
  Connect("b", Caps(2, 8 * kGiB));
  Job y = Submit(1000);
  ASSERT_EQ(y.node, "b");  // b keeps one free CPU, and gains none later
  clock_.Advance(absl::Seconds(11));
  ASSERT_THAT(scheduler_->Heartbeat("b", sessions_["b"], {{y.id, y.epoch}}), IsOk());
  scheduler_->Tick();  // a is silent: x's lease expires, x goes back to the queue
  Job again = scheduler_->GetJob(x.id).value();
  EXPECT_EQ(again.state, JobState::kAssigned);
  EXPECT_EQ(again.node, "b");
  EXPECT_EQ(again.attempt, 2u);
}

TEST_F(PlacementPassTest, UncordonAndReconnectPlaceWaitingJobs) {
  Connect("a", Caps(1, 8 * kGiB));
  ASSERT_THAT(Call<Node>([&](auto done) { scheduler_->Cordon("a", true, std::move(done)); }),
              IsOk());
  Job x = Submit(1000);
  EXPECT_EQ(x.state, JobState::kPending);
  ASSERT_THAT(Call<Node>([&](auto done) { scheduler_->Cordon("a", false, std::move(done)); }),
              IsOk());
  EXPECT_EQ(scheduler_->GetJob(x.id)->node, "a");

  Job y = Submit(2000);
  EXPECT_EQ(y.state, JobState::kPending);
  Connect("a", Caps(4, 8 * kGiB), {{x.id, scheduler_->GetJob(x.id)->epoch}});  // grew
  EXPECT_EQ(scheduler_->GetJob(y.id)->node, "a");
}

// Random submits, completions, connects, cordons and expiries on a small cluster: after every
// call no queued job may fit a node with room, as with a pass over the whole queue.
TEST_F(PlacementPassTest, RandomWorkloadNeverLeavesAFittingJobWaiting) {
  std::mt19937_64 rng(11);
  auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
  const std::vector<std::string> names = {"n0", "n1", "n2", "n3", "n4"};
  for (const std::string& name : names) {
    Connect(name, Caps(1 + pick(8), (1 + pick(16)) * kGiB,
                       pick(2) ? std::vector<GpuDevice>{{0, "g0", "L4", 24 * kGiB},
                                                        {1, "g1", "L4", 24 * kGiB}}
                               : std::vector<GpuDevice>{}));
  }
  for (int step = 0; step < 2000; ++step) {
    const int op = pick(10);
    if (op < 5) {
      Submit(500 * (1 + pick(6)), pick(4) * 2 * kGiB, pick(4) == 0 ? 1 + pick(2) : 0, pick(3));
    } else if (op < 8) {
      std::vector<Job> running = InState(JobState::kAssigned);
      if (!running.empty()) Finish(running[pick(running.size())]);
    } else if (op == 8) {
      const std::string& name = names[pick(names.size())];
      const bool cordon = pick(2) == 0;
      EXPECT_THAT(
          Call<Node>([&](auto done) { scheduler_->Cordon(name, cordon, std::move(done)); }),
          IsOk());
    } else {
      // An agent comes back without its jobs, sometimes on a resized machine.
      const std::string& name = names[pick(names.size())];
      Connect(name, Caps(1 + pick(8), (1 + pick(16)) * kGiB));
    }
    ExpectNoPendingJobFitsAnywhere();
    if (HasFailure()) {
      ADD_FAILURE() << "at step " << step;
      return;
    }
  }
  EXPECT_THAT(InState(JobState::kSucceeded), Not(IsEmpty()));
}

}  // namespace
}  // namespace sched
