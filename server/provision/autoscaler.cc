#include "server/provision/autoscaler.h"

#include <algorithm>
#include <cstdio>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "server/provision/provider_program.h"

namespace sched::provision {
namespace {

using nlohmann::json;

void Log(const std::string& line) {
  std::fprintf(stderr, "schedd: autoscaler: %s\n", line.c_str());
}

// Runs an asynchronous Scheduler call to its end.
template <typename T, typename F>
absl::StatusOr<T> Await(F call) {
  absl::Notification done;
  absl::StatusOr<T> result = absl::UnknownError("no answer");
  call([&](absl::StatusOr<T> r) {
    result = std::move(r);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

std::string RandomSuffix() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrFormat("%06x", rng() & 0xffffff);
}

// A string member of a provider's answer, cut to `max` bytes; "" when absent or not a string.
std::string StringField(const json& reply, const char* key, size_t max) {
  auto it = reply.find(key);
  if (it == reply.end() || !it->is_string()) return "";
  return it->get<std::string>().substr(0, max);
}

bool Active(const Node& node) { return node.record.rental && node.record.rental->active(); }

}  // namespace

Autoscaler::Autoscaler(AutoscaleConfig config, Deps deps)
    : config_(std::move(config)), deps_(std::move(deps)) {
  run_ = deps_.run;
  if (!run_) {
    run_ = [this](const ProviderConfig& p, const std::string& op, const json& req,
                  absl::Duration timeout) {
      return RunProvider(p.program, op, req, timeout, &cancel_);
    };
  }
  schedd_address_ = config_.schedd_address.empty() ? deps_.schedd_address : config_.schedd_address;
  for (const ProviderConfig& p : config_.providers) providers_.emplace_back().config = p;
  {
    absl::MutexLock lock(&mu_);
    for (const Provider& p : providers_) provider_states_.emplace_back().name = p.config.name;
  }
  if (deps_.registry != nullptr) {
    calls_ = &prometheus::BuildCounter()
                  .Name("sched_provider_calls_total")
                  .Help("Provider program calls, by provider, op and result (ok or the gRPC code).")
                  .Register(*deps_.registry);
    transitions_ = &prometheus::BuildCounter()
                        .Name("sched_rented_node_transitions_total")
                        .Help("Rented nodes entering each phase, by provider.")
                        .Register(*deps_.registry);
    nodes_ = &prometheus::BuildGauge()
                  .Name("sched_rented_nodes")
                  .Help("Rented nodes by phase (GONE not counted).")
                  .Register(*deps_.registry);
    auto& fleet = prometheus::BuildGauge()
                      .Name("sched_rented_dollars_per_hour")
                      .Help("What the rented nodes not yet gone cost an hour, summed.")
                      .Register(*deps_.registry);
    fleet_price_ = &fleet.Add({});
    auto& waiting = prometheus::BuildGauge()
                        .Name("sched_jobs_waiting_for_rentals")
                        .Help("Pending jobs the last plan sends to a node being or to be rented.")
                        .Register(*deps_.registry);
    waiting_jobs_ = &waiting.Add({});
  }
}

Autoscaler::~Autoscaler() { Stop(); }

void Autoscaler::Start() {
  loop_ = std::thread([this] {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
        if (mu_.AwaitWithTimeout(absl::Condition(&stopping), config_.interval)) return;
      }
      Pass();
    }
  });
}

void Autoscaler::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  cancel_ = true;
  if (loop_.joinable()) loop_.join();
  WaitForCalls();
}

void Autoscaler::WaitForCalls() {
  std::list<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_calls_ == 0; };
    mu_.Await(absl::Condition(&idle));
    threads.swap(threads_);
  }
  for (std::thread& t : threads) t.join();
}

std::vector<Autoscaler::ProviderState> Autoscaler::Providers() const {
  absl::MutexLock lock(&mu_);
  return provider_states_;
}

json Autoscaler::Request(const Provider& p) const {
  json req = json::object();
  req["protocol"] = 1;
  req["provider"] = p.config.name;
  req["config"] = p.config.config;
  return req;
}

void Autoscaler::Call(size_t provider, const std::string& op, json request,
                      std::function<void(absl::StatusOr<json>)> then) {
  const ProviderConfig config = providers_[provider].config;
  const absl::Duration timeout = op == "offers"   ? config.offers_timeout
                                 : op == "create" ? config.create_timeout
                                 : op == "status" ? config.status_timeout
                                                  : config.delete_timeout;
  absl::MutexLock lock(&mu_);
  running_calls_++;
  threads_.emplace_back([this, config, op, request = std::move(request), timeout,
                         then = std::move(then)]() mutable {
    absl::StatusOr<json> result = run_(config, op, request, timeout);
    if (calls_ != nullptr) {
      calls_
          ->Add({{"provider", config.name},
                 {"op", op},
                 {"result", result.ok() ? "ok" : absl::StatusCodeToString(result.status().code())}})
          .Increment();
    }
    absl::MutexLock lock(&mu_);
    finished_.push_back({[then = std::move(then), result = std::move(result)]() mutable {
      then(std::move(result));
    }});
    running_calls_--;
  });
}

void Autoscaler::Failed(Provider& p, const absl::Status& status) {
  p.failures++;
  const absl::Duration wait =
      std::min(config_.backoff_max, config_.backoff_base * (1 << std::min(p.failures - 1, 20)));
  p.backoff_until = deps_.clock->Now() + wait;
  p.last_error = std::string(status.message());
  Log(absl::StrCat("provider ", p.config.name, ": ", status.message(), "; not called again for ",
                   absl::FormatDuration(wait)));
}

void Autoscaler::Succeeded(Provider& p) {
  p.failures = 0;
  p.backoff_until = absl::InfinitePast();
}

size_t Autoscaler::ProviderIndex(const std::string& name) const {
  for (size_t i = 0; i < providers_.size(); ++i) {
    if (providers_[i].config.name == name) return i;
  }
  return providers_.size();
}

void Autoscaler::Transition(const std::string& provider, RentalPhase phase) {
  if (transitions_ != nullptr) {
    transitions_->Add({{"provider", provider}, {"phase", std::string(RentalPhaseName(phase))}})
        .Increment();
  }
}

absl::StatusOr<Node> Autoscaler::Update(const std::string& node, RentalUpdate update) {
  absl::StatusOr<Node> result = Await<Node>([&](Done<Node> done) {
    deps_.scheduler->UpdateRental(node, std::move(update), std::move(done));
  });
  if (result.ok() && result->record.rental) {
    const Rental& r = *result->record.rental;
    auto [it, added] = seen_phase_.try_emplace(node, r.phase);
    if (added || it->second != r.phase) {
      it->second = r.phase;
      Transition(r.provider, r.phase);
      Log(absl::StrCat("node ", node, " (", r.provider, "): ", RentalPhaseName(r.phase),
                       r.message.empty() ? "" : absl::StrCat(": ", r.message)));
    }
  }
  return result;
}

void Autoscaler::RefreshOffers(size_t index) {
  Provider& p = providers_[index];
  const absl::Time now = deps_.clock->Now();
  if (p.offers_call || now < p.backoff_until) return;
  if (p.offers_time != absl::InfinitePast() && now - p.offers_time < config_.offers_refresh) return;
  p.offers_call = true;
  Call(index, "offers", Request(p), [this, index](absl::StatusOr<json> reply) {
    Provider& p = providers_[index];
    p.offers_call = false;
    if (!reply.ok()) {
      Failed(p, reply.status());
      return;
    }
    if (!reply->contains("offers") || !(*reply)["offers"].is_array()) {
      Failed(p, absl::InternalError(absl::StrCat("provider ", p.config.name,
                                                 ": offers: the answer has no \"offers\" list")));
      return;
    }
    Succeeded(p);
    p.offers_time = deps_.clock->Now();
    p.offers.clear();
    std::set<std::string> ids;
    for (const json& o : (*reply)["offers"]) {
      absl::StatusOr<Offer> offer = ParseOffer(o, p.config, deps_.catalog);
      if (!offer.ok()) {
        Log(absl::StrCat("provider ", p.config.name,
                         ": an offer passed over: ", offer.status().message()));
        continue;
      }
      if (o.contains("available") && o["available"].is_number() &&
          o["available"].get<double>() <= 0) {
        continue;
      }
      if (!ids.insert(offer->id).second) continue;
      p.offers.push_back(*std::move(offer));
    }
  });
}

void Autoscaler::Pass() {
  absl::MutexLock pass(&pass_mu_);
  // 1. What finished.
  std::vector<Finished> finished;
  {
    absl::MutexLock lock(&mu_);
    finished.swap(finished_);
  }
  for (Finished& f : finished) f.apply();
  const absl::Time now = deps_.clock->Now();
  // 2. Offers, and the plan.
  for (size_t i = 0; i < providers_.size(); ++i) RefreshOffers(i);
  offered_.clear();
  for (Provider& p : providers_) {
    if (now < p.backoff_until) continue;
    for (const Offer& o : p.offers) {
      auto b = p.offer_backoff.find(o.id);
      if (b != p.offer_backoff.end() && now < b->second) continue;
      offered_.push_back(o);
    }
  }
  // What the caps leave room for now: an offer they rule out is still weighed (its jobs wait
  // for it and say why), but not rented.
  {
    int fleet_nodes = 0;
    double fleet_price = 0;
    std::map<std::string, int> per_provider;
    for (const Node& node : deps_.scheduler->ListNodes()) {
      if (!Active(node)) continue;
      fleet_nodes++;
      fleet_price += node.record.rental->price_per_hour;
      per_provider[node.record.rental->provider]++;
    }
    for (Offer& o : offered_) {
      const ProviderConfig& pc = providers_[ProviderIndex(o.provider)].config;
      o.blocked = CapBlocking(fleet_nodes, fleet_price, per_provider[o.provider], pc,
                              o.caps.price_per_hour);
    }
  }
  RentalOptions options;
  options.idle_tail = config_.idle_timeout;
  options.max_jobs = config_.max_jobs_per_pass;
  deps_.scheduler->SetOffers(offered_, options);
  absl::StatusOr<RentalPlan> plan = Await<RentalPlan>(
      [&](Done<RentalPlan> done) { deps_.scheduler->PlanRentals(std::move(done)); });
  if (!plan.ok()) {
    Log(absl::StrCat("planning failed: ", plan.status().message()));
    return;
  }
  // 3. The rented nodes along their lives.
  std::vector<Node> nodes = deps_.scheduler->ListNodes();
  std::map<RentalPhase, int> by_phase;
  double fleet_price = 0;
  int fleet_nodes = 0;
  std::map<std::string, int> per_provider;
  for (const Node& node : nodes) {
    if (!Active(node)) continue;
    seen_phase_.try_emplace(node.record.name, node.record.rental->phase);
    Advance(node, *plan);
  }
  // Advance may have moved some: count what is left.
  nodes = deps_.scheduler->ListNodes();
  for (const Node& node : nodes) {
    if (!node.record.rental) continue;
    const Rental& r = *node.record.rental;
    auto [it, added] = seen_phase_.try_emplace(node.record.name, r.phase);
    if (!added && it->second != r.phase) {  // moved by the Scheduler: the agent joined
      it->second = r.phase;
      Transition(r.provider, r.phase);
      Log(absl::StrCat("node ", node.record.name, " (", r.provider,
                       "): ", RentalPhaseName(r.phase)));
    }
    if (!r.active()) continue;
    by_phase[r.phase]++;
    fleet_price += r.price_per_hour;
    fleet_nodes++;
    per_provider[r.provider]++;
  }
  // 4. New nodes.
  size_t waiting = 0;
  for (const auto& [name, jobs] : plan->waited_for) waiting += jobs.size();
  for (const RentalPlan::NewNode& want : plan->new_nodes) {
    waiting += want.job_ids.size();
    const Offer& offer = offered_[want.offer];
    const size_t pi = ProviderIndex(offer.provider);
    if (pi == providers_.size()) continue;
    Provider& p = providers_[pi];
    const std::string blocked = CapBlocking(fleet_nodes, fleet_price, per_provider[p.config.name],
                                            p.config, offer.caps.price_per_hour);
    if (!blocked.empty()) {
      // Said once a job and reason; the job's message says it all along.
      if (told_blocked_.size() > 10000) told_blocked_.clear();  // said again, at worst
      if (told_blocked_.insert(absl::StrCat(want.job_ids.front(), "/", blocked)).second) {
        Log(absl::StrCat("offer ", offer.provider, "/", offer.id, " not rented for job ",
                         want.job_ids.front(), ": ", blocked));
      }
      continue;
    }
    Rent(want, offer);
    fleet_nodes++;
    per_provider[p.config.name]++;
    fleet_price += offer.caps.price_per_hour;
    by_phase[RentalPhase::kProvisioning]++;
  }
  if (nodes_ != nullptr) {
    for (RentalPhase phase :
         {RentalPhase::kProvisioning, RentalPhase::kJoining, RentalPhase::kReady,
          RentalPhase::kDraining, RentalPhase::kTerminating}) {
      nodes_->Add({{"phase", std::string(RentalPhaseName(phase))}}).Set(by_phase[phase]);
    }
    fleet_price_->Set(fleet_price);
    waiting_jobs_->Set(static_cast<double>(waiting));
  }
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < providers_.size(); ++i) {
    provider_states_[i] = {providers_[i].config.name, providers_[i].offers.size(),
                           providers_[i].failures, providers_[i].backoff_until,
                           providers_[i].last_error};
  }
}

std::string Autoscaler::CapBlocking(int fleet_nodes, double fleet_price, int provider_nodes,
                                    const ProviderConfig& provider, double price) const {
  if (fleet_nodes + 1 > config_.max_nodes) {
    return absl::StrCat("the fleet's cap of ", config_.max_nodes, " rented nodes");
  }
  if (provider.max_nodes > 0 && provider_nodes + 1 > provider.max_nodes) {
    return absl::StrCat("provider ", provider.name, "'s cap of ", provider.max_nodes, " nodes");
  }
  if (fleet_price + price > config_.max_dollars_per_hour + 1e-9) {
    return absl::StrFormat("the fleet's cap of $%.2f an hour ($%.2f rented now)",
                           config_.max_dollars_per_hour, fleet_price);
  }
  return "";
}

void Autoscaler::Rent(const RentalPlan::NewNode& want, const Offer& offer) {
  const size_t pi = ProviderIndex(offer.provider);
  Provider& p = providers_[pi];
  const absl::Time now = deps_.clock->Now();
  NodeRecord record;
  record.name = absl::StrCat(p.config.name, "-", RandomSuffix());
  record.caps = offer.caps;
  Rental& r = record.rental.emplace();
  r.provider = p.config.name;
  r.offer_id = offer.id;
  r.owner_project = want.project;
  r.price_per_hour = offer.caps.price_per_hour;
  r.expected_ready = now + offer.provisioning_time;
  r.message = absl::StrFormat("asked of %s (offer %s, $%.2f/h) for job %s", p.config.name, offer.id,
                              offer.caps.price_per_hour, want.job_ids.front());
  absl::StatusOr<Node> node = Await<Node>(
      [&](Done<Node> done) { deps_.scheduler->RentNode(std::move(record), std::move(done)); });
  if (!node.ok()) {
    Log(absl::StrCat("cannot record a node for offer ", offer.provider, "/", offer.id, ": ",
                     node.status().message()));
    return;
  }
  seen_phase_[node->record.name] = RentalPhase::kProvisioning;
  Transition(p.config.name, RentalPhase::kProvisioning);
  Log(absl::StrCat("node ", node->record.name, " (", p.config.name,
                   "): PROVISIONING: ", node->record.rental->message));
  tracked_[node->record.name];
  Create(*node);
}

void Autoscaler::Create(const Node& node) {
  const Rental& r = *node.record.rental;
  const size_t pi = ProviderIndex(r.provider);
  if (pi == providers_.size()) return;
  Provider& p = providers_[pi];
  Tracked& t = tracked_[node.record.name];
  std::string token;
  if (deps_.join_token) {
    absl::StatusOr<std::string> minted =
        deps_.join_token(node.record.name, config_.provisioning_timeout + absl::Minutes(5));
    if (!minted.ok()) {
      Log(absl::StrCat("node ", node.record.name, ": no join token: ", minted.status().message()));
      return;
    }
    token = *minted;
  }
  json req = Request(p);
  req["offer_id"] = r.offer_id;
  req["node_name"] = node.record.name;
  json agent = json::object();
  agent["server"] = schedd_address_;
  agent["name"] = node.record.name;
  agent["ca_pin"] = deps_.ca_pin;
  agent["join_token"] = token;
  agent["provider"] = node.record.caps.provider;
  agent["price_per_hour"] = r.price_per_hour;
  agent["spot"] = node.record.caps.spot;
  agent["region"] = node.record.caps.region;
  agent["instance_type"] = node.record.caps.instance_type;
  agent["labels"] = json::object({{"sched.rented", "true"}, {"sched.offer", r.offer_id}});
  req["agent"] = std::move(agent);
  t.call = true;
  const std::string name = node.record.name;
  Call(pi, "create", std::move(req), [this, name, pi](absl::StatusOr<json> reply) {
    Tracked& t = tracked_[name];
    t.call = false;
    Provider& p = providers_[pi];
    if (reply.ok() && (!reply->contains("instance_id") || !(*reply)["instance_id"].is_string())) {
      reply = absl::InternalError(
          absl::StrCat("provider ", p.config.name, ": create: the answer has no \"instance_id\""));
    }
    if (!reply.ok()) {
      Failed(p, reply.status());
      t.create_failed = true;
      absl::StatusOr<Node> node = deps_.scheduler->GetNode(name);
      if (node.ok() && node->record.rental) {
        p.offer_backoff[node->record.rental->offer_id] = deps_.clock->Now() + config_.offer_backoff;
      }
      RentalUpdate u;
      u.phase = RentalPhase::kTerminating;
      u.message = absl::StrCat("create failed: ", reply.status().message());
      Update(name, std::move(u)).IgnoreError();
      return;
    }
    Succeeded(p);
    t.create_answered = true;
    t.next_status = deps_.clock->Now();
    RentalUpdate u;
    u.instance_id = (*reply)["instance_id"].get<std::string>().substr(0, 256);
    if (std::string message = StringField(*reply, "message", 512); !message.empty()) {
      u.message = std::move(message);
    }
    Update(name, std::move(u)).IgnoreError();
  });
}

json Autoscaler::MachineRequest(const Provider& p, const Node& node) const {
  json req = Request(p);
  req["instance_id"] = node.record.rental->instance_id;
  req["node_name"] = node.record.name;
  return req;
}

void Autoscaler::Status(const Node& node) {
  const size_t pi = ProviderIndex(node.record.rental->provider);
  if (pi == providers_.size()) return;
  Tracked& t = tracked_[node.record.name];
  json req = MachineRequest(providers_[pi], node);
  t.call = true;
  t.next_status = deps_.clock->Now() + config_.status_interval;
  const std::string name = node.record.name;
  Call(pi, "status", std::move(req), [this, name, pi](absl::StatusOr<json> reply) {
    Tracked& t = tracked_[name];
    t.call = false;
    Provider& p = providers_[pi];
    if (!reply.ok()) {
      Failed(p, reply.status());
      return;
    }
    Succeeded(p);
    const std::string state = StringField(*reply, "state", 64);
    const std::string message = StringField(*reply, "message", 512);
    absl::StatusOr<Node> node = deps_.scheduler->GetNode(name);
    if (!node.ok() || !Active(*node)) return;
    const RentalPhase phase = node->record.rental->phase;
    if (state == "running" && phase == RentalPhase::kProvisioning) {
      RentalUpdate u;
      u.phase = RentalPhase::kJoining;
      u.message = message.empty() ? "the machine is up; waiting for its agent" : message;
      Update(name, std::move(u)).IgnoreError();
    } else if ((state == "gone" || state == "failed") && phase < RentalPhase::kTerminating) {
      if (phase == RentalPhase::kProvisioning || phase == RentalPhase::kJoining) {
        p.offer_backoff[node->record.rental->offer_id] = deps_.clock->Now() + config_.offer_backoff;
      }
      RentalUpdate u;
      u.phase = RentalPhase::kTerminating;
      u.message = absl::StrCat("the provider says the machine is ", state,
                               message.empty() ? "" : absl::StrCat(": ", message));
      Update(name, std::move(u)).IgnoreError();
    } else if (state != "pending" && state != "running" && state != "gone" && state != "failed") {
      Log(absl::StrCat("node ", name, ": status answered an unknown state \"", state.substr(0, 40),
                       "\""));
    }
  });
}

void Autoscaler::Delete(const Node& node) {
  const size_t pi = ProviderIndex(node.record.rental->provider);
  if (pi == providers_.size()) return;
  Tracked& t = tracked_[node.record.name];
  json req = MachineRequest(providers_[pi], node);
  t.call = true;
  const std::string name = node.record.name;
  Call(pi, "delete", std::move(req), [this, name, pi](absl::StatusOr<json> reply) {
    Tracked& t = tracked_[name];
    t.call = false;
    Provider& p = providers_[pi];
    const absl::Time now = deps_.clock->Now();
    if (!reply.ok()) {
      t.delete_failures++;
      t.next_delete =
          now + std::min(config_.backoff_max,
                         config_.backoff_base * (1 << std::min(t.delete_failures - 1, 20)));
      Log(absl::StrCat("node ", name, ": delete failed (", t.delete_failures,
                       " in a row), tried again at ", absl::FormatTime(t.next_delete), ": ",
                       reply.status().message()));
      return;
    }
    const std::string state = StringField(*reply, "state", 64);
    if (state != "gone") {
      t.next_delete = now + config_.status_interval;  // "deleting": asked again
      return;
    }
    t.delete_failures = 0;
    (void)p;
    RentalUpdate u;
    u.phase = RentalPhase::kGone;
    u.message = "the provider says it is gone";
    if (Update(name, std::move(u)).ok()) tracked_.erase(name);
  });
}

void Autoscaler::Advance(const Node& node, const RentalPlan& plan) {
  const Rental& r = *node.record.rental;
  const std::string& name = node.record.name;
  Tracked& t = tracked_[name];
  if (r.instance_id.empty() && !t.create_answered && !t.create_failed &&
      r.phase == RentalPhase::kProvisioning && !t.call) {
    // Never answered (schedd restarted mid-call): create again, which a provider answers with
    // the same machine for the same node name.
    Create(node);
    return;
  }
  if (t.call) return;
  const absl::Time now = deps_.clock->Now();
  const size_t pi = ProviderIndex(r.provider);
  auto terminate = [&](std::string why, bool only_if_unused) {
    RentalUpdate u;
    u.phase = RentalPhase::kTerminating;
    u.message = std::move(why);
    u.only_if_unused = only_if_unused;
    absl::StatusOr<Node> moved = Update(name, std::move(u));
    if (moved.ok() && moved->record.rental->phase == RentalPhase::kTerminating) Delete(*moved);
  };
  switch (r.phase) {
    case RentalPhase::kProvisioning:
    case RentalPhase::kJoining: {
      if (now - r.create_time > config_.provisioning_timeout) {
        if (pi < providers_.size())
          providers_[pi].offer_backoff[r.offer_id] = now + config_.offer_backoff;
        terminate(absl::StrCat("its agent did not join within ",
                               absl::FormatDuration(config_.provisioning_timeout),
                               ": given back; offer ", r.offer_id, " passed over for ",
                               absl::FormatDuration(config_.offer_backoff)),
                  false);
        return;
      }
      if (!node.connected && plan.waited_for.count(name) == 0) {
        terminate("no pending job needs it any more", false);
        return;
      }
      if (now >= t.next_status) Status(node);
      return;
    }
    case RentalPhase::kReady:
    case RentalPhase::kDraining: {
      // Idle since its last job ended, or since it joined if none has run on it yet.
      const absl::Time idle_since = std::max(r.unleased_since, r.ready_time);
      if (node.running_jobs == 0 && r.unleased_since != absl::InfinitePast() &&
          now - idle_since >= config_.idle_timeout) {
        terminate(absl::StrCat("idle for ", absl::FormatDuration(config_.idle_timeout)), true);
        return;
      }
      if (node.running_jobs == 0 && (node.record.draining || r.phase == RentalPhase::kDraining)) {
        terminate("drained", true);
        return;
      }
      if (now >= t.next_status) Status(node);
      return;
    }
    case RentalPhase::kTerminating:
      if (now >= t.next_delete) Delete(node);
      return;
    case RentalPhase::kGone:
      return;
  }
}

}  // namespace sched::provision
