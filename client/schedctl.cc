#include "client/schedctl.h"

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/command_line.h"
#include "client/commands.h"
#include "grpcpp/support/channel_arguments.h"
#include "server/auth/channel.h"
#include "server/common/status_macros.h"

namespace sched::client {
namespace {

constexpr int kExitFailure = 1;
constexpr int kMaxReceiveMessageBytes = 256 * 1024 * 1024;

std::optional<std::string> GetEnv(const SchedctlEnv& env, const std::string& name) {
  if (env.getenv) return env.getenv(name);
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

std::string ServerAddress(const Invocation& inv, const SchedctlEnv& env) {
  if (inv.server) return *inv.server;
  std::optional<std::string> from_env = GetEnv(env, kServerEnvVar);
  if (from_env && !from_env->empty()) return *from_env;
  return kDefaultServer;
}

// Flags before the environment, a token before a token file; "" when none is given. White space
// around a token is dropped, as ReadTokenFile drops it from a file's line.
absl::StatusOr<std::string> Token(const Invocation& inv, const SchedctlEnv& env) {
  if (inv.token) return std::string(absl::StripAsciiWhitespace(*inv.token));
  if (inv.token_file) return auth::ReadTokenFile(*inv.token_file);
  std::optional<std::string> token = GetEnv(env, kTokenEnvVar);
  if (token) token = std::string(absl::StripAsciiWhitespace(*token));
  if (token && !token->empty()) return *token;
  std::optional<std::string> file = GetEnv(env, kTokenFileEnvVar);
  if (file && !file->empty()) return auth::ReadTokenFile(*file);
  return std::string();
}

// The PEM certificates in `path`: NOT_FOUND when it cannot be read, INVALID_ARGUMENT when it
// holds none.
absl::StatusOr<std::string> ReadCaFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream pem;
  if (!in || !(pem << in.rdbuf())) {
    return absl::NotFoundError(absl::StrCat("cannot read the CA file ", path));
  }
  if (!absl::StrContains(pem.str(), "-----BEGIN CERTIFICATE-----")) {
    return absl::InvalidArgumentError(absl::StrCat(path, " holds no PEM certificate"));
  }
  return pem.str();
}

// The certificate schedd at `address` presents whose pin is `pin`, fetched without trusting it:
// the pin is what makes it trusted.
absl::StatusOr<std::string> PinnedCa(const std::string& address, const std::string& pin,
                                     absl::Duration timeout) {
  SCHED_ASSIGN_OR_RETURN(std::vector<std::string> chain,
                         auth::FetchServerCertificates(address, timeout));
  return auth::CertificateWithPin(chain, pin);
}

// The CA certificates (PEM) to trust schedd's certificate by, from the first of --ca_file,
// --ca_pin, $SCHED_CA_FILE and $SCHED_CA_PIN that is set; "" (plaintext) when none is. As with
// tokens, a flag wins over the variables and a file over a pin at the same level.
absl::StatusOr<std::string> TrustedCa(const Invocation& inv, const SchedctlEnv& env,
                                      const std::string& address) {
  if (inv.ca_file) return ReadCaFile(*inv.ca_file);
  if (inv.ca_pin) return PinnedCa(address, *inv.ca_pin, inv.timeout);
  std::optional<std::string> file = GetEnv(env, kCaFileEnvVar);
  if (file && !file->empty()) return ReadCaFile(*file);
  std::optional<std::string> pin = GetEnv(env, kCaPinEnvVar);
  if (!pin || absl::StripAsciiWhitespace(*pin).empty()) return std::string();
  SCHED_ASSIGN_OR_RETURN(std::string parsed, ParseCaPin(*pin, absl::StrCat("$", kCaPinEnvVar)));
  return PinnedCa(address, parsed, inv.timeout);
}

absl::Status Dispatch(const CommandArgs& command, CommandContext& ctx) {
  return std::visit(
      [&](const auto& args) -> absl::Status {
        using T = std::decay_t<decltype(args)>;
        if constexpr (std::is_same_v<T, SubmitArgs>) return RunSubmit(args, ctx);
        if constexpr (std::is_same_v<T, EstimateArgs>) return RunEstimate(args, ctx);
        if constexpr (std::is_same_v<T, GetArgs>) return RunGet(args, ctx);
        if constexpr (std::is_same_v<T, DescribeArgs>) return RunDescribe(args, ctx);
        if constexpr (std::is_same_v<T, LogsArgs>) return RunLogs(args, ctx);
        if constexpr (std::is_same_v<T, CancelArgs>) return RunCancel(args, ctx);
        if constexpr (std::is_same_v<T, NodeActionArgs>) return RunNodeAction(args, ctx);
        if constexpr (std::is_same_v<T, NodeRevokeArgs>) return RunNodeRevoke(args, ctx);
        if constexpr (std::is_same_v<T, BackupArgs>) return RunBackup(args, ctx);
        if constexpr (std::is_same_v<T, BudgetSetArgs>) return RunBudgetSet(args, ctx);
        if constexpr (std::is_same_v<T, BudgetGetArgs>) return RunBudgetGet(args, ctx);
        if constexpr (std::is_same_v<T, CostReportArgs>) return RunCostReport(args, ctx);
        if constexpr (std::is_same_v<T, CostAdviceArgs>) return RunCostAdvice(args, ctx);
        if constexpr (std::is_same_v<T, CheckpointListArgs>) return RunCheckpointList(args, ctx);
        if constexpr (std::is_same_v<T, CheckpointGetArgs>) return RunCheckpointGet(args, ctx);
        if constexpr (std::is_same_v<T, TokenCreateArgs>) return RunTokenCreate(args, ctx);
        if constexpr (std::is_same_v<T, TokenListArgs>) return RunTokenList(args, ctx);
        if constexpr (std::is_same_v<T, TokenRevokeArgs>) return RunTokenRevoke(args, ctx);
      },
      command);
}

}  // namespace

int RunSchedctl(int argc, char** argv, std::ostream& out, std::ostream& err,
                const SchedctlEnv& env) {
  ParsedCommandLine parsed = ParseCommandLine(argc, argv, out, err);
  if (!parsed.invocation) return parsed.exit_code;
  const Invocation& inv = *parsed.invocation;

  const absl::Status status = [&]() -> absl::Status {
    auth::DialOptions dial;
    SCHED_ASSIGN_OR_RETURN(dial.token, Token(inv, env));
    const std::string address = ServerAddress(inv, env);
    SCHED_ASSIGN_OR_RETURN(dial.ca_pem, TrustedCa(inv, env, address));
    grpc::ChannelArguments channel_args;
    channel_args.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
    SchedClient client(auth::Dial(address, dial, channel_args),
                       ClientOptions{inv.timeout, env.submit_retry});
    absl::BitGen random;
    CommandContext ctx{client,
                       out,
                       env.in != nullptr ? *env.in : std::cin,
                       env.clock != nullptr ? *env.clock : *RealClock::Get(),
                       random,
                       [&env](const std::string& name) { return GetEnv(env, name); }};
    return Dispatch(inv.command, ctx);
  }();
  out.flush();
  if (!status.ok()) {
    err << "error: " << absl::StatusCodeToString(status.code()) << ": " << status.message() << "\n";
    return kExitFailure;
  }
  return 0;
}

int RunSchedctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
                const SchedctlEnv& env) {
  std::vector<std::string> storage = {"schedctl"};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : storage) argv.push_back(s.data());
  return RunSchedctl(static_cast<int>(argv.size()), argv.data(), out, err, env);
}

}  // namespace sched::client
