// sched-placement-bench: the core Scheduler's placement cost at cluster scale, in one process.
//
// Builds the real sched::Scheduler over the in-memory store with --nodes simulated agents (their
// links only note what they are told) of varied CPUs, memory and GPUs, fills them, and keeps
// --pending jobs queued. It then completes running jobs one at a time through ReportJob, as an
// agent would, and times each call: the completion's durable write, the placement of whatever
// now fits, and the Assign handed to the agent's link. After each completion a new job is
// submitted (timed apart) so the queue stays at --pending.
//
// Prints one line of key=value figures.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/common/clock.h"
#include "server/core/scheduler.h"
#include "server/store/memory_store.h"

ABSL_FLAG(int, nodes, 10'000, "simulated nodes");
ABSL_FLAG(int, pending, 100'000, "jobs kept pending while measuring");
ABSL_FLAG(int, completions, 100'000, "job completions to time");
ABSL_FLAG(int, shapes, 64, "distinct resource requests among the jobs");
ABSL_FLAG(uint64_t, seed, 1, "random seed for the cluster and the jobs");
ABSL_FLAG(bool, refill, true, "submit a new job after each completion (timed apart)");

namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kGiB = int64_t{1} << 30;

struct Running {
  std::string job_id;
  uint64_t epoch = 0;
  size_t node = 0;
};

// What the scheduler told all agents: the jobs to run. A real link serializes the job onto the
// agent's stream; this one keeps the three fields the benchmark needs to report back.
struct Cluster {
  std::vector<std::string> names;
  std::vector<uint64_t> sessions;
  std::vector<Running> running;
  uint64_t assigns = 0;
};

class NoteLink final : public sched::AgentLink {
 public:
  NoteLink(Cluster* cluster, size_t node) : cluster_(cluster), node_(node) {}
  void Assign(const sched::Job& job) override {
    cluster_->running.push_back({job.id, job.epoch, node_});
    cluster_->assigns++;
  }
  void Cancel(const std::string&, uint64_t) override {}
  void Stop(const std::string&, uint64_t, const std::string&) override {}
  void Drain() override {}

 private:
  Cluster* const cluster_;
  const size_t node_;
};

template <typename T>
const T& Pick(std::mt19937_64& rng, const std::vector<T>& v) {
  return v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng)];
}

struct GpuKind {
  const char* model;
  int64_t gib;
};
const std::vector<GpuKind>& GpuKinds() {
  static const auto* kinds = new std::vector<GpuKind>{{"NVIDIA GeForce RTX 3080", 10},
                                                      {"NVIDIA GeForce RTX 4090", 24},
                                                      {"NVIDIA L4", 24},
                                                      {"NVIDIA A100-SXM4-40GB", 40},
                                                      {"NVIDIA A100-SXM4-80GB", 80},
                                                      {"NVIDIA H100 80GB HBM3", 80}};
  return *kinds;
}

sched::NodeCapabilities NodeCaps(std::mt19937_64& rng) {
  sched::NodeCapabilities caps;
  caps.provider = "bench";
  const bool gpu_node = std::uniform_int_distribution<int>(0, 9)(rng) < 4;  // 40%
  caps.cpu_millis = Pick<int64_t>(rng, {8, 16, 32, 64, 96}) * 1000;
  caps.memory_bytes = Pick<int64_t>(rng, {32, 64, 128, 256, 512}) * kGiB;
  if (gpu_node) {
    const GpuKind& kind = Pick(rng, GpuKinds());
    const int count = Pick<int>(rng, {1, 2, 4, 8});
    for (int i = 0; i < count; ++i) {
      sched::GpuDevice g;
      g.index = i;
      g.model = kind.model;
      g.memory_bytes = kind.gib * kGiB;
      g.uuid = absl::StrCat("GPU-", i);
      caps.gpus.push_back(std::move(g));
    }
  }
  return caps;
}

// True when some node NodeCaps() can make runs `r`: no job waits for hardware that never comes.
bool FitsSomeNodeKind(const sched::Resources& r) {
  if (r.gpus == 0) return true;
  for (const GpuKind& kind : GpuKinds()) {
    std::string model = absl::AsciiStrToLower(kind.model);
    if (kind.gib * kGiB >= r.gpu_memory_bytes &&
        (r.gpu_models.empty() || absl::StrContains(model, r.gpu_models[0]))) {
      return true;
    }
  }
  return false;
}

// --shapes distinct requests: mostly CPU jobs, a third GPU jobs with memory and model wishes.
std::vector<sched::Resources> ShapeCatalogue(std::mt19937_64& rng, int count) {
  std::vector<sched::Resources> shapes;
  absl::flat_hash_set<std::string> seen;
  while (static_cast<int>(shapes.size()) < count) {
    sched::Resources r;
    r.cpu_millis = Pick<int64_t>(rng, {500, 1000, 2000, 4000, 8000, 16000});
    r.memory_bytes = Pick<int64_t>(rng, {0, 1, 2, 4, 8, 16, 32, 64}) * kGiB;
    if (std::uniform_int_distribution<int>(0, 2)(rng) == 0) {
      r.gpus = Pick<uint32_t>(rng, {1, 1, 1, 2, 4, 8});
      r.gpu_memory_bytes = Pick<int64_t>(rng, {0, 0, 16, 24, 40, 80}) * kGiB;
      const std::string model = Pick<std::string>(rng, {"", "", "", "a100", "h100", "4090"});
      if (!model.empty()) r.gpu_models = {model};
    }
    std::string key = absl::StrCat(r.cpu_millis, "/", r.memory_bytes, "/", r.gpus, "/",
                                   r.gpu_memory_bytes, "/", r.gpu_models.empty() ? "" : r.gpu_models[0]);
    if (FitsSomeNodeKind(r) && seen.insert(key).second) shapes.push_back(std::move(r));
  }
  return shapes;
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int n_nodes = absl::GetFlag(FLAGS_nodes);
  const int n_pending = absl::GetFlag(FLAGS_pending);
  const int n_completions = absl::GetFlag(FLAGS_completions);
  const bool refill = absl::GetFlag(FLAGS_refill);
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));

  sched::MemoryStore store;
  sched::SchedulerOptions options;
  options.seed = absl::GetFlag(FLAGS_seed);
  options.lease_ttl = absl::Hours(1);  // no lease expires during the run
  auto created = sched::Scheduler::Create(options, &store, sched::RealClock::Get());
  if (!created.ok()) {
    std::fprintf(stderr, "%s\n", created.status().ToString().c_str());
    return 1;
  }
  sched::Scheduler& scheduler = **created;
  const std::vector<sched::Resources> shapes = ShapeCatalogue(rng, absl::GetFlag(FLAGS_shapes));

  bool failed = false;
  uint64_t submitted = 0;
  auto submit = [&] {
    sched::JobSpec spec;
    spec.name = "bench";
    spec.project = "bench";
    spec.run = "true";
    spec.resources = Pick(rng, shapes);
    const int p = std::uniform_int_distribution<int>(0, 99)(rng);
    spec.priority = p < 80 ? 0 : p < 95 ? 10 : 100;
    scheduler.Submit(std::move(spec), "", [&](absl::StatusOr<sched::SubmitResult> r) {
      if (!r.ok()) failed = true;
    });
    submitted++;
  };
  auto pending = [&] {
    return static_cast<int64_t>(submitted - scheduler.Stats().assignments_total);
  };

  // Jobs first, then the agents connect: each fills from the queue as it arrives.
  const auto setup_start = Clock::now();
  for (int i = 0; i < n_pending; ++i) submit();
  Cluster cluster;
  cluster.running.reserve(n_pending + n_completions);  // no reallocation inside a timed call
  cluster.names.resize(n_nodes);
  cluster.sessions.resize(n_nodes);
  for (int i = 0; i < n_nodes; ++i) {
    cluster.names[i] = absl::StrCat("node-", i);
    scheduler.ConnectAgent(cluster.names[i], NodeCaps(rng), {},
                           std::make_shared<NoteLink>(&cluster, i),
                           [&, i](absl::StatusOr<uint64_t> s) {
                             if (!s.ok()) failed = true;
                             cluster.sessions[i] = s.value_or(0);
                           });
  }
  // Top the queue back up to --pending behind the running jobs.
  while (pending() < static_cast<int64_t>(n_pending)) submit();
  const double setup_s = std::chrono::duration<double>(Clock::now() - setup_start).count();
  if (failed || cluster.running.empty()) {
    std::fprintf(stderr, "setup failed (running=%zu)\n", cluster.running.size());
    return 1;
  }
  const size_t running_at_start = cluster.running.size();

  std::vector<double> complete_us, submit_us;
  complete_us.reserve(n_completions);
  submit_us.reserve(n_completions);
  uint64_t decisions = 0;
  Clock::duration completing{};
  for (int i = 0; i < n_completions && !cluster.running.empty(); ++i) {
    const size_t k = std::uniform_int_distribution<size_t>(0, cluster.running.size() - 1)(rng);
    Running done = std::move(cluster.running[k]);
    cluster.running[k] = std::move(cluster.running.back());
    cluster.running.pop_back();
    const uint64_t assigns_before = cluster.assigns;
    const auto t0 = Clock::now();
    scheduler.ReportJob(cluster.names[done.node], cluster.sessions[done.node],
                        sched::JobReport{done.job_id, done.epoch, sched::JobState::kSucceeded, 0, ""},
                        [&](absl::StatusOr<sched::Job> r) {
                          if (!r.ok()) failed = true;
                        });
    const auto t1 = Clock::now();
    completing += t1 - t0;
    complete_us.push_back(Micros(t1 - t0));
    decisions += cluster.assigns - assigns_before;
    if (refill) {
      submit();
      submit_us.push_back(Micros(Clock::now() - t1));
    }
  }
  if (failed) {
    std::fprintf(stderr, "a call failed\n");
    return 1;
  }
  const double secs = std::chrono::duration<double>(completing).count();
  std::printf(
      "mode=placement nodes=%d pending=%lld shapes=%zu running=%zu setup_s=%.1f "
      "completions=%zu passes_per_s=%.0f decisions=%llu decisions_per_s=%.0f p50_us=%.1f p99_us=%.1f "
      "max_us=%.1f submit_p50_us=%.1f submit_p99_us=%.1f\n",
      n_nodes, static_cast<long long>(pending()), shapes.size(), running_at_start, setup_s,
      complete_us.size(), complete_us.size() / secs, static_cast<unsigned long long>(decisions),
      decisions / secs,
      Percentile(complete_us, 0.5), Percentile(complete_us, 0.99), Percentile(complete_us, 1.0),
      Percentile(submit_us, 0.5), Percentile(submit_us, 0.99));
  return 0;
}
