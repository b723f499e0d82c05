#include "agent/node_settings.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/common/status_macros.h"

namespace sched::agent {
namespace {

constexpr size_t kMaxNameLength = 63;
// Past this a tariff is surely in cents, not dollars.
constexpr double kMaxElectricityPerKwh = 10;
constexpr double kMaxPowerWatts = 100'000;
constexpr double kMaxAmortizeMonths = 1200;

absl::Status Bad(absl::string_view setting, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat(setting, ": ", reason));
}

template <typename T>
void Take(std::optional<T>& into, const std::optional<T>& from) {
  if (from) into = from;
}

// A finite number in [min, max]; `min_open` excludes min itself.
absl::Status CheckNumber(absl::string_view setting, const std::optional<double>& value, double min,
                         bool min_open, double max, absl::string_view unit) {
  if (!value) return absl::OkStatus();
  const double v = *value;
  if (!std::isfinite(v) || v < min || (min_open && v == min) || v > max) {
    return Bad(setting, absl::StrCat("want ", min_open ? "more than " : "", min, " to ",
                                     static_cast<int64_t>(max), " ", unit, ", got ", v));
  }
  return absl::OkStatus();
}

absl::Status CheckProvider(const std::optional<std::string>& provider) {
  if (!provider) return absl::OkStatus();
  const bool ok =
      !provider->empty() && provider->size() <= kMaxNameLength &&
      std::all_of(provider->begin(), provider->end(), [](char c) {
        return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' || c == '_' || c == '.';
      });
  if (ok) return absl::OkStatus();
  return Bad("provider",
             absl::StrCat("want 1 to ", kMaxNameLength,
                          " of a-z, 0-9, '.', '_', '-' (\"vastai\"), got \"", *provider, "\""));
}

// Free text shown in tables: printable, one line, not too long.
absl::Status CheckText(absl::string_view setting, const std::optional<std::string>& text) {
  if (!text) return absl::OkStatus();
  const bool ok =
      text->size() <= kMaxNameLength &&
      std::all_of(text->begin(), text->end(), [](char c) { return absl::ascii_isprint(c); });
  if (ok) return absl::OkStatus();
  return Bad(setting, absl::StrCat("want at most ", kMaxNameLength,
                                   " printable characters on one line, got \"", *text, "\""));
}

// "power_watts: given without electricity_per_kwh ..." when exactly one of a pair is set.
absl::Status CheckPair(absl::string_view a, const std::optional<double>& a_value,
                       absl::string_view b, const std::optional<double>& b_value,
                       absl::string_view why) {
  if (a_value.has_value() == b_value.has_value()) return absl::OkStatus();
  const absl::string_view given = a_value ? a : b;
  const absl::string_view missing = a_value ? b : a;
  return Bad(given, absl::StrCat("given without ", missing, "; ", why));
}

}  // namespace

NodeSettings Overlay(NodeSettings base, const NodeSettings& over) {
  Take(base.labels, over.labels);
  Take(base.price_per_hour, over.price_per_hour);
  Take(base.spot, over.spot);
  Take(base.provider, over.provider);
  Take(base.region, over.region);
  Take(base.instance_type, over.instance_type);
  Take(base.power_watts, over.power_watts);
  Take(base.electricity_per_kwh, over.electricity_per_kwh);
  Take(base.hardware_cost, over.hardware_cost);
  Take(base.amortize_months, over.amortize_months);
  Take(base.price_schedule, over.price_schedule);
  Take(base.advertise_gpus, over.advertise_gpus);
  return base;
}

absl::Status ValidateNodeSettings(const NodeSettings& s) {
  SCHED_RETURN_IF_ERROR(
      CheckNumber("price_per_hour", s.price_per_hour, 0, false, 10'000, "dollars"));
  SCHED_RETURN_IF_ERROR(CheckProvider(s.provider));
  SCHED_RETURN_IF_ERROR(CheckText("region", s.region));
  SCHED_RETURN_IF_ERROR(CheckText("instance_type", s.instance_type));
  SCHED_RETURN_IF_ERROR(
      CheckNumber("power_watts", s.power_watts, 0, true, kMaxPowerWatts, "watts"));
  SCHED_RETURN_IF_ERROR(CheckNumber("electricity_per_kwh", s.electricity_per_kwh, 0, false,
                                    kMaxElectricityPerKwh, "dollars (not cents) per kWh"));
  SCHED_RETURN_IF_ERROR(
      CheckNumber("hardware_cost", s.hardware_cost, 0, false, 10'000'000, "dollars"));
  SCHED_RETURN_IF_ERROR(
      CheckNumber("amortize_months", s.amortize_months, 0, true, kMaxAmortizeMonths, "months"));
  if (s.advertise_gpus && s.advertise_gpus->size() > static_cast<size_t>(kMaxAdvertisedGpus)) {
    return Bad("advertise_gpus", absl::StrCat("at most ", kMaxAdvertisedGpus, " GPUs, got ",
                                              s.advertise_gpus->size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ParseGpuMemory(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  size_t number_end = 0;
  while (number_end < text.size() &&
         (absl::ascii_isdigit(text[number_end]) || text[number_end] == '.')) {
    ++number_end;
  }
  const absl::string_view unit = absl::StripAsciiWhitespace(text.substr(number_end));
  double amount = 0;
  if (number_end == 0 || !absl::SimpleAtod(text.substr(0, number_end), &amount)) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory \"", text, "\" is not a number and a unit (24GB, 24564MiB)"));
  }
  int64_t unit_bytes = 0;
  if (absl::EqualsIgnoreCase(unit, "GB") || absl::EqualsIgnoreCase(unit, "GiB")) {
    unit_bytes = int64_t{1} << 30;
  } else if (absl::EqualsIgnoreCase(unit, "MB") || absl::EqualsIgnoreCase(unit, "MiB")) {
    unit_bytes = int64_t{1} << 20;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "memory \"", text, "\" needs a unit: GB or GiB (2^30 bytes), MB or MiB (2^20 bytes)"));
  }
  const double bytes = amount * static_cast<double>(unit_bytes);
  if (bytes < static_cast<double>(int64_t{1} << 20) ||
      bytes > static_cast<double>(int64_t{1} << 50)) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory \"", text, "\" is out of range (1MiB to 1PiB)"));
  }
  return static_cast<int64_t>(std::llround(bytes));
}

absl::StatusOr<std::vector<GpuDevice>> ParseAdvertisedGpuEntry(absl::string_view entry,
                                                               uint32_t first_index) {
  entry = absl::StripAsciiWhitespace(entry);
  const auto bad = [&](absl::string_view reason) {
    return Bad("advertise_gpus", absl::StrCat("\"", entry, "\" ", reason));
  };
  absl::string_view rest = entry;
  int count = 1;
  size_t digits = 0;
  while (digits < rest.size() && absl::ascii_isdigit(rest[digits])) ++digits;
  if (digits > 0 && digits < rest.size() && (rest[digits] == 'x' || rest[digits] == 'X')) {
    if (!absl::SimpleAtoi(rest.substr(0, digits), &count) || count < 1 ||
        count > kMaxAdvertisedGpus) {
      return bad(absl::StrCat("has a count out of range (1 to ", kMaxAdvertisedGpus, ")"));
    }
    rest.remove_prefix(digits + 1);
  }
  const size_t colon = rest.rfind(':');
  if (colon == absl::string_view::npos) {
    return bad("has no memory: write [COUNTx ]MODEL:MEMORY, e.g. 2x NVIDIA GeForce RTX 4090:24GB");
  }
  const absl::string_view model = absl::StripAsciiWhitespace(rest.substr(0, colon));
  if (model.empty()) return bad("has no model name");
  absl::StatusOr<int64_t> memory = ParseGpuMemory(rest.substr(colon + 1));
  if (!memory.ok()) return bad(memory.status().message());
  std::vector<GpuDevice> gpus;
  for (int i = 0; i < count; ++i) {
    gpus.push_back(
        GpuDevice{first_index + static_cast<uint32_t>(i), "", std::string(model), *memory});
  }
  return gpus;
}

absl::StatusOr<std::vector<GpuDevice>> ParseAdvertisedGpus(absl::string_view text) {
  if (absl::StripAsciiWhitespace(text).empty()) {
    return Bad("advertise_gpus", "empty; write [COUNTx ]MODEL:MEMORY[,...]");
  }
  std::vector<GpuDevice> gpus;
  for (absl::string_view entry : absl::StrSplit(text, ',')) {
    SCHED_ASSIGN_OR_RETURN(std::vector<GpuDevice> more,
                           ParseAdvertisedGpuEntry(entry, static_cast<uint32_t>(gpus.size())));
    gpus.insert(gpus.end(), more.begin(), more.end());
    if (gpus.size() > static_cast<size_t>(kMaxAdvertisedGpus)) {
      return Bad("advertise_gpus", absl::StrCat("at most ", kMaxAdvertisedGpus, " GPUs in all"));
    }
  }
  return gpus;
}

namespace {

// ResolvePrice without the schedule.
absl::StatusOr<Price> ResolveHourlyPrice(const NodeSettings& s) {
  SCHED_RETURN_IF_ERROR(CheckPair("power_watts", s.power_watts, "electricity_per_kwh",
                                  s.electricity_per_kwh,
                                  "the energy price is power_watts / 1000 * electricity_per_kwh"));
  SCHED_RETURN_IF_ERROR(CheckPair("hardware_cost", s.hardware_cost, "amortize_months",
                                  s.amortize_months,
                                  "amortization is hardware_cost / (amortize_months * 730)"));
  const bool has_parts = s.power_watts || s.hardware_cost;
  Price price;
  if (s.price_per_hour) {
    if (has_parts) {
      return Bad("price_per_hour",
                 "given with local price parts (power_watts, electricity_per_kwh, hardware_cost, "
                 "amortize_months); give the price or its parts, not both");
    }
    price.per_hour = *s.price_per_hour;
    return price;
  }
  if (!has_parts) return price;
  v1::Capabilities::LocalPrice& local = price.local_price.emplace();
  if (s.power_watts) {
    local.set_power_watts(*s.power_watts);
    local.set_electricity_dollars_per_kwh(*s.electricity_per_kwh);
    local.set_energy_dollars_per_hour(*s.power_watts / 1000 * *s.electricity_per_kwh);
  }
  if (s.hardware_cost) {
    local.set_hardware_cost_dollars(*s.hardware_cost);
    local.set_amortize_months(*s.amortize_months);
    local.set_amortization_dollars_per_hour(*s.hardware_cost /
                                            (*s.amortize_months * kHoursPerMonth));
  }
  price.per_hour = local.energy_dollars_per_hour() + local.amortization_dollars_per_hour();
  return price;
}

}  // namespace

absl::StatusOr<Price> ResolvePrice(const NodeSettings& s, int32_t local_utc_offset_minutes) {
  SCHED_ASSIGN_OR_RETURN(Price price, ResolveHourlyPrice(s));
  if (!s.price_schedule) return price;
  cost::ScheduleUnits units;
  units.power_watts = s.power_watts.value_or(0);
  if (price.local_price) {
    units.amortization_usd_per_hour = price.local_price->amortization_dollars_per_hour();
  }
  units.default_utc_offset_minutes = local_utc_offset_minutes;
  absl::StatusOr<cost::PriceSchedule> schedule = cost::ParsePriceSchedule(*s.price_schedule, units);
  if (!schedule.ok()) return Bad("price_schedule", schedule.status().message());
  price.schedule = *std::move(schedule);
  return price;
}

absl::Status ApplyNodeSettings(const NodeSettings& s, int32_t local_utc_offset_minutes,
                               v1::Capabilities* caps) {
  SCHED_ASSIGN_OR_RETURN(Price price, ResolvePrice(s, local_utc_offset_minutes));
  caps->set_price_per_hour(price.per_hour);
  if (price.local_price) {
    *caps->mutable_local_price() = *price.local_price;
  } else {
    caps->clear_local_price();
  }
  caps->clear_price_schedule();
  if (!price.schedule.empty()) {
    v1::PriceSchedule* schedule = caps->mutable_price_schedule();
    schedule->set_utc_offset_minutes(price.schedule.utc_offset_minutes);
    for (const cost::PriceWindow& w : price.schedule.windows) {
      v1::PriceWindow* window = schedule->add_windows();
      window->set_start_minute(static_cast<uint32_t>(w.start_minute));
      window->set_end_minute(static_cast<uint32_t>(w.end_minute));
      window->set_dollars_per_hour(w.usd_per_hour);
    }
  }
  if (s.provider && *s.provider != caps->provider()) {
    caps->set_provider(*s.provider);
    caps->add_advertised("provider");
  }
  if (s.spot) caps->set_spot(*s.spot);
  if (s.region) caps->set_region(*s.region);
  if (s.instance_type) caps->set_instance_type(*s.instance_type);
  if (s.labels) caps->mutable_labels()->insert(s.labels->begin(), s.labels->end());
  return absl::OkStatus();
}

}  // namespace sched::agent
