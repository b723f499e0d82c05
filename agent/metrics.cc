#include "agent/metrics.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace sched::agent {
AgentMetrics::AgentMetrics(prometheus::Registry& registry)
    : running_jobs_(prometheus::BuildGauge()
                        .Name("sched_agent_running_jobs")
                        .Help("Job processes running on this agent.")
                        .Register(registry)
                        .Add({})),
      jobs_started_(prometheus::BuildCounter()
                        .Name("sched_agent_jobs_started_total")
                        .Help("Job processes this agent started.")
                        .Register(registry)
                        .Add({})),
      finished_(prometheus::BuildCounter()
                    .Name("sched_agent_jobs_finished_total")
                    .Help("Jobs whose final state this agent reported, by result.")
                    .Register(registry)),
      succeeded_(finished_.Add({{"result", "succeeded"}})),
      failed_(finished_.Add({{"result", "failed"}})),
      cancelled_(finished_.Add({{"result", "cancelled"}})),
      connected_(prometheus::BuildGauge()
                     .Name("sched_agent_connected")
                     .Help("1 while the agent holds a registered stream to schedd.")
                     .Register(registry)
                     .Add({})) {}

void AgentMetrics::ProcessStarted() {
  jobs_started_.Increment();
  running_jobs_.Increment();
}

void AgentMetrics::ProcessEnded() { running_jobs_.Decrement(); }

void AgentMetrics::JobFinished(JobResult result) {
  switch (result) {
    case JobResult::kSucceeded:
      succeeded_.Increment();
      break;
    case JobResult::kFailed:
      failed_.Increment();
      break;
    case JobResult::kCancelled:
      cancelled_.Increment();
      break;
  }
}

void AgentMetrics::SetConnected(bool connected) { connected_.Set(connected ? 1 : 0); }

std::vector<prometheus::MetricFamily> GpuCollector::Collect() const {
  absl::StatusOr<std::vector<GpuSample>> samples = sampler_();
  if (!samples.ok()) return {};
  prometheus::MetricFamily used{
      "sched_agent_gpu_memory_used_bytes", "GPU memory in use.", prometheus::MetricType::Gauge, {}};
  prometheus::MetricFamily total{
      "sched_agent_gpu_memory_total_bytes", "GPU memory.", prometheus::MetricType::Gauge, {}};
  prometheus::MetricFamily util{"sched_agent_gpu_utilization_ratio",
                                "Fraction of the last sample period the GPU was busy (0..1).",
                                prometheus::MetricType::Gauge,
                                {}};
  for (const GpuSample& s : *samples) {
    prometheus::ClientMetric m;
    m.label = {{"gpu", absl::StrCat(s.device.index)},
               {"UUID", s.device.uuid},
               {"modelName", s.device.model}};
    m.gauge.value = static_cast<double>(s.memory_used_bytes);
    used.metric.push_back(m);
    m.gauge.value = static_cast<double>(s.device.memory_bytes);
    total.metric.push_back(m);
    m.gauge.value = s.utilization;
    util.metric.push_back(m);
  }
  return {used, total, util};
}

}  // namespace sched::agent
