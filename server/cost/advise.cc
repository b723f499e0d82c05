#include "server/cost/advise.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "server/common/status_macros.h"

namespace sched::cost {
namespace {

constexpr double kDaysPerMonth = 30;
constexpr double kGiB = 1024.0 * 1024 * 1024;

// The machine as an upgrade would leave it.
struct Shape {
  const GpuModel* gpu = nullptr;        // nullptr: no GPU, or one the catalog does not know
  std::vector<std::string> gpu_names;  // what its cards would report
  int32_t gpu_count = 0;
  int64_t gpu_memory_bytes = 0;
  int64_t memory_bytes = 0;
  int64_t cpu_millis = 0;
};

// A path before it is weighed: what it is, what it costs, and which runs it brings home.
struct Candidate {
  UpgradePath path;
  Shape shape;
  std::vector<bool> brings_home;  // by index into the input runs
};

absl::Status Invalid(absl::string_view path, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", reason));
}

absl::Status CheckNotNegative(absl::string_view path, double value) {
  if (value >= 0 && std::isfinite(value)) return absl::OkStatus();
  return Invalid(path, absl::StrFormat("must not be negative, got %g", value));
}

absl::Status ValidateInput(const AdviceInput& in, const AdviseOptions& options) {
  if (!(in.window_days > 0 && std::isfinite(in.window_days))) {
    return Invalid("window_days", absl::StrFormat("must be more than 0, got %g", in.window_days));
  }
  const double e = options.runtime.multi_gpu_efficiency;
  if (!(e > 0 && e <= 1)) {
    return Invalid("multi_gpu_efficiency", absl::StrFormat("must be in (0, 1], got %g", e));
  }
  const LocalMachine& m = in.machine;
  SCHED_RETURN_IF_ERROR(CheckNotNegative("machine.gpu_count", m.gpu_count));
  SCHED_RETURN_IF_ERROR(CheckNotNegative("machine.gpu_memory_bytes", m.gpu_memory_bytes));
  SCHED_RETURN_IF_ERROR(CheckNotNegative("machine.memory_bytes", m.memory_bytes));
  SCHED_RETURN_IF_ERROR(CheckNotNegative("machine.cpu_millis", m.cpu_millis));
  SCHED_RETURN_IF_ERROR(CheckNotNegative("machine.power_watts", m.power_watts));
  SCHED_RETURN_IF_ERROR(
      CheckNotNegative("machine.electricity_usd_per_kwh", m.electricity_usd_per_kwh));
  for (size_t i = 0; i < in.runs.size(); ++i) {
    const CloudRun& r = in.runs[i];
    const std::string p = absl::StrCat("runs[", i, "].");
    SCHED_RETURN_IF_ERROR(CheckNotNegative(p + "dollars", r.dollars));
    SCHED_RETURN_IF_ERROR(CheckNotNegative(p + "hours", r.hours));
    SCHED_RETURN_IF_ERROR(CheckNotNegative(p + "ran_on.count", r.ran_on.count));
    SCHED_RETURN_IF_ERROR(CheckNotNegative(p + "needs.gpus", r.needs.gpus));
    SCHED_RETURN_IF_ERROR(CheckNotNegative(p + "needs.gpu_memory_bytes", r.needs.gpu_memory_bytes));
    SCHED_RETURN_IF_ERROR(CheckNotNegative(p + "needs.memory_bytes", r.needs.memory_bytes));
    SCHED_RETURN_IF_ERROR(CheckNotNegative(p + "needs.cpu_millis", r.needs.cpu_millis));
  }
  return absl::OkStatus();
}

// "NVIDIA GeForce RTX 4090" -> "RTX 4090".
std::string ShortName(absl::string_view name) {
  absl::ConsumePrefix(&name, "NVIDIA ");
  absl::ConsumePrefix(&name, "GeForce ");
  return std::string(name);
}

std::string Cards(int32_t count, absl::string_view name) {
  return count == 1 ? std::string(name) : absl::StrCat(count, "x ", name);
}

std::string GiB(int64_t bytes) {
  const double gib = static_cast<double>(bytes) / kGiB;
  return gib == std::round(gib) ? absl::StrFormat("%.0f GiB", gib)
                                : absl::StrFormat("%.1f GiB", gib);
}

// As placement matches a job's gpu_models against a card's name.
bool ModelAllowed(const RunNeeds& needs, const Shape& s) {
  if (needs.gpu_models.empty()) return true;
  for (const std::string& wanted : needs.gpu_models) {
    const std::string w = absl::AsciiStrToLower(wanted);
    for (const std::string& name : s.gpu_names) {
      if (absl::StrContains(absl::AsciiStrToLower(name), w)) return true;
    }
  }
  return false;
}

bool Fits(const RunNeeds& n, const Shape& s) {
  if (n.memory_bytes > s.memory_bytes || n.cpu_millis > s.cpu_millis) return false;
  if (n.gpus == 0) return true;
  return n.gpus <= s.gpu_count && n.gpu_memory_bytes <= s.gpu_memory_bytes && ModelAllowed(n, s);
}

class Advisor {
 public:
  Advisor(const Catalog& catalog, const AdviceInput& in, const AdviseOptions& options)
      : catalog_(catalog), in_(in), options_(options) {
    const LocalMachine& m = in.machine;
    current_.gpu = m.gpu_model.empty() ? nullptr : catalog.FindGpu(m.gpu_model);
    if (!m.gpu_model.empty()) current_.gpu_names = {m.gpu_model};
    current_.gpu_count = m.gpu_count;
    current_.gpu_memory_bytes = m.gpu_memory_bytes;
    current_.memory_bytes = m.memory_bytes;
    current_.cpu_millis = m.cpu_millis;
    current_name_ = current_.gpu != nullptr ? ShortName(current_.gpu->name()) : m.gpu_model;
    tariff_ = m.electricity_usd_per_kwh;
    for (const Provider& p : catalog.providers()) {
      if (tariff_ == 0 && p.local) tariff_ = p.electricity_usd_per_kwh;
    }
    // What the machine draws besides its GPUs, when its whole draw is known.
    const double own_cards = current_.gpu != nullptr ? m.gpu_count * current_.gpu->power_watts : 0;
    rest_watts_ = std::max(0.0, m.power_watts - own_cards);
    for (const CloudRun& r : in.runs) fits_now_.push_back(Fits(r.needs, current_));
  }

  Advice Run() {
    Advice advice;
    advice.window_days = in_.window_days;
    for (size_t i = 0; i < in_.runs.size(); ++i) {
      advice.too_small_runs++;
      advice.too_small_usd += in_.runs[i].dollars;
      if (fits_now_[i]) {
        advice.fits_now_runs++;
        advice.fits_now_usd += in_.runs[i].dollars;
      }
    }
    std::vector<Candidate> gpu_paths = GpuPaths();
    std::vector<Candidate> ram_paths = RamPaths();
    std::vector<Candidate> all;
    for (const Candidate& gpu : gpu_paths) {
      std::vector<bool> covered = gpu.brings_home;
      for (const Candidate& ram : ram_paths) {
        Candidate both = Combine(gpu, ram);
        bool adds = false;
        for (size_t i = 0; i < in_.runs.size(); ++i) {
          adds = adds || (both.brings_home[i] && !covered[i] && !ram.brings_home[i]);
          covered[i] = covered[i] || both.brings_home[i];
        }
        if (adds) all.push_back(std::move(both));
      }
    }
    all.insert(all.end(), gpu_paths.begin(), gpu_paths.end());
    all.insert(all.end(), ram_paths.begin(), ram_paths.end());

    std::vector<Candidate> weighed;
    for (Candidate& c : all) {
      if (std::find(c.brings_home.begin(), c.brings_home.end(), true) == c.brings_home.end()) {
        continue;
      }
      Weigh(&c);
      weighed.push_back(std::move(c));
    }
    for (size_t i = 0; i < in_.runs.size(); ++i) {
      bool home = fits_now_[i];
      for (const Candidate& c : weighed) home = home || c.brings_home[i];
      if (!home) {
        advice.no_path_runs++;
        advice.no_path_usd += in_.runs[i].dollars;
      }
    }
    for (size_t i = 0; i < weighed.size(); ++i) {
      bool beaten = false;
      for (size_t j = 0; j < weighed.size() && !beaten; ++j) {
        beaten = j != i && Beats(weighed[j], weighed[i]);
      }
      if (beaten && !options_.keep_dominated) {
        advice.dominated_paths++;
      } else {
        advice.paths.push_back(std::move(weighed[i].path));
      }
    }
    std::sort(advice.paths.begin(), advice.paths.end(), Sooner);
    return advice;
  }

 private:
  Candidate Make(UpgradeKind kind, std::string description, Shape shape, double price) {
    Candidate c;
    c.path.kind = kind;
    c.path.description = std::move(description);
    c.path.gpu_model = shape.gpu != nullptr ? shape.gpu->key : in_.machine.gpu_model;
    c.path.gpu_count = shape.gpu_count;
    c.path.gpu_memory_bytes = shape.gpu_memory_bytes;
    c.path.memory_bytes = shape.memory_bytes;
    c.path.price_usd = price;
    for (size_t i = 0; i < in_.runs.size(); ++i) {
      c.brings_home.push_back(!fits_now_[i] && Fits(in_.runs[i].needs, shape));
    }
    c.shape = std::move(shape);
    return c;
  }

  // The machine's GPUs replaced by other models, and more cards of its own model.
  std::vector<Candidate> GpuPaths() {
    std::vector<Candidate> out;
    const int32_t have = in_.machine.gpu_count;
    const int32_t most = std::max(catalog_.upgrades().max_gpus, std::max(have, 1));
    for (const GpuModel& g : catalog_.gpus()) {
      if (g.street_price_usd <= 0 || &g == current_.gpu) continue;
      const bool more_memory = have == 0 || g.memory_bytes > current_.gpu_memory_bytes;
      const bool faster =
          current_.gpu != nullptr && g.relative_throughput > current_.gpu->relative_throughput;
      if (!more_memory && !faster) continue;
      for (int32_t n = std::max(have, 1); n <= most; ++n) {
        Shape s = current_;
        s.gpu = &g;
        s.gpu_names = g.nvml_names;
        s.gpu_count = n;
        s.gpu_memory_bytes = g.memory_bytes;
        const std::string name = ShortName(g.name());
        std::string what = have == 0 ? absl::StrCat("add ", Cards(n, name))
                                     : absl::StrCat(Cards(n, name), " in place of ",
                                                    Cards(have, current_name_));
        out.push_back(Make(UpgradeKind::kReplaceGpus, std::move(what), std::move(s),
                           n * g.street_price_usd));
      }
    }
    if (current_.gpu != nullptr && current_.gpu->street_price_usd > 0 && have >= 1) {
      for (int32_t n = have + 1; n <= catalog_.upgrades().max_gpus; ++n) {
        Shape s = current_;
        s.gpu_count = n;
        std::string what = n == 2 ? absl::StrCat("second ", current_name_)
                                  : absl::StrCat("add ", Cards(n - have, current_name_), " (",
                                                 n, " in all)");
        out.push_back(Make(UpgradeKind::kAddGpus, std::move(what), std::move(s),
                           (n - have) * current_.gpu->street_price_usd));
      }
    }
    return out;
  }

  std::vector<Candidate> RamPaths() {
    std::vector<Candidate> out;
    const UpgradeData& u = catalog_.upgrades();
    for (int64_t kit : u.ram_kit_bytes) {
      if (kit <= current_.memory_bytes) continue;
      Shape s = current_;
      s.memory_bytes = kit;
      out.push_back(Make(UpgradeKind::kRam,
                         absl::StrCat("RAM ", GiB(current_.memory_bytes), " -> ", GiB(kit)),
                         std::move(s), static_cast<double>(kit) / kGiB * u.ram_usd_per_gib));
    }
    return out;
  }

  Candidate Combine(const Candidate& gpu, const Candidate& ram) {
    Shape s = gpu.shape;
    s.memory_bytes = ram.shape.memory_bytes;
    return Make(UpgradeKind::kGpusAndRam,
                absl::StrCat(gpu.path.description, " + ", ram.path.description), std::move(s),
                gpu.path.price_usd + ram.path.price_usd);
  }

  // What the runs a path brings home would have cost at home, and what that saves.
  void Weigh(Candidate* c) {
    UpgradePath& p = c->path;
    absl::flat_hash_set<std::string> jobs;
    for (size_t i = 0; i < in_.runs.size(); ++i) {
      if (!c->brings_home[i]) continue;
      const CloudRun& r = in_.runs[i];
      p.runs++;
      if (jobs.insert(r.job_id).second) p.job_ids.push_back(r.job_id);
      p.cloud_usd += r.dollars;
      double hours = r.hours;
      double watts = rest_watts_;
      if (r.needs.gpus > 0) {
        const GpuModel* gpu = c->shape.gpu;
        watts += r.needs.gpus * (gpu != nullptr ? gpu->power_watts : 0);
        absl::StatusOr<absl::Duration> scaled = absl::InvalidArgumentError("not scalable");
        if (gpu != nullptr && hours > 0) {
          scaled = ScaleRuntime(catalog_, absl::Hours(hours), r.ran_on,
                                GpuAllocation{gpu->key, r.needs.gpus}, options_.runtime);
        }
        if (scaled.ok()) {
          hours = absl::ToDoubleHours(*scaled);
        } else if (hours > 0) {
          p.runs_not_scaled++;
        }
      } else if (hours > 0) {
        p.runs_not_scaled++;
      }
      p.local_usd += hours * watts / 1000 * tariff_;
    }
    p.saving_usd = p.cloud_usd - p.local_usd;
    p.saving_usd_per_month = p.saving_usd * kDaysPerMonth / in_.window_days;
    p.payback_months = p.saving_usd_per_month > 0 ? p.price_usd / p.saving_usd_per_month
                                                  : std::numeric_limits<double>::infinity();
  }

  // `a` brings home every run `b` does, costs no more and pays back no later, and is better in
  // one of the three.
  static bool Beats(const Candidate& a, const Candidate& b) {
    bool more_runs = false;
    for (size_t i = 0; i < a.brings_home.size(); ++i) {
      if (b.brings_home[i] && !a.brings_home[i]) return false;
      more_runs = more_runs || (a.brings_home[i] && !b.brings_home[i]);
    }
    const UpgradePath& x = a.path;
    const UpgradePath& y = b.path;
    if (x.price_usd > y.price_usd || x.payback_months > y.payback_months) return false;
    return more_runs || x.price_usd < y.price_usd || x.payback_months < y.payback_months;
  }

  static bool Sooner(const UpgradePath& a, const UpgradePath& b) {
    const bool a_pays = std::isfinite(a.payback_months);
    const bool b_pays = std::isfinite(b.payback_months);
    if (a_pays != b_pays) return a_pays;
    if (a_pays && a.payback_months != b.payback_months) {
      return a.payback_months < b.payback_months;
    }
    if (a_pays && a.saving_usd != b.saving_usd) return a.saving_usd > b.saving_usd;
    return a.description < b.description;
  }

  const Catalog& catalog_;
  const AdviceInput& in_;
  const AdviseOptions& options_;
  Shape current_;
  std::string current_name_;
  double tariff_ = 0;
  double rest_watts_ = 0;
  std::vector<bool> fits_now_;
};

}  // namespace

absl::string_view UpgradeKindName(UpgradeKind kind) {
  switch (kind) {
    case UpgradeKind::kReplaceGpus:
      return "replace-gpus";
    case UpgradeKind::kAddGpus:
      return "add-gpus";
    case UpgradeKind::kRam:
      return "ram";
    case UpgradeKind::kGpusAndRam:
      return "gpus-and-ram";
  }
  return "replace-gpus";
}

absl::StatusOr<Advice> AdviseUpgrades(const Catalog& catalog, const AdviceInput& input,
                                      const AdviseOptions& options) {
  SCHED_RETURN_IF_ERROR(ValidateInput(input, options));
  return Advisor(catalog, input, options).Run();
}

}  // namespace sched::cost
