#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <variant>

#include "absl/time/time.h"
#include "client/checkpoint_commands.h"
#include "client/commands.h"
#include "client/cost_commands.h"
#include "client/token_commands.h"

namespace sched::client {

using CommandArgs =
    std::variant<SubmitArgs, EstimateArgs, GetArgs, DescribeArgs, LogsArgs, CancelArgs,
                 NodeActionArgs, BudgetSetArgs, BudgetGetArgs, CostReportArgs, CostAdviceArgs,
                 CheckpointListArgs, CheckpointGetArgs, TokenCreateArgs, TokenListArgs,
                 TokenRevokeArgs>;

struct Invocation {
  std::optional<std::string> server;      // --server, when given
  std::optional<std::string> token;       // --token, when given
  std::optional<std::string> token_file;  // --token_file, when given
  absl::Duration timeout = absl::Seconds(10);
  CommandArgs command;
};

struct ParsedCommandLine {
  // Set when there is a command to run; otherwise exit with exit_code.
  std::optional<Invocation> invocation;
  int exit_code = 0;  // 0 after --help, 2 after a usage error
};

inline constexpr int kExitUsage = 2;

// Parses schedctl's arguments (argv[0] is the program name). --help output goes to `out`; a
// usage error prints "error: <what>" and the command's usage line to `err`.
ParsedCommandLine ParseCommandLine(int argc, const char* const* argv, std::ostream& out,
                                   std::ostream& err);

}  // namespace sched::client
