// sched-placement-bench: the core Scheduler's placement cost at cluster scale, in one process.
//
// Builds the real sched::Scheduler over the in-memory store with --nodes simulated agents (their
// links only note what they are told), fills them, and keeps --pending jobs queued. It then
// completes running jobs one at a time through ReportJob, as an agent would, and times each
// call: the completion's durable write, the placement of whatever now fits, and the Assign handed
// to the agent's link. After each completion a new job is submitted (timed apart) so the queue
// stays at --pending.
//
// With --cost_model (the default) the cost brain has real work: the shipped catalog is loaded,
// a few nodes are the user's own workstations priced from their power draw and the rest are
// rented at the catalog's prices for their GPUs (some spot), and jobs come from --templates kinds
// (a sweep's jobs are alike) with runtimes, deadlines, max_cost, placement and spot policies, in
// projects with hard-capped budgets. Time is simulated: a job ends when its runtime on its node
// says so, the clock jumps there, and Tick() runs every --tick_s simulated seconds. With
// --cost_model=false every node is free and provider "bench", jobs have nothing but resources,
// time is the wall clock and a random running job ends each time: a plain fit.
//
// Prints key=value lines: the figures first, then what the workload did.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/core/scheduler.h"
#include "server/cost/catalog.h"
#include "server/cost/catalog_yaml.h"
#include "server/cost/runtime_estimate.h"
#include "server/store/memory_store.h"

ABSL_FLAG(int, nodes, 10'000, "simulated nodes");
ABSL_FLAG(int, pending, 100'000, "jobs kept pending while measuring");
ABSL_FLAG(int, completions, 100'000, "job completions to time");
ABSL_FLAG(int, shapes, 64, "distinct resource requests among the jobs");
ABSL_FLAG(uint64_t, seed, 1, "random seed for the cluster and the jobs");
ABSL_FLAG(bool, refill, true, "submit a new job after each completion (timed apart)");
ABSL_FLAG(bool, cost_model, true,
          "priced nodes, the catalog, jobs with runtimes, deadlines, policies and budgets, "
          "simulated time; false: every node $0 and plain jobs (a plain fit)");
ABSL_FLAG(std::string, catalog, SCHED_SOURCE_DIR "/deploy/catalog/catalog.yaml",
          "GPU/provider catalog (--cost_model)");
ABSL_FLAG(int, local_nodes, 20, "the user's own workstations among --nodes (--cost_model)");
ABSL_FLAG(int, templates, 200,
          "kinds of job: a kind's jobs ask the same and have the same policies (--cost_model)");
ABSL_FLAG(double, spot_share, 0.3,
          "rented nodes that are spot, where the provider has spot (--cost_model)");
ABSL_FLAG(double, tight_budget, 500,
          "monthly hard cap of the one project whose budget is meant to bite, dollars "
          "(--cost_model)");
ABSL_FLAG(bool, budgets, true,
          "give the projects their hard-capped budgets; false: no budget anywhere, to see what "
          "the rest of the cost model costs (--cost_model)");
ABSL_FLAG(bool, fast_decisions, true,
          "a waiting group is decided again only on a node that could beat its last decision, "
          "and rented nodes are weighed cheapest first until the rest cannot win; false: every "
          "waiting group on every node that gains room, against every node (the reference)");
ABSL_FLAG(int, tick_s, 30, "Tick() every this many simulated seconds (--cost_model)");

namespace {

using WallClock = std::chrono::steady_clock;
constexpr int64_t kGiB = int64_t{1} << 30;

double Uniform(std::mt19937_64& rng, double lo, double hi) {
  return std::uniform_real_distribution<double>(lo, hi)(rng);
}
bool Chance(std::mt19937_64& rng, double p) { return Uniform(rng, 0, 1) < p; }

template <typename T>
const T& Pick(std::mt19937_64& rng, const std::vector<T>& v) {
  return v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng)];
}

// Picks an index by weight.
size_t PickWeighted(std::mt19937_64& rng, const std::vector<double>& weights) {
  return std::discrete_distribution<size_t>(weights.begin(), weights.end())(rng);
}

// The time the scheduler reads: set by the benchmark, one thread, no lock.
class SimClock final : public sched::Clock {
 public:
  explicit SimClock(absl::Time start) : now_(start) {}
  absl::Time Now() const override { return now_; }
  void Set(absl::Time t) { now_ = std::max(now_, t); }

 private:
  absl::Time now_;
};

// ---------------------------------------------------------------------------------------------
// Nodes

// A GPU that some node of the cluster has: what a job's resource request is checked against so
// that no job waits for hardware that never comes.
struct GpuKind {
  std::string model;  // NVML name
  int64_t memory_bytes;
};

// The plain-fit cluster: six GPU models, no prices.
const std::vector<GpuKind>& PlainGpuKinds() {
  static const auto* kinds = new std::vector<GpuKind>{{"NVIDIA GeForce RTX 3080", 10 * kGiB},
                                                      {"NVIDIA GeForce RTX 4090", 24 * kGiB},
                                                      {"NVIDIA L4", 24 * kGiB},
                                                      {"NVIDIA A100-SXM4-40GB", 40 * kGiB},
                                                      {"NVIDIA A100-SXM4-80GB", 80 * kGiB},
                                                      {"NVIDIA H100 80GB HBM3", 80 * kGiB}};
  return *kinds;
}

void AddGpus(sched::NodeCapabilities& caps, const std::string& model, int64_t memory_bytes,
             int count) {
  for (int i = 0; i < count; ++i) {
    sched::GpuDevice g;
    g.index = i;
    g.model = model;
    g.memory_bytes = memory_bytes;
    g.uuid = absl::StrCat("GPU-", i);
    caps.gpus.push_back(std::move(g));
  }
}

sched::NodeCapabilities PlainNodeCaps(std::mt19937_64& rng) {
  sched::NodeCapabilities caps;
  caps.provider = "bench";
  const bool gpu_node = std::uniform_int_distribution<int>(0, 9)(rng) < 4;  // 40%
  caps.cpu_millis = Pick<int64_t>(rng, {8, 16, 32, 64, 96}) * 1000;
  caps.memory_bytes = Pick<int64_t>(rng, {32, 64, 128, 256, 512}) * kGiB;
  if (gpu_node) {
    const GpuKind& kind = Pick(rng, PlainGpuKinds());
    AddGpus(caps, kind.model, kind.memory_bytes, Pick<int>(rng, {1, 2, 4, 8}));
  }
  return caps;
}

// What a simulated node is, for the benchmark's own bookkeeping.
struct SimNode {
  std::string name;
  bool local = false;
  bool spot = false;
  bool gpus = false;
  double gpu_throughput = 0;  // one GPU's, relative to the catalog's reference GPU
};

// The priced cluster, from the catalog:
//  - --local_nodes workstations (provider "local"): 1 or 2 GeForce cards, priced as their power
//    at the catalog's tariff plus the hardware over 36 months, with a night tariff;
//  - of the rest, 40% rented GPU nodes: a provider (RunPod and Vast.ai most often), one of the
//    GPUs it rents, 1 (most), 2, 4 or 8 of them, at a price drawn from the catalog's range for
//    that GPU there, spot at --spot_share where the provider has spot;
//  - 60% rented CPU nodes at AWS, GCP or Azure, $0.035-0.05 per vCPU-hour on demand (our
//    ballpark; the catalog prices GPUs only), less the provider's spot discount when spot.
class PricedCluster {
 public:
  explicit PricedCluster(const sched::cost::Catalog& catalog) : catalog_(catalog) {
    for (const char* key : {"rtx3080", "rtx3090", "rtx4090", "rtx5090"}) {
      local_gpus_.push_back(catalog.FindGpu(key));
    }
    const std::vector<std::pair<const char*, double>> providers = {
        {"runpod", 0.30}, {"vastai", 0.25}, {"thundercompute", 0.10},
        {"aws", 0.15},    {"gcp", 0.12},    {"azure", 0.08}};
    for (const auto& [name, weight] : providers) {
      const sched::cost::Provider* p = catalog.FindProvider(name);
      if (p == nullptr || p->prices.empty()) continue;
      gpu_providers_.push_back(p);
      gpu_provider_weights_.push_back(weight);
    }
    for (const char* name : {"aws", "gcp", "azure"}) {
      if (const sched::cost::Provider* p = catalog.FindProvider(name)) cpu_providers_.push_back(p);
    }
    const sched::cost::Provider* local = catalog.FindProvider("local");
    tariff_ = local != nullptr ? local->electricity_usd_per_kwh : 0.17;
  }

  bool ok() const {
    return std::all_of(local_gpus_.begin(), local_gpus_.end(), [](auto* g) { return g; }) &&
           !gpu_providers_.empty() && !cpu_providers_.empty();
  }

  // Every GPU some node may have.
  std::vector<GpuKind> GpuKinds() const {
    std::vector<GpuKind> kinds;
    for (const sched::cost::GpuModel* g : local_gpus_) {
      kinds.push_back({g->name(), g->memory_bytes});
    }
    for (const sched::cost::Provider* p : gpu_providers_) {
      for (const sched::cost::GpuPrice& price : p->prices) {
        const sched::cost::GpuModel* g = catalog_.FindGpu(price.gpu);
        kinds.push_back({g->name(), g->memory_bytes});
      }
    }
    return kinds;
  }

  sched::NodeCapabilities Local(std::mt19937_64& rng) const {
    sched::NodeCapabilities caps;
    caps.provider = "local";
    const sched::cost::GpuModel& gpu = *Pick(rng, local_gpus_);
    const int count = Chance(rng, 0.3) ? 2 : 1;
    caps.cpu_millis = Pick<int64_t>(rng, {16, 24, 32}) * 1000;
    caps.memory_bytes = Pick<int64_t>(rng, {64, 128}) * kGiB;
    AddGpus(caps, gpu.name(), gpu.memory_bytes, count);
    sched::LocalPrice price;
    price.power_watts = 150 + gpu.power_watts * count;  // the rest of the machine: 150 W
    price.electricity_dollars_per_kwh = tariff_;
    price.hardware_cost_dollars = 1500 + gpu.street_price_usd * count;
    price.amortize_months = 36;
    price.energy_dollars_per_hour = price.power_watts / 1000 * tariff_;
    price.amortization_dollars_per_hour = price.hardware_cost_dollars / (36 * 730.0);
    caps.price_per_hour = price.energy_dollars_per_hour + price.amortization_dollars_per_hour;
    // A night tariff, 22:00-06:00 at $0.08/kWh.
    caps.price_schedule.windows.push_back(
        {22 * 60, 6 * 60, price.power_watts / 1000 * 0.08 + price.amortization_dollars_per_hour});
    caps.local_price = price;
    return caps;
  }

  sched::NodeCapabilities Rented(std::mt19937_64& rng, double spot_share) const {
    sched::NodeCapabilities caps;
    if (Chance(rng, 0.4)) {
      const sched::cost::Provider& p = *gpu_providers_[PickWeighted(rng, gpu_provider_weights_)];
      const sched::cost::GpuPrice& offer = Pick(rng, p.prices);
      const sched::cost::GpuModel& gpu = *catalog_.FindGpu(offer.gpu);
      const int count = Pick<int>(rng, {1, 1, 1, 1, 1, 1, 2, 2, 4, 8});  // 60% one GPU
      caps.provider = p.name;
      caps.spot = p.offers_spot && Chance(rng, spot_share);
      const sched::cost::PriceRange range = *catalog_.Price(p.name, offer.gpu, caps.spot);
      caps.price_per_hour = Uniform(rng, range.min_usd_per_hour, range.max_usd_per_hour) * count;
      caps.cpu_millis = int64_t{8} * std::max(count, 2) * 1000;
      caps.memory_bytes = int64_t{32} * std::max(count, 2) * kGiB;
      AddGpus(caps, gpu.name(), gpu.memory_bytes, count);
      return caps;
    }
    const sched::cost::Provider& p = *Pick(rng, cpu_providers_);
    caps.provider = p.name;
    caps.spot = p.offers_spot && Chance(rng, spot_share);
    caps.cpu_millis = Pick<int64_t>(rng, {8, 16, 32, 64, 96}) * 1000;
    caps.memory_bytes = Pick<int64_t>(rng, {32, 64, 128, 256, 512}) * kGiB;
    caps.price_per_hour = Uniform(rng, 0.035, 0.05) * (caps.cpu_millis / 1000) *
                          (caps.spot ? 1 - p.spot_discount : 1);
    return caps;
  }

 private:
  const sched::cost::Catalog& catalog_;
  std::vector<const sched::cost::GpuModel*> local_gpus_;
  std::vector<const sched::cost::Provider*> gpu_providers_;
  std::vector<double> gpu_provider_weights_;
  std::vector<const sched::cost::Provider*> cpu_providers_;
  double tariff_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Jobs

// True when some GPU of `kinds` can hold `r`: no job waits for hardware that never comes.
bool FitsSomeNodeKind(const sched::Resources& r, const std::vector<GpuKind>& kinds) {
  if (r.gpus == 0) return true;
  for (const GpuKind& kind : kinds) {
    std::string model = absl::AsciiStrToLower(kind.model);
    if (kind.memory_bytes >= r.gpu_memory_bytes &&
        (r.gpu_models.empty() || absl::StrContains(model, r.gpu_models[0]))) {
      return true;
    }
  }
  return false;
}

// --shapes distinct requests: mostly CPU jobs, a third GPU jobs with memory and model wishes.
std::vector<sched::Resources> ShapeCatalogue(std::mt19937_64& rng, int count,
                                             const std::vector<GpuKind>& kinds) {
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
    std::string key =
        absl::StrCat(r.cpu_millis, "/", r.memory_bytes, "/", r.gpus, "/", r.gpu_memory_bytes, "/",
                     r.gpu_models.empty() ? "" : r.gpu_models[0]);
    if (FitsSomeNodeKind(r, kinds) && seen.insert(key).second) shapes.push_back(std::move(r));
  }
  return shapes;
}

// The projects and their monthly hard caps; a negative limit: no budget.
struct Project {
  const char* name;
  double share;  // of the job kinds
  double monthly_limit;
};
std::vector<Project> Projects(double tight_budget) {
  return {{"nlp", 0.25, 1'000'000},  {"vision", 0.25, 1'000'000}, {"rl", 0.15, 250'000},
          {"speech", 0.15, 250'000}, {"research", 0.15, -1},      {"sandbox", 0.05, tight_budget}};
}

// Deadlines are whole hours from the next whole hour, so that the jobs of a sweep submitted
// within the same hour share one: {2 h (tight for the longer jobs), 8 h, 24 h}.
constexpr int kDeadlineHours[] = {2, 8, 24};

// One kind of job: what a user's sweep submits many times.
struct Template {
  sched::JobSpec spec;      // without deadline
  int deadline_class = -1;  // index into kDeadlineHours; -1: none
  // What the job really runs on one reference GPU (CPU jobs: as it is), given or not.
  absl::Duration true_runtime;
};

std::vector<Template> MakeTemplates(std::mt19937_64& rng, int count,
                                    const std::vector<sched::Resources>& shapes,
                                    const std::vector<Project>& projects,
                                    const std::vector<GpuKind>& local_kinds) {
  std::vector<double> shares;
  for (const Project& p : projects) shares.push_back(p.share);
  const std::vector<absl::Duration> runtimes = {absl::Minutes(10), absl::Minutes(30),
                                                absl::Hours(1),    absl::Hours(2),
                                                absl::Hours(4),    absl::Hours(8)};
  std::vector<Template> templates;
  for (int i = 0; i < count; ++i) {
    Template t;
    sched::JobSpec& s = t.spec;
    s.name = absl::StrCat("kind-", i);
    s.run = "true";
    s.resources = Pick(rng, shapes);
    s.project = projects[PickWeighted(rng, shares)].name;
    // prefer-local (the default) 50%, cheapest 30%, cloud-only 15%, local-only 5% (only for
    // what a workstation can hold).
    const size_t policy = PickWeighted(rng, {50, 30, 15, 5});
    s.placement = policy == 0   ? sched::PlacementPolicy::kPreferLocal
                  : policy == 1 ? sched::PlacementPolicy::kCheapest
                  : policy == 2 ? sched::PlacementPolicy::kCloudOnly
                                : sched::PlacementPolicy::kLocalOnly;
    if (s.placement == sched::PlacementPolicy::kLocalOnly &&
        (s.resources.cpu_millis > 16000 || s.resources.memory_bytes > 64 * kGiB ||
         s.resources.gpus > 2 || !FitsSomeNodeKind(s.resources, local_kinds))) {
      s.placement = sched::PlacementPolicy::kPreferLocal;
    }
    const size_t spot = PickWeighted(rng, {70, 15, 15});
    s.spot = spot == 0   ? sched::SpotPolicy::kAuto
             : spot == 1 ? sched::SpotPolicy::kSpot
                         : sched::SpotPolicy::kOnDemand;
    // Deadlines on 30%: a third of them tight.
    const size_t deadline = PickWeighted(rng, {70, 10, 10, 10});
    t.deadline_class = static_cast<int>(deadline) - 1;
    // max_cost on 20%.
    if (Chance(rng, 0.2)) s.max_cost = Pick<double>(rng, {2, 10, 50});
    t.true_runtime = Pick(rng, runtimes);
    // 80% say their runtime on the reference GPU, within 30% of the truth; the rest are learned
    // from their kind's earlier runs (or reserved an hour until there are some).
    if (Chance(rng, 0.8)) {
      s.runtime =
          absl::Minutes(std::round(absl::ToDoubleMinutes(t.true_runtime) * Uniform(rng, 0.7, 1.3)));
    }
    templates.push_back(std::move(t));
  }
  return templates;
}

// The fields PendingQueue groups by (placement.h): jobs alike in these are one group.
std::string GroupKey(const sched::JobSpec& s) {
  const sched::Resources& r = s.resources;
  return absl::StrCat(r.gpus, "/", r.gpu_memory_bytes, "/", absl::StrJoin(r.gpu_models, ","), "/",
                      r.cpu_millis, "/", r.memory_bytes, "/", s.project, "/",
                      static_cast<int>(s.placement), "/", static_cast<int>(s.spot), "/",
                      absl::FormatTime(s.deadline), "/", s.max_cost, "/",
                      absl::FormatDuration(s.runtime), "/", s.runtime_gpu_model, "/",
                      s.runtime > absl::ZeroDuration() ? "" : s.name);
}

// ---------------------------------------------------------------------------------------------
// The cluster as the agents see it

struct Running {
  std::string job_id;
  uint64_t epoch = 0;
  size_t node = 0;
  absl::Time end;  // --cost_model: when the job ends
};
bool EndsLater(const Running& a, const Running& b) { return a.end > b.end; }

// Where placements went, and why a job that went to a rented node did not run locally.
struct Placements {
  uint64_t total = 0, local = 0, cloud = 0, spot = 0;
  uint64_t blocker[6] = {};  // by LocalBlocker, for the rented ones

  std::string Format(const char* prefix) const {
    return absl::StrCat(prefix, "placed=", total, " ", prefix, "local=", local, " ", prefix,
                        "cloud=", cloud, " ", prefix, "cloud_spot=", spot);
  }
};

// What the scheduler told all agents: the jobs to run. A real link serializes the job onto the
// agent's stream; this one notes which job, and when it will end.
struct Cluster {
  std::vector<SimNode> nodes;
  std::vector<uint64_t> sessions;
  // Jobs running; with --cost_model a min-heap on `end`.
  std::vector<Running> running;
  uint64_t assigns = 0;
  Placements placements;
  // --cost_model: the clock, and what each kind really runs.
  const SimClock* clock = nullptr;
  absl::flat_hash_map<std::string, absl::Duration> true_runtime;  // by job name

  // How long `job` really runs on node `n`: its kind's runtime scaled from one reference GPU to
  // the node's GPUs, give or take 20%.
  absl::Duration RuntimeOf(const sched::Job& job, const SimNode& n) const {
    double hours = absl::ToDoubleHours(true_runtime.at(job.spec.name));
    const int32_t gpus = static_cast<int32_t>(job.spec.resources.gpus);
    if (gpus > 0 && n.gpu_throughput > 0) {
      hours *= sched::cost::ScaledThroughput(1.0, gpus) /
               sched::cost::ScaledThroughput(n.gpu_throughput, gpus);
    }
    // Give or take 20%, from the job alone: what the scheduler decides does not move the
    // random draws that make the cluster and the jobs.
    const double spread =
        static_cast<double>(std::hash<std::string>{}(absl::StrCat(job.id, "#", job.epoch)) %
                            10'000) /
        10'000;
    return absl::Hours(hours * (0.8 + 0.45 * spread));
  }

  void OnAssign(const sched::Job& job, size_t node) {
    assigns++;
    Running r{job.id, job.epoch, node, absl::InfiniteFuture()};
    const SimNode& n = nodes[node];
    placements.total++;
    if (n.local) {
      placements.local++;
    } else {
      placements.cloud++;
      if (n.spot) placements.spot++;
      placements.blocker[static_cast<int>(job.decision.local_blocker)]++;
    }
    if (clock == nullptr) {
      running.push_back(std::move(r));
      return;
    }
    r.end = clock->Now() + RuntimeOf(job, n);
    running.push_back(std::move(r));
    std::push_heap(running.begin(), running.end(), EndsLater);
  }

  // The next job to end: the earliest with --cost_model, else any, at random.
  Running TakeNext(std::mt19937_64& pick) {
    if (clock != nullptr) {
      std::pop_heap(running.begin(), running.end(), EndsLater);
    } else {
      const size_t k = std::uniform_int_distribution<size_t>(0, running.size() - 1)(pick);
      std::swap(running[k], running.back());
    }
    Running r = std::move(running.back());
    running.pop_back();
    return r;
  }
};

class NoteLink final : public sched::AgentLink {
 public:
  NoteLink(Cluster* cluster, size_t node) : cluster_(cluster), node_(node) {}
  void Assign(const sched::Job& job) override { cluster_->OnAssign(job, node_); }
  void Cancel(const std::string&, uint64_t) override {}
  void Stop(const std::string&, uint64_t, const std::string&) override {}
  void Drain() override {}

 private:
  Cluster* const cluster_;
  const size_t node_;
};

// ---------------------------------------------------------------------------------------------
// Figures

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}

double Micros(WallClock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

// The pending jobs by group, and why each group waits, read from its first job's message (the
// one placement decides for: highest priority, then oldest).
struct QueueShape {
  size_t groups = 0;
  uint64_t jobs = 0;
  uint64_t by_choice_groups = 0, by_choice_jobs = 0;  // waiting for a busy local node
  uint64_t budget_groups = 0, budget_jobs = 0;        // over the project's hard cap
  uint64_t max_cost_groups = 0, max_cost_jobs = 0;    // over the job's max_cost
  uint64_t other_groups = 0, other_jobs = 0;          // no node with room fits them

  std::string Format(const char* prefix) const {
    return absl::StrCat(prefix, "groups=", groups, " ", prefix, "jobs=", jobs, " ", prefix,
                        "by_choice=", by_choice_jobs, "/", by_choice_groups, " ", prefix,
                        "budget_held=", budget_jobs, "/", budget_groups, " ", prefix,
                        "max_cost_held=", max_cost_jobs, "/", max_cost_groups, " ", prefix,
                        "no_room=", other_jobs, "/", other_groups);
  }
};

QueueShape ShapeOfQueue(const sched::Scheduler& scheduler) {
  sched::JobQuery query;
  query.states = {sched::JobState::kPending};
  query.limit = size_t{1} << 40;
  const sched::JobPage page = scheduler.ListJobs(query);
  struct Group {
    uint64_t jobs = 0;
    const sched::Job* first = nullptr;
  };
  absl::flat_hash_map<std::string, Group> groups;
  for (const sched::Job& job : page.jobs) {
    Group& g = groups[GroupKey(job.spec)];
    g.jobs++;
    if (g.first == nullptr ||
        sched::PendingQueue::KeyOf(job) < sched::PendingQueue::KeyOf(*g.first)) {
      g.first = &job;
    }
  }
  QueueShape q;
  q.groups = groups.size();
  q.jobs = page.jobs.size();
  for (const auto& [key, g] : groups) {
    const std::string& m = g.first->message;
    if (absl::StartsWith(m, "waiting for ")) {
      q.by_choice_groups++, q.by_choice_jobs += g.jobs;
    } else if (absl::StrContains(m, "budget")) {
      q.budget_groups++, q.budget_jobs += g.jobs;
    } else if (absl::StrContains(m, "max_cost")) {
      q.max_cost_groups++, q.max_cost_jobs += g.jobs;
    } else {
      q.other_groups++, q.other_jobs += g.jobs;
    }
  }
  return q;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int n_nodes = absl::GetFlag(FLAGS_nodes);
  const int n_pending = absl::GetFlag(FLAGS_pending);
  const int n_completions = absl::GetFlag(FLAGS_completions);
  const bool refill = absl::GetFlag(FLAGS_refill);
  const bool cost_model = absl::GetFlag(FLAGS_cost_model);
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));

  sched::MemoryStore store;
  sched::SchedulerOptions options;
  options.seed = absl::GetFlag(FLAGS_seed);
  options.fast_decisions = absl::GetFlag(FLAGS_fast_decisions);
  // No lease expires during the run: the simulated agents do not heartbeat.
  options.lease_ttl = cost_model ? absl::Hours(24 * 365) : absl::Hours(1);
  std::shared_ptr<const sched::cost::Catalog> catalog;
  if (cost_model) {
    absl::StatusOr<sched::cost::Catalog> loaded =
        sched::cost::LoadCatalog(absl::GetFlag(FLAGS_catalog));
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", loaded.status().ToString().c_str());
      return 1;
    }
    catalog = std::make_shared<const sched::cost::Catalog>(*std::move(loaded));
    options.catalog = catalog;
  }
  // Mid-month, so that the simulated hours stay within one budget month.
  SimClock sim_clock(absl::FromCivil(absl::CivilHour(2026, 11, 10, 8), absl::UTCTimeZone()));
  const sched::Clock* clock =
      cost_model ? static_cast<const sched::Clock*>(&sim_clock) : sched::RealClock::Get();
  auto created = sched::Scheduler::Create(options, &store, clock);
  if (!created.ok()) {
    std::fprintf(stderr, "%s\n", created.status().ToString().c_str());
    return 1;
  }
  sched::Scheduler& scheduler = **created;

  Cluster cluster;
  std::unique_ptr<PricedCluster> priced;
  std::vector<sched::Resources> shapes;
  std::vector<Template> templates;
  const std::vector<Project> projects = Projects(absl::GetFlag(FLAGS_tight_budget));
  const int n_local = cost_model ? std::min(absl::GetFlag(FLAGS_local_nodes), n_nodes) : 0;
  bool failed = false;
  if (cost_model) {
    priced = std::make_unique<PricedCluster>(*catalog);
    if (!priced->ok()) {
      std::fprintf(stderr, "the catalog lacks a GPU or provider the benchmark prices from\n");
      return 1;
    }
    shapes = ShapeCatalogue(rng, absl::GetFlag(FLAGS_shapes), priced->GpuKinds());
    std::vector<GpuKind> local_kinds;
    for (const char* key : {"rtx3080", "rtx3090", "rtx4090", "rtx5090"}) {
      local_kinds.push_back({catalog->FindGpu(key)->name(), catalog->FindGpu(key)->memory_bytes});
    }
    templates = MakeTemplates(rng, absl::GetFlag(FLAGS_templates), shapes, projects, local_kinds);
    for (const Template& t : templates) cluster.true_runtime[t.spec.name] = t.true_runtime;
    cluster.clock = &sim_clock;
    for (const Project& p : projects) {
      if (p.monthly_limit < 0 || !absl::GetFlag(FLAGS_budgets)) continue;
      sched::Budget b;
      b.project = p.name;
      b.monthly_limit = p.monthly_limit;
      b.hard_cap = true;
      scheduler.SetBudget(b, [&](absl::StatusOr<sched::Budget> r) {
        if (!r.ok()) failed = true;
      });
    }
  } else {
    shapes = ShapeCatalogue(rng, absl::GetFlag(FLAGS_shapes), PlainGpuKinds());
  }

  uint64_t submitted = 0;
  auto submit = [&] {
    sched::JobSpec spec;
    if (cost_model) {
      const Template& t = Pick(rng, templates);
      spec = t.spec;
      if (t.deadline_class >= 0) {
        const absl::Time now = sim_clock.Now();
        const absl::Time next_hour =
            absl::FromUnixSeconds((absl::ToUnixSeconds(now) / 3600 + 1) * 3600);
        spec.deadline = next_hour + absl::Hours(kDeadlineHours[t.deadline_class]);
      }
    } else {
      spec.name = "bench";
      spec.project = "bench";
      spec.run = "true";
      spec.resources = Pick(rng, shapes);
    }
    const int p = std::uniform_int_distribution<int>(0, 99)(rng);
    spec.priority = p < 80 ? 0 : p < 95 ? 10 : 100;
    scheduler.Submit(std::move(spec), "", [&](absl::StatusOr<sched::SubmitResult> r) {
      if (!r.ok()) {
        if (!failed) std::fprintf(stderr, "submit: %s\n", r.status().ToString().c_str());
        failed = true;
      }
    });
    submitted++;
  };
  auto pending = [&] {
    return static_cast<int64_t>(submitted - scheduler.Stats().assignments_total);
  };

  // Jobs first, then the agents connect (the user's own first): each fills from the queue as it
  // arrives.
  const auto setup_start = WallClock::now();
  for (int i = 0; i < n_pending; ++i) submit();
  // The fill: each agent's connect places what fits on its node, the queue full (timed apart).
  std::vector<double> connect_us;
  connect_us.reserve(n_nodes);
  uint64_t fill_placed = 0, fill_decisions = 0;
  cluster.running.reserve(n_pending + n_completions);  // no reallocation inside a timed call
  cluster.nodes.resize(n_nodes);
  cluster.sessions.resize(n_nodes);
  for (int i = 0; i < n_nodes; ++i) {
    SimNode& node = cluster.nodes[i];
    sched::NodeCapabilities caps;
    if (!cost_model) {
      caps = PlainNodeCaps(rng);
      node.name = absl::StrCat("node-", i);
    } else if (i < n_local) {
      caps = priced->Local(rng);
      node.name = absl::StrCat("ws-", i);
    } else {
      caps = priced->Rented(rng, absl::GetFlag(FLAGS_spot_share));
      node.name = absl::StrCat(caps.provider, "-", i);
    }
    node.local = i < n_local;
    node.spot = caps.spot;
    node.gpus = !caps.gpus.empty();
    if (cost_model && node.gpus) {
      node.gpu_throughput = catalog->FindGpu(caps.gpus.front().model)->relative_throughput;
    }
    const uint64_t fill_before = cluster.assigns;
    const uint64_t decided_before = scheduler.Stats().decisions_total;
    const auto c0 = WallClock::now();
    scheduler.ConnectAgent(node.name, std::move(caps), {}, std::make_shared<NoteLink>(&cluster, i),
                           [&, i](absl::StatusOr<uint64_t> s) {
                             if (!s.ok()) failed = true;
                             cluster.sessions[i] = s.value_or(0);
                           });
    connect_us.push_back(Micros(WallClock::now() - c0));
    fill_placed += cluster.assigns - fill_before;
    fill_decisions += scheduler.Stats().decisions_total - decided_before;
  }
  // Top the queue back up to --pending behind the running jobs.
  while (pending() < static_cast<int64_t>(n_pending)) submit();
  const double setup_s = std::chrono::duration<double>(WallClock::now() - setup_start).count();
  if (failed || cluster.running.empty()) {
    std::fprintf(stderr, "setup failed (running=%zu)\n", cluster.running.size());
    return 1;
  }
  const size_t running_at_start = cluster.running.size();
  const Placements setup_placements = cluster.placements;
  cluster.placements = {};
  const QueueShape queue_at_start = cost_model ? ShapeOfQueue(scheduler) : QueueShape{};
  const absl::Time sim_start = sim_clock.Now();
  // For a profiler to start from here (perf --control): the setup can take minutes.
  std::fprintf(stderr, "setup done in %.1f s; timing %d completions\n", setup_s, n_completions);
  std::fflush(stderr);

  const sched::SchedulerStats stats_at_start = scheduler.Stats();
  std::vector<double> complete_us, submit_us, tick_us;
  complete_us.reserve(n_completions);
  submit_us.reserve(n_completions);
  uint64_t placed = 0, idle_completions = 0, tick_placed = 0, submit_decisions = 0;
  WallClock::duration completing{};
  const absl::Duration tick_every = absl::Seconds(absl::GetFlag(FLAGS_tick_s));
  absl::Time next_tick = sim_start + tick_every;
  for (int i = 0; i < n_completions && !cluster.running.empty(); ++i) {
    Running done = cluster.TakeNext(rng);
    if (cost_model) {
      // The timer's ticks up to the moment this job ends, timed apart.
      while (next_tick <= done.end) {
        sim_clock.Set(next_tick);
        const uint64_t before = cluster.assigns;
        const auto t0 = WallClock::now();
        scheduler.Tick();
        tick_us.push_back(Micros(WallClock::now() - t0));
        tick_placed += cluster.assigns - before;
        next_tick += tick_every;
      }
      sim_clock.Set(done.end);
    }
    const uint64_t assigns_before = cluster.assigns;
    const auto t0 = WallClock::now();
    scheduler.ReportJob(
        cluster.nodes[done.node].name, cluster.sessions[done.node],
        sched::JobReport{done.job_id, done.epoch, sched::JobState::kSucceeded, 0, ""},
        [&](absl::StatusOr<sched::Job> r) {
          if (!r.ok()) failed = true;
        });
    const auto t1 = WallClock::now();
    completing += t1 - t0;
    complete_us.push_back(Micros(t1 - t0));
    placed += cluster.assigns - assigns_before;
    if (cluster.assigns == assigns_before) idle_completions++;
    if (refill) {
      const uint64_t before = scheduler.Stats().decisions_total;
      const auto t2 = WallClock::now();
      submit();
      submit_us.push_back(Micros(WallClock::now() - t2));
      submit_decisions += scheduler.Stats().decisions_total - before;
    }
  }
  std::fprintf(stderr, "timing done\n");
  std::fflush(stderr);
  if (failed) {
    std::fprintf(stderr, "a call failed\n");
    return 1;
  }
  const double secs = std::chrono::duration<double>(completing).count();
  const size_t n_done = complete_us.size();
  std::printf(
      "mode=placement cost_model=%s nodes=%d pending=%lld shapes=%zu running=%zu setup_s=%.1f "
      "completions=%zu passes_per_s=%.0f placed=%llu placed_per_s=%.0f p50_us=%.1f "
      "p99_us=%.1f max_us=%.1f submit_p50_us=%.1f submit_p99_us=%.1f\n",
      cost_model ? "true" : "false", n_nodes, static_cast<long long>(pending()), shapes.size(),
      running_at_start, setup_s, n_done, n_done / secs, static_cast<unsigned long long>(placed),
      placed / secs, Percentile(complete_us, 0.5), Percentile(complete_us, 0.99),
      Percentile(complete_us, 1.0), Percentile(submit_us, 0.5), Percentile(submit_us, 0.99));
  double fill_us = 0;
  for (double us : connect_us) fill_us += us;
  std::printf("fill: connects=%zu placed=%llu decisions=%llu seconds=%.3f fill_placed_per_s=%.0f "
              "fill_decisions_per_s=%.0f connect_p50_us=%.1f connect_p99_us=%.1f\n",
              connect_us.size(), static_cast<unsigned long long>(fill_placed),
              static_cast<unsigned long long>(fill_decisions), fill_us / 1e6,
              fill_placed / (fill_us / 1e6), fill_decisions / (fill_us / 1e6),
              Percentile(connect_us, 0.5), Percentile(connect_us, 0.99));
  if (!cost_model) return 0;

  // What the cost model did with the work.
  const QueueShape queue_at_end = ShapeOfQueue(scheduler);
  const Placements& p = cluster.placements;
  std::printf(
      "workload: local_nodes=%d templates=%zu sim_hours=%.2f idle_completions=%llu "
      "%s %s\n",
      n_local, templates.size(), absl::ToDoubleHours(sim_clock.Now() - sim_start),
      static_cast<unsigned long long>(idle_completions), setup_placements.Format("setup_").c_str(),
      p.Format("").c_str());
  std::printf(
      "cloud_because: local_too_small=%llu local_busy=%llu local_misses_deadline=%llu "
      "cloud_only=%llu cheaper_than_local=%llu no_local_blocker=%llu\n",
      static_cast<unsigned long long>(p.blocker[static_cast<int>(sched::LocalBlocker::kTooSmall)]),
      static_cast<unsigned long long>(p.blocker[static_cast<int>(sched::LocalBlocker::kBusy)]),
      static_cast<unsigned long long>(p.blocker[static_cast<int>(sched::LocalBlocker::kDeadline)]),
      static_cast<unsigned long long>(p.blocker[static_cast<int>(sched::LocalBlocker::kPolicy)]),
      static_cast<unsigned long long>(p.blocker[static_cast<int>(sched::LocalBlocker::kCost)]),
      static_cast<unsigned long long>(p.blocker[static_cast<int>(sched::LocalBlocker::kNone)]));
  // The cost brain's own count: decisions taken (a job weighed against the nodes), on completions
  // and on submits, and waiting groups left as they were.
  const sched::SchedulerStats stats_at_end = scheduler.Stats();
  const uint64_t brain_decisions = stats_at_end.decisions_total - stats_at_start.decisions_total;
  const uint64_t brain_skipped =
      stats_at_end.decisions_skipped_total - stats_at_start.decisions_skipped_total;
  // Per second of all the scheduler's time in the timed phase: completions, submits and ticks.
  double busy_us = 0;
  for (const std::vector<double>* v : {&complete_us, &submit_us, &tick_us}) {
    for (double us : *v) busy_us += us;
  }
  std::printf("brain: decisions=%llu on_submit=%llu skipped=%llu per_completion=%.2f "
              "skipped_per_completion=%.2f scheduler_s=%.3f all_decisions_per_s=%.0f "
              "all_placed_per_s=%.0f\n",
              static_cast<unsigned long long>(brain_decisions),
              static_cast<unsigned long long>(submit_decisions),
              static_cast<unsigned long long>(brain_skipped),
              static_cast<double>(brain_decisions - submit_decisions) / n_done,
              static_cast<double>(brain_skipped) / n_done, busy_us / 1e6,
              brain_decisions / (busy_us / 1e6), p.total / (busy_us / 1e6));
  std::printf("queue_start: %s\n", queue_at_start.Format("").c_str());
  std::printf("queue_end: %s\n", queue_at_end.Format("").c_str());
  std::printf(
      "ticks: ticks=%zu tick_placed=%llu tick_p50_us=%.1f tick_p99_us=%.1f tick_max_us=%.1f\n",
      tick_us.size(), static_cast<unsigned long long>(tick_placed), Percentile(tick_us, 0.5),
      Percentile(tick_us, 0.99), Percentile(tick_us, 1.0));
  std::string budgets;
  for (const Project& pr : projects) {
    absl::StrAppendFormat(
        &budgets, " %s=%.0f/%s", pr.name, scheduler.SpentThisMonth(pr.name),
        pr.monthly_limit < 0 ? "none" : absl::StrFormat("%.0f", pr.monthly_limit));
  }
  std::printf("spent_of_cap:%s\n", budgets.c_str());
  return 0;
}
