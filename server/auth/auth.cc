#include "server/auth/auth.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "grpc/grpc_security_constants.h"
#include "server/auth/tls.h"
#include "server/convert/convert.h"

namespace sched::auth {
namespace {

constexpr absl::string_view kTokenPrefix = "a/t/";
constexpr size_t kIdBytes = 8;       // 16 hex characters
constexpr size_t kSecretBytes = 32;  // 64 hex characters
constexpr size_t kMaxProjects = 100;
constexpr size_t kMaxLabels = 64;
constexpr size_t kMaxTextBytes = 256;
constexpr int64_t kMaxTokenTtlSeconds = int64_t{100} * 365 * 86400;

std::string Hex(const unsigned char* data, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 15];
  }
  return out;
}

absl::StatusOr<std::string> RandomHex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  if (RAND_bytes(buf.data(), static_cast<int>(bytes)) != 1) {
    return absl::InternalError("no random bytes from OpenSSL");
  }
  return Hex(buf.data(), bytes);
}

std::string Sha256Hex(absl::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return Hex(digest, sizeof(digest));
}

bool IsHex(absl::string_view s, size_t len) {
  return s.size() == len && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// Printable ASCII without spaces, 1..kMaxTextBytes: project names, label keys and values.
absl::Status CheckWord(absl::string_view what, absl::string_view s) {
  if (s.empty() || s.size() > kMaxTextBytes ||
      !std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && c < 127; })) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be 1 to ", kMaxTextBytes,
                                                   " printable characters without spaces"));
  }
  return absl::OkStatus();
}

const absl::Status& BadToken() {
  static const absl::Status* s = new absl::Status(
      absl::UnauthenticatedError("the token is unknown, wrong, expired, revoked or used up"));
  return *s;
}

}  // namespace

absl::string_view ActionName(Action action) {
  switch (action) {
    case Action::kRead:
      return "read";
    case Action::kSubmit:
      return "submit";
    case Action::kCancel:
      return "cancel";
    case Action::kOperate:
      return "operate (cordon, drain, budgets)";
    case Action::kTokens:
      return "manage tokens";
    case Action::kAgentJoin:
      return "join as an agent";
    case Action::kAgentConnect:
      return "connect as an agent";
    case Action::kAgentWork:
      return "act as an agent";
  }
  return "?";
}

absl::string_view RoleName(v1::Role role) {
  switch (role) {
    case v1::ROLE_ADMIN:
      return "admin";
    case v1::ROLE_MEMBER:
      return "member";
    case v1::ROLE_VIEWER:
      return "viewer";
    case v1::ROLE_AGENT:
      return "agent";
    default:
      return "none";
  }
}

absl::StatusOr<v1::Role> RoleFromName(absl::string_view name) {
  for (v1::Role r : {v1::ROLE_ADMIN, v1::ROLE_MEMBER, v1::ROLE_VIEWER, v1::ROLE_AGENT}) {
    if (absl::EqualsIgnoreCase(name, RoleName(r))) return r;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown role \"", name, "\": admin, member, viewer or agent"));
}

bool RoleAllows(v1::Role role, Action action) {
  switch (role) {
    case v1::ROLE_ADMIN:
      return true;
    case v1::ROLE_MEMBER:
      return action == Action::kRead || action == Action::kSubmit || action == Action::kCancel;
    case v1::ROLE_VIEWER:
      return action == Action::kRead;
    case v1::ROLE_AGENT:
      return action == Action::kAgentJoin || action == Action::kAgentConnect ||
             action == Action::kAgentWork;
    default:
      return false;
  }
}

bool Caller::InProject(absl::string_view project) const {
  if (projects.empty()) return role != v1::ROLE_MEMBER;
  return std::find(projects.begin(), projects.end(), project) != projects.end();
}

std::string Caller::Name() const {
  if (!authenticated) return "local";
  if (!node.empty()) return absl::StrCat("node ", node, " (agent)");
  if (token_id.empty()) return "unauthenticated";
  return absl::StrCat("token ", token_id, " (", RoleName(role), ")");
}

// ---- TokenStore

absl::StatusOr<std::unique_ptr<TokenStore>> TokenStore::Open(Store* store, const Clock* clock) {
  std::unique_ptr<TokenStore> ts(new TokenStore(store, clock));
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> rows =
      store->ScanRecords(std::string(kTokenPrefix));
  if (!rows.ok() && rows.status().code() != absl::StatusCode::kUnimplemented) {
    return rows.status();
  }
  if (rows.ok()) {
    absl::MutexLock lock(&ts->mu_);
    for (const auto& [key, value] : *rows) {
      v1::StoredToken t;
      if (!t.ParseFromString(value) || !IsHex(t.token().id(), 2 * kIdBytes)) {
        return absl::DataLossError(absl::StrCat("token record ", key, " does not parse"));
      }
      ts->tokens_[t.token().id()] = std::move(t);
    }
  }
  return ts;
}

absl::Status TokenStore::Save(const v1::StoredToken& t) {
  return store_->PutRecord(absl::StrCat(kTokenPrefix, t.token().id()), t.SerializeAsString());
}

absl::StatusOr<v1::CreateTokenResponse> TokenStore::Create(const v1::CreateTokenRequest& req,
                                                           const std::string& created_by) {
  if (req.role() == v1::ROLE_UNSPECIFIED || !v1::Role_IsValid(req.role())) {
    return absl::InvalidArgumentError("role: admin, member, viewer or agent");
  }
  if (req.role() == v1::ROLE_MEMBER && req.projects().empty()) {
    return absl::InvalidArgumentError("a member token names at least one project");
  }
  if ((req.role() == v1::ROLE_ADMIN || req.role() == v1::ROLE_AGENT) && !req.projects().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("an ", RoleName(req.role()), " token is not scoped to projects"));
  }
  if (req.projects_size() > static_cast<int>(kMaxProjects)) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxProjects, " projects"));
  }
  for (const std::string& p : req.projects()) {
    if (absl::Status s = CheckWord("a project name", p); !s.ok()) return s;
  }
  if (req.role() != v1::ROLE_AGENT && !req.labels().empty()) {
    return absl::InvalidArgumentError("only agent tokens carry node labels");
  }
  if (req.labels_size() > static_cast<int>(kMaxLabels)) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxLabels, " labels"));
  }
  for (const auto& [k, v] : req.labels()) {
    if (absl::Status s = CheckWord("a label key", k); !s.ok()) return s;
    if (absl::Status s = CheckWord("a label value", v); !s.ok()) return s;
  }
  if (req.description().size() > kMaxTextBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("description: at most ", kMaxTextBytes, " bytes"));
  }
  if (req.ttl().seconds() < 0 || req.ttl().nanos() < 0) {
    return absl::InvalidArgumentError("ttl must not be negative");
  }
  if (req.ttl().seconds() > kMaxTokenTtlSeconds) {
    return absl::InvalidArgumentError(
        absl::StrCat("ttl: at most ", kMaxTokenTtlSeconds / (86400 * 365),
                     " years; leave it out for a token that does not expire"));
  }
  if (req.uses() < 0) return absl::InvalidArgumentError("uses must not be negative");
  if (req.uses() > 0 && req.role() != v1::ROLE_AGENT) {
    return absl::InvalidArgumentError("only agent tokens count uses (joins)");
  }
  absl::StatusOr<std::string> secret = RandomHex(kSecretBytes);
  if (!secret.ok()) return secret.status();
  v1::StoredToken stored;
  v1::Token& t = *stored.mutable_token();
  t.set_role(req.role());
  *t.mutable_projects() = req.projects();
  *t.mutable_labels() = req.labels();
  t.set_description(req.description());
  const absl::Time now = clock_->Now();
  TimeToProto(now, t.mutable_create_time());
  const absl::Duration ttl =
      absl::Seconds(req.ttl().seconds()) + absl::Nanoseconds(req.ttl().nanos());
  if (ttl > absl::ZeroDuration()) TimeToProto(now + ttl, t.mutable_expire_time());
  t.set_uses_left(req.uses() > 0 ? req.uses() : -1);
  t.set_created_by(created_by);
  stored.set_secret_sha256(Sha256Hex(*secret));
  absl::MutexLock lock(&mu_);
  do {
    absl::StatusOr<std::string> id = RandomHex(kIdBytes);
    if (!id.ok()) return id.status();
    t.set_id(*id);
  } while (tokens_.contains(t.id()));
  if (absl::Status s = Save(stored); !s.ok()) return s;
  tokens_[t.id()] = stored;
  v1::CreateTokenResponse resp;
  *resp.mutable_token() = t;
  resp.set_secret(absl::StrCat(t.id(), ".", *secret));
  return resp;
}

std::vector<v1::Token> TokenStore::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Token> out;
  for (const auto& [id, t] : tokens_) out.push_back(t.token());
  std::sort(out.begin(), out.end(), [](const v1::Token& a, const v1::Token& b) {
    const absl::Time ta = TimeFromProto(a.create_time()), tb = TimeFromProto(b.create_time());
    return ta != tb ? ta < tb : a.id() < b.id();
  });
  return out;
}

absl::StatusOr<v1::Token> TokenStore::Revoke(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = tokens_.find(id);
  if (it == tokens_.end()) return absl::NotFoundError(absl::StrCat("no token ", id));
  if (!it->second.token().revoked()) {
    v1::StoredToken next = it->second;
    next.mutable_token()->set_revoked(true);
    if (absl::Status s = Save(next); !s.ok()) return s;
    it->second = std::move(next);
  }
  return it->second.token();
}

absl::StatusOr<v1::Token> TokenStore::Verify(absl::string_view presented, bool join) {
  const size_t dot = presented.find('.');
  if (dot == absl::string_view::npos) return BadToken();
  const absl::string_view id = presented.substr(0, dot);
  const absl::string_view secret = presented.substr(dot + 1);
  if (!IsHex(id, 2 * kIdBytes) || !IsHex(secret, 2 * kSecretBytes)) return BadToken();
  const std::string digest = Sha256Hex(secret);
  absl::MutexLock lock(&mu_);
  auto it = tokens_.find(id);
  if (it == tokens_.end()) return BadToken();
  v1::StoredToken& t = it->second;
  if (t.secret_sha256().size() != digest.size() ||
      CRYPTO_memcmp(t.secret_sha256().data(), digest.data(), digest.size()) != 0) {
    return BadToken();
  }
  if (t.token().revoked()) return BadToken();
  if (t.token().has_expire_time() && clock_->Now() >= TimeFromProto(t.token().expire_time())) {
    return BadToken();
  }
  if (join && t.token().uses_left() >= 0) {
    if (t.token().uses_left() == 0) return BadToken();
    v1::StoredToken next = t;
    next.mutable_token()->set_uses_left(t.token().uses_left() - 1);
    if (absl::Status s = Save(next); !s.ok()) return s;
    t = std::move(next);
  }
  return t.token();
}

absl::Status TokenStore::UseJoin(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = tokens_.find(id);
  if (it == tokens_.end()) return BadToken();
  v1::StoredToken& t = it->second;
  if (t.token().uses_left() < 0) return absl::OkStatus();
  if (t.token().uses_left() == 0) return BadToken();
  v1::StoredToken next = t;
  next.mutable_token()->set_uses_left(t.token().uses_left() - 1);
  if (absl::Status s = Save(next); !s.ok()) return s;
  t = std::move(next);
  return absl::OkStatus();
}

bool TokenStore::HasAdmin() const {
  absl::MutexLock lock(&mu_);
  for (const auto& [id, t] : tokens_) {
    if (t.token().role() == v1::ROLE_ADMIN && !t.token().revoked() &&
        !t.token().has_expire_time()) {
      return true;
    }
  }
  return false;
}

// ---- NodeIdentities

namespace {
constexpr absl::string_view kCertPrefix = "a/c/";
}  // namespace

absl::StatusOr<std::unique_ptr<NodeIdentities>> NodeIdentities::Open(Store* store) {
  std::unique_ptr<NodeIdentities> ids(new NodeIdentities(store));
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> rows =
      store->ScanRecords(std::string(kCertPrefix));
  if (!rows.ok()) return rows.status();
  absl::MutexLock lock(&ids->mu_);
  for (const auto& [key, value] : *rows) {
    Entry e;
    if (!e.ParseFromString(value) || e.node().empty()) {
      return absl::DataLossError(absl::StrCat("certificate record ", key, " does not parse"));
    }
    ids->certs_[key.substr(kCertPrefix.size())] = std::move(e);
  }
  return ids;
}

absl::Status NodeIdentities::Save(const std::string& serial, const Entry& e) {
  return store_->PutRecord(absl::StrCat(kCertPrefix, serial), e.SerializeAsString());
}

absl::Status NodeIdentities::Issued(const std::string& serial_hex, const std::string& node,
                                    absl::Time not_after,
                                    const google::protobuf::Map<std::string, std::string>& labels) {
  absl::MutexLock lock(&mu_);
  Entry e;
  e.set_node(node);
  e.set_not_after_unix(absl::ToUnixSeconds(not_after));
  *e.mutable_labels() = labels;
  if (absl::Status s = Save(serial_hex, e); !s.ok()) return s;
  certs_[serial_hex] = std::move(e);
  return absl::OkStatus();
}

std::map<std::string, std::string> NodeIdentities::Labels(const std::string& serial_hex) const {
  absl::MutexLock lock(&mu_);
  auto it = certs_.find(serial_hex);
  if (it == certs_.end()) return {};
  return std::map<std::string, std::string>(it->second.labels().begin(), it->second.labels().end());
}

absl::StatusOr<int> NodeIdentities::Revoke(const std::string& node, absl::Time now) {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (auto& [serial, e] : certs_) {
    if (e.node() != node || e.revoked()) continue;
    Entry next = e;
    next.set_revoked(true);
    next.set_revoked_unix_ms(absl::ToUnixMillis(now));
    if (absl::Status s = Save(serial, next); !s.ok()) return s;
    e = std::move(next);
    ++n;
  }
  return n;
}

absl::Time NodeIdentities::RevokedAt(const std::string& node) const {
  absl::MutexLock lock(&mu_);
  absl::Time at = absl::InfinitePast();
  for (const auto& [serial, e] : certs_) {
    if (e.node() == node && e.revoked()) {
      at = std::max(at, absl::FromUnixMillis(e.revoked_unix_ms()));
    }
  }
  return at;
}

bool NodeIdentities::HasLive(const std::string& node, absl::Time now) const {
  absl::MutexLock lock(&mu_);
  for (const auto& [serial, e] : certs_) {
    if (e.node() == node && !e.revoked() && absl::FromUnixSeconds(e.not_after_unix()) > now) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<std::string> NodeIdentities::Check(const std::string& serial_hex) const {
  absl::MutexLock lock(&mu_);
  auto it = certs_.find(serial_hex);
  if (it == certs_.end()) {
    return absl::UnauthenticatedError("schedd did not issue this certificate: join again");
  }
  if (it->second.revoked()) {
    return absl::UnauthenticatedError(
        absl::StrCat("node ", it->second.node(),
                     " was revoked: it may join again only with a join token made since"));
  }
  return it->second.node();
}

// ---- Authorizer

absl::StatusOr<Caller> Authorizer::Authenticate(const grpc::ServerContextBase& ctx, bool join) {
  Caller caller;
  if (!required_) return caller;
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    // An agent's node certificate, checked by TLS against schedd's CA, then here against the
    // certificates schedd signed and has not revoked.
    std::shared_ptr<const grpc::AuthContext> peer = ctx.auth_context();
    std::vector<grpc::string_ref> pem;
    if (identities_ != nullptr && peer != nullptr && peer->IsPeerAuthenticated()) {
      pem = peer->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
    }
    if (!pem.empty()) {
      absl::StatusOr<CertificateInfo> cert =
          ReadCertificate(absl::string_view(pem[0].data(), pem[0].size()));
      if (!cert.ok()) return absl::UnauthenticatedError("the client certificate does not parse");
      absl::StatusOr<std::string> node = identities_->Check(cert->serial_hex);
      if (!node.ok()) return node.status();
      if (*node != NodeFromCommonName(cert->common_name)) {
        return absl::UnauthenticatedError("the client certificate names another node");
      }
      caller.authenticated = true;
      caller.role = v1::ROLE_AGENT;
      caller.node = *node;
      caller.token_id = absl::StrCat("cert:", cert->serial_hex);
      return caller;
    }
    return absl::UnauthenticatedError(
        "this schedd requires a token: pass --token or set SCHED_TOKEN (schedctl), "
        "--token_file (sched-agent)");
  }
  absl::string_view value(it->second.data(), it->second.size());
  if (!absl::ConsumePrefix(&value, "Bearer ")) {
    return absl::UnauthenticatedError("authorization metadata must be \"Bearer <token>\"");
  }
  absl::StatusOr<v1::Token> token = tokens_->Verify(value, join);
  if (!token.ok()) return token.status();
  caller.authenticated = true;
  caller.token_id = token->id();
  caller.role = token->role();
  caller.projects.assign(token->projects().begin(), token->projects().end());
  caller.token_create_time = TimeFromProto(token->create_time());
  caller.token_labels.insert(token->labels().begin(), token->labels().end());
  bool first_use;
  {
    absl::MutexLock lock(&seen_mu_);
    first_use = seen_tokens_.insert(token->id()).second;
  }
  if (first_use) {
    Audit(ctx, caller, "token_used", absl::StrCat("token ", token->id()), "", absl::OkStatus());
  }
  return caller;
}

void Authorizer::Audit(const grpc::ServerContextBase& ctx, const Caller& caller, std::string action,
                       std::string target, std::string project, const absl::Status& result) const {
  if (audit_ == nullptr) return;
  AuditEntry e;
  e.who = caller.Name();
  e.peer = ctx.peer();
  e.action = std::move(action);
  e.target = std::move(target);
  e.project = std::move(project);
  e.result = result.ok()
                 ? "ok"
                 : absl::StrCat(absl::StatusCodeToString(result.code()), ": ", result.message());
  audit_->Record(std::move(e));
}

absl::Status Authorizer::Allow(const Caller& caller, Action action,
                               absl::string_view project) const {
  if (!RoleAllows(caller.role, action)) {
    return absl::PermissionDeniedError(
        absl::StrCat(caller.Name(), " may not ", ActionName(action)));
  }
  if (tls() && caller.role == v1::ROLE_AGENT && caller.node.empty() &&
      (action == Action::kAgentConnect || action == Action::kAgentWork)) {
    return absl::PermissionDeniedError(absl::StrCat(
        caller.Name(), " may not ", ActionName(action),
        " with a token over TLS: join first (AgentService.Join) and use the node certificate"));
  }
  if (tls() && action == Action::kAgentJoin && !caller.node.empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat(caller.Name(), " already has a certificate: renew it instead"));
  }
  if (!project.empty()) return CheckProject(caller, action, project);
  return absl::OkStatus();
}

absl::Status Authorizer::UseJoin(const Caller& caller) const {
  if (!caller.authenticated || caller.token_id.empty() || !caller.node.empty()) {
    return absl::OkStatus();
  }
  return tokens_->UseJoin(caller.token_id);
}

absl::Status Authorizer::CheckNode(const Caller& caller, absl::string_view node) {
  if (caller.node.empty() || caller.node == node) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(caller.Name(), " may not act as node ", node));
}

absl::StatusOr<Caller> Authorizer::Check(const grpc::ServerContextBase& ctx, Action action,
                                         absl::string_view project) {
  // Joins are counted only over TLS, by the Join handler once a join has passed its checks
  // (UseJoin): without TLS an agent reconnects with its token as often as it needs.
  absl::StatusOr<Caller> caller = Authenticate(ctx);
  if (!caller.ok()) {
    Caller nobody;
    nobody.authenticated = true;
    Audit(ctx, nobody, absl::StrCat("denied: ", ActionName(action)), "", std::string(project),
          caller.status());
    return caller.status();
  }
  if (absl::Status s = Allow(*caller, action, project); !s.ok()) {
    Audit(ctx, *caller, absl::StrCat("denied: ", ActionName(action)), "", std::string(project), s);
    return s;
  }
  return caller;
}

absl::Status Authorizer::CheckProject(const Caller& caller, Action action,
                                      absl::string_view project) {
  if (caller.InProject(project)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat(caller.Name(), " may not ", ActionName(action), " in project ", project,
                   " (its projects: ", absl::StrJoin(caller.projects, ", "), ")"));
}

}  // namespace sched::auth
