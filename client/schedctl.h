#pragma once

#include <functional>
#include <istream>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "client/sched_client.h"
#include "server/common/clock.h"

namespace sched::client {

// What the CLI takes from its process, replaceable in tests. Unset members mean the real
// thing: std::cin, ::getenv, the real clock.
struct SchedctlEnv {
  std::istream* in = nullptr;
  std::function<std::optional<std::string>(const std::string& name)> getenv;
  const Clock* clock = nullptr;
  RetryPolicy submit_retry;
};

inline constexpr char kDefaultServer[] = "127.0.0.1:7070";
inline constexpr char kServerEnvVar[] = "SCHED_SERVER";
inline constexpr char kTokenEnvVar[] = "SCHED_TOKEN";
inline constexpr char kTokenFileEnvVar[] = "SCHED_TOKEN_FILE";
inline constexpr char kCaFileEnvVar[] = "SCHED_CA_FILE";
inline constexpr char kCaPinEnvVar[] = "SCHED_CA_PIN";

// The whole of schedctl: parses argv (argv[0] is the program name), runs the command, writes
// its output to `out` and problems to `err`. Returns the exit code: 0 success, 1 the command
// failed ("error: NOT_FOUND: job abc not found" on `err`, also for a token file that cannot be
// read), 2 a usage error (with a usage line). Every call carries the API token, the first of
// --token, --token_file, $SCHED_TOKEN and $SCHED_TOKEN_FILE that is set; none: no token. The
// connection is TLS trusting the CA of the first of --ca_file, --ca_pin, $SCHED_CA_FILE and
// $SCHED_CA_PIN that is set (a pin: the certificate schedd presents with that pin, UNAUTHENTICATED
// when none has it), else plaintext.
int RunSchedctl(int argc, char** argv, std::ostream& out, std::ostream& err,
                const SchedctlEnv& env = {});

// The same with the arguments after the program name.
int RunSchedctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
                const SchedctlEnv& env = {});

}  // namespace sched::client
