#include "server/provision/autoscale_config.h"

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace sched::provision {
namespace {

using nlohmann::json;

absl::Status Invalid(const std::string& path, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", reason));
}

std::string Child(const std::string& path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

// YAML as JSON: plain scalars that read as booleans or numbers become those, quoted ones and the
// rest strings; the provider's config section goes to its program in this form.
absl::StatusOr<json> ToJson(const YAML::Node& node, const std::string& path, int depth) {
  if (depth > 32) return Invalid(path, "nested too deep");
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return json(nullptr);
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      if (node.Tag() == "!") return json(s);  // quoted
      const std::string lower = absl::AsciiStrToLower(s);
      if (lower == "true") return json(true);
      if (lower == "false") return json(false);
      int64_t i = 0;
      if (absl::SimpleAtoi(s, &i)) return json(i);
      double d = 0;
      if (absl::SimpleAtod(s, &d) && std::isfinite(d) && lower != "inf" && lower != "nan") {
        return json(d);
      }
      return json(s);
    }
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (size_t i = 0; i < node.size(); ++i) {
        SCHED_ASSIGN_OR_RETURN(json v, ToJson(node[i], absl::StrCat(path, "[", i, "]"), depth + 1));
        out.push_back(std::move(v));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      json out = json::object();
      for (auto it = node.begin(); it != node.end(); ++it) {
        if (!it->first.IsScalar()) return Invalid(path, "keys must be strings");
        const std::string key = it->first.Scalar();
        SCHED_ASSIGN_OR_RETURN(out[key], ToJson(it->second, Child(path, key), depth + 1));
      }
      return out;
    }
  }
  return Invalid(path, "unreadable");
}

std::string Shown(const json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? absl::StrCat(s.substr(0, 57), "...") : s;
}

absl::Status CheckKeys(const json& obj, const std::string& path,
                       const std::vector<absl::string_view>& known) {
  if (!obj.is_object()) return Invalid(path.empty() ? "(top)" : path, "expected a mapping");
  for (const auto& [key, value] : obj.items()) {
    bool found = false;
    for (absl::string_view k : known) found = found || k == key;
    if (!found) {
      return Invalid(Child(path, key),
                     absl::StrCat("unknown key (known: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

bool Has(const json& obj, const char* key) { return obj.contains(key) && !obj[key].is_null(); }

absl::StatusOr<std::string> String(const json& obj, const std::string& path, const char* key,
                                   size_t max_size = 256) {
  const json& v = obj[key];
  if (!v.is_string())
    return Invalid(Child(path, key), absl::StrCat("expected a string, got ", Shown(v)));
  std::string s = v.get<std::string>();
  if (s.size() > max_size) return Invalid(Child(path, key), absl::StrCat("longer than ", max_size));
  return s;
}

absl::StatusOr<double> Number(const json& obj, const std::string& path, const char* key, double min,
                              double max) {
  const json& v = obj[key];
  if (!v.is_number() || !std::isfinite(v.get<double>())) {
    return Invalid(Child(path, key), absl::StrCat("expected a number, got ", Shown(v)));
  }
  const double d = v.get<double>();
  if (d < min || d > max) {
    return Invalid(Child(path, key), absl::StrCat("must be in [", min, ", ", max, "], got ", d));
  }
  return d;
}

absl::StatusOr<absl::Duration> Duration(const json& obj, const std::string& path, const char* key) {
  const json& v = obj[key];
  absl::Duration d;
  if (!v.is_string() || !absl::ParseDuration(v.get<std::string>(), &d) ||
      d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return Invalid(
        Child(path, key),
        absl::StrCat("expected a positive duration like \"90s\" or \"5m\", got ", Shown(v)));
  }
  return d;
}

bool IsProviderName(absl::string_view s) {
  if (s.empty() || s.size() > 32) return false;
  for (char c : s) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-')) return false;
  }
  return s.front() != '-' && s.back() != '-';
}

bool IsOfferId(absl::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s) {
    if (!(absl::ascii_isalnum(c) || c == '.' || c == '_' || c == ':' || c == '-')) return false;
  }
  return true;
}

absl::StatusOr<ProviderConfig> ParseProvider(const json& p, const std::string& path) {
  SCHED_RETURN_IF_ERROR(CheckKeys(
      p, path, {"name", "program", "advertise_provider", "max_nodes", "timeouts", "config"}));
  ProviderConfig c;
  if (!Has(p, "name")) return Invalid(Child(path, "name"), "missing");
  SCHED_ASSIGN_OR_RETURN(c.name, String(p, path, "name"));
  if (!IsProviderName(c.name)) {
    return Invalid(Child(path, "name"),
                   absl::StrCat("must be 1-32 of a-z, 0-9 and '-', got \"", c.name, "\""));
  }
  if (!Has(p, "program")) return Invalid(Child(path, "program"), "missing");
  SCHED_ASSIGN_OR_RETURN(c.program, String(p, path, "program", 4096));
  if (c.program.empty()) return Invalid(Child(path, "program"), "empty");
  c.advertise_provider = c.name == "local" ? "local-rented" : c.name;
  if (Has(p, "advertise_provider")) {
    SCHED_ASSIGN_OR_RETURN(c.advertise_provider, String(p, path, "advertise_provider", 64));
    if (c.advertise_provider.empty() || absl::AsciiStrToLower(c.advertise_provider) == "local") {
      return Invalid(Child(path, "advertise_provider"),
                     "must name a provider other than \"local\" (the user's own machines)");
    }
  }
  if (Has(p, "max_nodes")) {
    SCHED_ASSIGN_OR_RETURN(double n, Number(p, path, "max_nodes", 0, 10000));
    c.max_nodes = static_cast<int>(n);
  }
  if (Has(p, "timeouts")) {
    const json& t = p["timeouts"];
    const std::string tp = Child(path, "timeouts");
    SCHED_RETURN_IF_ERROR(CheckKeys(t, tp, {"offers", "create", "status", "delete"}));
    if (Has(t, "offers")) {
      SCHED_ASSIGN_OR_RETURN(c.offers_timeout, Duration(t, tp, "offers"));
    }
    if (Has(t, "create")) {
      SCHED_ASSIGN_OR_RETURN(c.create_timeout, Duration(t, tp, "create"));
    }
    if (Has(t, "status")) {
      SCHED_ASSIGN_OR_RETURN(c.status_timeout, Duration(t, tp, "status"));
    }
    if (Has(t, "delete")) {
      SCHED_ASSIGN_OR_RETURN(c.delete_timeout, Duration(t, tp, "delete"));
    }
  }
  if (Has(p, "config")) {
    if (!p["config"].is_object()) return Invalid(Child(path, "config"), "expected a mapping");
    c.config = p["config"];
  }
  return c;
}

}  // namespace

absl::StatusOr<AutoscaleConfig> ParseAutoscaleConfig(const std::string& yaml) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("not YAML: ", e.what()));
  }
  SCHED_ASSIGN_OR_RETURN(json j, ToJson(root, "", 0));
  SCHED_RETURN_IF_ERROR(
      CheckKeys(j, "",
                {"interval", "idle_timeout", "provisioning_timeout", "offer_backoff",
                 "offers_refresh", "status_interval", "backoff_base", "backoff_max", "max_nodes",
                 "max_dollars_per_hour", "max_jobs_per_pass", "schedd_address", "providers"}));
  AutoscaleConfig c;
  const std::pair<const char*, absl::Duration*> durations[] = {
      {"interval", &c.interval},
      {"idle_timeout", &c.idle_timeout},
      {"provisioning_timeout", &c.provisioning_timeout},
      {"offer_backoff", &c.offer_backoff},
      {"offers_refresh", &c.offers_refresh},
      {"status_interval", &c.status_interval},
      {"backoff_base", &c.backoff_base},
      {"backoff_max", &c.backoff_max}};
  for (const auto& [key, out] : durations) {
    if (Has(j, key)) {
      SCHED_ASSIGN_OR_RETURN(*out, Duration(j, "", key));
    }
  }
  if (Has(j, "max_nodes")) {
    SCHED_ASSIGN_OR_RETURN(double n, Number(j, "", "max_nodes", 0, 10000));
    c.max_nodes = static_cast<int>(n);
  }
  if (Has(j, "max_dollars_per_hour")) {
    SCHED_ASSIGN_OR_RETURN(c.max_dollars_per_hour, Number(j, "", "max_dollars_per_hour", 0, 1e6));
  }
  if (Has(j, "max_jobs_per_pass")) {
    SCHED_ASSIGN_OR_RETURN(double n, Number(j, "", "max_jobs_per_pass", 1, 1e6));
    c.max_jobs_per_pass = static_cast<size_t>(n);
  }
  if (Has(j, "schedd_address")) {
    SCHED_ASSIGN_OR_RETURN(c.schedd_address, String(j, "", "schedd_address"));
  }
  if (!Has(j, "providers") || !j["providers"].is_array() || j["providers"].empty()) {
    return Invalid("providers", "expected a list of at least one provider");
  }
  std::set<std::string> names;
  for (size_t i = 0; i < j["providers"].size(); ++i) {
    const std::string path = absl::StrCat("providers[", i, "]");
    SCHED_ASSIGN_OR_RETURN(ProviderConfig p, ParseProvider(j["providers"][i], path));
    if (!names.insert(p.name).second) {
      return Invalid(Child(path, "name"), absl::StrCat("\"", p.name, "\" is named twice"));
    }
    c.providers.push_back(std::move(p));
  }
  return c;
}

absl::StatusOr<AutoscaleConfig> LoadAutoscaleConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<AutoscaleConfig> c = ParseAutoscaleConfig(text.str());
  if (!c.ok()) {
    return absl::Status(c.status().code(), absl::StrCat(path, ": ", c.status().message()));
  }
  return c;
}

absl::StatusOr<Offer> ParseOffer(const json& o, const ProviderConfig& provider,
                                 const cost::Catalog* catalog) {
  const std::string path = "offer";
  // Keys this version does not know are passed over: providers may say more.
  if (!o.is_object()) return Invalid(path, "expected an object");
  Offer offer;
  offer.provider = provider.name;
  if (!Has(o, "id")) return Invalid("offer.id", "missing");
  SCHED_ASSIGN_OR_RETURN(offer.id, String(o, path, "id"));
  if (!IsOfferId(offer.id)) {
    return Invalid("offer.id", absl::StrCat("must be 1-128 of letters, digits, '.', '_', ':' or "
                                            "'-', got \"",
                                            offer.id, "\""));
  }
  const std::string where = absl::StrCat("offer ", offer.id);
  NodeCapabilities& caps = offer.caps;
  caps.provider = provider.advertise_provider;
  for (const char* key : {"cpus", "memory_gib", "price_per_hour"}) {
    if (!Has(o, key)) return Invalid(Child(where, key), "missing");
  }
  SCHED_ASSIGN_OR_RETURN(double cpus, Number(o, where, "cpus", 0.001, 100000));
  caps.cpu_millis = std::llround(cpus * 1000);
  SCHED_ASSIGN_OR_RETURN(double mem, Number(o, where, "memory_gib", 0.001, 1 << 24));
  caps.memory_bytes = std::llround(mem * (1 << 30));
  if (Has(o, "disk_gib")) {
    SCHED_ASSIGN_OR_RETURN(double disk, Number(o, where, "disk_gib", 0, 1 << 24));
    caps.disk_bytes = std::llround(disk * (1 << 30));
  }
  SCHED_ASSIGN_OR_RETURN(caps.price_per_hour, Number(o, where, "price_per_hour", 0, 100000));
  if (Has(o, "spot")) {
    if (!o["spot"].is_boolean()) return Invalid(Child(where, "spot"), "expected true or false");
    caps.spot = o["spot"].get<bool>();
  }
  if (Has(o, "region")) {
    SCHED_ASSIGN_OR_RETURN(caps.region, String(o, where, "region", 128));
  }
  if (Has(o, "instance_type")) {
    SCHED_ASSIGN_OR_RETURN(caps.instance_type, String(o, where, "instance_type", 128));
  }
  int64_t gpu_count = 0;
  if (Has(o, "gpu_count")) {
    SCHED_ASSIGN_OR_RETURN(double n, Number(o, where, "gpu_count", 0, 64));
    if (n != std::floor(n)) return Invalid(Child(where, "gpu_count"), "must be a whole number");
    gpu_count = static_cast<int64_t>(n);
  }
  std::string gpu;
  if (Has(o, "gpu")) {
    SCHED_ASSIGN_OR_RETURN(gpu, String(o, where, "gpu", 128));
  }
  if (gpu_count > 0 && gpu.empty()) return Invalid(Child(where, "gpu"), "missing: gpu_count > 0");
  const cost::GpuModel* model =
      catalog != nullptr && !gpu.empty() ? catalog->FindGpu(gpu) : nullptr;
  int64_t gpu_memory = model != nullptr ? model->memory_bytes : 0;
  if (Has(o, "gpu_memory_gib")) {
    SCHED_ASSIGN_OR_RETURN(double g, Number(o, where, "gpu_memory_gib", 0, 1 << 20));
    gpu_memory = std::llround(g * (1 << 30));
  }
  if (gpu_count > 0 && gpu_memory <= 0) {
    return Invalid(Child(where, "gpu_memory_gib"),
                   absl::StrCat("missing, and the catalog does not know GPU \"", gpu, "\""));
  }
  for (int64_t i = 0; i < gpu_count; ++i) {
    GpuDevice d;
    d.index = static_cast<uint32_t>(i);
    d.model = model != nullptr ? model->name() : gpu;
    d.memory_bytes = gpu_memory;
    caps.gpus.push_back(std::move(d));
  }
  offer.provisioning_time = absl::Minutes(5);
  if (catalog != nullptr) {
    const cost::Provider* known = catalog->FindProvider(caps.provider);
    if (known != nullptr && known->provisioning_time > absl::ZeroDuration()) {
      offer.provisioning_time = known->provisioning_time;
    }
  }
  if (Has(o, "provisioning_seconds")) {
    SCHED_ASSIGN_OR_RETURN(double secs, Number(o, where, "provisioning_seconds", 0, 86400));
    offer.provisioning_time = absl::Seconds(secs);
  }
  return offer;
}

}  // namespace sched::provision
