#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "grpcpp/support/server_interceptor.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/core/scheduler.h"

namespace sched {

// What schedd exports to Prometheus. Scheduler numbers are read at scrape time from
// Scheduler::Stats(); RPC latency is observed by a server interceptor.
class ServerMetrics {
 public:
  // `extra_gauges` name -> reader, e.g. store counters; read at scrape time.
  struct ExtraCounter {
    std::string name;
    std::string help;
    std::function<double()> read;
  };
  ServerMetrics(const Scheduler* scheduler, std::vector<ExtraCounter> extra_counters = {});

  // A family read at scrape time, added by the parts of schedd that keep their own numbers
  // (checkpoint uploads, the store's disk).
  void AddFamily(std::function<prometheus::MetricFamily()> collect);
  struct LabeledValue {
    double value = 0;
    std::vector<prometheus::ClientMetric::Label> labels;
  };
  static prometheus::MetricFamily MakeFamily(std::string name, std::string help,
                                             prometheus::MetricType type,
                                             std::vector<LabeledValue> values);

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  std::shared_ptr<prometheus::Collectable> scheduler_collector() const { return collector_; }
  // Give to grpc::ServerBuilder::experimental().SetInterceptorCreators().
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

  void ObserveRpc(const std::string& method, grpc::StatusCode code, double seconds);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Histogram>* rpc_duration_;
  std::shared_ptr<prometheus::Collectable> collector_;
};

}  // namespace sched
