#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "server/core/rental.h"
#include "server/cost/catalog.h"

namespace sched::provision {

// One provider program and the limits on what it may rent (docs/providers.md).
struct ProviderConfig {
  std::string name;     // [a-z0-9-], unique: the prefix of its nodes' names
  std::string program;  // a path, or a name looked for on PATH
  // What its nodes report as their provider (the catalog's name for price and spot risk).
  // Default: the name; a provider named "local" advertises "local-rented", since "local" means
  // the user's own machines.
  std::string advertise_provider;
  int max_nodes = 0;  // 0: only the fleet's cap
  absl::Duration offers_timeout = absl::Seconds(60);
  absl::Duration create_timeout = absl::Seconds(120);
  absl::Duration status_timeout = absl::Seconds(30);
  absl::Duration delete_timeout = absl::Seconds(60);
  nlohmann::json config = nlohmann::json::object();  // given to the program as it is
};

struct AutoscaleConfig {
  absl::Duration interval = absl::Seconds(2);  // between passes
  // A rented node idle this long is given back.
  absl::Duration idle_timeout = absl::Minutes(10);
  // A node whose agent has not joined this long after the create request is given back, and
  // its offer is not tried again for offer_backoff.
  absl::Duration provisioning_timeout = absl::Minutes(10);
  absl::Duration offer_backoff = absl::Minutes(30);
  // How often each provider is asked for offers, and each rented node's machine looked at.
  absl::Duration offers_refresh = absl::Minutes(5);
  absl::Duration status_interval = absl::Seconds(15);
  // A provider whose calls fail waits this long after its first failure, doubling up to
  // backoff_max, before it is called again.
  absl::Duration backoff_base = absl::Seconds(10);
  absl::Duration backoff_max = absl::Minutes(10);
  int max_nodes = 8;                 // rented nodes alive at once, fleet-wide
  double max_dollars_per_hour = 20;  // their prices summed
  size_t max_jobs_per_pass = 1000;
  // What the agents of rented nodes dial: empty means schedd's --listen address.
  std::string schedd_address;
  std::vector<ProviderConfig> providers;
};

// Reads the autoscale YAML file. INVALID_ARGUMENT names the key and what is wrong.
absl::StatusOr<AutoscaleConfig> LoadAutoscaleConfig(const std::string& path);
absl::StatusOr<AutoscaleConfig> ParseAutoscaleConfig(const std::string& yaml);

// One offer as a provider wrote it (an element of "offers"), checked, as the cost brain weighs
// it. GPU names the catalog knows become their NVML names; a GPU memory left out is the
// catalog's. INVALID_ARGUMENT names the field.
absl::StatusOr<Offer> ParseOffer(const nlohmann::json& offer, const ProviderConfig& provider,
                                 const cost::Catalog* catalog);

}  // namespace sched::provision
