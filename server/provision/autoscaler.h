#pragma once

#include <atomic>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "server/common/clock.h"
#include "server/core/scheduler.h"
#include "server/cost/catalog.h"
#include "server/provision/autoscale_config.h"

namespace prometheus {
class Registry;
template <typename T>
class Family;
class Counter;
class Gauge;
}  // namespace prometheus

namespace sched::provision {

// Rents nodes when the cost brain sends pending jobs to an offer, and gives them back when they
// are idle, stuck or no longer needed (docs/autoscaling.md). Each pass:
//   1. applies the provider calls that finished since the last;
//   2. asks each provider for offers when its list is old, and hands the offers to the
//      Scheduler (SetOffers), which weighs them with the nodes it has (PlanRentals);
//   3. moves each rented node along its life: create, status until its agent joins, give back
//      when idle past idle_timeout, stuck past provisioning_timeout (its offer is then passed
//      over for offer_backoff), no longer waited for, or drained; delete until the provider
//      says it is gone;
//   4. rents the new nodes the plan asks for, within the fleet's caps on nodes and dollars per
//      hour and each provider's cap, for providers not backed off after failures.
// Provider programs run on threads of their own, one call per node at a time; a pass never
// waits for one. The Scheduler keeps the rentals durable, so a restarted schedd takes up where
// it was.
class Autoscaler {
 public:
  using RunFn = std::function<absl::StatusOr<nlohmann::json>(
      const ProviderConfig& provider, const std::string& op, const nlohmann::json& request,
      absl::Duration timeout)>;
  struct Deps {
    Scheduler* scheduler = nullptr;
    const Clock* clock = nullptr;
    const cost::Catalog* catalog = nullptr;  // may be null
    // A join token for the agent of a new node, good for `ttl`; "" when schedd takes agents
    // without tokens.
    std::function<absl::StatusOr<std::string>(const std::string& node, absl::Duration ttl)>
        join_token;
    std::string ca_pin;          // what agents check schedd's certificate against; "" without TLS
    std::string schedd_address;  // used when the config names none
    std::shared_ptr<prometheus::Registry> registry;  // may be null
    RunFn run;                                       // null: RunProvider (the real programs)
  };

  Autoscaler(AutoscaleConfig config, Deps deps);
  ~Autoscaler();
  Autoscaler(const Autoscaler&) = delete;
  Autoscaler& operator=(const Autoscaler&) = delete;

  // Runs a pass every config.interval on a thread of its own until Stop().
  void Start();
  void Stop();
  void Pass();
  // Waits until no provider call runs (tests, and Stop).
  void WaitForCalls();

  struct ProviderState {
    std::string name;
    size_t offers = 0;
    int failures = 0;  // in a row
    absl::Time backoff_until = absl::InfinitePast();
    std::string last_error;
  };
  std::vector<ProviderState> Providers() const;

 private:
  struct Provider {
    ProviderConfig config;
    std::vector<Offer> offers;
    absl::Time offers_time = absl::InfinitePast();
    bool offers_call = false;  // one in flight
    int failures = 0;
    absl::Time backoff_until = absl::InfinitePast();
    std::string last_error;
    std::map<std::string, absl::Time> offer_backoff;  // offer id -> not before
  };
  // What the autoscaler knows of a rented node beyond the Scheduler's record.
  struct Tracked {
    bool call = false;  // a call for it is in flight
    absl::Time next_status = absl::InfinitePast();
    absl::Time next_delete = absl::InfinitePast();
    int delete_failures = 0;
    bool create_answered = false;
    bool create_failed = false;
  };
  struct Finished {
    std::function<void()> apply;  // runs on the pass's thread
  };

  void Call(size_t provider, const std::string& op, nlohmann::json request,
            std::function<void(absl::StatusOr<nlohmann::json>)> then);
  nlohmann::json Request(const Provider& p) const;
  // Request() naming the rented node's machine, for status and delete.
  nlohmann::json MachineRequest(const Provider& p, const Node& node) const;
  void Failed(Provider& p, const absl::Status& status);
  void Succeeded(Provider& p);
  void RefreshOffers(size_t index);
  void Advance(const Node& node, const RentalPlan& plan);
  void Create(const Node& node);
  void Status(const Node& node);
  void Delete(const Node& node);
  void Rent(const RentalPlan::NewNode& want, const Offer& offer);
  // Which cap one more node at `price` would pass, in words; "" when none.
  std::string CapBlocking(int fleet_nodes, double fleet_price, int provider_nodes,
                          const ProviderConfig& provider, double price) const;
  absl::StatusOr<Node> Update(const std::string& node, RentalUpdate update);
  size_t ProviderIndex(const std::string& name) const;
  void Transition(const std::string& provider, RentalPhase phase);

  const AutoscaleConfig config_;
  Deps deps_;
  RunFn run_;
  std::string schedd_address_;
  std::vector<Provider> providers_;         // touched by the pass only
  std::map<std::string, Tracked> tracked_;  // by node name; the pass only
  std::vector<Offer> offered_;              // the offers handed to the Scheduler, in its order
  std::map<std::string, RentalPhase> seen_phase_;  // for transition counts
  std::set<std::string> told_blocked_;             // "job/reason" already logged

  mutable absl::Mutex mu_;
  std::vector<Finished> finished_ ABSL_GUARDED_BY(mu_);
  int running_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::list<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  std::vector<ProviderState> provider_states_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> cancel_{false};  // kills running provider programs (Stop)
  std::thread loop_;
  absl::Mutex pass_mu_;  // one pass at a time

  prometheus::Family<prometheus::Counter>* calls_ = nullptr;
  prometheus::Family<prometheus::Counter>* transitions_ = nullptr;
  prometheus::Family<prometheus::Gauge>* nodes_ = nullptr;
  prometheus::Gauge* fleet_price_ = nullptr;
  prometheus::Gauge* waiting_jobs_ = nullptr;
};

}  // namespace sched::provision
