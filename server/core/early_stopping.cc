#include "server/core/early_stopping.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sched {
namespace {

// The run's last value at or before `step`, if it has reached `step` (reported at or past it).
std::optional<double> ValueAt(const RunCurve& run, int64_t step) {
  if (run.samples.empty() || run.samples.back().step < step) return std::nullopt;
  std::optional<double> v;
  for (const MetricSample& s : run.samples) {
    if (s.step > step) break;
    v = s.value;
  }
  return v;
}

// Its first value at or past `step`.
std::optional<double> FirstFrom(const RunCurve& run, int64_t step) {
  for (const MetricSample& s : run.samples) {
    if (s.step >= step) return s.value;
  }
  return std::nullopt;
}

std::string Num(double v) { return absl::StrFormat("%.6g", v); }

std::string Median(const EarlyStopping& rule, bool maximize, const std::string& metric,
                   const RunCurve& run, absl::Span<const RunCurve> others) {
  const MetricSample& now = run.samples.back();
  if (now.step < std::max<int64_t>(rule.min_step, 1)) return "";
  std::vector<double> there;
  for (const RunCurve& o : others) {
    if (std::optional<double> v = ValueAt(o, now.step)) there.push_back(*v);
  }
  const size_t needed = rule.min_runs == 0 ? 3 : rule.min_runs;
  if (there.empty() || there.size() < needed) return "";
  std::sort(there.begin(), there.end());
  const size_t n = there.size();
  const double median = n % 2 == 1 ? there[n / 2] : (there[n / 2 - 1] + there[n / 2]) / 2;
  const bool worse = maximize ? now.value < median : now.value > median;
  if (!worse) return "";
  return absl::StrCat(metric, " ", Num(now.value), " at step ", now.step,
                      " is worse than the median ", Num(median), " of ", n,
                      " other runs at that step (median stopping)");
}

std::string Asha(const EarlyStopping& rule, bool maximize, const std::string& metric,
                 const RunCurve& run, int64_t previous_step, absl::Span<const RunCurve> others) {
  const MetricSample& now = run.samples.back();
  const int64_t eta = rule.reduction_factor == 0 ? 3 : rule.reduction_factor;
  // The highest rung this report crossed, if any.
  int64_t crossed = -1;
  for (int64_t rung = std::max<int64_t>(rule.min_step, 1);
       rung <= now.step && (rule.max_step == 0 || rung <= rule.max_step); rung *= eta) {
    if (rung > previous_step) crossed = rung;
    if (rung > (int64_t{1} << 55) / eta) break;
  }
  if (crossed < 0) return "";
  std::vector<double> better;  // values of the other runs at the rung that beat this one
  size_t n = 1;
  for (const RunCurve& o : others) {
    std::optional<double> v = FirstFrom(o, crossed);
    if (!v) continue;
    ++n;
    if (maximize ? *v > now.value : *v < now.value) better.push_back(*v);
  }
  const size_t keep = (n + static_cast<size_t>(eta) - 1) / static_cast<size_t>(eta);
  if (better.size() < keep) return "";
  return absl::StrCat(metric, " ", Num(now.value), " at rung ", crossed, " ranks ",
                      better.size() + 1, " of ", n, " runs there; only the best ", keep,
                      " go on (successive halving, reduction factor ", eta, ")");
}

}  // namespace

std::string ShouldStopEarly(const EarlyStopping& rule, bool maximize, const std::string& metric,
                            const RunCurve& run, int64_t previous_step,
                            absl::Span<const RunCurve> others) {
  if (run.samples.empty()) return "";
  if (rule.rule == "median") return Median(rule, maximize, metric, run, others);
  if (rule.rule == "asha") return Asha(rule, maximize, metric, run, previous_step, others);
  return "";
}

}  // namespace sched
