#include "server/cost/catalog_yaml.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "server/common/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace sched::cost {
namespace {

absl::Status Invalid(absl::string_view path, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", reason));
}

std::string Shown(const YAML::Node& node) {
  if (node.IsScalar()) return absl::StrCat("\"", node.Scalar(), "\"");
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  return "nothing";
}

absl::Status Expected(absl::string_view path, absl::string_view what, const YAML::Node& got) {
  return Invalid(path, absl::StrCat("expected ", what, ", got ", Shown(got)));
}

// Checks that `node` is a mapping whose keys are all in `known`.
absl::Status CheckKeys(const YAML::Node& node, absl::string_view path,
                       const std::vector<absl::string_view>& known) {
  if (!node.IsMap()) return Expected(path, "a mapping", node);
  for (auto it = node.begin(); it != node.end(); ++it) {
    const std::string key = it->first.IsScalar() ? it->first.Scalar() : "?";
    bool found = false;
    for (absl::string_view k : known) found = found || k == key;
    if (!found) {
      return Invalid(path.empty() ? key : absl::StrCat(path, ".", key),
                     absl::StrCat("unknown key (known: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

std::string Child(absl::string_view path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

absl::StatusOr<std::string> String(const YAML::Node& node, absl::string_view path) {
  if (!node.IsScalar()) return Expected(path, "a string", node);
  return node.Scalar();
}

absl::StatusOr<double> Number(const YAML::Node& node, absl::string_view path) {
  double v = 0;
  if (!node.IsScalar() || !absl::SimpleAtod(node.Scalar(), &v) || !std::isfinite(v)) {
    return Expected(path, "a number", node);
  }
  return v;
}

absl::StatusOr<bool> Bool(const YAML::Node& node, absl::string_view path) {
  const std::string s = node.IsScalar() ? absl::AsciiStrToLower(node.Scalar()) : "";
  if (s == "true") return true;
  if (s == "false") return false;
  return Expected(path, "true or false", node);
}

absl::StatusOr<absl::Duration> Duration(const YAML::Node& node, absl::string_view path) {
  absl::Duration d;
  if (!node.IsScalar() || !absl::ParseDuration(node.Scalar(), &d) ||
      d == absl::InfiniteDuration()) {
    return Expected(path, "a duration like \"90s\" or \"5m\"", node);
  }
  return d;
}

absl::StatusOr<int64_t> Size(const YAML::Node& node, absl::string_view path) {
  absl::StatusOr<int64_t> size =
      node.IsScalar() ? ParseCatalogSize(node.Scalar()) : absl::InvalidArgumentError("");
  if (!size.ok()) return Expected(path, "a size like \"24GiB\"", node);
  return size;
}

absl::StatusOr<std::vector<std::string>> StringList(const YAML::Node& node,
                                                    absl::string_view path) {
  if (!node.IsSequence()) return Expected(path, "a list of strings", node);
  std::vector<std::string> out;
  for (size_t i = 0; i < node.size(); ++i) {
    SCHED_ASSIGN_OR_RETURN(std::string s, String(node[i], absl::StrCat(path, "[", i, "]")));
    out.push_back(std::move(s));
  }
  return out;
}

// A price range: [min, max], or one number for both.
absl::StatusOr<PriceRange> Range(const YAML::Node& node, absl::string_view path) {
  if (node.IsScalar()) {
    SCHED_ASSIGN_OR_RETURN(double v, Number(node, path));
    return PriceRange{v, v};
  }
  if (!node.IsSequence() || node.size() != 2) {
    return Expected(path, "a price or a range [min, max] in dollars per hour", node);
  }
  PriceRange r;
  SCHED_ASSIGN_OR_RETURN(r.min_usd_per_hour, Number(node[0], absl::StrCat(path, "[0]")));
  SCHED_ASSIGN_OR_RETURN(r.max_usd_per_hour, Number(node[1], absl::StrCat(path, "[1]")));
  return r;
}

// Reads map[key] into *out with `parse` when present; a missing required key is an error.
template <typename T, typename Parse>
absl::Status Field(const YAML::Node& map, absl::string_view path, const char* key, bool required,
                   Parse parse, T* out) {
  const YAML::Node node = map[key];
  const std::string child = Child(path, key);
  if (!node.IsDefined() || node.IsNull()) {
    return required ? Invalid(child, "missing") : absl::OkStatus();
  }
  SCHED_ASSIGN_OR_RETURN(*out, parse(node, child));
  return absl::OkStatus();
}

// Puts `path` in front of an entry's own validation message ("memory: ...").
absl::Status Within(absl::string_view path, absl::Status s) {
  if (s.ok()) return s;
  return absl::InvalidArgumentError(absl::StrCat(path, ".", s.message()));
}

absl::StatusOr<GpuModel> ParseGpu(const YAML::Node& node, absl::string_view path) {
  SCHED_RETURN_IF_ERROR(CheckKeys(node, path,
                                  {"key", "nvml_names", "aliases", "memory",
                                   "relative_throughput", "power_watts", "street_price_usd"}));
  GpuModel g;
  SCHED_RETURN_IF_ERROR(Field(node, path, "key", true, String, &g.key));
  SCHED_RETURN_IF_ERROR(Field(node, path, "nvml_names", true, StringList, &g.nvml_names));
  SCHED_RETURN_IF_ERROR(Field(node, path, "aliases", false, StringList, &g.aliases));
  SCHED_RETURN_IF_ERROR(Field(node, path, "memory", true, Size, &g.memory_bytes));
  SCHED_RETURN_IF_ERROR(
      Field(node, path, "relative_throughput", true, Number, &g.relative_throughput));
  double watts = 0;
  SCHED_RETURN_IF_ERROR(Field(node, path, "power_watts", true, Number, &watts));
  if (watts != std::floor(watts) || watts > 1e6) {
    return Expected(Child(path, "power_watts"), "a whole number of watts", node["power_watts"]);
  }
  g.power_watts = static_cast<int32_t>(watts);
  SCHED_RETURN_IF_ERROR(
      Field(node, path, "street_price_usd", false, Number, &g.street_price_usd));
  SCHED_RETURN_IF_ERROR(Within(path, ValidateGpuModel(g)));
  return g;
}

absl::StatusOr<PreemptionAction> Action(const YAML::Node& node, absl::string_view path) {
  const std::string s = node.IsScalar() ? node.Scalar() : "";
  if (s == "terminate") return PreemptionAction::kTerminate;
  if (s == "pause") return PreemptionAction::kPause;
  return Expected(path, "terminate or pause", node);
}

absl::Status ParseSpot(const YAML::Node& node, absl::string_view path, Provider* p) {
  SCHED_RETURN_IF_ERROR(
      CheckKeys(node, path, {"discount", "preemptions_per_hour", "notice", "on_preempt"}));
  p->offers_spot = true;
  SCHED_RETURN_IF_ERROR(Field(node, path, "discount", true, Number, &p->spot_discount));
  SCHED_RETURN_IF_ERROR(Field(node, path, "preemptions_per_hour", true, Number,
                              &p->spot_preemptions_per_hour));
  SCHED_RETURN_IF_ERROR(Field(node, path, "notice", true, Duration, &p->preemption_notice));
  return Field(node, path, "on_preempt", false, Action, &p->preemption_action);
}

absl::StatusOr<GpuPrice> ParsePrice(const YAML::Node& node, absl::string_view path) {
  SCHED_RETURN_IF_ERROR(CheckKeys(node, path, {"gpu", "on_demand", "spot"}));
  GpuPrice price;
  SCHED_RETURN_IF_ERROR(Field(node, path, "gpu", true, String, &price.gpu));
  SCHED_RETURN_IF_ERROR(Field(node, path, "on_demand", true, Range, &price.on_demand));
  PriceRange spot;
  const bool has_spot = node["spot"].IsDefined() && !node["spot"].IsNull();
  SCHED_RETURN_IF_ERROR(Field(node, path, "spot", false, Range, &spot));
  if (has_spot) price.spot = spot;
  return price;
}

template <typename T, typename Parse>
absl::Status List(const YAML::Node& map, absl::string_view key, Parse parse,
                  std::vector<T>* out) {
  const YAML::Node node = map[std::string(key)];
  if (!node.IsDefined() || node.IsNull()) return absl::OkStatus();
  if (!node.IsSequence()) return Expected(key, "a list", node);
  for (size_t i = 0; i < node.size(); ++i) {
    SCHED_ASSIGN_OR_RETURN(T entry, parse(node[i], absl::StrCat(key, "[", i, "]")));
    out->push_back(std::move(entry));
  }
  return absl::OkStatus();
}

absl::StatusOr<Provider> ParseProvider(const YAML::Node& node, absl::string_view path) {
  SCHED_RETURN_IF_ERROR(CheckKeys(
      node, path, {"name", "local", "electricity_usd_per_kwh", "provisioning", "spot", "prices"}));
  Provider p;
  SCHED_RETURN_IF_ERROR(Field(node, path, "name", true, String, &p.name));
  SCHED_RETURN_IF_ERROR(Field(node, path, "local", false, Bool, &p.local));
  SCHED_RETURN_IF_ERROR(
      Field(node, path, "electricity_usd_per_kwh", false, Number, &p.electricity_usd_per_kwh));
  SCHED_RETURN_IF_ERROR(Field(node, path, "provisioning", false, Duration, &p.provisioning_time));
  const YAML::Node spot = node["spot"];
  if (spot.IsDefined() && !spot.IsNull()) {
    SCHED_RETURN_IF_ERROR(ParseSpot(spot, Child(path, "spot"), &p));
  }
  const YAML::Node prices = node["prices"];
  if (prices.IsDefined() && !prices.IsNull()) {
    if (!prices.IsSequence()) return Expected(Child(path, "prices"), "a list", prices);
    for (size_t i = 0; i < prices.size(); ++i) {
      SCHED_ASSIGN_OR_RETURN(GpuPrice price,
                             ParsePrice(prices[i], absl::StrCat(path, ".prices[", i, "]")));
      p.prices.push_back(std::move(price));
    }
  }
  SCHED_RETURN_IF_ERROR(Within(path, ValidateProvider(p)));
  return p;
}

absl::StatusOr<std::vector<int64_t>> SizeList(const YAML::Node& node, absl::string_view path) {
  if (!node.IsSequence()) return Expected(path, "a list of sizes", node);
  std::vector<int64_t> out;
  for (size_t i = 0; i < node.size(); ++i) {
    SCHED_ASSIGN_OR_RETURN(int64_t size, Size(node[i], absl::StrCat(path, "[", i, "]")));
    out.push_back(size);
  }
  return out;
}

absl::StatusOr<int32_t> Count(const YAML::Node& node, absl::string_view path) {
  SCHED_ASSIGN_OR_RETURN(double v, Number(node, path));
  if (v != std::floor(v) || std::abs(v) > 1e6) return Expected(path, "a whole number", node);
  return static_cast<int32_t>(v);
}

absl::StatusOr<UpgradeData> ParseUpgrades(const YAML::Node& node, absl::string_view path) {
  SCHED_RETURN_IF_ERROR(CheckKeys(node, path, {"ram_usd_per_gib", "ram_kits", "max_gpus"}));
  UpgradeData u;
  SCHED_RETURN_IF_ERROR(Field(node, path, "ram_usd_per_gib", false, Number, &u.ram_usd_per_gib));
  SCHED_RETURN_IF_ERROR(Field(node, path, "ram_kits", false, SizeList, &u.ram_kit_bytes));
  SCHED_RETURN_IF_ERROR(Field(node, path, "max_gpus", false, Count, &u.max_gpus));
  SCHED_RETURN_IF_ERROR(Within(path, ValidateUpgrades(u)));
  return u;
}

absl::StatusOr<CatalogData> ParseDocument(const YAML::Node& root) {
  // An override that is all comments changes nothing; an empty base fails Catalog::Create.
  if (!root.IsDefined() || root.IsNull()) return CatalogData{};
  if (!root.IsMap()) return Expected("document", "a mapping", root);
  SCHED_RETURN_IF_ERROR(
      CheckKeys(root, "", {"as_of", "reference_gpu", "gpus", "providers", "upgrades"}));
  CatalogData data;
  SCHED_RETURN_IF_ERROR(Field(root, "", "as_of", false, String, &data.as_of));
  SCHED_RETURN_IF_ERROR(Field(root, "", "reference_gpu", false, String, &data.reference_gpu));
  SCHED_RETURN_IF_ERROR(List(root, "gpus", ParseGpu, &data.gpus));
  SCHED_RETURN_IF_ERROR(List(root, "providers", ParseProvider, &data.providers));
  const YAML::Node upgrades = root["upgrades"];
  if (upgrades.IsDefined() && !upgrades.IsNull()) {
    SCHED_ASSIGN_OR_RETURN(data.upgrades, ParseUpgrades(upgrades, "upgrades"));
  }
  return data;
}

absl::Status InSource(absl::string_view source, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(source, ": ", s.message()));
}

}  // namespace

absl::StatusOr<int64_t> ParseCatalogSize(absl::string_view text) {
  static constexpr std::pair<absl::string_view, double> kUnits[] = {
      {"kib", 1024.0}, {"mib", 1048576.0}, {"gib", 1073741824.0}, {"tib", 1099511627776.0},
      {"kb", 1e3},     {"mb", 1e6},        {"gb", 1e9},           {"tb", 1e12},
      {"b", 1.0}};
  const std::string s = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  absl::string_view number = s;
  double scale = 1;
  for (const auto& [unit, factor] : kUnits) {
    if (absl::EndsWith(number, unit)) {
      number.remove_suffix(unit.size());
      scale = factor;
      break;
    }
  }
  number = absl::StripAsciiWhitespace(number);
  double v = 0;
  if (number.empty() || !absl::SimpleAtod(number, &v) || !std::isfinite(v) || v < 0) {
    return absl::InvalidArgumentError(absl::StrCat("not a size: \"", text, "\""));
  }
  const double bytes = std::round(v * scale);
  if (bytes >= 9.2e18) return absl::InvalidArgumentError(absl::StrCat("too large: ", text));
  return static_cast<int64_t>(bytes);
}

absl::StatusOr<CatalogData> ParseCatalogYaml(absl::string_view text, absl::string_view source) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ":", e.mark.line + 1, ":",
                                                   e.mark.column + 1, ": not YAML: ", e.msg));
  }
  absl::StatusOr<CatalogData> data = ParseDocument(root);
  if (!data.ok()) return InSource(source, data.status());
  return data;
}

absl::StatusOr<CatalogData> ReadCatalogFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the catalog file"));
  std::stringstream text;
  text << in.rdbuf();
  return ParseCatalogYaml(text.str(), path);
}

absl::StatusOr<Catalog> LoadCatalog(const std::string& base_path,
                                    const std::vector<std::string>& override_paths) {
  SCHED_ASSIGN_OR_RETURN(CatalogData data, ReadCatalogFile(base_path));
  for (const std::string& path : override_paths) {
    SCHED_ASSIGN_OR_RETURN(CatalogData over, ReadCatalogFile(path));
    data = MergeCatalogData(std::move(data), over);
  }
  absl::StatusOr<Catalog> catalog = Catalog::Create(std::move(data));
  if (catalog.ok()) return catalog;
  std::vector<std::string> sources = {base_path};
  sources.insert(sources.end(), override_paths.begin(), override_paths.end());
  return InSource(absl::StrJoin(sources, " + "), catalog.status());
}

}  // namespace sched::cost
