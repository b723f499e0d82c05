#include "server/cost/price_schedule.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/common/status_macros.h"

namespace sched::cost {
namespace {

constexpr double kSecondsPerHour = 3600;
// Costs this close (relative) count as equal when CheapestStart breaks ties.
constexpr double kTieTolerance = 1e-9;

// A window as a stretch of one day that does not wrap: a wrapping window is two of these.
struct DaySpan {
  int32_t start_minute;
  int32_t end_minute;
  size_t window;  // index into PriceSchedule::windows
};

using DaySpans = absl::InlinedVector<DaySpan, 16>;

// The windows' stretches of the day, sorted by start.
DaySpans SortedSpans(const std::vector<PriceWindow>& windows) {
  DaySpans spans;
  for (size_t i = 0; i < windows.size(); ++i) {
    const PriceWindow& w = windows[i];
    if (w.start_minute < w.end_minute) {
      spans.push_back({w.start_minute, w.end_minute, i});
    } else {
      spans.push_back({w.start_minute, kMinutesPerDay, i});
      if (w.end_minute > 0) spans.push_back({0, w.end_minute, i});
    }
  }
  std::sort(spans.begin(), spans.end(),
            [](const DaySpan& a, const DaySpan& b) { return a.start_minute < b.start_minute; });
  return spans;
}

// The price over one local day as constant pieces covering [0, 24:00): piece i runs from
// its start to the next piece's start (the last to midnight), and `dollars_before` is the cost
// of the day up to its start.
class DayProfile {
 public:
  DayProfile(const PriceSchedule& schedule, double base_usd_per_hour) {
    int32_t covered = 0;  // the day up to here has its pieces
    for (const DaySpan& span : SortedSpans(schedule.windows)) {
      const int32_t start = std::max(span.start_minute, covered);
      if (start >= span.end_minute) continue;  // overlaps (invalid schedule): first one wins
      if (start > covered) Add(covered, base_usd_per_hour);
      Add(start, schedule.windows[span.window].usd_per_hour);
      covered = span.end_minute;
    }
    if (covered < kMinutesPerDay) Add(covered, base_usd_per_hour);
    day_dollars_ = DollarsBeforeMinute(kMinutesPerDay);
  }

  // The price at `second` seconds into the local day, in [0, 86400).
  double PriceAt(double second) const { return pieces_[PieceAt(second)].usd_per_hour; }

  // The cost of the local day's first `second` seconds, `second` in [0, 86400].
  double DollarsBefore(double second) const {
    const Piece& p = pieces_[PieceAt(second)];
    return p.dollars_before + p.usd_per_hour * (second - p.start_minute * 60.0) / kSecondsPerHour;
  }

  double DayDollars() const { return day_dollars_; }

  // Where the price may change, in minutes of the local day (0 included), ascending.
  template <typename F>
  void ForEachBoundary(F f) const {
    for (const Piece& p : pieces_) f(p.start_minute);
  }

 private:
  struct Piece {
    int32_t start_minute;
    double usd_per_hour;
    double dollars_before;
  };

  void Add(int32_t start_minute, double usd_per_hour) {
    const double before = pieces_.empty() ? 0 : DollarsBeforeMinute(start_minute);
    pieces_.push_back({start_minute, usd_per_hour, before});
  }

  double DollarsBeforeMinute(int32_t minute) const {
    const Piece& last = pieces_.back();
    return last.dollars_before + last.usd_per_hour * (minute - last.start_minute) / 60.0;
  }

  size_t PieceAt(double second) const {
    // The last piece starting at or before `second`; the first piece starts at 0.
    auto it = std::upper_bound(pieces_.begin(), pieces_.end(), second,
                               [](double s, const Piece& p) { return s < p.start_minute * 60.0; });
    return static_cast<size_t>(it - pieces_.begin()) - 1;
  }

  absl::InlinedVector<Piece, 16> pieces_;
  double day_dollars_ = 0;
};

// A time as a local day number (days since 1970-01-01 local) and the time into that day.
struct LocalTime {
  int64_t day;
  absl::Duration into_day;  // in [0, 24h)

  double second() const { return absl::ToDoubleSeconds(into_day); }
};

LocalTime ToLocal(absl::Time t, int32_t utc_offset_minutes) {
  absl::Duration into_day;
  int64_t day = absl::IDivDuration(t - absl::UnixEpoch() + absl::Minutes(utc_offset_minutes),
                                   absl::Hours(24), &into_day);
  if (into_day < absl::ZeroDuration()) {  // before 1970: IDivDuration truncates toward zero
    into_day += absl::Hours(24);
    --day;
  }
  return {day, into_day};
}

double Cost(const DayProfile& profile, int32_t utc_offset_minutes, absl::Time start,
            absl::Duration d) {
  if (d <= absl::ZeroDuration()) return 0;
  if (d == absl::InfiniteDuration()) {
    return profile.DayDollars() > 0 ? std::numeric_limits<double>::infinity() : 0;
  }
  const LocalTime a = ToLocal(start, utc_offset_minutes);
  const LocalTime b = ToLocal(start + d, utc_offset_minutes);
  return static_cast<double>(b.day - a.day) * profile.DayDollars() +
         profile.DollarsBefore(b.second()) - profile.DollarsBefore(a.second());
}

// The first time at or after `t` that is `minute` minutes into a local day.
absl::Time NextAtMinute(absl::Time t, int32_t minute, int32_t utc_offset_minutes) {
  absl::Duration wait = absl::Minutes(minute) - ToLocal(t, utc_offset_minutes).into_day;
  if (wait < absl::ZeroDuration()) wait += absl::Hours(24);
  return t + wait;
}

// ---- Text ----

absl::Status BadItem(absl::string_view item, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat("\"", item, "\": ", reason));
}

// One or two decimal digits.
bool ParseTwoDigits(absl::string_view text, int32_t* value) {
  return !text.empty() && text.size() <= 2 &&
         std::all_of(text.begin(), text.end(), [](char c) { return absl::ascii_isdigit(c); }) &&
         absl::SimpleAtoi(text, value);
}

// "HH:MM" (H may be one digit), 00:00 to 24:00, as minutes of the day.
bool ParseClock(absl::string_view text, int32_t* minute) {
  const size_t colon = text.find(':');
  if (colon == absl::string_view::npos || text.size() != colon + 3) return false;
  int32_t h = 0;
  int32_t m = 0;
  if (!ParseTwoDigits(text.substr(0, colon), &h) || !ParseTwoDigits(text.substr(colon + 1), &m)) {
    return false;
  }
  if (m > 59 || h > 24 || (h == 24 && m != 0)) return false;
  *minute = h * 60 + m;
  return true;
}

// "UTC", "UTC+HH:MM", "UTC-H:MM", "UTC+HH".
absl::StatusOr<int32_t> ParseUtcOffset(absl::string_view item) {
  absl::string_view rest = absl::StripAsciiWhitespace(item.substr(3));
  if (rest.empty()) return 0;
  const char sign = rest.front();
  rest.remove_prefix(1);
  int32_t minutes = 0;
  int32_t hours = 0;
  bool ok = sign == '+' || sign == '-';
  if (ok && absl::StrContains(rest, ':')) {
    ok = ParseClock(rest, &minutes);
  } else if (ok) {
    ok = ParseTwoDigits(rest, &hours);
    minutes = hours * 60;
  }
  if (!ok) return BadItem(item, "bad UTC offset: want UTC+HH:MM or UTC-HH:MM");
  if (minutes > kMaxUtcOffsetMinutes) {
    return BadItem(item, "UTC offset out of range (UTC-18:00 to UTC+18:00)");
  }
  return sign == '-' ? -minutes : minutes;
}

// "0.12", "$0.12", "0.12/h" (dollars per hour) or "0.08/kwh" (dollars per kWh).
absl::StatusOr<double> ParsePrice(absl::string_view item, absl::string_view text,
                                  const ScheduleUnits& units) {
  absl::string_view number = absl::StripAsciiWhitespace(text);
  bool per_kwh = false;
  if (absl::EndsWithIgnoreCase(number, "/kwh")) {
    per_kwh = true;
    number.remove_suffix(4);
  } else if (absl::EndsWithIgnoreCase(number, "/h")) {
    number.remove_suffix(2);
  }
  number = absl::StripAsciiWhitespace(number);
  if (absl::StartsWith(number, "$")) number.remove_prefix(1);
  double value = 0;
  if (number.empty() || !absl::SimpleAtod(number, &value) || !std::isfinite(value)) {
    return BadItem(item, absl::StrCat("bad price \"", absl::StripAsciiWhitespace(text),
                                      "\": want dollars per hour (0.12) or per kWh (0.08/kwh)"));
  }
  if (value < 0) return BadItem(item, absl::StrCat("negative price ", value));
  if (!per_kwh) return value;
  if (!(units.power_watts > 0)) {
    return BadItem(item,
                   "a price per kWh needs the machine's power draw (power_watts) to become a "
                   "price per hour");
  }
  return units.power_watts / 1000 * value + units.amortization_usd_per_hour;
}

// "START-END=PRICE".
absl::StatusOr<PriceWindow> ParseWindow(absl::string_view item, const ScheduleUnits& units) {
  const size_t eq = item.find('=');
  if (eq == absl::string_view::npos) {
    return BadItem(item, "want START-END=PRICE, e.g. 00:00-07:00=0.12");
  }
  const absl::string_view range = item.substr(0, eq);
  const size_t dash = range.find('-');
  if (dash == absl::string_view::npos) {
    return BadItem(item, "want START-END=PRICE, e.g. 00:00-07:00=0.12");
  }
  const absl::string_view start = absl::StripAsciiWhitespace(range.substr(0, dash));
  const absl::string_view end = absl::StripAsciiWhitespace(range.substr(dash + 1));
  PriceWindow w;
  if (!ParseClock(start, &w.start_minute)) {
    return BadItem(item,
                   absl::StrCat("bad start time \"", start, "\": want HH:MM, 00:00 to 23:59"));
  }
  if (w.start_minute == kMinutesPerDay) {
    return BadItem(item, "24:00 is allowed only as an end; start at 00:00");
  }
  if (!ParseClock(end, &w.end_minute)) {
    return BadItem(item, absl::StrCat("bad end time \"", end, "\": want HH:MM, 00:00 to 24:00"));
  }
  if (w.start_minute == w.end_minute) {
    return BadItem(item, "empty window: start and end are the same time");
  }
  SCHED_ASSIGN_OR_RETURN(w.usd_per_hour, ParsePrice(item, item.substr(eq + 1), units));
  return w;
}

// The checks ParsePriceSchedule and ValidatePriceSchedule share: count and overlaps. `name`
// says how an error names window i.
absl::Status CheckWindowSet(const std::vector<PriceWindow>& windows,
                            const std::function<std::string(size_t)>& name) {
  if (windows.size() > static_cast<size_t>(kMaxPriceWindows)) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxPriceWindows, " windows, got ", windows.size()));
  }
  const DaySpans spans = SortedSpans(windows);
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].start_minute < spans[i - 1].end_minute) {
      const size_t a = std::min(spans[i - 1].window, spans[i].window);
      const size_t b = std::max(spans[i - 1].window, spans[i].window);
      return absl::InvalidArgumentError(
          absl::StrCat("windows ", name(a), " and ", name(b), " overlap"));
    }
  }
  return absl::OkStatus();
}

std::string WindowRange(const PriceWindow& w) {
  return absl::StrCat(FormatMinuteOfDay(w.start_minute), "-", FormatMinuteOfDay(w.end_minute));
}

// The shortest decimal that reads back as `v`.
std::string ExactNumber(double v) {
  for (int digits = 15; digits < 17; ++digits) {
    std::string text = absl::StrFormat("%.*g", digits, v);
    double back = 0;
    if (absl::SimpleAtod(text, &back) && back == v) return text;
  }
  return absl::StrFormat("%.17g", v);
}

// Cents when the price is whole cents, else four decimals: "$0.12/h", "$0.1285/h".
std::string Dollars(double usd_per_hour) {
  const double cents = usd_per_hour * 100;
  const bool whole_cents = std::abs(cents - std::round(cents)) < 1e-6;
  return absl::StrFormat(whole_cents ? "$%.2f/h" : "$%.4f/h", usd_per_hour);
}

}  // namespace

std::string FormatMinuteOfDay(int32_t minute) {
  return absl::StrFormat("%02d:%02d", minute / 60, minute % 60);
}

std::string FormatUtcOffset(int32_t utc_offset_minutes) {
  const int64_t m = std::abs(int64_t{utc_offset_minutes});
  return absl::StrFormat("UTC%c%02d:%02d", utc_offset_minutes < 0 ? '-' : '+', m / 60, m % 60);
}

absl::StatusOr<PriceSchedule> ParsePriceSchedule(absl::string_view text,
                                                 const ScheduleUnits& units) {
  PriceSchedule schedule;
  schedule.utc_offset_minutes = units.default_utc_offset_minutes;
  bool offset_given = false;
  std::vector<std::string> items;
  for (absl::string_view piece : absl::StrSplit(text, absl::ByAnyChar(",;"))) {
    const absl::string_view item = absl::StripAsciiWhitespace(piece);
    if (item.empty()) continue;
    if (absl::StartsWithIgnoreCase(item, "UTC")) {
      if (offset_given) return BadItem(item, "a second UTC offset; give one");
      SCHED_ASSIGN_OR_RETURN(schedule.utc_offset_minutes, ParseUtcOffset(item));
      offset_given = true;
      continue;
    }
    SCHED_ASSIGN_OR_RETURN(PriceWindow w, ParseWindow(item, units));
    schedule.windows.push_back(w);
    items.emplace_back(item);
  }
  SCHED_RETURN_IF_ERROR(CheckWindowSet(
      schedule.windows, [&](size_t i) { return absl::StrCat("\"", items[i], "\""); }));
  if (std::abs(int64_t{schedule.utc_offset_minutes}) > kMaxUtcOffsetMinutes) {
    return absl::InvalidArgumentError(
        absl::StrCat("UTC offset ", schedule.utc_offset_minutes,
                     " minutes out of range (UTC-18:00 to UTC+18:00)"));
  }
  return schedule;
}

absl::Status ValidatePriceSchedule(const PriceSchedule& schedule) {
  if (std::abs(int64_t{schedule.utc_offset_minutes}) > kMaxUtcOffsetMinutes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "utc_offset_minutes: ", schedule.utc_offset_minutes, " is out of range (-1080 to 1080)"));
  }
  for (size_t i = 0; i < schedule.windows.size(); ++i) {
    const PriceWindow& w = schedule.windows[i];
    const auto bad = [&](absl::string_view reason) {
      return absl::InvalidArgumentError(absl::StrCat("window ", i + 1, " (", w.start_minute, "-",
                                                     w.end_minute, " min): ", reason));
    };
    if (w.start_minute < 0 || w.start_minute >= kMinutesPerDay) {
      return bad("start_minute must be in [0, 1440)");
    }
    if (w.end_minute < 0 || w.end_minute > kMinutesPerDay) {
      return bad("end_minute must be in [0, 1440]");
    }
    if (w.start_minute == w.end_minute) return bad("empty: start and end are the same");
    if (!std::isfinite(w.usd_per_hour) || w.usd_per_hour < 0 || w.usd_per_hour > kMaxUsdPerHour) {
      return bad(
          absl::StrCat("price must be in [0, ", kMaxUsdPerHour, "] $/h, got ", w.usd_per_hour));
    }
  }
  return CheckWindowSet(schedule.windows,
                        [&](size_t i) { return WindowRange(schedule.windows[i]); });
}

std::string FormatPriceSchedule(const PriceSchedule& schedule) {
  std::vector<std::string> windows;
  for (const PriceWindow& w : schedule.windows) {
    windows.push_back(absl::StrCat(WindowRange(w), "=", ExactNumber(w.usd_per_hour)));
  }
  std::string text = FormatUtcOffset(schedule.utc_offset_minutes);
  if (!windows.empty()) absl::StrAppend(&text, "; ", absl::StrJoin(windows, ", "));
  return text;
}

std::string DescribePriceSchedule(const PriceSchedule& schedule, double base_usd_per_hour) {
  if (schedule.empty()) return absl::StrCat(Dollars(base_usd_per_hour), " all day");
  std::vector<PriceWindow> windows = schedule.windows;
  std::sort(windows.begin(), windows.end(), [](const PriceWindow& a, const PriceWindow& b) {
    return a.start_minute < b.start_minute;
  });
  std::vector<std::string> parts;
  for (const PriceWindow& w : windows) {
    parts.push_back(absl::StrCat(WindowRange(w), " ", Dollars(w.usd_per_hour)));
  }
  return absl::StrCat(absl::StrJoin(parts, ", "), " (",
                      FormatUtcOffset(schedule.utc_offset_minutes), "); ",
                      Dollars(base_usd_per_hour), " otherwise");
}

double PriceAt(const PriceSchedule& schedule, double base_usd_per_hour, absl::Time t) {
  if (schedule.empty()) return base_usd_per_hour;
  return DayProfile(schedule, base_usd_per_hour)
      .PriceAt(ToLocal(t, schedule.utc_offset_minutes).second());
}

double CostOver(const PriceSchedule& schedule, double base_usd_per_hour, absl::Time start,
                absl::Duration d) {
  return Cost(DayProfile(schedule, base_usd_per_hour), schedule.utc_offset_minutes, start, d);
}

StartChoice CheapestStart(const PriceSchedule& schedule, double base_usd_per_hour,
                          absl::Time earliest, absl::Time latest_start, absl::Duration runtime) {
  const DayProfile profile(schedule, base_usd_per_hour);
  const int32_t offset = schedule.utc_offset_minutes;
  const auto cost_at = [&](absl::Time s) { return Cost(profile, offset, s, runtime); };
  if (schedule.empty() || latest_start <= earliest || runtime <= absl::ZeroDuration() ||
      runtime == absl::InfiniteDuration()) {
    return {earliest, cost_at(earliest)};
  }
  // C(s) repeats daily, so the earliest cheapest start is within a day of `earliest`.
  const absl::Time last = std::min(latest_start, earliest + absl::Hours(24));
  absl::InlinedVector<absl::Time, 32> candidates = {earliest, last};
  profile.ForEachBoundary([&](int32_t minute) {
    // s itself at a boundary, and s + runtime at one.
    for (absl::Time s : {NextAtMinute(earliest, minute, offset),
                         NextAtMinute(earliest + runtime, minute, offset) - runtime}) {
      if (s >= earliest && s <= last) candidates.push_back(s);
    }
  });
  absl::InlinedVector<double, 32> costs;
  double cheapest = std::numeric_limits<double>::infinity();
  for (absl::Time s : candidates) {
    costs.push_back(cost_at(s));
    cheapest = std::min(cheapest, costs.back());
  }
  StartChoice best{absl::InfiniteFuture(), cheapest};
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (costs[i] <= cheapest + kTieTolerance * std::abs(cheapest) && candidates[i] < best.start) {
      best = {candidates[i], costs[i]};
    }
  }
  return best;
}

}  // namespace sched::cost
