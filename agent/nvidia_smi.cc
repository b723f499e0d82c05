#include "agent/nvidia_smi.h"

#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace sched::agent {

absl::StatusOr<std::vector<GpuDevice>> ParseNvidiaSmiCsv(absl::string_view text) {
  std::vector<GpuDevice> gpus;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("nvidia-smi output line ", line_number, " \"", line, "\": ", why));
    };
    std::vector<std::string> fields = absl::StrSplit(line, ',');
    if (fields.size() < 4) return bad("want 4 fields: index, uuid, name, memory.total");
    for (std::string& f : fields) absl::StripAsciiWhitespace(&f);
    GpuDevice gpu;
    if (!absl::SimpleAtoi(fields.front(), &gpu.index)) return bad("index is not a number");
    gpu.uuid = fields[1];
    if (gpu.uuid.empty()) return bad("empty uuid");
    // A model name holding a comma spreads over the middle fields.
    gpu.model = absl::StrJoin(fields.begin() + 2, fields.end() - 1, ",");
    int64_t mib = 0;
    if (!absl::SimpleAtoi(fields.back(), &mib) || mib < 0) {
      return bad("memory.total is not a whole number of MiB");
    }
    gpu.memory_bytes = mib * 1024 * 1024;
    gpus.push_back(std::move(gpu));
  }
  return gpus;
}

absl::StatusOr<std::vector<GpuDevice>> QueryNvidiaSmi() {
  // stderr would only say "not found"; nvidia-smi writes its own errors on stdout.
  const std::string command = absl::StrCat(kNvidiaSmiQuery, " 2>/dev/null");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return absl::UnavailableError("nvidia-smi: popen failed");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  const int status = pclose(pipe);
  if (status == -1 || !WIFEXITED(status)) {
    return absl::UnavailableError("nvidia-smi: did not exit normally");
  }
  if (WEXITSTATUS(status) == 127) return absl::NotFoundError("nvidia-smi: not installed");
  if (WEXITSTATUS(status) != 0) {
    return absl::UnavailableError(absl::StrCat("nvidia-smi: exit code ", WEXITSTATUS(status), ": ",
                                               absl::StripAsciiWhitespace(out)));
  }
  return ParseNvidiaSmiCsv(out);
}

}  // namespace sched::agent
