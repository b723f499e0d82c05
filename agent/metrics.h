#pragma once

#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/nvml.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace sched::agent {

enum class JobResult { kSucceeded, kFailed, kCancelled };

// The agent's Prometheus metrics, registered in a registry the caller owns (and keeps alive
// as long as this). No job ids in labels. Thread-safe.
class AgentMetrics {
 public:
  explicit AgentMetrics(prometheus::Registry& registry);

  // A job's process started / ended (for any reason, reported or not).
  void ProcessStarted();
  void ProcessEnded();
  // A job's final state was decided here and reported to schedd.
  void JobFinished(JobResult result);
  void SetConnected(bool connected);

 private:
  prometheus::Gauge& running_jobs_;
  prometheus::Counter& jobs_started_;
  prometheus::Family<prometheus::Counter>& finished_;
  prometheus::Counter& succeeded_;
  prometheus::Counter& failed_;
  prometheus::Counter& cancelled_;
  prometheus::Gauge& connected_;
};

// GPU memory and utilization, read on each scrape, with dcgm-exporter's label names: gpu
// (index), UUID, modelName. A failed read gives no GPU samples for that scrape.
class GpuCollector final : public prometheus::Collectable {
 public:
  using Sampler = std::function<absl::StatusOr<std::vector<GpuSample>>()>;
  explicit GpuCollector(Sampler sampler) : sampler_(std::move(sampler)) {}

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  Sampler sampler_;
};

}  // namespace sched::agent
