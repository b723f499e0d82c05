#include "server/cost/price_schedule.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sched::cost {
namespace {

using ::sched::testing::IsOk;
using ::sched::testing::IsOkAndHolds;
using ::sched::testing::StatusIs;
using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::HasSubstr;

constexpr double kBase = 0.30;

}  // namespace

// For gtest's messages.
void PrintTo(const PriceSchedule& s, std::ostream* out) { *out << FormatPriceSchedule(s); }
void PrintTo(const StartChoice& c, std::ostream* out) {
  *out << "start " << c.start << " cost " << c.cost;
}

namespace {

// March 2026, UTC.
absl::Time At(int day, int hour, int minute = 0, int second = 0) {
  return absl::FromCivil(absl::CivilSecond(2026, 3, day, hour, minute, second),
                         absl::UTCTimeZone());
}

PriceSchedule Parse(absl::string_view text, const ScheduleUnits& units = {}) {
  absl::StatusOr<PriceSchedule> s = ParsePriceSchedule(text, units);
  EXPECT_THAT(s, IsOk()) << text;
  return s.value_or(PriceSchedule{});
}

// Night 0.12, evening peak 0.45, 0.30 otherwise: 7 * 0.12 + 4 * 0.45 + 13 * 0.30 = $6.54 a day.
PriceSchedule NightAndPeak() { return Parse("00:00-07:00=0.12, 17:00-21:00=0.45"); }

MATCHER_P2(StartsAt, start, cost, "") {
  return arg.start == start && std::abs(arg.cost - cost) < 1e-12;
}

MATCHER_P3(IsWindow, start, end, price, "") {
  return arg.start_minute == start && arg.end_minute == end &&
         std::abs(arg.usd_per_hour - price) < 1e-12;
}

absl::Status ParseError(absl::string_view text, const ScheduleUnits& units = {}) {
  return ParsePriceSchedule(text, units).status();
}

// ---- Parsing ----

TEST(ParsePriceSchedule, DollarsPerHour) {
  EXPECT_THAT(NightAndPeak().windows,
              ElementsAre(IsWindow(0, 420, 0.12), IsWindow(1020, 1260, 0.45)));
  EXPECT_EQ(NightAndPeak().utc_offset_minutes, 0);
  // One-digit hours, "$" and "/h", 24:00 as an end, semicolons and a trailing separator.
  EXPECT_THAT(Parse(" 7:05-9:00 = $1.5/h ;21:00-24:00=0, ").windows,
              ElementsAre(IsWindow(425, 540, 1.5), IsWindow(1260, 1440, 0)));
  EXPECT_THAT(Parse("00:00-24:00=0.2").windows, ElementsAre(IsWindow(0, 1440, 0.2)));
}

TEST(ParsePriceSchedule, WrapsMidnight) {
  EXPECT_THAT(Parse("22:00-06:00=0.10").windows, ElementsAre(IsWindow(1320, 360, 0.10)));
  // Touching windows are fine, across midnight too.
  EXPECT_THAT(
      Parse("22:00-06:00=0.1, 06:00-08:00=0.2, 20:00-22:00=0.4").windows,
      ElementsAre(IsWindow(1320, 360, 0.1), IsWindow(360, 480, 0.2), IsWindow(1200, 1320, 0.4)));
  EXPECT_THAT(Parse("07:00-00:00=0.5").windows, ElementsAre(IsWindow(420, 0, 0.5)));
}

TEST(ParsePriceSchedule, PerKwhUsesPowerAndAmortization) {
  ScheduleUnits units;
  units.power_watts = 350;
  units.amortization_usd_per_hour = 0.05;
  // 0.35 kW * $0.08 + $0.05 = $0.078/h; 0.35 * 0.30 + 0.05 = 0.155.
  EXPECT_THAT(Parse("22:00-06:00=0.08/kWh, 17:00-21:00=0.30/KWH", units).windows,
              ElementsAre(IsWindow(1320, 360, 0.078), IsWindow(1020, 1260, 0.155)));
  // Prices per hour are not touched by the units.
  EXPECT_THAT(Parse("00:00-01:00=1", units).windows, ElementsAre(IsWindow(0, 60, 1)));
}

TEST(ParsePriceSchedule, UtcOffset) {
  ScheduleUnits units;
  units.default_utc_offset_minutes = 60;
  EXPECT_EQ(Parse("00:00-07:00=0.1", units).utc_offset_minutes, 60);
  EXPECT_EQ(Parse("UTC+02:00; 00:00-07:00=0.1", units).utc_offset_minutes, 120);
  EXPECT_EQ(Parse("00:00-07:00=0.1; utc-05:30", units).utc_offset_minutes, -330);
  EXPECT_EQ(Parse("UTC; 00:00-07:00=0.1", units).utc_offset_minutes, 0);
  EXPECT_EQ(Parse("UTC+9", units).utc_offset_minutes, 540);
  EXPECT_EQ(Parse("UTC-18:00").utc_offset_minutes, -1080);
}

TEST(ParsePriceSchedule, BlankIsEmpty) {
  ScheduleUnits units;
  units.default_utc_offset_minutes = -300;
  const PriceSchedule s = Parse("  ", units);
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.utc_offset_minutes, -300);
  EXPECT_FALSE(NightAndPeak().empty());
}

TEST(ParsePriceSchedule, ErrorsNameTheItem) {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(ParseError("00:00-07:00=0.1, 25:00-07:00=0.12"),
              StatusIs(kInvalid, Eq("\"25:00-07:00=0.12\": bad start time \"25:00\": want HH:MM, "
                                    "00:00 to 23:59")));
  EXPECT_THAT(ParseError("7-9=0.1"),
              StatusIs(kInvalid, Eq("\"7-9=0.1\": bad start time \"7\": want HH:MM, 00:00 to "
                                    "23:59")));
  EXPECT_THAT(ParseError("07:00-07:60=0.1"),
              StatusIs(kInvalid, Eq("\"07:00-07:60=0.1\": bad end time \"07:60\": want HH:MM, "
                                    "00:00 to 24:00")));
  EXPECT_THAT(ParseError("07:00-24:01=0.1"), StatusIs(kInvalid, HasSubstr("bad end time")));
  EXPECT_THAT(ParseError("07:00-123:00=0.1"), StatusIs(kInvalid, HasSubstr("bad end time")));
  EXPECT_THAT(ParseError("24:00-06:00=0.1"),
              StatusIs(kInvalid,
                       Eq("\"24:00-06:00=0.1\": 24:00 is allowed only as an end; start at 00:00")));
  EXPECT_THAT(
      ParseError("07:00-07:00=0.1"),
      StatusIs(kInvalid, Eq("\"07:00-07:00=0.1\": empty window: start and end are the same time")));
  EXPECT_THAT(ParseError("00:00-07:00=-0.1"),
              StatusIs(kInvalid, Eq("\"00:00-07:00=-0.1\": negative price -0.1")));
  EXPECT_THAT(ParseError("00:00-07:00=cheap"),
              StatusIs(kInvalid, Eq("\"00:00-07:00=cheap\": bad price \"cheap\": want dollars per "
                                    "hour (0.12) or per kWh (0.08/kwh)")));
  EXPECT_THAT(ParseError("00:00-07:00=nan"), StatusIs(kInvalid, HasSubstr("bad price \"nan\"")));
  EXPECT_THAT(ParseError("00:00-07:00=inf"), StatusIs(kInvalid, HasSubstr("bad price \"inf\"")));
  EXPECT_THAT(ParseError("00:00-07:00="), StatusIs(kInvalid, HasSubstr("bad price \"\"")));
  EXPECT_THAT(
      ParseError("00:00-07:00"),
      StatusIs(kInvalid, Eq("\"00:00-07:00\": want START-END=PRICE, e.g. 00:00-07:00=0.12")));
  EXPECT_THAT(ParseError("00:00=0.1"), StatusIs(kInvalid, HasSubstr("want START-END=PRICE")));
  EXPECT_THAT(ParseError("00:00-07:00=0.08/kwh"),
              StatusIs(kInvalid, Eq("\"00:00-07:00=0.08/kwh\": a price per kWh needs the "
                                    "machine's power draw (power_watts) to become a price per "
                                    "hour")));
  EXPECT_THAT(
      ParseError("UTC+19:00"),
      StatusIs(kInvalid, Eq("\"UTC+19:00\": UTC offset out of range (UTC-18:00 to UTC+18:00)")));
  EXPECT_THAT(ParseError("UTC+ab"),
              StatusIs(kInvalid, Eq("\"UTC+ab\": bad UTC offset: want UTC+HH:MM or UTC-HH:MM")));
  EXPECT_THAT(ParseError("UTC 01:00"), StatusIs(kInvalid, HasSubstr("bad UTC offset")));
  EXPECT_THAT(ParseError("UTC+1; UTC+2"),
              StatusIs(kInvalid, Eq("\"UTC+2\": a second UTC offset; give one")));
}

TEST(ParsePriceSchedule, OverlapsAreRefused) {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(
      ParseError("00:00-07:00=0.1, 06:00-08:00=0.2"),
      StatusIs(kInvalid, Eq("windows \"00:00-07:00=0.1\" and \"06:00-08:00=0.2\" overlap")));
  // A wrapping window overlaps on either side of midnight.
  EXPECT_THAT(
      ParseError("05:00-05:30=0.2, 22:00-06:00=0.1"),
      StatusIs(kInvalid, Eq("windows \"05:00-05:30=0.2\" and \"22:00-06:00=0.1\" overlap")));
  EXPECT_THAT(ParseError("22:00-06:00=0.1, 23:00-23:30=0.2"),
              StatusIs(kInvalid, HasSubstr("overlap")));
  EXPECT_THAT(ParseError("22:00-06:00=0.1, 21:00-02:00=0.2"),
              StatusIs(kInvalid, HasSubstr("overlap")));
  EXPECT_THAT(ParseError("00:00-24:00=0.1, 12:00-13:00=0.2"),
              StatusIs(kInvalid, HasSubstr("overlap")));
}

TEST(ParsePriceSchedule, AtMostMaxWindows) {
  std::string text;
  for (int i = 0; i <= kMaxPriceWindows; ++i) {
    absl::StrAppend(&text, FormatMinuteOfDay(i * 20), "-", FormatMinuteOfDay(i * 20 + 10), "=1,");
  }
  EXPECT_THAT(ParseError(text),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("at most 48 windows, got 49")));
}

// ---- Validation and formatting ----

TEST(ValidatePriceSchedule, ChecksWhatArrivesAsNumbers) {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(ValidatePriceSchedule(NightAndPeak()), IsOk());
  EXPECT_THAT(ValidatePriceSchedule({}), IsOk());
  EXPECT_THAT(ValidatePriceSchedule({{{0, 60, 1}, {1440, 60, 1}}, 0}),
              StatusIs(kInvalid, Eq("window 2 (1440-60 min): start_minute must be in [0, 1440)")));
  EXPECT_THAT(ValidatePriceSchedule({{{0, 1441, 1}}, 0}),
              StatusIs(kInvalid, Eq("window 1 (0-1441 min): end_minute must be in [0, 1440]")));
  EXPECT_THAT(ValidatePriceSchedule({{{-1, 60, 1}}, 0}),
              StatusIs(kInvalid, HasSubstr("start_minute must be")));
  EXPECT_THAT(ValidatePriceSchedule({{{60, 60, 1}}, 0}),
              StatusIs(kInvalid, Eq("window 1 (60-60 min): empty: start and end are the same")));
  EXPECT_THAT(
      ValidatePriceSchedule({{{0, 60, -2}}, 0}),
      StatusIs(kInvalid, Eq("window 1 (0-60 min): price must be in [0, 100000] $/h, got -2")));
  EXPECT_THAT(ValidatePriceSchedule({{{0, 60, std::nan("")}}, 0}),
              StatusIs(kInvalid, HasSubstr("price must be in [0, 100000]")));
  // Found by fuzzing: prices near DBL_MAX made the cost over time infinite or NaN.
  EXPECT_THAT(ValidatePriceSchedule({{{0, 60, 8e307}}, 0}),
              StatusIs(kInvalid, HasSubstr("price must be in [0, 100000]")));
  EXPECT_TRUE(ValidatePriceSchedule({{{0, 60, kMaxUsdPerHour}}, 0}).ok());
  EXPECT_THAT(ValidatePriceSchedule({{{0, 420, 1}, {360, 480, 1}}, 0}),
              StatusIs(kInvalid, Eq("windows 00:00-07:00 and 06:00-08:00 overlap")));
  EXPECT_THAT(ValidatePriceSchedule({{}, 1081}),
              StatusIs(kInvalid, Eq("utc_offset_minutes: 1081 is out of range (-1080 to 1080)")));
}

TEST(FormatPriceSchedule, WritesWhatParseReads) {
  PriceSchedule s = NightAndPeak();
  s.utc_offset_minutes = 60;
  EXPECT_EQ(FormatPriceSchedule(s), "UTC+01:00; 00:00-07:00=0.12, 17:00-21:00=0.45");
  EXPECT_EQ(FormatPriceSchedule(Parse("UTC-05:30; 22:00-06:00=0.1")), "UTC-05:30; 22:00-06:00=0.1");
  EXPECT_EQ(FormatPriceSchedule({}), "UTC+00:00");
  EXPECT_EQ(FormatPriceSchedule({{}, 120}), "UTC+02:00");
  EXPECT_EQ(FormatMinuteOfDay(1440), "24:00");
  EXPECT_EQ(FormatUtcOffset(0), "UTC+00:00");
}

// Random valid schedules: up to `max_windows` windows on whole minutes, rotated so that some
// wrap midnight, random prices and offset.
PriceSchedule RandomSchedule(std::mt19937& rng, int max_windows, bool cent_prices) {
  std::uniform_int_distribution<int> count_dist(0, max_windows);
  const int n = count_dist(rng);
  std::vector<int> cuts;
  std::uniform_int_distribution<int> minute_dist(0, kMinutesPerDay - 1);
  while (static_cast<int>(cuts.size()) < 2 * n) {
    const int m = minute_dist(rng);
    if (std::find(cuts.begin(), cuts.end(), m) == cuts.end()) cuts.push_back(m);
  }
  std::sort(cuts.begin(), cuts.end());
  const int rotate = minute_dist(rng);
  std::uniform_int_distribution<int> cents(0, 100);
  std::uniform_real_distribution<double> dollars(0, 2);
  PriceSchedule s;
  for (int i = 0; i < n; ++i) {
    const double price = cent_prices ? cents(rng) / 100.0 : dollars(rng);
    s.windows.push_back({(cuts[2 * i] + rotate) % kMinutesPerDay,
                         (cuts[2 * i + 1] + rotate) % kMinutesPerDay, price});
  }
  std::uniform_int_distribution<int> quarter_hours(-48, 56);
  s.utc_offset_minutes = quarter_hours(rng) * 15;
  return s;
}

TEST(FormatPriceSchedule, RoundTripsRandomSchedules) {
  std::mt19937 rng(7);
  ScheduleUnits units;
  units.default_utc_offset_minutes = 180;  // the written offset wins
  units.power_watts = 500;
  for (int i = 0; i < 500; ++i) {
    const PriceSchedule s = RandomSchedule(rng, 6, /*cent_prices=*/i % 2 == 0);
    ASSERT_THAT(ValidatePriceSchedule(s), IsOk());
    const std::string text = FormatPriceSchedule(s);
    EXPECT_THAT(ParsePriceSchedule(text, units), IsOkAndHolds(Eq(s))) << text;
  }
}

TEST(DescribePriceSchedule, ForPeople) {
  PriceSchedule s = Parse("UTC+01:00; 17:00-21:00=0.45, 00:00-07:00=0.12");
  EXPECT_EQ(DescribePriceSchedule(s, kBase),
            "00:00-07:00 $0.12/h, 17:00-21:00 $0.45/h (UTC+01:00); $0.30/h otherwise");
  EXPECT_EQ(DescribePriceSchedule(Parse("22:00-06:00=0.078"), 0.5),
            "22:00-06:00 $0.0780/h (UTC+00:00); $0.50/h otherwise");
  EXPECT_EQ(DescribePriceSchedule({}, 0.3), "$0.30/h all day");
}

// ---- Price and cost ----

TEST(PriceAt, WindowsAreHalfOpen) {
  const PriceSchedule s = NightAndPeak();
  EXPECT_EQ(PriceAt(s, kBase, At(2, 0, 0)), 0.12);
  EXPECT_EQ(PriceAt(s, kBase, At(2, 6, 59, 59)), 0.12);
  EXPECT_EQ(PriceAt(s, kBase, At(2, 7, 0)), kBase);
  EXPECT_EQ(PriceAt(s, kBase, At(2, 16, 59)), kBase);
  EXPECT_EQ(PriceAt(s, kBase, At(2, 17, 0)), 0.45);
  EXPECT_EQ(PriceAt(s, kBase, At(2, 21, 0)), kBase);
  EXPECT_EQ(PriceAt(s, kBase, At(2, 23, 59, 59)), kBase);
  EXPECT_EQ(PriceAt({}, kBase, At(2, 3)), kBase);
}

TEST(PriceAt, WrapAroundWindow) {
  const PriceSchedule s = Parse("22:00-06:00=0.10");
  EXPECT_EQ(PriceAt(s, 0.5, At(2, 21, 59)), 0.5);
  EXPECT_EQ(PriceAt(s, 0.5, At(2, 22, 0)), 0.10);
  EXPECT_EQ(PriceAt(s, 0.5, At(2, 23, 30)), 0.10);
  EXPECT_EQ(PriceAt(s, 0.5, At(3, 0, 0)), 0.10);
  EXPECT_EQ(PriceAt(s, 0.5, At(3, 5, 59)), 0.10);
  EXPECT_EQ(PriceAt(s, 0.5, At(3, 6, 0)), 0.5);
  // Before 1970 too.
  const absl::Time old =
      absl::FromCivil(absl::CivilMinute(1969, 12, 31, 23, 30), absl::UTCTimeZone());
  EXPECT_EQ(PriceAt(s, 0.5, old), 0.10);
  EXPECT_EQ(PriceAt(s, 0.5, old - absl::Hours(2)), 0.5);
}

TEST(PriceAt, UtcOffsetMovesTheWindows) {
  // Local midnight at UTC+02:00 is 22:00 UTC the day before.
  const PriceSchedule east = Parse("UTC+02:00; 00:00-07:00=0.12");
  EXPECT_EQ(PriceAt(east, kBase, At(1, 21, 59)), kBase);
  EXPECT_EQ(PriceAt(east, kBase, At(1, 22, 0)), 0.12);
  EXPECT_EQ(PriceAt(east, kBase, At(2, 4, 59)), 0.12);
  EXPECT_EQ(PriceAt(east, kBase, At(2, 5, 0)), kBase);
  // Local 22:00 at UTC-05:30 is 03:30 UTC; local 06:00 is 11:30 UTC.
  const PriceSchedule west = Parse("UTC-05:30; 22:00-06:00=0.1");
  EXPECT_EQ(PriceAt(west, kBase, At(2, 3, 29)), kBase);
  EXPECT_EQ(PriceAt(west, kBase, At(2, 3, 30)), 0.1);
  EXPECT_EQ(PriceAt(west, kBase, At(2, 11, 29)), 0.1);
  EXPECT_EQ(PriceAt(west, kBase, At(2, 11, 30)), kBase);
}

TEST(CostOver, WithinAndAcrossMidnight) {
  const PriceSchedule s = NightAndPeak();
  // 14:00-17:00 at base: 3 * 0.30.
  EXPECT_THAT(CostOver(s, kBase, At(2, 14), absl::Hours(3)), DoubleNear(0.90, 1e-12));
  // 20:00-02:00: 1 h peak, 3 h base, 2 h night = 0.45 + 0.90 + 0.24.
  EXPECT_THAT(CostOver(s, kBase, At(2, 20), absl::Hours(6)), DoubleNear(1.59, 1e-12));
  // Half a minute either side of 07:00.
  EXPECT_THAT(CostOver(s, kBase, At(2, 6, 59, 30), absl::Seconds(60)),
              DoubleNear((0.12 + 0.30) * 30 / 3600, 1e-15));
  // A wrapping window: 21:00-07:00 = 1 h base, 8 h at 0.10, 1 h base.
  EXPECT_THAT(CostOver(Parse("22:00-06:00=0.10"), 0.5, At(2, 21), absl::Hours(10)),
              DoubleNear(1.8, 1e-12));
  EXPECT_EQ(CostOver(s, kBase, At(2, 14), absl::ZeroDuration()), 0);
  EXPECT_EQ(CostOver(s, kBase, At(2, 14), -absl::Hours(1)), 0);
  EXPECT_EQ(CostOver(s, kBase, At(2, 14), absl::InfiniteDuration()),
            std::numeric_limits<double>::infinity());
  EXPECT_EQ(CostOver({}, 0, At(2, 14), absl::InfiniteDuration()), 0);
  EXPECT_THAT(CostOver({}, kBase, At(2, 14), absl::Minutes(90)), DoubleNear(0.45, 1e-12));
}

TEST(CostOver, ManyDays) {
  const PriceSchedule s = NightAndPeak();
  EXPECT_THAT(CostOver(s, kBase, At(2, 0), absl::Hours(24)), DoubleNear(6.54, 1e-12));
  EXPECT_THAT(CostOver(s, kBase, At(2, 13, 17), absl::Hours(24)), DoubleNear(6.54, 1e-12));
  // Two days, then 06:00-08:00 = 0.12 + 0.30.
  EXPECT_THAT(CostOver(s, kBase, At(2, 6), absl::Hours(50)), DoubleNear(13.08 + 0.42, 1e-12));
  // A 30-day run from 20:00: 30 days and nothing more.
  EXPECT_THAT(CostOver(s, kBase, At(2, 20), absl::Hours(24 * 30)), DoubleNear(196.2, 1e-9));
}

TEST(CostOver, OffsetShiftsTheDay) {
  // At UTC+01:00, 23:00-06:00 UTC is 00:00-07:00 local: the whole night window.
  PriceSchedule s = NightAndPeak();
  s.utc_offset_minutes = 60;
  EXPECT_THAT(CostOver(s, kBase, At(1, 23), absl::Hours(7)), DoubleNear(0.84, 1e-12));
  s.utc_offset_minutes = 0;
  EXPECT_THAT(CostOver(s, kBase, At(1, 23), absl::Hours(7)), DoubleNear(0.30 + 0.72, 1e-12));
}

TEST(CostOver, MatchesSummedMinutePricesOnRandomSchedules) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> minutes(0, 3 * kMinutesPerDay);
  std::uniform_real_distribution<double> fraction(0, 1);
  for (int i = 0; i < 100; ++i) {
    const PriceSchedule s = RandomSchedule(rng, 5, /*cent_prices=*/true);
    const absl::Time start = At(2, 0) + absl::Minutes(minutes(rng));
    const int length = minutes(rng);
    double summed = 0;
    for (int m = 0; m < length; ++m) summed += PriceAt(s, kBase, start + absl::Minutes(m)) / 60;
    EXPECT_THAT(CostOver(s, kBase, start, absl::Minutes(length)), DoubleNear(summed, 1e-9))
        << FormatPriceSchedule(s);
    // Splitting a run anywhere costs the same.
    const absl::Duration cut = absl::Minutes(length) * fraction(rng);
    EXPECT_THAT(CostOver(s, kBase, start, absl::Minutes(length)),
                DoubleNear(CostOver(s, kBase, start, cut) +
                               CostOver(s, kBase, start + cut, absl::Minutes(length) - cut),
                           1e-9));
  }
}

// ---- Cheapest start ----

TEST(CheapestStart, DeadlineWithRoomWaitsForTheNightWindow) {
  // 3 h from 14:00, deadline 13:00 the next day: any start in 00:00-04:00 costs 3 * 0.12.
  EXPECT_THAT(CheapestStart(NightAndPeak(), kBase, At(2, 14), At(3, 10), absl::Hours(3)),
              StartsAt(At(3, 0), 0.36));
}

TEST(CheapestStart, TightDeadlineStartsAtEarliest) {
  // 14:00 costs 0.90; 15:00 would run into the peak.
  EXPECT_THAT(CheapestStart(NightAndPeak(), kBase, At(2, 14), At(2, 15), absl::Hours(3)),
              StartsAt(At(2, 14), 0.90));
  // latest_start before earliest: earliest.
  EXPECT_EQ(CheapestStart(NightAndPeak(), kBase, At(2, 14), At(2, 13), absl::Hours(3)).start,
            At(2, 14));
  EXPECT_EQ(CheapestStart(NightAndPeak(), kBase, At(2, 14), At(2, 14), absl::Hours(3)).start,
            At(2, 14));
}

TEST(CheapestStart, LatestStartCanWin) {
  // From 20:00 with a start by 22:00: 20:00 costs 1.05, 21:00 0.90, 22:00 0.60 + 0.12.
  EXPECT_THAT(CheapestStart(NightAndPeak(), kBase, At(2, 20), At(2, 22), absl::Hours(3)),
              StartsAt(At(2, 22), 0.72));
}

TEST(CheapestStart, EndingAtABoundaryCanWin) {
  // 10 h with the night window 00:00-07:00: starting from 21:00 to 24:00 uses all 7 cheap hours
  // (the run ends at 07:00 or later); 21:00 = 07:00 - runtime is the earliest of those.
  EXPECT_THAT(
      CheapestStart(Parse("00:00-07:00=0.12"), kBase, At(2, 20, 10), At(2, 23), absl::Hours(10)),
      StartsAt(At(2, 21), 7 * 0.12 + 3 * 0.30));
}

TEST(CheapestStart, NoDeadlineAndLongRanges) {
  EXPECT_THAT(
      CheapestStart(NightAndPeak(), kBase, At(2, 8), absl::InfiniteFuture(), absl::Hours(3)),
      StartsAt(At(3, 0), 0.36));
  EXPECT_EQ(CheapestStart(NightAndPeak(), kBase, At(2, 8), At(9, 8), absl::Hours(3)).start,
            At(3, 0));
  // Already in the window: start now.
  EXPECT_EQ(CheapestStart(NightAndPeak(), kBase, At(3, 1), At(9, 8), absl::Hours(3)).start,
            At(3, 1));
}

TEST(CheapestStart, UsesTheNodesLocalTime) {
  // Local midnight at UTC+09:00 is 15:00 UTC.
  EXPECT_THAT(CheapestStart(Parse("UTC+09:00; 00:00-06:00=0.05"), 0.4, At(2, 12), At(3, 12),
                            absl::Hours(2)),
              StartsAt(At(2, 15), 0.10));
}

TEST(CheapestStart, DegenerateInputs) {
  EXPECT_THAT(CheapestStart({}, kBase, At(2, 8), At(4, 8), absl::Hours(2)),
              StartsAt(At(2, 8), 0.60));
  EXPECT_THAT(CheapestStart(NightAndPeak(), kBase, At(2, 8), At(4, 8), absl::ZeroDuration()),
              StartsAt(At(2, 8), 0));
  EXPECT_EQ(
      CheapestStart(NightAndPeak(), kBase, At(2, 8), At(4, 8), absl::InfiniteDuration()).start,
      At(2, 8));
}

// The earliest start in [earliest, latest] with the lowest cost, trying every minute.
StartChoice ScanEveryMinute(const PriceSchedule& s, double base, absl::Time earliest,
                            absl::Time latest, absl::Duration runtime) {
  std::vector<StartChoice> all;
  for (absl::Time t = earliest; t <= latest; t += absl::Minutes(1)) {
    all.push_back({t, CostOver(s, base, t, runtime)});
  }
  double cheapest = std::numeric_limits<double>::infinity();
  for (const StartChoice& c : all) cheapest = std::min(cheapest, c.cost);
  for (const StartChoice& c : all) {
    if (c.cost <= cheapest + 1e-9 * cheapest) return c;
  }
  return all.front();
}

// Schedules, starts and runtimes on whole minutes put every kink of the cost on a whole minute,
// so a minute-by-minute scan finds the true cheapest start.
TEST(CheapestStart, MatchesAMinuteByMinuteScan) {
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> start_minute(0, 2 * kMinutesPerDay);
  std::uniform_int_distribution<int> runtime_minutes(1, 30 * 60);
  std::uniform_int_distribution<int> range_minutes(0, 2 * kMinutesPerDay + 600);
  std::uniform_int_distribution<int> base_cents(0, 100);
  for (int i = 0; i < 150; ++i) {
    const PriceSchedule s = RandomSchedule(rng, 5, /*cent_prices=*/true);
    const double base = base_cents(rng) / 100.0;
    const absl::Time earliest = At(2, 0) + absl::Minutes(start_minute(rng));
    const absl::Time latest = earliest + absl::Minutes(range_minutes(rng));
    const absl::Duration runtime = absl::Minutes(runtime_minutes(rng));
    const StartChoice want = ScanEveryMinute(s, base, earliest, latest, runtime);
    const StartChoice got = CheapestStart(s, base, earliest, latest, runtime);
    EXPECT_EQ(got.start, want.start) << FormatPriceSchedule(s) << " base " << base << " from "
                                     << earliest << " to " << latest << " for " << runtime;
    EXPECT_THAT(got.cost, DoubleNear(want.cost, 1e-9));
  }
}

// Off the minute grid the scan no longer hits every kink, but it can never beat the answer.
TEST(CheapestStart, NeverBeatenOffTheMinuteGrid) {
  std::mt19937 rng(43);
  std::uniform_int_distribution<int> seconds(0, 2 * 86400);
  for (int i = 0; i < 100; ++i) {
    const PriceSchedule s = RandomSchedule(rng, 5, /*cent_prices=*/false);
    const absl::Time earliest = At(2, 0) + absl::Seconds(seconds(rng)) + absl::Milliseconds(250);
    const absl::Time latest = earliest + absl::Seconds(seconds(rng));
    const absl::Duration runtime = absl::Seconds(1 + seconds(rng) / 2);
    const StartChoice got = CheapestStart(s, kBase, earliest, latest, runtime);
    EXPECT_GE(got.start, earliest);
    EXPECT_LE(got.start, latest);
    EXPECT_THAT(got.cost, DoubleNear(CostOver(s, kBase, got.start, runtime), 1e-12));
    const StartChoice scan = ScanEveryMinute(s, kBase, earliest, latest, runtime);
    EXPECT_LE(got.cost, scan.cost + 1e-9) << FormatPriceSchedule(s);
  }
}

}  // namespace
}  // namespace sched::cost
