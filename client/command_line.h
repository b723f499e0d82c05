#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <variant>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/checkpoint_commands.h"
#include "client/commands.h"
#include "client/cost_commands.h"
#include "client/token_commands.h"

namespace sched::client {

using CommandArgs =
    std::variant<SubmitArgs, EstimateArgs, GetArgs, DescribeArgs, LogsArgs, CancelArgs,
                 NodeActionArgs, NodeRevokeArgs, BudgetSetArgs, BudgetGetArgs, CostReportArgs,
                 CostAdviceArgs, CheckpointListArgs, CheckpointGetArgs, TokenCreateArgs,
                 TokenListArgs, TokenRevokeArgs, BackupArgs>;

struct Invocation {
  std::optional<std::string> server;      // --server, when given
  std::optional<std::string> token;       // --token, when given
  std::optional<std::string> token_file;  // --token_file, when given
  std::optional<std::string> ca_file;     // --ca_file, when given
  std::optional<std::string> ca_pin;      // --ca_pin, when given (checked by ParseCaPin)
  absl::Duration timeout = absl::Seconds(10);
  CommandArgs command;
};

struct ParsedCommandLine {
  // Set when there is a command to run; otherwise exit with exit_code.
  std::optional<Invocation> invocation;
  int exit_code = 0;  // 0 after --help, 2 after a usage error
};

inline constexpr int kExitUsage = 2;

// A CA pin, "sha256:" and 64 hex digits of any case, in the lower case schedd prints: what
// --ca_pin and $SCHED_CA_PIN take. INVALID_ARGUMENT naming `source` for anything else.
absl::StatusOr<std::string> ParseCaPin(absl::string_view text, absl::string_view source);

// Parses schedctl's arguments (argv[0] is the program name). --help output goes to `out`; a
// usage error prints "error: <what>" and the command's usage line to `err`.
ParsedCommandLine ParseCommandLine(int argc, const char* const* argv, std::ostream& out,
                                   std::ostream& err);

}  // namespace sched::client
