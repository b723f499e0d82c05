#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/gpu.h"
#include "sched/v1/types.pb.h"
#include "server/cost/price_schedule.h"

namespace sched::agent {

// What the operator says about the node, from sched-agent's flags or its config file (--config),
// beside or in place of what the agent detects. Each field is set only where it was given; the
// names are the flags' and the config file's keys.
struct NodeSettings {
  std::optional<std::map<std::string, std::string>> labels;
  // Dollars per hour. Excludes the local price parts below.
  std::optional<double> price_per_hour;
  std::optional<bool> spot;
  // Replaces the detected provider.
  std::optional<std::string> provider;
  std::optional<std::string> region;
  std::optional<std::string> instance_type;
  // The local price parts, given in pairs: price_per_hour = power_watts / 1000 *
  // electricity_per_kwh + hardware_cost / (amortize_months * 730).
  std::optional<double> power_watts;
  std::optional<double> electricity_per_kwh;  // dollars
  std::optional<double> hardware_cost;        // dollars
  std::optional<double> amortize_months;
  // Prices by time of day, in cost::ParsePriceSchedule's form: "00:00-07:00=0.12,
  // 17:00-21:00=0.45", optionally "UTC+01:00;" first (else the machine's own offset), prices
  // per hour or per kWh ("=0.08/kwh", with power_watts and the amortization). Read by
  // ResolvePrice, once the flags are over the file.
  std::optional<std::string> price_schedule;
  // Replaces GPU detection: these GPUs are reported, numbered from 0, and given to jobs.
  std::optional<std::vector<GpuDevice>> advertise_gpus;
};

// Hours in a month, for amortization.
inline constexpr double kHoursPerMonth = 730;
// The most GPUs --advertise_gpus may give.
inline constexpr int kMaxAdvertisedGpus = 64;

// `over`'s set fields replace `base`'s: the flags over the config file.
NodeSettings Overlay(NodeSettings base, const NodeSettings& over);

// Checks each value on its own (ranges, characters). INVALID_ARGUMENT whose message starts with
// the setting's name: "power_watts: ...".
absl::Status ValidateNodeSettings(const NodeSettings& settings);

// --advertise_gpus: comma-separated entries "[COUNTx ]MODEL:MEMORY", e.g.
// "2x NVIDIA GeForce RTX 4090:24GB,1x NVIDIA H100 80GB HBM3:80GB". MODEL is the name NVML reports;
// MEMORY as ParseGpuMemory reads it; COUNT is 1 when left out. The GPUs are indexed from 0 in the
// order written and have no UUID. INVALID_ARGUMENT ("advertise_gpus: ...") naming the entry.
absl::StatusOr<std::vector<GpuDevice>> ParseAdvertisedGpus(absl::string_view text);
// One entry of the above, its GPUs indexed from `first_index`.
absl::StatusOr<std::vector<GpuDevice>> ParseAdvertisedGpuEntry(absl::string_view entry,
                                                               uint32_t first_index);

// GPU memory the way cards are sold and nvidia-smi prints it: a number (fractions allowed) and
// GB or GiB (both 2^30 bytes, so "24GB" is a 24 GiB RTX 4090), or MB or MiB (2^20 bytes, as in
// "24564MiB"); units ignore case. INVALID_ARGUMENT with the reason for anything else.
absl::StatusOr<int64_t> ParseGpuMemory(absl::string_view text);

// The node's price from the settings: price_per_hour when given; else the local price computed
// from its parts (returned in `local_price` too); else 0. And its price schedule, where
// `local_utc_offset_minutes` (the machine's, LocalUtcOffsetMinutes) applies when the text names
// no offset. INVALID_ARGUMENT when a part comes without its pair, price_per_hour comes with
// parts, or the schedule does not parse ("price_schedule: ...").
struct Price {
  double per_hour = 0;
  std::optional<v1::Capabilities::LocalPrice> local_price;
  cost::PriceSchedule schedule;  // empty: per_hour all day
};
absl::StatusOr<Price> ResolvePrice(const NodeSettings& settings,
                                   int32_t local_utc_offset_minutes = 0);

// Puts the settings into detected capabilities: provider (listed in `advertised` when it differs
// from the detected one), price, its parts and schedule, spot, region, instance type and labels.
// GPUs are not touched: advertised GPUs replace detection before it runs (DetectCapabilities).
// `local_utc_offset_minutes` as for ResolvePrice.
absl::Status ApplyNodeSettings(const NodeSettings& settings, int32_t local_utc_offset_minutes,
                               v1::Capabilities* caps);

}  // namespace sched::agent
