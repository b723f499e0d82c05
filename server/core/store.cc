#include "server/core/store.h"

namespace sched {

absl::Status Store::PutRecord(const std::string& key, const std::string& value) {
  return absl::UnimplementedError("this store keeps no side records");
}

absl::Status Store::DeleteRecords(const std::vector<std::string>& keys) {
  return absl::UnimplementedError("this store keeps no side records");
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Store::ScanRecords(
    const std::string& prefix) {
  return absl::UnimplementedError("this store keeps no side records");
}

absl::Status Store::Backup(const std::string& dir) {
  return absl::UnimplementedError("this store is kept in memory: there is nothing to back up");
}

}  // namespace sched
