#include "client/units.h"

#include <cstdint>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sched::client {
namespace {

using ::sched::testing::IsOkAndHolds;
using ::sched::testing::StatusIs;
using ::testing::HasSubstr;

constexpr int64_t kGiB = int64_t{1} << 30;

struct SizeCase {
  const char* text;
  int64_t bytes;
};

class ParseByteSizeTest : public ::testing::TestWithParam<SizeCase> {};

TEST_P(ParseByteSizeTest, Parses) {
  EXPECT_THAT(ParseByteSize(GetParam().text), IsOkAndHolds(GetParam().bytes));
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, ParseByteSizeTest,
    ::testing::Values(SizeCase{"24GB", 24'000'000'000}, SizeCase{"24GiB", 24 * kGiB},
                      SizeCase{"512MB", 512'000'000}, SizeCase{"512MiB", 512 * 1024 * 1024},
                      SizeCase{"8G", 8'000'000'000}, SizeCase{"8Gi", 8 * kGiB},
                      SizeCase{"1TB", 1'000'000'000'000}, SizeCase{"1Ti", 1024 * kGiB},
                      SizeCase{"4096", 4096}, SizeCase{"0", 0}, SizeCase{"100B", 100},
                      SizeCase{"2K", 2000}, SizeCase{"2KiB", 2048},
                      SizeCase{"1.5GB", 1'500'000'000}, SizeCase{"0.5GiB", kGiB / 2},
                      SizeCase{"16 gb", 16'000'000'000}, SizeCase{" 64Mi ", 64 * 1024 * 1024}));

TEST(ParseByteSize, RejectsWhatIsNotASize) {
  for (const char* bad : {"", "GB", "8 gigs", "-1GB", "1.5", "eight", "1e3", "8XB", "1..2GB"}) {
    EXPECT_THAT(ParseByteSize(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
  EXPECT_THAT(ParseByteSize("8 gigs"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "expected a size such as 8GB, 512MiB or a number of bytes, got \"8 gigs\""));
  EXPECT_THAT(ParseByteSize("99999999999TB"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too large")));
  EXPECT_THAT(ParseByteSize("99999999999999999999"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too large")));
}

TEST(FormatBytes, PicksTheLargestExactUnit) {
  EXPECT_EQ(FormatBytes(0), "0");
  EXPECT_EQ(FormatBytes(512), "512B");
  EXPECT_EQ(FormatBytes(24'000'000'000), "24GB");
  EXPECT_EQ(FormatBytes(24 * kGiB), "24GiB");
  EXPECT_EQ(FormatBytes(512 * 1024 * 1024), "512MiB");
  EXPECT_EQ(FormatBytes(1'000'000'000'000), "1TB");
  EXPECT_EQ(FormatBytes(2048), "2KiB");
}

TEST(FormatBytes, RoundsInexactValuesToOneDecimal) {
  EXPECT_EQ(FormatBytes(68'719'476'735), "68.7GB");
  EXPECT_EQ(FormatBytes(1'999'999), "2MB");
  EXPECT_EQ(FormatBytes(1234), "1.2KB");
  EXPECT_EQ(FormatBytes(1500), "1.5KB");
  // A node's MemTotal is a multiple of 1 KiB, but 24684084KiB helps nobody.
  EXPECT_EQ(FormatBytes(int64_t{24684084} * 1024), "25.3GB");
}

TEST(FormatBytes, RoundTripsThroughParse) {
  for (int64_t bytes : {int64_t{1}, int64_t{2048}, 24 * kGiB, int64_t{8'000'000'000}}) {
    EXPECT_THAT(ParseByteSize(FormatBytes(bytes)), IsOkAndHolds(bytes)) << bytes;
  }
}

TEST(FormatGpuMemory, RoundsToWholeGibibytesWrittenGB) {
  EXPECT_EQ(FormatGpuMemory(int64_t{81559} * 1024 * 1024), "80GB");  // H100 as NVML reports it
  EXPECT_EQ(FormatGpuMemory(10 * kGiB), "10GB");
  EXPECT_EQ(FormatGpuMemory(24 * kGiB), "24GB");
  EXPECT_EQ(FormatGpuMemory(512 * 1024 * 1024), "512MiB");
}

TEST(FormatCpus, DropsTrailingZeros) {
  EXPECT_EQ(FormatCpus(2), "2");
  EXPECT_EQ(FormatCpus(0.5), "0.5");
  EXPECT_EQ(FormatCpus(1.25), "1.25");
  EXPECT_EQ(FormatCpus(0), "0");
}

TEST(ParsePositiveDuration, TakesGoDurationsAndWholeDays) {
  EXPECT_EQ(ParsePositiveDuration("1h"), absl::Hours(1));
  EXPECT_EQ(ParsePositiveDuration("90m"), absl::Minutes(90));
  EXPECT_EQ(ParsePositiveDuration("1h30m"), absl::Minutes(90));
  EXPECT_EQ(ParsePositiveDuration("500ms"), absl::Milliseconds(500));
  EXPECT_EQ(ParsePositiveDuration("7d"), absl::Hours(24 * 7));
  EXPECT_EQ(ParsePositiveDuration("365d"), absl::Hours(24 * 365));
}

TEST(ParsePositiveDuration, RejectsZeroNegativeAndNonsense) {
  for (const char* bad : {"", "0", "0s", "0d", "-1h", "-3d", "1.5d", "d", "7 days", "soon", "inf",
                          "99999999999999999d"}) {
    EXPECT_EQ(ParsePositiveDuration(bad), std::nullopt) << bad;
  }
}

TEST(FormatAge, FollowsKubectl) {
  EXPECT_EQ(FormatAge(absl::Seconds(0)), "0s");
  EXPECT_EQ(FormatAge(absl::Seconds(-5)), "0s");
  EXPECT_EQ(FormatAge(absl::Seconds(45)), "45s");
  EXPECT_EQ(FormatAge(absl::Seconds(119)), "119s");
  EXPECT_EQ(FormatAge(absl::Seconds(330)), "5m30s");
  EXPECT_EQ(FormatAge(absl::Minutes(5)), "5m");
  EXPECT_EQ(FormatAge(absl::Minutes(45) + absl::Seconds(10)), "45m");
  EXPECT_EQ(FormatAge(absl::Minutes(200)), "3h20m");
  EXPECT_EQ(FormatAge(absl::Hours(20) + absl::Minutes(5)), "20h");
  EXPECT_EQ(FormatAge(absl::Hours(53)), "2d5h");
  EXPECT_EQ(FormatAge(absl::Hours(24 * 45)), "45d");
  EXPECT_EQ(FormatAge(absl::Hours(24 * (2 * 365 + 30))), "2y30d");
}

}  // namespace
}  // namespace sched::client
