#include "tests/fuzz/node_checks.h"

#include <algorithm>
#include <bitset>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/convert/convert.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/fuzz/submit_checks.h"

namespace sched::fuzz {
namespace {

// Costs are sums and differences of running integrals of the price over whole days, so their
// rounding error scales with the dearest price times a day, not with the cost itself: a window
// at 1e180 $/h leaves nothing of a cent-sized cost in the rest of the day.
double Tolerance(double high, double hours) { return 1e-9 * (high * (hours + 48) + 1); }

std::string Show(const cost::PriceSchedule& s) { return cost::FormatPriceSchedule(s); }

}  // namespace

void CheckAcceptedSchedule(const cost::PriceSchedule& s, double base, absl::string_view where) {
  const auto fail = [&](absl::string_view what) {
    return absl::StrCat(where, " accepted a schedule that ", what, ": offset ",
                        s.utc_offset_minutes, ", ", s.windows.size(), " windows");
  };
  SCHED_FUZZ_CHECK(std::abs(int64_t{s.utc_offset_minutes}) <= cost::kMaxUtcOffsetMinutes,
                   fail("has its offset out of range"));
  SCHED_FUZZ_CHECK(s.windows.size() <= static_cast<size_t>(cost::kMaxPriceWindows),
                   fail("has too many windows"));
  std::bitset<cost::kMinutesPerDay> covered;
  double low = base, high = base;
  for (const cost::PriceWindow& w : s.windows) {
    SCHED_FUZZ_CHECK(w.start_minute >= 0 && w.start_minute < cost::kMinutesPerDay &&
                         w.end_minute >= 0 && w.end_minute <= cost::kMinutesPerDay &&
                         w.start_minute != w.end_minute,
                     fail(absl::StrCat("has a window ", w.start_minute, "-", w.end_minute)));
    SCHED_FUZZ_CHECK(std::isfinite(w.usd_per_hour) && w.usd_per_hour >= 0 &&
                         w.usd_per_hour <= cost::kMaxUsdPerHour,
                     fail(absl::StrCat("has a price of ", w.usd_per_hour)));
    low = std::min(low, w.usd_per_hour);
    high = std::max(high, w.usd_per_hour);
    for (int32_t m = w.start_minute; m != w.end_minute; m = (m + 1) % cost::kMinutesPerDay) {
      if (m == 0 && w.end_minute == cost::kMinutesPerDay) break;
      SCHED_FUZZ_CHECK(!covered[m], fail(absl::StrCat("has windows overlapping at minute ", m)));
      covered[m] = true;
    }
  }

  // price_schedule.h: ParsePriceSchedule(FormatPriceSchedule(s), any units) == s.
  const std::string text = cost::FormatPriceSchedule(s);
  absl::StatusOr<cost::PriceSchedule> parsed = cost::ParsePriceSchedule(text, {});
  SCHED_FUZZ_CHECK(parsed.ok() && *parsed == s,
                   absl::StrCat("\"", text, "\" does not read back: ",
                                parsed.ok() ? Show(*parsed) : Describe(parsed.status())));
  cost::DescribePriceSchedule(s, base);

  const absl::Time starts[] = {kFuzzNow, kFuzzNow + absl::Minutes(7 * 60 + 13),
                               kFuzzNow + absl::Minutes(23 * 60 + 59)};
  const absl::Duration runs[] = {absl::ZeroDuration(), absl::Seconds(1), absl::Minutes(90),
                                 absl::Hours(25), absl::Hours(24 * 30)};
  for (absl::Time start : starts) {
    const double price = cost::PriceAt(s, base, start);
    bool known = price == base;
    for (const cost::PriceWindow& w : s.windows) known = known || price == w.usd_per_hour;
    SCHED_FUZZ_CHECK(known, absl::StrCat("PriceAt gave ", price, ", none of ", Show(s)));
    for (absl::Duration run : runs) {
      const double hours = absl::ToDoubleHours(run);
      const double cost = cost::CostOver(s, base, start, run);
      if (run == absl::ZeroDuration()) {
        SCHED_FUZZ_CHECK(cost == 0, absl::StrCat("CostOver of nothing is ", cost));
        continue;
      }
      const double tolerance = Tolerance(high, hours);
      const bool bounded = std::isfinite(high * (hours + 48));
      if (bounded) {
        SCHED_FUZZ_CHECK(
            cost >= low * hours - tolerance && cost <= high * hours + tolerance,
            absl::StrCat("CostOver ", hours, " h is ", cost, ", outside [", low * hours, ", ",
                         high * hours, "] for ", Show(s), " base ", base));
      }
      const absl::Time latest = start + absl::Hours(36);
      const cost::StartChoice choice = cost::CheapestStart(s, base, start, latest, run);
      SCHED_FUZZ_CHECK(choice.start >= start && choice.start <= latest,
                       absl::StrCat("CheapestStart chose ", absl::FormatTime(choice.start),
                                    " (cost ", choice.cost, "), outside its range, for ", Show(s)));
      if (bounded) {
        SCHED_FUZZ_CHECK(choice.cost <= cost + tolerance,
                         absl::StrCat("CheapestStart costs ", choice.cost,
                                      ", more than starting at once: ", cost));
        const double from_start = cost::CostOver(s, base, choice.start, run);
        SCHED_FUZZ_CHECK(std::abs(choice.cost - from_start) <= tolerance,
                         absl::StrCat("CheapestStart's cost ", choice.cost,
                                      " is not CostOver from its start: ", from_start));
      }
    }
  }
}

absl::StatusOr<NodeCapabilities> CheckCapabilities(const v1::Capabilities& proto) {
  absl::StatusOr<NodeCapabilities> caps = CapabilitiesFromProto(proto);
  if (!caps.ok()) {
    SCHED_FUZZ_CHECK(absl::IsInvalidArgument(caps.status()),
                     absl::StrCat("CapabilitiesFromProto answered ", Describe(caps.status())));
    return caps;
  }
  SCHED_FUZZ_CHECK(caps->cpu_millis >= 0 && caps->memory_bytes >= 0 && caps->disk_bytes >= 0,
                   "CapabilitiesFromProto let a negative size through");
  SCHED_FUZZ_CHECK(
      std::isfinite(caps->price_per_hour) && caps->price_per_hour >= 0 &&
          caps->price_per_hour <= cost::kMaxUsdPerHour,
      absl::StrCat("CapabilitiesFromProto let a price of ", caps->price_per_hour, " through"));
  CheckAcceptedSchedule(caps->price_schedule, caps->price_per_hour, "CapabilitiesFromProto");

  // What schedd stores of the node (StoredNode) is read back the same at start.
  v1::Capabilities written;
  CapabilitiesToProto(*caps, &written);
  absl::StatusOr<NodeCapabilities> reread = CapabilitiesFromProto(written);
  SCHED_FUZZ_CHECK(reread.ok(), absl::StrCat("accepted capabilities do not load back: ",
                                             Describe(reread.status())));
  v1::Capabilities rewritten;
  CapabilitiesToProto(*reread, &rewritten);
  SCHED_FUZZ_CHECK(DeterministicBytes(rewritten) == DeterministicBytes(written),
                   absl::StrCat("capabilities change across the store:\n", written.DebugString(),
                                "became\n", rewritten.DebugString()));
  return caps;
}

}  // namespace sched::fuzz
