#include "client/units.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace sched::client {
namespace {

struct Unit {
  const char* name;
  int64_t bytes;
};

constexpr int64_t kKi = 1024;
constexpr int64_t kK = 1000;

// Largest first, binary before decimal of the same rank so that "1GiB" beats "1073741824B".
constexpr Unit kExactUnits[] = {
    {"TiB", kKi* kKi* kKi* kKi}, {"TB", kK* kK* kK* kK}, {"GiB", kKi* kKi* kKi}, {"GB", kK* kK* kK},
    {"MiB", kKi* kKi},           {"MB", kK* kK},         {"KiB", kKi},           {"KB", kK},
};

int64_t UnitBytes(absl::string_view unit) {
  const std::string u = absl::AsciiStrToLower(unit);
  if (u.empty() || u == "b") return 1;
  if (u == "k" || u == "kb") return kK;
  if (u == "m" || u == "mb") return kK * kK;
  if (u == "g" || u == "gb") return kK * kK * kK;
  if (u == "t" || u == "tb") return kK * kK * kK * kK;
  if (u == "ki" || u == "kib") return kKi;
  if (u == "mi" || u == "mib") return kKi * kKi;
  if (u == "gi" || u == "gib") return kKi * kKi * kKi;
  if (u == "ti" || u == "tib") return kKi * kKi * kKi * kKi;
  return 0;
}

}  // namespace

absl::StatusOr<int64_t> ParseByteSize(absl::string_view text) {
  const absl::string_view s = absl::StripAsciiWhitespace(text);
  size_t split = 0;
  while (split < s.size() && (absl::ascii_isdigit(s[split]) || s[split] == '.')) ++split;
  const absl::string_view number = s.substr(0, split);
  const absl::string_view unit = absl::StripLeadingAsciiWhitespace(s.substr(split));
  const int64_t unit_bytes = UnitBytes(unit);
  double value = 0;
  if (number.empty() || unit_bytes == 0 || !absl::SimpleAtod(number, &value)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected a size such as 8GB, 512MiB or a number of bytes, got \"", text, "\""));
  }
  if (unit_bytes == 1 && number.find('.') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("a number of bytes must be whole, got \"", text, "\""));
  }
  const double bytes = std::round(value * static_cast<double>(unit_bytes));
  if (bytes >= static_cast<double>(std::numeric_limits<int64_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat("size too large: \"", text, "\""));
  }
  if (unit_bytes == 1) {
    int64_t exact = 0;
    if (!absl::SimpleAtoi(number, &exact)) {
      return absl::InvalidArgumentError(absl::StrCat("size too large: \"", text, "\""));
    }
    return exact;
  }
  return static_cast<int64_t>(bytes);
}

std::string FormatBytes(int64_t bytes) {
  if (bytes == 0) return "0";
  if (bytes < 0) return absl::StrCat(bytes, "B");
  for (const Unit& u : kExactUnits) {
    // Exact only while the number stays short: 24GiB, 512MiB, not 24684084KiB.
    if (bytes >= u.bytes && bytes % u.bytes == 0 && bytes / u.bytes < 1000) {
      return absl::StrCat(bytes / u.bytes, u.name);
    }
  }
  constexpr Unit kDecimal[] = {
      {"TB", kK * kK * kK * kK}, {"GB", kK * kK * kK}, {"MB", kK * kK}, {"KB", kK}};
  for (const Unit& u : kDecimal) {
    if (bytes >= u.bytes) {
      std::string s = absl::StrFormat("%.1f", static_cast<double>(bytes) / u.bytes);
      if (absl::EndsWith(s, ".0")) s.resize(s.size() - 2);
      return absl::StrCat(s, u.name);
    }
  }
  return absl::StrCat(bytes, "B");
}

std::string FormatGpuMemory(int64_t bytes) {
  constexpr int64_t kGi = kKi * kKi * kKi;
  if (bytes < kGi) return FormatBytes(bytes);
  return absl::StrCat(std::llround(static_cast<double>(bytes) / kGi), "GB");
}

std::string FormatCpus(double cpus) {
  std::string s = absl::StrFormat("%.3f", cpus);
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

std::optional<absl::Duration> ParsePositiveDuration(absl::string_view text) {
  absl::Duration d;
  absl::string_view days_text = text;
  int64_t days = 0;
  if (absl::ConsumeSuffix(&days_text, "d") && absl::SimpleAtoi(days_text, &days)) {
    d = absl::Hours(24) * days;
  } else if (!absl::ParseDuration(text, &d)) {
    return std::nullopt;
  }
  if (d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) return std::nullopt;
  return d;
}

std::string FormatAge(absl::Duration age) {
  const int64_t seconds = std::max<int64_t>(0, absl::ToInt64Seconds(age));
  const int64_t minutes = seconds / 60;
  const int64_t hours = minutes / 60;
  const int64_t days = hours / 24;
  if (seconds < 120) return absl::StrCat(seconds, "s");
  if (minutes < 10) {
    return seconds % 60 == 0 ? absl::StrCat(minutes, "m")
                             : absl::StrCat(minutes, "m", seconds % 60, "s");
  }
  if (minutes < 180) return absl::StrCat(minutes, "m");
  if (hours < 8) {
    return minutes % 60 == 0 ? absl::StrCat(hours, "h")
                             : absl::StrCat(hours, "h", minutes % 60, "m");
  }
  if (hours < 48) return absl::StrCat(hours, "h");
  if (days < 8) {
    return hours % 24 == 0 ? absl::StrCat(days, "d") : absl::StrCat(days, "d", hours % 24, "h");
  }
  if (days < 730) return absl::StrCat(days, "d");
  const int64_t years = days / 365;
  return days % 365 == 0 ? absl::StrCat(years, "y") : absl::StrCat(years, "y", days % 365, "d");
}

}  // namespace sched::client
