#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sched::cost {

// A node's price by time of day ("cheap windows", docs/cost-model.md): some hours of the day
// cost more or less than the node's base price per hour. The schedule repeats every day; there
// is no day-of-week or calendar, and the offset is fixed (a daylight-saving change moves the
// windows by an hour until the agent restarts).

// Minutes in a day: a window's minutes are in [0, kMinutesPerDay], 24:00 as an end only.
inline constexpr int32_t kMinutesPerDay = 24 * 60;
// The most windows a schedule may have.
inline constexpr int kMaxPriceWindows = 48;
// No machine costs more an hour: a price past it is a mistake, and would overflow the sums of
// cost over time.
inline constexpr double kMaxUsdPerHour = 100'000;
// The largest UTC offset, either way (UTC-18:00 to UTC+18:00).
inline constexpr int32_t kMaxUtcOffsetMinutes = 18 * 60;

// One window: from start_minute up to, not including, end_minute, in minutes of the day in the
// node's local time. A window whose end is before its start wraps midnight (22:00-06:00 is
// start 1320, end 360). end_minute may be kMinutesPerDay (24:00); start_minute may not.
struct PriceWindow {
  int32_t start_minute = 0;
  int32_t end_minute = 0;
  double usd_per_hour = 0;

  friend bool operator==(const PriceWindow& a, const PriceWindow& b) {
    return a.start_minute == b.start_minute && a.end_minute == b.end_minute &&
           a.usd_per_hour == b.usd_per_hour;
  }
};

// The windows of one node. Outside every window the node's base price applies (the caller
// passes it: NodeCapabilities::price_per_hour). Windows do not overlap. The functions below
// that take a schedule expect one ValidatePriceSchedule accepts; given another they do not
// crash, but where windows overlap the one that starts first (from midnight) wins.
struct PriceSchedule {
  // In the order written; the functions below do not need them sorted.
  std::vector<PriceWindow> windows;
  // Local time = UTC + this: +60 for UTC+01:00.
  int32_t utc_offset_minutes = 0;

  // No windows: the base price all day.
  bool empty() const { return windows.empty(); }

  friend bool operator==(const PriceSchedule& a, const PriceSchedule& b) {
    return a.windows == b.windows && a.utc_offset_minutes == b.utc_offset_minutes;
  }
};

// What ParsePriceSchedule resolves the text against.
struct ScheduleUnits {
  // The machine's power draw while running jobs, for prices given per kWh; 0 = unknown, and
  // then a price per kWh is an error.
  double power_watts = 0;
  // Added to a price given per kWh: the hardware's cost spread over its life, per hour.
  double amortization_usd_per_hour = 0;
  // The offset when the text names none (an agent passes its machine's local offset).
  int32_t default_utc_offset_minutes = 0;
};

// Reads a schedule written as items separated by commas or semicolons:
//
//   "00:00-07:00=0.12, 17:00-21:00=0.45"         dollars per hour
//   "UTC+01:00; 22:00-06:00=0.08/kwh"            an electricity tariff, in the node's UTC+01:00
//
// A window is START-END=PRICE: times HH:MM (H may be one digit; 24:00 only as an end; an end
// before the start wraps midnight); PRICE is dollars per hour, optionally written "$0.12" or
// "0.12/h", or dollars per kWh as "0.08/kwh", which becomes power_watts / 1000 * tariff +
// amortization_usd_per_hour from `units`. One item may be "UTC", "UTC+HH:MM" or "UTC-HH:MM":
// the node's offset (else units.default_utc_offset_minutes). Blank text is an empty schedule.
// INVALID_ARGUMENT naming the bad item and why: a bad time or price, 24:00 as a start, an empty
// window (start = end), a negative price, /kwh without power, windows that overlap, an offset
// given twice or out of range, more than kMaxPriceWindows windows.
absl::StatusOr<PriceSchedule> ParsePriceSchedule(absl::string_view text,
                                                 const ScheduleUnits& units);

// The checks ParsePriceSchedule makes, for a schedule that arrives as numbers (from an agent):
// minutes in range, no empty or overlapping windows, prices finite and not negative, the offset
// within kMaxUtcOffsetMinutes, at most kMaxPriceWindows windows. INVALID_ARGUMENT naming the
// window by its place and minutes ("window 2 (1020-1020 min): empty: ...") or, for an overlap,
// both by their times ("windows 00:00-07:00 and 06:00-08:00 overlap").
absl::Status ValidatePriceSchedule(const PriceSchedule& schedule);

// The schedule in the form ParsePriceSchedule reads, prices in dollars per hour and the offset
// always written, so that ParsePriceSchedule(FormatPriceSchedule(s), any units) == s for a valid
// schedule: "UTC+01:00; 00:00-07:00=0.12, 17:00-21:00=0.45"; "UTC+00:00" for an empty one.
std::string FormatPriceSchedule(const PriceSchedule& schedule);

// For people: "00:00-07:00 $0.12/h, 17:00-21:00 $0.45/h (UTC+01:00); $0.30/h otherwise",
// windows in order of their start.
std::string DescribePriceSchedule(const PriceSchedule& schedule, double base_usd_per_hour);

// "07:00", "24:00".
std::string FormatMinuteOfDay(int32_t minute);
// "UTC+01:00", "UTC-05:30", "UTC+00:00".
std::string FormatUtcOffset(int32_t utc_offset_minutes);

// The price per hour at `t`: the window's holding t, else the base.
double PriceAt(const PriceSchedule& schedule, double base_usd_per_hour, absl::Time t);

// Dollars for running from `start` for `d`: the integral of the price over [start, start + d),
// exact to rounding, over any number of days. 0 when d <= 0; infinity for an infinite d unless
// the price is 0 all day. `start` must be finite.
double CostOver(const PriceSchedule& schedule, double base_usd_per_hour, absl::Time start,
                absl::Duration d);

struct StartChoice {
  absl::Time start;
  double cost = 0;  // CostOver(schedule, base, start, runtime)
};

// The start in [earliest, latest_start] at which a job running `runtime` costs least, and that
// cost; among starts that cost the same (within a relative 1e-9), the earliest. latest_start
// before earliest: earliest. latest_start may be absl::InfiniteFuture() (no deadline);
// earliest must be finite.
//
// How: the cost of starting at s is C(s) = P(s + runtime) - P(s), P the running integral of the
// price. P is continuous and piecewise linear with kinks at the window boundaries, so C is
// continuous and piecewise linear with kinks where s or s + runtime is a boundary; its minimum
// over an interval is at an end or a kink. And C repeats daily (P grows by the same amount
// every day), so a minimum at s is one at s - 1 day as well: the earliest one lies in the first
// day of the range. The candidates are therefore earliest, latest_start and, within
// [earliest, min(latest_start, earliest + 1 day)], each boundary and each boundary minus
// runtime (midnight counts as a boundary): at most 4 * windows + 4 of them whatever the range,
// each costed in O(log windows). No scanning by the minute.
StartChoice CheapestStart(const PriceSchedule& schedule, double base_usd_per_hour,
                          absl::Time earliest, absl::Time latest_start, absl::Duration runtime);

}  // namespace sched::cost
