// The Kubernetes manifests in deploy/k8s hold together the way docs/kubernetes.md says, checked
// without a cluster: schedd is one pod on one volume, every port that leads to it is the one it
// listens on, agents dial the Service by a name schedd's certificate carries, the join token
// comes only from a Secret, each agent DaemonSet takes all the GPUs of its nodes, and every
// container runs as a user other than root or says why not.
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "yaml-cpp/yaml.h"

namespace sched {
namespace {

namespace fs = std::filesystem;

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsSubsetOf;
using ::testing::UnorderedElementsAreArray;

constexpr char kInstance[] = "app.kubernetes.io/instance";
constexpr char kGpu[] = "nvidia.com/gpu";
constexpr char kGpuCount[] = "nvidia.com/gpu.count";
constexpr char kGpuPresent[] = "nvidia.com/gpu.present";
constexpr char kRootReason[] = "root-reason.";  // + container name: why it runs as root

fs::path K8sDir() { return fs::path(SCHED_SOURCE_DIR) / "deploy" / "k8s"; }

// ---- Reading YAML without exceptions ----
//
// yaml-cpp throws on a subscript of a scalar or of a key that is not there, and assigning one
// Node to another rewrites the node assigned to. Every lookup below goes through Get(), which
// never throws, and walks with reset(), which only rebinds.

// node[key] when node is a mapping holding key; otherwise an undefined node.
YAML::Node Get(const YAML::Node& node, const std::string& key) {
  if (!node.IsDefined() || !node.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  const YAML::Node value = node[key];
  return value.IsDefined() ? value : YAML::Node(YAML::NodeType::Undefined);
}

YAML::Node At(const YAML::Node& node, std::initializer_list<const char*> path) {
  YAML::Node at = node;
  for (const char* key : path) at.reset(Get(at, key));
  return at;
}

// The text of a scalar; empty for anything else.
std::string Str(const YAML::Node& node) {
  return node.IsDefined() && node.IsScalar() ? node.Scalar() : std::string();
}

std::optional<int> Int(const YAML::Node& node) {
  int value = 0;
  if (!absl::SimpleAtoi(Str(node), &value)) return std::nullopt;
  return value;
}

// The elements of a sequence; none for anything else.
std::vector<YAML::Node> Items(const YAML::Node& node) {
  std::vector<YAML::Node> items;
  if (!node.IsDefined() || !node.IsSequence()) return items;
  for (std::size_t i = 0; i < node.size(); ++i) items.push_back(node[i]);
  return items;
}

std::vector<std::string> Strs(const YAML::Node& node) {
  std::vector<std::string> out;
  for (const YAML::Node& item : Items(node)) out.push_back(Str(item));
  return out;
}

// The element of a sequence of mappings whose `key` is `value`, or an undefined node.
YAML::Node Find(const YAML::Node& sequence, const std::string& key, const std::string& value) {
  for (const YAML::Node& item : Items(sequence)) {
    if (Str(Get(item, key)) == value) return item;
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

// Sets the scalar at `path` to "*" where there is one.
void Blank(YAML::Node node, std::initializer_list<const char*> path) {
  if (!At(node, path).IsDefined()) return;
  YAML::Node at = node;
  for (const char* key : path) at.reset(at[std::string(key)]);
  at = std::string("*");
}

// ---- The manifests ----

// The .yaml files of deploy/k8s, by name.
std::vector<std::string> YamlFiles() {
  std::vector<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(K8sDir())) {
    const std::string ext = entry.path().extension().string();
    if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml")) {
      names.push_back(entry.path().filename().string());
    }
  }
  return names;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

struct Manifest {
  std::string file;  // its name in deploy/k8s
  YAML::Node object;
};

// Every document of every manifest (kustomization.yaml is not one).
std::vector<Manifest> LoadManifests() {
  std::vector<Manifest> all;
  for (const std::string& name : YamlFiles()) {
    if (name == "kustomization.yaml") continue;
    std::vector<YAML::Node> docs;
    try {
      docs = YAML::LoadAllFromFile((K8sDir() / name).string());
    } catch (const YAML::Exception& e) {
      ADD_FAILURE() << name << ": " << e.what();
      continue;
    }
    for (const YAML::Node& doc : docs) {
      if (doc.IsDefined() && !doc.IsNull()) all.push_back({name, doc});
    }
  }
  return all;
}

std::string Name(const YAML::Node& object) { return Str(At(object, {"metadata", "name"})); }

YAML::Node PodSpec(const YAML::Node& workload) {
  return At(workload, {"spec", "template", "spec"});
}

YAML::Node PodLabels(const YAML::Node& workload) {
  return At(workload, {"spec", "template", "metadata", "labels"});
}

YAML::Node PodAnnotations(const YAML::Node& workload) {
  return At(workload, {"spec", "template", "metadata", "annotations"});
}

std::vector<YAML::Node> AllContainers(const YAML::Node& pod_spec) {
  std::vector<YAML::Node> all = Items(Get(pod_spec, "initContainers"));
  for (const YAML::Node& c : Items(Get(pod_spec, "containers"))) all.push_back(c);
  return all;
}

YAML::Node Container(const YAML::Node& workload, const std::string& name) {
  return Find(Get(PodSpec(workload), "containers"), "name", name);
}

// The value of --flag=VALUE (or "--flag" "VALUE") in a container's args.
std::optional<std::string> Flag(const YAML::Node& container, const std::string& flag) {
  const std::vector<std::string> args = Strs(Get(container, "args"));
  const std::string bare = absl::StrCat("--", flag);
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (absl::StartsWith(args[i], bare + "=")) return args[i].substr(bare.size() + 1);
    if (args[i] == bare && i + 1 < args.size()) return args[i + 1];
  }
  return std::nullopt;
}

// host:port split; the port is -1 when there is none.
std::string HostOf(const std::string& address) { return address.substr(0, address.rfind(':')); }
int PortOf(const std::string& address) {
  const std::size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) {
    return -1;
  }
  return port;
}

int ContainerPort(const YAML::Node& container, const std::string& name) {
  return Int(Get(Find(Get(container, "ports"), "name", name), "containerPort")).value_or(-1);
}

// A targetPort or a probe's port: a number, or the name of one of the container's ports.
int ResolvePort(const YAML::Node& port, const YAML::Node& container) {
  if (std::optional<int> number = Int(port)) return *number;
  return ContainerPort(container, Str(port));
}

// The port of a probe, whichever kind it is.
YAML::Node ProbePort(const YAML::Node& probe) {
  for (const char* kind : {"grpc", "tcpSocket", "httpGet"}) {
    if (Get(probe, kind).IsDefined()) return Get(Get(probe, kind), "port");
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

YAML::Node Env(const YAML::Node& container, const std::string& name) {
  return Find(Get(container, "env"), "name", name);
}

// The volume mounted in `container` at exactly `path`, from the pod's volumes.
YAML::Node VolumeAt(const YAML::Node& pod_spec, const YAML::Node& container,
                    const std::string& path) {
  const std::string volume =
      Str(Get(Find(Get(container, "volumeMounts"), "mountPath", path), "name"));
  return Find(Get(pod_spec, "volumes"), "name", volume);
}

// Whether the Service's selector picks pods with these labels.
bool Selects(const YAML::Node& service, const YAML::Node& pod_labels) {
  const YAML::Node selector = At(service, {"spec", "selector"});
  if (!selector.IsDefined() || !selector.IsMap() || selector.size() == 0) return false;
  for (YAML::const_iterator it = selector.begin(); it != selector.end(); ++it) {
    if (Str(Get(pod_labels, Str(it->first))) != Str(it->second)) return false;
  }
  return true;
}

// A DaemonSet with the fields that name its node shape blanked: the rest must be the same in
// every agent DaemonSet.
std::string ShapeFree(const YAML::Node& daemonset) {
  YAML::Node copy = YAML::Clone(daemonset);
  Blank(copy, {"metadata", "name"});
  Blank(copy, {"metadata", "labels", kInstance});
  Blank(copy, {"spec", "selector", "matchLabels", kInstance});
  Blank(copy, {"spec", "template", "metadata", "labels", kInstance});
  Blank(copy, {"spec", "template", "spec", "nodeSelector", kGpuCount});
  if (PodSpec(copy).IsDefined()) {
    YAML::Node pod = copy["spec"]["template"]["spec"];
    if (Get(pod, "containers").IsSequence()) {
      YAML::Node containers = pod["containers"];
      for (std::size_t i = 0; i < containers.size(); ++i) {
        Blank(containers[i], {"resources", "limits", kGpu});
        Blank(containers[i], {"resources", "requests", kGpu});
      }
    }
    if (Get(pod, "volumes").IsSequence()) {
      YAML::Node volumes = pod["volumes"];
      for (std::size_t i = 0; i < volumes.size(); ++i) {
        if (!At(volumes[i], {"configMap", "items"}).IsSequence()) continue;
        YAML::Node items = volumes[i]["configMap"]["items"];
        for (std::size_t j = 0; j < items.size(); ++j) Blank(items[j], {"key"});
      }
    }
  }
  return YAML::Dump(copy);
}

class K8sManifestsTest : public ::testing::Test {
 protected:
  K8sManifestsTest() : manifests_(LoadManifests()) {}

  std::vector<YAML::Node> OfKind(const std::string& kind) const {
    std::vector<YAML::Node> out;
    for (const Manifest& m : manifests_) {
      if (Str(Get(m.object, "kind")) == kind) out.push_back(m.object);
    }
    return out;
  }

  YAML::Node One(const std::string& kind, const std::string& name) const {
    for (const YAML::Node& object : OfKind(kind)) {
      if (Name(object) == name) return object;
    }
    return YAML::Node(YAML::NodeType::Undefined);
  }

  std::vector<YAML::Node> Workloads() const {
    std::vector<YAML::Node> out;
    for (const char* kind : {"StatefulSet", "DaemonSet", "Deployment", "ReplicaSet", "Job"}) {
      for (const YAML::Node& w : OfKind(kind)) out.push_back(w);
    }
    return out;
  }

  YAML::Node Schedd() const { return One("StatefulSet", "schedd"); }
  YAML::Node ScheddContainer() const { return Container(Schedd(), "schedd"); }

  std::vector<Manifest> manifests_;
};

TEST(K8sKustomizationTest, ListsEveryFileInTheFolder) {
  YAML::Node kustomization;
  try {
    kustomization = YAML::LoadFile((K8sDir() / "kustomization.yaml").string());
  } catch (const YAML::Exception& e) {
    FAIL() << "kustomization.yaml: " << e.what();
  }
  const std::vector<std::string> listed = Strs(Get(kustomization, "resources"));
  EXPECT_EQ(std::set<std::string>(listed.begin(), listed.end()).size(), listed.size())
      << "a file is listed twice";
  std::vector<std::string> files;
  for (const std::string& name : YamlFiles()) {
    if (name != "kustomization.yaml") files.push_back(name);
  }
  ASSERT_FALSE(files.empty());
  EXPECT_THAT(listed, UnorderedElementsAreArray(files));
}

TEST_F(K8sManifestsTest, EveryObjectIsNamedAndLivesInTheSchedNamespace) {
  ASSERT_FALSE(manifests_.empty());
  for (const Manifest& m : manifests_) {
    const std::string kind = Str(Get(m.object, "kind"));
    EXPECT_FALSE(Str(Get(m.object, "apiVersion")).empty()) << m.file;
    EXPECT_FALSE(kind.empty()) << m.file;
    EXPECT_FALSE(Name(m.object).empty()) << m.file << ": a " << kind << " without a name";
    if (kind != "Namespace") {
      EXPECT_EQ(Str(At(m.object, {"metadata", "namespace"})), "sched")
          << m.file << ": " << kind << " " << Name(m.object);
    }
  }
  EXPECT_TRUE(One("Namespace", "sched").IsDefined());
}

TEST_F(K8sManifestsTest, ScheddIsOnePodOnOneVolumeMountedAtItsDataDir) {
  const YAML::Node sts = Schedd();
  ASSERT_TRUE(sts.IsDefined()) << "no StatefulSet schedd";
  EXPECT_EQ(Str(At(sts, {"spec", "replicas"})), "1");
  // Nothing else runs a second schedd on another store, and nothing scales this one.
  int schedds = 0;
  for (const YAML::Node& w : Workloads()) {
    for (const YAML::Node& c : AllContainers(PodSpec(w))) {
      if (Str(Get(c, "image")).find("/schedd:") != std::string::npos) ++schedds;
    }
  }
  EXPECT_EQ(schedds, 1);
  EXPECT_TRUE(OfKind("HorizontalPodAutoscaler").empty());
  EXPECT_EQ(Str(At(sts, {"spec", "persistentVolumeClaimRetentionPolicy", "whenDeleted"})),
            "Retain");

  const std::vector<YAML::Node> claims = Items(At(sts, {"spec", "volumeClaimTemplates"}));
  ASSERT_EQ(claims.size(), 1u);
  const std::string claim = Name(claims[0]);
  EXPECT_THAT(Strs(At(claims[0], {"spec", "accessModes"})), ElementsAre("ReadWriteOnce"));
  EXPECT_EQ(Str(At(claims[0], {"spec", "resources", "requests", "storage"})), "20Gi");
  // A pod volume of the same name would take the claim's place.
  EXPECT_FALSE(Find(Get(PodSpec(sts), "volumes"), "name", claim).IsDefined());

  const YAML::Node schedd = ScheddContainer();
  ASSERT_TRUE(schedd.IsDefined()) << "no container schedd";
  const std::optional<std::string> data_dir = Flag(schedd, "data_dir");
  ASSERT_TRUE(data_dir.has_value()) << "schedd has no --data_dir";
  const YAML::Node mount = Find(Get(schedd, "volumeMounts"), "name", claim);
  EXPECT_EQ(Str(Get(mount, "mountPath")), *data_dir);
  EXPECT_FALSE(Get(mount, "subPath").IsDefined());
  // The volume is made writable for schedd's group.
  EXPECT_EQ(Str(At(sts, {"spec", "template", "spec", "securityContext", "fsGroup"})), "10001");
}

TEST_F(K8sManifestsTest, ScheddsPortsServicesAndProbesAreWhereItListens) {
  const YAML::Node sts = Schedd();
  const YAML::Node schedd = ScheddContainer();
  ASSERT_TRUE(schedd.IsDefined());
  const int grpc = PortOf(Flag(schedd, "listen").value_or(""));
  const int metrics = PortOf(Flag(schedd, "metrics_listen").value_or(""));
  ASSERT_GT(grpc, 0) << "schedd has no --listen=HOST:PORT";
  ASSERT_GT(metrics, 0) << "schedd has no --metrics_listen=HOST:PORT";
  EXPECT_EQ(ContainerPort(schedd, "grpc"), grpc);
  EXPECT_EQ(ContainerPort(schedd, "metrics"), metrics);

  for (const char* probe : {"startupProbe", "readinessProbe", "livenessProbe"}) {
    const YAML::Node p = Get(schedd, probe);
    ASSERT_TRUE(p.IsDefined()) << "schedd has no " << probe;
    EXPECT_EQ(ResolvePort(ProbePort(p), schedd), grpc) << probe;
  }

  std::vector<std::string> selecting;
  for (const YAML::Node& svc : OfKind("Service")) {
    if (!Selects(svc, PodLabels(sts))) continue;
    selecting.push_back(Name(svc));
    for (const YAML::Node& port : Items(At(svc, {"spec", "ports"}))) {
      const YAML::Node target =
          Get(port, "targetPort").IsDefined() ? Get(port, "targetPort") : Get(port, "port");
      const std::string name = Str(Get(port, "name"));
      if (name == "grpc") {
        EXPECT_EQ(ResolvePort(target, schedd), grpc) << "Service " << Name(svc);
      } else if (name == "metrics") {
        EXPECT_EQ(ResolvePort(target, schedd), metrics) << "Service " << Name(svc);
      } else {
        ADD_FAILURE() << "Service " << Name(svc) << " has a port \"" << name
                      << "\" that is neither grpc nor metrics";
      }
    }
  }
  EXPECT_THAT(selecting,
              UnorderedElementsAreArray(std::vector<std::string>{"schedd", "schedd-headless"}));

  const YAML::Node headless = One("Service", Str(At(sts, {"spec", "serviceName"})));
  EXPECT_EQ(Str(At(headless, {"spec", "clusterIP"})), "None")
      << "the StatefulSet's serviceName must be its headless Service";

  const YAML::Node service = One("Service", "schedd");
  EXPECT_NE(Str(At(service, {"spec", "clusterIP"})), "None");
  const YAML::Node scrape = At(service, {"metadata", "annotations"});
  EXPECT_EQ(Str(Get(scrape, "prometheus.io/scrape")), "true");
  EXPECT_EQ(Int(Get(scrape, "prometheus.io/port")).value_or(-1), metrics);
  EXPECT_EQ(Str(Get(scrape, "prometheus.io/path")), "/metrics");
}

TEST_F(K8sManifestsTest, ScheddServesTlsAndRequiresTokens) {
  const YAML::Node schedd = ScheddContainer();
  ASSERT_TRUE(schedd.IsDefined());
  // Beyond loopback, --tls=auto is TLS with schedd's own CA, and tokens are required.
  const std::string host = HostOf(Flag(schedd, "listen").value_or(""));
  EXPECT_TRUE(host == "0.0.0.0" || host == "[::]") << "--listen host " << host;
  const std::string tls = Flag(schedd, "tls").value_or("auto");
  EXPECT_TRUE(tls == "auto" || tls == "on") << "--tls=" << tls;
  EXPECT_FALSE(Flag(schedd, "insecure_remote_no_tls_no_auth").has_value());
}

TEST_F(K8sManifestsTest, AgentsDialTheScheddServiceByANameItsCertificateCarries) {
  const std::vector<YAML::Node> agents = OfKind("DaemonSet");
  ASSERT_FALSE(agents.empty());
  const YAML::Node schedd = ScheddContainer();
  ASSERT_TRUE(schedd.IsDefined());
  const int grpc = PortOf(Flag(schedd, "listen").value_or(""));
  const std::vector<std::string> tls_names =
      absl::StrSplit(Flag(schedd, "tls_name").value_or(""), ',');
  for (const YAML::Node& ds : agents) {
    const YAML::Node agent = Container(ds, "sched-agent");
    ASSERT_TRUE(agent.IsDefined()) << Name(ds) << " has no container sched-agent";
    const std::string server = Flag(agent, "server").value_or("");
    const std::vector<std::string> labels = absl::StrSplit(HostOf(server), '.');
    ASSERT_GE(labels.size(), 3u) << Name(ds) << ": --server=" << server
                                 << " is not SERVICE.NAMESPACE.svc:PORT";
    EXPECT_EQ(labels[2], "svc") << server;
    const YAML::Node service = One("Service", labels[0]);
    ASSERT_TRUE(service.IsDefined()) << server << " names no Service of these manifests";
    EXPECT_EQ(Str(At(service, {"metadata", "namespace"})), labels[1]) << server;
    EXPECT_NE(Str(At(service, {"spec", "clusterIP"})), "None") << server;
    EXPECT_TRUE(Selects(service, PodLabels(Schedd()))) << server;
    const YAML::Node port =
        Find(At(service, {"spec", "ports"}), "port", absl::StrCat(PortOf(server)));
    ASSERT_TRUE(port.IsDefined()) << "Service " << labels[0] << " has no port " << PortOf(server);
    EXPECT_EQ(ResolvePort(Get(port, "targetPort"), schedd), grpc) << server;
    EXPECT_THAT(tls_names, Contains(HostOf(server)))
        << "schedd's certificate does not name " << HostOf(server) << " (--tls_name)";
  }
}

TEST_F(K8sManifestsTest, TheJoinTokenComesOnlyFromASecret) {
  for (const YAML::Node& w : Workloads()) {
    for (const YAML::Node& c : AllContainers(PodSpec(w))) {
      const std::string where = absl::StrCat(Name(w), "/", Str(Get(c, "name")));
      for (const std::string& arg : Strs(Get(c, "args"))) {
        EXPECT_FALSE(absl::StartsWith(arg, "--token")) << where << ": " << arg;
        EXPECT_THAT(arg, ::testing::Not(HasSubstr("TOKEN"))) << where << ": " << arg;
      }
      for (const std::string& arg : Strs(Get(c, "command"))) {
        EXPECT_THAT(arg, ::testing::Not(HasSubstr("TOKEN"))) << where << ": " << arg;
      }
      for (const YAML::Node& env : Items(Get(c, "env"))) {
        if (Str(Get(env, "name")).find("TOKEN") == std::string::npos) continue;
        EXPECT_FALSE(Get(env, "value").IsDefined())
            << where << ": " << Str(Get(env, "name")) << " holds a token in the manifest";
        EXPECT_TRUE(At(env, {"valueFrom", "secretKeyRef"}).IsDefined())
            << where << ": " << Str(Get(env, "name")) << " does not come from a Secret";
      }
    }
  }
  for (const YAML::Node& ds : OfKind("DaemonSet")) {
    const YAML::Node agent = Container(ds, "sched-agent");
    const YAML::Node ref = At(Env(agent, "SCHED_TOKEN"), {"valueFrom", "secretKeyRef"});
    ASSERT_TRUE(ref.IsDefined()) << Name(ds) << ": no SCHED_TOKEN from a Secret";
    const YAML::Node secret = One("Secret", Str(Get(ref, "name")));
    ASSERT_TRUE(secret.IsDefined()) << "no Secret " << Str(Get(ref, "name"));
    const std::string key = Str(Get(ref, "key"));
    const bool has_key = Get(Get(secret, "stringData"), key).IsDefined() ||
                         Get(Get(secret, "data"), key).IsDefined();
    EXPECT_TRUE(has_key) << "Secret " << Name(secret) << " has no key " << key;
    EXPECT_FALSE(Env(agent, "SCHED_TOKEN_FILE").IsDefined()) << Name(ds);
  }
}

TEST_F(K8sManifestsTest, EachAgentIsNamedAfterItsNode) {
  for (const YAML::Node& ds : OfKind("DaemonSet")) {
    const YAML::Node agent = Container(ds, "sched-agent");
    ASSERT_TRUE(agent.IsDefined()) << Name(ds);
    EXPECT_EQ(Flag(agent, "name").value_or(""), "$(NODE_NAME)") << Name(ds);
    EXPECT_EQ(Str(At(Env(agent, "NODE_NAME"), {"valueFrom", "fieldRef", "fieldPath"})),
              "spec.nodeName")
        << Name(ds);
  }
}

TEST_F(K8sManifestsTest, ThePinAndTheNodeSettingsComeFromTheConfigMap) {
  const std::vector<std::string> node_settings = {
      "labels",        "advertise_gpus",  "price_per_hour",
      "spot",          "provider",        "region",
      "instance_type", "power_watts",     "electricity_per_kwh",
      "hardware_cost", "amortize_months", "price_schedule"};
  std::set<std::string> settings_files;
  for (const YAML::Node& ds : OfKind("DaemonSet")) {
    const YAML::Node agent = Container(ds, "sched-agent");
    ASSERT_TRUE(agent.IsDefined()) << Name(ds);

    const std::string pin = Flag(agent, "ca_pin").value_or("");
    ASSERT_TRUE(absl::StartsWith(pin, "$(") && absl::EndsWith(pin, ")"))
        << Name(ds) << ": --ca_pin=" << pin << " does not come from the environment";
    const std::string pin_var = pin.substr(2, pin.size() - 3);
    const YAML::Node pin_ref = At(Env(agent, pin_var), {"valueFrom", "configMapKeyRef"});
    ASSERT_TRUE(pin_ref.IsDefined()) << Name(ds) << ": " << pin_var << " is not from a ConfigMap";
    const YAML::Node pins = One("ConfigMap", Str(Get(pin_ref, "name")));
    EXPECT_TRUE(absl::StartsWith(Str(Get(Get(pins, "data"), Str(Get(pin_ref, "key")))), "sha256:"))
        << "ConfigMap " << Str(Get(pin_ref, "name")) << " has no pin under "
        << Str(Get(pin_ref, "key"));

    const std::string config = Flag(agent, "config").value_or("");
    ASSERT_FALSE(config.empty()) << Name(ds) << " has no --config";
    const fs::path config_path(config);
    const YAML::Node volume = VolumeAt(PodSpec(ds), agent, config_path.parent_path().string());
    const YAML::Node config_map = One("ConfigMap", Str(At(volume, {"configMap", "name"})));
    ASSERT_TRUE(config_map.IsDefined()) << Name(ds) << ": " << config << " is not from a ConfigMap";
    std::string key = config_path.filename().string();
    if (At(volume, {"configMap", "items"}).IsDefined()) {
      key = Str(Get(Find(At(volume, {"configMap", "items"}), "path", key), "key"));
    }
    EXPECT_TRUE(settings_files.insert(key).second) << key << " serves two DaemonSets";
    const std::string text = Str(Get(Get(config_map, "data"), key));
    ASSERT_FALSE(text.empty()) << "ConfigMap " << Name(config_map) << " has no " << key;
    YAML::Node settings;
    try {
      settings = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      FAIL() << key << ": " << e.what();
    }
    ASSERT_TRUE(settings.IsMap()) << key << " is not a mapping";
    const YAML::Node& view = settings;
    std::vector<std::string> keys;
    for (YAML::const_iterator it = view.begin(); it != view.end(); ++it) {
      keys.push_back(Str(it->first));
    }
    EXPECT_THAT(keys, IsSubsetOf(node_settings)) << key << " sets what the agent does not read";
    EXPECT_THAT(keys, Contains("price_per_hour")) << key;
  }
}

TEST_F(K8sManifestsTest, TheAgentKeepsItsIdentityOnTheNodeAndServesMetrics) {
  for (const YAML::Node& ds : OfKind("DaemonSet")) {
    const YAML::Node agent = Container(ds, "sched-agent");
    ASSERT_TRUE(agent.IsDefined()) << Name(ds);
    const std::string work_dir = Flag(agent, "work_dir").value_or("");
    const YAML::Node volume = VolumeAt(PodSpec(ds), agent, work_dir);
    EXPECT_TRUE(Get(volume, "hostPath").IsDefined())
        << Name(ds) << ": --work_dir=" << work_dir
        << " must be on the node, or a restarted pod loses the node's certificate";

    const int metrics = PortOf(Flag(agent, "metrics_listen").value_or(""));
    EXPECT_GT(metrics, 0) << Name(ds);
    EXPECT_EQ(ContainerPort(agent, "metrics"), metrics) << Name(ds);
    EXPECT_EQ(Int(Get(PodAnnotations(ds), "prometheus.io/port")).value_or(-1), metrics) << Name(ds);
  }
}

TEST_F(K8sManifestsTest, EachAgentDaemonSetTakesEveryGpuOfTheNodesItRunsOn) {
  std::set<std::string> counts;
  for (const YAML::Node& ds : OfKind("DaemonSet")) {
    const YAML::Node pod = PodSpec(ds);
    const YAML::Node selector = Get(pod, "nodeSelector");
    EXPECT_EQ(Str(Get(selector, kGpuPresent)), "true") << Name(ds);
    const std::string count = Str(Get(selector, kGpuCount));
    ASSERT_TRUE(Int(Get(selector, kGpuCount)).has_value())
        << Name(ds) << " selects no " << kGpuCount;
    EXPECT_TRUE(counts.insert(count).second) << "two DaemonSets for nodes of " << count << " GPUs";

    const YAML::Node agent = Container(ds, "sched-agent");
    EXPECT_EQ(Str(Get(At(agent, {"resources", "limits"}), kGpu)), count) << Name(ds);
    const YAML::Node requested = Get(At(agent, {"resources", "requests"}), kGpu);
    if (requested.IsDefined()) {
      EXPECT_EQ(Str(requested), count) << Name(ds);
    }
    // The device plugin picks the devices; nothing overrides what it picked.
    EXPECT_FALSE(Env(agent, "NVIDIA_VISIBLE_DEVICES").IsDefined()) << Name(ds);
    for (const YAML::Node& c : AllContainers(pod)) {
      if (Str(Get(c, "name")) == "sched-agent") continue;
      EXPECT_FALSE(Get(At(c, {"resources", "limits"}), kGpu).IsDefined())
          << Name(ds) << "/" << Str(Get(c, "name")) << " takes GPUs from the agent";
    }
    EXPECT_TRUE(Find(Get(pod, "tolerations"), "key", kGpu).IsDefined())
        << Name(ds) << " does not tolerate the " << kGpu << " taint";
  }
}

TEST_F(K8sManifestsTest, AgentDaemonSetsDifferOnlyInTheirNodeShape) {
  const std::vector<YAML::Node> agents = OfKind("DaemonSet");
  ASSERT_FALSE(agents.empty());
  const std::string first = ShapeFree(agents[0]);
  for (std::size_t i = 1; i < agents.size(); ++i) {
    EXPECT_EQ(ShapeFree(agents[i]), first)
        << Name(agents[i]) << " differs from " << Name(agents[0]) << " in more than its shape";
  }
}

TEST_F(K8sManifestsTest, EveryContainerRunsAsNonRootOrSaysWhy) {
  for (const YAML::Node& w : Workloads()) {
    const YAML::Node pod_security = Get(PodSpec(w), "securityContext");
    for (const YAML::Node& c : AllContainers(PodSpec(w))) {
      const std::string name = Str(Get(c, "name"));
      const std::string where = absl::StrCat(Name(w), "/", name);
      const YAML::Node security = Get(c, "securityContext");
      // The container's settings win over the pod's.
      const auto setting = [&](const char* field) {
        return Get(security, field).IsDefined() ? Str(Get(security, field))
                                                : Str(Get(pod_security, field));
      };
      if (setting("runAsNonRoot") == "true") {
        EXPECT_EQ(setting("runAsUser"), "10001") << where;
      } else {
        EXPECT_FALSE(Str(Get(PodAnnotations(w), absl::StrCat(kRootReason, name))).empty())
            << where << " may run as root, and its pod has no annotation " << kRootReason << name
            << " saying why";
      }
      EXPECT_NE(Str(Get(security, "privileged")), "true") << where;
      EXPECT_EQ(Str(Get(security, "allowPrivilegeEscalation")), "false") << where;
      EXPECT_EQ(Str(Get(security, "readOnlyRootFilesystem")), "true") << where;
      EXPECT_THAT(Strs(At(security, {"capabilities", "drop"})), Contains("ALL")) << where;
    }
  }
}

TEST_F(K8sManifestsTest, TheGuideNamesEveryFileAndEveryArgument) {
  const std::string guide = ReadFile(fs::path(SCHED_SOURCE_DIR) / "docs" / "kubernetes.md");
  ASSERT_FALSE(guide.empty()) << "docs/kubernetes.md is missing";
  for (const std::string& name : YamlFiles()) {
    EXPECT_THAT(guide, HasSubstr(name)) << "docs/kubernetes.md does not mention " << name;
  }
  std::vector<YAML::Node> containers = {ScheddContainer()};
  for (const YAML::Node& ds : OfKind("DaemonSet"))
    containers.push_back(Container(ds, "sched-agent"));
  for (const YAML::Node& c : containers) {
    for (const std::string& arg : Strs(Get(c, "args"))) {
      EXPECT_THAT(guide, HasSubstr(arg)) << "docs/kubernetes.md does not show " << arg;
    }
  }
  EXPECT_THAT(guide, HasSubstr("schedctl token create --role agent --uses"));
}

}  // namespace
}  // namespace sched
