#include "server/metrics/metrics.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace sched {
namespace {

const char* CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  int i = static_cast<int>(code);
  return i >= 0 && i <= 16 ? kNames[i] : "UNKNOWN";
}

prometheus::ClientMetric Value(double v, std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = v;
  m.counter.value = v;
  return m;
}

prometheus::MetricFamily Family(std::string name, std::string help, prometheus::MetricType type,
                                std::vector<prometheus::ClientMetric> metrics) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  f.metric = std::move(metrics);
  return f;
}

class SchedulerCollector final : public prometheus::Collectable {
 public:
  SchedulerCollector(const Scheduler* scheduler, std::vector<ServerMetrics::ExtraCounter> extra)
      : scheduler_(scheduler), extra_(std::move(extra)) {}

  void AddFamily(std::function<prometheus::MetricFamily()> collect) {
    absl::MutexLock lock(&mu_);
    families_.push_back(std::move(collect));
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    using prometheus::MetricType;
    const SchedulerStats s = scheduler_->Stats();
    std::vector<prometheus::ClientMetric> by_state;
    for (int i = 0; i < kJobStates; ++i) {
      by_state.push_back(
          Value(s.jobs_by_state[i],
                {{"state", absl::AsciiStrToLower(JobStateName(static_cast<JobState>(i)))}}));
    }
    std::vector<prometheus::MetricFamily> out;
    out.push_back(Family("sched_jobs", "Jobs known to schedd, by state.", MetricType::Gauge,
                         std::move(by_state)));
    out.push_back(Family("sched_job_submits_total", "Jobs accepted by SubmitJob.",
                         MetricType::Counter, {Value(s.submits_total)}));
    out.push_back(Family("sched_job_assignments_total", "Leases granted to nodes.",
                         MetricType::Counter, {Value(s.assignments_total)}));
    out.push_back(Family("sched_decisions_total",
                         "Placement decisions taken: a job weighed against the nodes.",
                         MetricType::Counter, {Value(s.decisions_total)}));
    out.push_back(Family("sched_decisions_skipped_total",
                         "Waiting jobs not decided again: the node that gained room could not "
                         "beat their last decision.",
                         MetricType::Counter, {Value(s.decisions_skipped_total)}));
    out.push_back(Family("sched_lease_expiries_total",
                         "Leases that ran out without a heartbeat from their agent.",
                         MetricType::Counter, {Value(s.lease_expiries_total)}));
    out.push_back(Family("sched_stale_reports_total",
                         "Agent reports refused for a stale fencing epoch.", MetricType::Counter,
                         {Value(s.stale_reports_total)}));
    out.push_back(Family("sched_preemption_notices_total",
                         "Preemption notices agents passed on (their node was being taken back).",
                         MetricType::Counter, {Value(s.preemption_notices_total)}));
    out.push_back(Family("sched_preemptions_total",
                         "Leases that ended in a preemption; the job went back to the queue.",
                         MetricType::Counter, {Value(s.preemptions_total)}));
    out.push_back(Family("sched_job_restarts_total",
                         "Failed jobs put back in the queue by their retry policy.",
                         MetricType::Counter, {Value(s.restarts_total)}));
    out.push_back(Family("sched_job_early_stops_total",
                         "Sweep runs stopped by their early-stopping rule.", MetricType::Counter,
                         {Value(s.early_stops_total)}));
    out.push_back(Family("sched_priority_preemptions_total",
                         "Jobs stopped on a user's machine to make room for a higher-priority "
                         "job (they go back to the queue).",
                         MetricType::Counter, {Value(s.priority_preemptions_total)}));
    out.push_back(Family("sched_owner_gpu_takes_total",
                         "GPUs that the owners of the machines began to use, taking them from "
                         "jobs (agents' heartbeats).",
                         MetricType::Counter, {Value(s.owner_gpu_takes_total)}));
    out.push_back(Family("sched_owner_step_asides_total",
                         "Jobs that stepped aside because the machine's owner began to use their "
                         "GPU (they go back to the queue).",
                         MetricType::Counter, {Value(s.owner_step_asides_total)}));
    out.push_back(Family("sched_metric_points_total", "Metric values jobs reported.",
                         MetricType::Counter, {Value(s.metric_points_total)}));
    out.push_back(Family("sched_job_limit_stops_total",
                         "Jobs stopped for passing their max_duration or max_cost.",
                         MetricType::Counter, {Value(s.limit_stops_total)}));
    out.push_back(Family("sched_log_bytes_dropped_total",
                         "Job output dropped past a job's limit (--max_log_bytes_per_job).",
                         MetricType::Counter, {Value(s.log_bytes_dropped_total)}));
    out.push_back(Family("sched_agents_connected", "Agents with an open Connect stream.",
                         MetricType::Gauge, {Value(s.agents_connected)}));
    out.push_back(Family("sched_nodes", "Nodes schedd knows, connected or not.", MetricType::Gauge,
                         {Value(s.nodes_total)}));
    // Money: this calendar month (UTC), leases still running counted up to now.
    std::map<std::string, double> spent;
    for (const CostLine& line :
         scheduler_->Costs(absl::InfinitePast(), CostGroup::kProject, "").lines) {
      spent[line.key] = line.dollars;
    }
    std::vector<prometheus::ClientMetric> limits, used;
    for (const Budget& b : scheduler_->ListBudgets()) {
      spent.try_emplace(b.project, 0.0);
      limits.push_back(Value(b.monthly_limit, {{"project", b.project}}));
      if (b.monthly_limit > 0) {
        used.push_back(Value(spent[b.project] / b.monthly_limit, {{"project", b.project}}));
      }
    }
    std::vector<prometheus::ClientMetric> spend;
    for (const auto& [project, dollars] : spent) {
      spend.push_back(Value(dollars, {{"project", project}}));
    }
    out.push_back(Family("sched_project_spend_dollars",
                         "Dollars spent this calendar month (UTC) on priced nodes, by project.",
                         MetricType::Gauge, std::move(spend)));
    out.push_back(Family("sched_project_budget_dollars", "Monthly budget, by project.",
                         MetricType::Gauge, std::move(limits)));
    out.push_back(Family("sched_project_budget_used_ratio",
                         "This month's spend over the monthly budget, by project.",
                         MetricType::Gauge, std::move(used)));
    // Budgets: each alert threshold as a ratio, and whether the cap is hard.
    std::vector<prometheus::ClientMetric> thresholds, hard;
    for (const Budget& b : scheduler_->ListBudgets()) {
      for (int percent : b.alert_percents) {
        thresholds.push_back(
            Value(percent / 100.0, {{"project", b.project}, {"threshold", absl::StrCat(percent)}}));
      }
      hard.push_back(Value(b.hard_cap ? 1 : 0, {{"project", b.project}}));
    }
    out.push_back(Family("sched_project_budget_threshold_ratio",
                         "Each alert threshold of a project's monthly budget, as a ratio of it.",
                         MetricType::Gauge, std::move(thresholds)));
    out.push_back(Family("sched_project_budget_hard_cap",
                         "1 when a project's budget is a hard cap placements never pass.",
                         MetricType::Gauge, std::move(hard)));
    std::vector<prometheus::ClientMetric> by_provider;
    for (const CostLine& line :
         scheduler_->Costs(absl::InfinitePast(), CostGroup::kProvider, "").lines) {
      by_provider.push_back(Value(line.dollars, {{"provider", line.key}}));
    }
    out.push_back(Family("sched_provider_spend_dollars",
                         "Dollars spent this calendar month (UTC) on priced nodes, by provider.",
                         MetricType::Gauge, std::move(by_provider)));
    // The queue: how long each project's oldest pending job has waited.
    std::vector<prometheus::ClientMetric> oldest;
    for (const auto& [project, age] : scheduler_->OldestPendingAge()) {
      oldest.push_back(Value(absl::ToDoubleSeconds(age), {{"project", project}}));
    }
    out.push_back(Family("sched_pending_jobs_oldest_age_seconds",
                         "Seconds since each project's oldest pending job was submitted.",
                         MetricType::Gauge, std::move(oldest)));
    // Nodes: up or not, and their price. Rented nodes given back are left out.
    std::vector<prometheus::ClientMetric> up, price;
    for (const Node& node : scheduler_->ListNodes()) {
      if (node.state() == NodeState::kGone) continue;
      std::vector<prometheus::ClientMetric::Label> labels = {
          {"node", node.record.name}, {"provider", node.record.caps.provider}};
      up.push_back(Value(node.connected ? 1 : 0, labels));
      price.push_back(Value(node.record.caps.price_per_hour, labels));
    }
    out.push_back(Family("sched_node_up", "1 while the node's agent is connected, else 0.",
                         MetricType::Gauge, std::move(up)));
    out.push_back(Family("sched_node_price_dollars_per_hour",
                         "What the node costs an hour as it advertises (0: unpriced).",
                         MetricType::Gauge, std::move(price)));
    for (const auto& c : extra_) {
      out.push_back(Family(c.name, c.help, MetricType::Counter, {Value(c.read())}));
    }
    absl::MutexLock lock(&mu_);
    for (const auto& collect : families_) out.push_back(collect());
    return out;
  }

 private:
  const Scheduler* scheduler_;
  std::vector<ServerMetrics::ExtraCounter> extra_;
  mutable absl::Mutex mu_;
  std::vector<std::function<prometheus::MetricFamily()>> families_ ABSL_GUARDED_BY(mu_);
};

class RpcTimer final : public grpc::experimental::Interceptor {
 public:
  RpcTimer(ServerMetrics* metrics, grpc::experimental::ServerRpcInfo* info)
      : metrics_(metrics),
        method_(info->method()),
        unary_(info->type() == grpc::experimental::ServerRpcInfo::Type::UNARY),
        start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (unary_ && methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      metrics_->ObserveRpc(method_, methods->GetSendStatus().error_code(), seconds);
    }
    methods->Proceed();
  }

 private:
  ServerMetrics* metrics_;
  std::string method_;
  bool unary_;
  std::chrono::steady_clock::time_point start_;
};

class RpcTimerFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcTimerFactory(ServerMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RpcTimer(metrics_, info);
  }

 private:
  ServerMetrics* metrics_;
};

}  // namespace

ServerMetrics::ServerMetrics(const Scheduler* scheduler, std::vector<ExtraCounter> extra)
    : registry_(std::make_shared<prometheus::Registry>()),
      rpc_duration_(&prometheus::BuildHistogram()
                         .Name("sched_rpc_duration_seconds")
                         .Help("Time from a unary RPC's arrival to its status, by method.")
                         .Register(*registry_)),
      collector_(std::make_shared<SchedulerCollector>(scheduler, std::move(extra))) {}

void ServerMetrics::AddFamily(std::function<prometheus::MetricFamily()> collect) {
  static_cast<SchedulerCollector*>(collector_.get())->AddFamily(std::move(collect));
}

prometheus::MetricFamily ServerMetrics::MakeFamily(std::string name, std::string help,
                                                   prometheus::MetricType type,
                                                   std::vector<LabeledValue> values) {
  std::vector<prometheus::ClientMetric> metrics;
  for (LabeledValue& v : values) metrics.push_back(Value(v.value, std::move(v.labels)));
  return Family(std::move(name), std::move(help), type, std::move(metrics));
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
ServerMetrics::InterceptorFactory() {
  return std::make_unique<RpcTimerFactory>(this);
}

void ServerMetrics::ObserveRpc(const std::string& method, grpc::StatusCode code, double seconds) {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
  rpc_duration_->Add({{"method", method}, {"code", CodeName(code)}}, kBuckets).Observe(seconds);
}

}  // namespace sched
