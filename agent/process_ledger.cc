#include "agent/process_ledger.h"

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace sched::agent {

uint64_t ProcessStartTime(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
    if (i == 22) return std::stoull(field);
  }
  return 0;
}

void ProcessLedger::Record(const std::string& key, pid_t pgid) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  std::ofstream out(dir_ + "/" + key, std::ios::trunc);
  out << pgid << " " << ProcessStartTime(pgid) << "\n";
}

void ProcessLedger::Erase(const std::string& key) {
  std::error_code ec;
  std::filesystem::remove(dir_ + "/" + key, ec);
}

int ProcessLedger::KillLeftovers() {
  int killed = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    std::ifstream in(entry.path());
    pid_t pgid = 0;
    uint64_t started = 0;
    if (in >> pgid >> started && pgid > 1) {
      const uint64_t now_started = ProcessStartTime(pgid);
      // The leader alive with the recorded start time, or the leader gone while its group
      // lives on (a pid is not reused while it still names a group): the job's group.
      const bool same_leader = now_started != 0 && now_started == started;
      const bool orphaned_group = now_started == 0 && kill(-pgid, 0) == 0;
      if ((same_leader || orphaned_group) && kill(-pgid, SIGKILL) == 0) killed++;
    }
    std::filesystem::remove(entry.path(), ec);
  }
  return killed;
}

}  // namespace sched::agent
