#include "client/token_commands.h"

#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "client/resource_view.h"
#include "client/table.h"
#include "client/units.h"
#include "server/common/status_macros.h"

namespace sched::client {
namespace {

using sched::v1::Token;

// Members and scoped viewers: their projects. An unscoped viewer reads every project; admins
// and agents are not scoped at all.
std::string Projects(const Token& t) {
  if (!t.projects().empty()) return absl::StrJoin(t.projects(), ",");
  return t.role() == sched::v1::ROLE_VIEWER ? "all" : "-";
}

}  // namespace

absl::StatusOr<sched::v1::Role> ParseRole(absl::string_view name) {
  sched::v1::Role role = sched::v1::ROLE_UNSPECIFIED;
  if (!sched::v1::Role_Parse(absl::StrCat("ROLE_", absl::AsciiStrToUpper(name)), &role) ||
      role == sched::v1::ROLE_UNSPECIFIED) {
    return absl::InvalidArgumentError(absl::StrCat("--role: unknown role \"", name,
                                                   "\" (expected admin, member, viewer or agent)"));
  }
  return role;
}

std::string RoleName(sched::v1::Role role) {
  const std::string& name = sched::v1::Role_Name(role);
  if (name.empty()) return absl::StrCat(static_cast<int>(role));
  return absl::AsciiStrToLower(absl::StripPrefix(name, "ROLE_"));
}

std::string CreatedLine(const Token& t, absl::Time now) {
  std::string line = absl::StrCat("token ", t.id(), " created: role ", RoleName(t.role()));
  if (!t.projects().empty()) {
    absl::StrAppend(&line, ", projects ", absl::StrJoin(t.projects(), ","));
  }
  if (t.has_expire_time()) {
    absl::StrAppend(&line, ", expires ", TimeFromNow(t.expire_time(), now));
  } else {
    absl::StrAppend(&line, ", does not expire");
  }
  if (t.uses_left() >= 0) {
    absl::StrAppend(&line, ", ", t.uses_left(), t.uses_left() == 1 ? " join" : " joins");
  }
  absl::StrAppend(&line, "; the line above is the token, shown only this once\n");
  return line;
}

std::vector<std::string> TokenTableHeader() {
  return {"ID", "ROLE", "PROJECTS", "USES-LEFT", "EXPIRES", "CREATED-BY", "REVOKED", "DESCRIPTION"};
}

std::vector<std::string> TokenTableRow(const Token& t, absl::Time now) {
  std::string expires = "never";
  if (std::optional<absl::Time> at = FromTimestamp(t.expire_time())) expires = FromNow(*at, now);
  return {t.id(),
          RoleName(t.role()),
          Projects(t),
          t.uses_left() < 0 ? "-" : absl::StrCat(t.uses_left()),
          expires,
          OrNone(t.created_by()),
          t.revoked() ? "yes" : "no",
          OrNone(t.description())};
}

absl::Status RunTokenCreate(const TokenCreateArgs& args, CommandContext& ctx) {
  SCHED_ASSIGN_OR_RETURN(sched::v1::CreateTokenResponse created,
                         ctx.client.CreateToken(args.request));
  if (!IsTable(args.output)) return PrintDocument(created, args.output, false, ctx.out);
  ctx.out << created.secret() << "\n" << CreatedLine(created.token(), ctx.clock.Now());
  if (!created.ca_pin().empty()) ctx.out << "ca pin: " << created.ca_pin() << "\n";
  return absl::OkStatus();
}

absl::Status RunTokenList(const TokenListArgs& args, CommandContext& ctx) {
  SCHED_ASSIGN_OR_RETURN(sched::v1::ListTokensResponse list, ctx.client.ListTokens());
  if (!args.id.empty()) {
    sched::v1::ListTokensResponse one;
    for (const Token& t : list.tokens()) {
      if (t.id() == args.id) *one.add_tokens() = t;
    }
    if (one.tokens().empty())
      return absl::NotFoundError(absl::StrCat("token ", args.id, " not found"));
    if (!IsTable(args.output)) return PrintDocument(one.tokens(0), args.output, false, ctx.out);
    list = std::move(one);
  }
  if (!IsTable(args.output)) return PrintDocument(list, args.output, false, ctx.out);
  if (list.tokens().empty()) {
    ctx.out << "No tokens. Make one with: schedctl token create --role ROLE\n";
    return absl::OkStatus();
  }
  Table table(TokenTableHeader());
  const absl::Time now = ctx.clock.Now();
  for (const Token& t : list.tokens()) table.AddRow(TokenTableRow(t, now));
  table.Print(ctx.out);
  return absl::OkStatus();
}

absl::Status RunTokenRevoke(const TokenRevokeArgs& args, CommandContext& ctx) {
  SCHED_ASSIGN_OR_RETURN(Token token, ctx.client.RevokeToken(args.id));
  ctx.out << "token " << (token.id().empty() ? args.id : token.id()) << " revoked\n";
  return absl::OkStatus();
}

}  // namespace sched::client
