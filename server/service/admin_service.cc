#include "server/service/admin_service.h"

#include <sys/stat.h>

#include <filesystem>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/common/status_macros.h"
#include "server/service/status.h"

namespace sched {
namespace {

namespace fs = std::filesystem;

uint64_t BytesUnder(const fs::path& dir) {
  uint64_t bytes = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it->is_regular_file(ec)) bytes += it->file_size(ec);
  }
  return bytes;
}

// Copies `from` (a file or a folder) to `to` with its permission bits; a missing `from` is no
// error (a schedd without TLS has no tls/).
absl::Status CopyIfThere(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  if (!fs::exists(from, ec)) return absl::OkStatus();
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
  if (ec) return absl::InternalError(absl::StrCat("copying ", from.string(), ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace

grpc::Status AdminServiceImpl::Backup(grpc::ServerContext* ctx, const v1::BackupRequest* req,
                                      v1::BackupResponse* resp) {
  absl::StatusOr<auth::Caller> caller = auth_->Check(*ctx, auth::Action::kOperate);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  const absl::Status status = DoBackup(*req, resp);
  auth_->Audit(*ctx, *caller, "backup", req->path().substr(0, 512), "", status);
  return ToGrpcStatus(status);
}

absl::Status AdminServiceImpl::DoBackup(const v1::BackupRequest& req, v1::BackupResponse* resp) {
  const absl::Time start = absl::Now();
  const fs::path path(req.path());
  if (req.path().empty() || !path.is_absolute() || req.path().size() > 4096 ||
      req.path().find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        "path: an absolute path on schedd's machine, for a folder that does not exist yet");
  }
  std::error_code ec;
  if (fs::exists(fs::symlink_status(path, ec))) {
    return absl::AlreadyExistsError(absl::StrCat("path: ", req.path(), " exists"));
  }
  if (!fs::is_directory(path.parent_path(), ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat("path: its folder ", path.parent_path().string(), " does not exist"));
  }
  if (!fs::create_directory(path, ec) || ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create ", req.path(), ": ", ec.message()));
  }
  // It holds the CA's key and token hashes: only schedd's user may read it.
  chmod(path.c_str(), 0700);
  auto fail = [&](absl::Status s) {
    fs::remove_all(path, ec);  // no half backup that looks like a whole one
    return s;
  };
  const SchedulerStats stats = scheduler_->Stats();
  const uint64_t jobs =
      std::accumulate(std::begin(stats.jobs_by_state), std::end(stats.jobs_by_state), uint64_t{0});
  if (absl::Status s = store_->Backup((path / "store").string()); !s.ok()) return fail(s);
  const fs::path data(data_dir_);
  for (const char* name : {"tls", "admin.token", "audit.log"}) {
    if (absl::Status s = CopyIfThere(data / name, path / name); !s.ok()) return fail(s);
  }
  uint64_t files = 0, bytes = 0;
  if (!req.skip_checkpoints() && fs::exists(data / "checkpoints", ec)) {
    // Chunks are written once under their hash and never changed: a hard link is a copy.
    for (auto it = fs::recursive_directory_iterator(data / "checkpoints", ec);
         !ec && it != fs::end(it); it.increment(ec)) {
      const fs::path to = path / "checkpoints" / fs::relative(it->path(), data / "checkpoints");
      std::error_code io;
      if (it->is_directory(io)) {
        fs::create_directories(to, io);
      } else if (it->is_regular_file(io)) {
        fs::create_directories(to.parent_path(), io);
        fs::create_hard_link(it->path(), to, io);
        if (io) {
          io.clear();
          fs::copy_file(it->path(), to, io);
        }
        // A chunk given up by retention meanwhile is gone: its checkpoint is too.
        if (io && fs::exists(it->path())) {
          return fail(absl::InternalError(
              absl::StrCat("copying ", it->path().string(), ": ", io.message())));
        }
        if (!io) {
          files++;
          bytes += it->file_size(io);
        }
      }
    }
    if (ec) return fail(absl::InternalError(absl::StrCat("reading checkpoints: ", ec.message())));
  }
  resp->set_path(req.path());
  resp->set_store_bytes(BytesUnder(path / "store"));
  resp->set_checkpoint_files(files);
  resp->set_checkpoint_bytes(bytes);
  resp->set_jobs(jobs);
  resp->set_seconds(absl::ToDoubleSeconds(absl::Now() - start));
  return absl::OkStatus();
}

}  // namespace sched
