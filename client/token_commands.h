#pragma once

// schedctl's API token commands: token create|list|revoke (and `get tokens`).

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/commands.h"
#include "sched/v1/token_service.pb.h"

namespace sched::client {

struct TokenCreateArgs {
  sched::v1::CreateTokenRequest request;
  OutputFormat output = OutputFormat::kTable;
};
// Prints the token ("<id>.<secret>") on a line of its own, the only time it is shown, then
// CreatedLine, then "ca pin: sha256:<hex>" when schedd serves TLS (agents pass it as --ca_pin).
// JSON/YAML: the whole CreateTokenResponse, secret and pin included.
absl::Status RunTokenCreate(const TokenCreateArgs& args, CommandContext& ctx);

struct TokenListArgs {
  std::string id;  // empty: every token; else only this one (NOT_FOUND when schedd has none)
  OutputFormat output = OutputFormat::kTable;
};
// A table (TokenTableHeader), or the ListTokensResponse (a Token for `id`) as JSON/YAML. No
// secrets: schedd keeps none to show.
absl::Status RunTokenList(const TokenListArgs& args, CommandContext& ctx);

struct TokenRevokeArgs {
  std::string id;
};
// Prints "token <id> revoked".
absl::Status RunTokenRevoke(const TokenRevokeArgs& args, CommandContext& ctx);

// "admin", "member", "viewer", "agent" (any case) and their Role; INVALID_ARGUMENT naming them
// for anything else.
absl::StatusOr<sched::v1::Role> ParseRole(absl::string_view name);
// "admin" for ROLE_ADMIN; "unspecified" for ROLE_UNSPECIFIED.
std::string RoleName(sched::v1::Role role);

// "token 3f9c0a1b2c3d4e5f created: role agent, expires 2026-11-27T08:00:00Z (in 1h), 5 joins;
// ..." with its newline: projects when it has some, joins when they are limited, and a reminder
// that the token is not shown again.
std::string CreatedLine(const sched::v1::Token& token, absl::Time now);

// Columns: ID ROLE PROJECTS USES-LEFT EXPIRES CREATED-BY REVOKED DESCRIPTION.
std::vector<std::string> TokenTableHeader();
std::vector<std::string> TokenTableRow(const sched::v1::Token& token, absl::Time now);

}  // namespace sched::client
