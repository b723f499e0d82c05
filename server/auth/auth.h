#pragma once
// Who is calling schedd, and whether they may do what they ask.
//
// Callers present an API token ("<id>.<secret>", gRPC metadata `authorization: Bearer ...`).
// Each handler names the Action it performs; a role is granted a fixed set of actions and
// everything else is denied. Members and scoped viewers act only in their projects. When
// authentication is off (schedd on loopback, the workstation alone), every caller is the local
// admin.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"
#include "sched/v1/storage.pb.h"
#include "sched/v1/token_service.pb.h"
#include "server/auth/audit.h"
#include "server/common/clock.h"
#include "server/core/store.h"

namespace sched::auth {

enum class Action {
  kRead,          // jobs, logs, checkpoints, estimates, nodes, budgets, cost reports
  kSubmit,        // a job, in a project
  kCancel,        // a job, in a project
  kOperate,       // cordon and drain nodes, set budgets
  kTokens,        // make, list and revoke tokens
  kAgentJoin,     // get a node certificate over TLS (the handler uses up one of the token's joins)
  kAgentConnect,  // connect as a node
  kAgentWork,     // upload a leased job's checkpoints, download one to resume from
};

absl::string_view ActionName(Action action);
absl::string_view RoleName(v1::Role role);
absl::StatusOr<v1::Role> RoleFromName(absl::string_view name);

// Whether `role` may do `action` at all (projects apart).
bool RoleAllows(v1::Role role, Action action);

struct Caller {
  bool authenticated = false;  // false: authentication is off, the caller is the local admin
  std::string token_id;
  v1::Role role = v1::ROLE_ADMIN;
  std::vector<std::string> projects;  // empty: all (admins, agents, unscoped viewers)
  // Agents over mTLS: the node their certificate names. Empty for token callers.
  std::string node;
  absl::Time token_create_time = absl::InfinitePast();
  // Agent tokens: the labels a node joining with it gets.
  std::map<std::string, std::string> token_labels;

  bool InProject(absl::string_view project) const;
  // "token <id> (<role>)", "node <name> (agent)" or "local".
  std::string Name() const;
};

// Tokens, kept as side records in the Store ("a/t/<id>"), secrets only as sha256.
class TokenStore {
 public:
  static absl::StatusOr<std::unique_ptr<TokenStore>> Open(Store* store, const Clock* clock);

  // INVALID_ARGUMENT for no role, a member without projects, a negative ttl or uses, or bad
  // project names and labels.
  absl::StatusOr<v1::CreateTokenResponse> Create(const v1::CreateTokenRequest& req,
                                                 const std::string& created_by);
  std::vector<v1::Token> List() const;
  // NOT_FOUND for an unknown id. Revoking twice is fine.
  absl::StatusOr<v1::Token> Revoke(const std::string& id);
  // The token `presented` ("<id>.<secret>") names, if the secret matches and it is neither
  // expired, revoked nor out of joins: UNAUTHENTICATED otherwise (one message for all, so a
  // caller learns nothing about which ids exist). `join` also uses up one of an agent token's joins
  // (UseJoin does it once checks pass).
  absl::StatusOr<v1::Token> Verify(absl::string_view presented, bool join);
  // Uses up one of token `id`'s joins (an agent token with a limit): UNAUTHENTICATED when none
  // is left. Called once a join has passed every other check, so a refused join costs none.
  absl::Status UseJoin(const std::string& id);
  bool HasAdmin() const;

 private:
  TokenStore(Store* store, const Clock* clock) : store_(store), clock_(clock) {}
  absl::Status Save(const v1::StoredToken& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Store* const store_;
  const Clock* const clock_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, v1::StoredToken> tokens_ ABSL_GUARDED_BY(mu_);
};

// The node certificates schedd has signed, by serial, kept as side records ("a/c/<serial>"):
// a certificate whose serial is unknown or revoked is refused even though the CA signed it.
class NodeIdentities {
 public:
  static absl::StatusOr<std::unique_ptr<NodeIdentities>> Open(Store* store);
  // Records a certificate just signed for `node`, good until `not_after`.
  absl::Status Issued(const std::string& serial_hex, const std::string& node, absl::Time not_after,
                      const google::protobuf::Map<std::string, std::string>& labels = {});
  // The labels of the join token certificate `serial_hex` came from.
  std::map<std::string, std::string> Labels(const std::string& serial_hex) const;
  // Whether `node` holds a certificate that is neither revoked nor run out at `now`: then no
  // one may join under its name until it is revoked.
  bool HasLive(const std::string& node, absl::Time now) const;
  // Revokes every certificate of `node`: the count revoked (0: it had none).
  absl::StatusOr<int> Revoke(const std::string& node, absl::Time now);
  // When `node` was last revoked (InfinitePast: never). A join token made before then cannot
  // bring it back.
  absl::Time RevokedAt(const std::string& node) const;
  // The node `serial_hex` was issued to, if it is known and not revoked: UNAUTHENTICATED else.
  absl::StatusOr<std::string> Check(const std::string& serial_hex) const;

 private:
  explicit NodeIdentities(Store* store) : store_(store) {}
  using Entry = v1::StoredNodeCertificate;
  absl::Status Save(const std::string& serial, const Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Store* const store_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> certs_ ABSL_GUARDED_BY(mu_);
};

class Authorizer {
 public:
  // `required` false: authentication off, every caller is the local admin. `identities`
  // non-null: schedd serves TLS, agents connect and work with their node certificates.
  Authorizer(TokenStore* tokens, bool required, NodeIdentities* identities = nullptr)
      : tokens_(tokens), required_(required), identities_(identities) {}

  bool required() const { return required_; }
  bool tls() const { return identities_ != nullptr; }

  // Where refusals, first uses of tokens and what handlers report go; null: nowhere.
  void set_audit(AuditLog* audit) { audit_ = audit; }
  // Records what `caller` did from `ctx`'s peer: `result` OK is "ok", else its code and message.
  void Audit(const grpc::ServerContextBase& ctx, const Caller& caller, std::string action,
             std::string target, std::string project, const absl::Status& result) const;

  // The caller of `ctx`, if allowed to do `action` (in `project`, when given):
  // UNAUTHENTICATED for a missing or bad token, PERMISSION_DENIED naming the role and action.
  absl::StatusOr<Caller> Check(const grpc::ServerContextBase& ctx, Action action,
                               absl::string_view project = {});
  // Who is calling, without a verdict (UNAUTHENTICATED as above). `join`: also use up one of
  // an agent token's joins (schedd's own handlers leave it false and call UseJoin instead).
  absl::StatusOr<Caller> Authenticate(const grpc::ServerContextBase& ctx, bool join = false);
  // Whether `caller` may do `action` (in `project`, when given): PERMISSION_DENIED otherwise.
  // Over TLS an agent connects and works only with its node certificate, not its token.
  absl::Status Allow(const Caller& caller, Action action, absl::string_view project = {}) const;
  // For an agent with a node certificate: that `node` is the one it names.
  static absl::Status CheckNode(const Caller& caller, absl::string_view node);
  // Uses up one of the caller's token's joins (see TokenStore::UseJoin).
  absl::Status UseJoin(const Caller& caller) const;
  // For a project learnt after Check (a job's, once it has been read).
  static absl::Status CheckProject(const Caller& caller, Action action, absl::string_view project);

 private:
  TokenStore* const tokens_;
  const bool required_;
  NodeIdentities* const identities_;
  AuditLog* audit_ = nullptr;
  mutable absl::Mutex seen_mu_;
  absl::flat_hash_set<std::string> seen_tokens_ ABSL_GUARDED_BY(seen_mu_);
};

}  // namespace sched::auth
