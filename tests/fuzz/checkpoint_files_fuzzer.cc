// Checkpoint names, paths and manifests as they arrive over the network, and a checkpoint
// written out from them (server/checkpoint/checkpoint_files.h). The input, read with FuzzInput:
//
//   String  a name for CheckName
//   String  a path for CheckRelativePath
//   String  a chunk name for CheckSha256Hex
//   String  a v1::Checkpoint (protobuf bytes) for CheckManifest and Writer
//   Byte    flags: 1 set each file's size and chunk names from its content (so the bytes can
//           pass), 2 set its whole-file sha256 too, 4 flip one byte of what is sent, 8 send
//           bytes past the end
//   per file: Byte kind; odd: Byte value and U32 count (a run of one byte, up to 9 MiB in all,
//           to cross chunk boundaries); even: a String of content
//   U32...  where to cut what is sent into Add calls (at most 64 of them)
//
// Checked: each check agrees with its rule as the header states it, written again here; a path
// accepted never leaves the folder it is joined to; a manifest accepted keeps every rule of
// CheckManifest (chunk counts reckoned without wrapping); Writer writes only under its folder,
// leaves nothing behind when it fails, and when Finish succeeds the files hold exactly the bytes
// sent, each chunk hashing to its name.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/checkpoint/checkpoint_files.h"
#include "tests/fuzz/fuzz_support.h"

namespace sched::fuzz {
namespace {

namespace fs = std::filesystem;
using checkpoint::kChunkBytes;

constexpr size_t kMaxContentBytes = 9 << 20;  // past two chunk boundaries
constexpr int kMaxWriterFiles = 32;
constexpr int kMaxPieces = 64;

// ---- The rules of checkpoint_files.h, written again from its comments.

bool NameRule(absl::string_view name) {
  if (name.empty() || name.size() > checkpoint::kMaxNameBytes) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return !absl::StartsWith(name, ".") && !absl::EndsWith(name, ".tmp");
}

bool PathRule(absl::string_view path) {
  if (path.empty() || path.size() > checkpoint::kMaxPathBytes) return false;
  if (absl::StrContains(path, '\0') || absl::StrContains(path, '\\')) return false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

bool ShaRule(absl::string_view sha) {
  if (sha.size() != 64) return false;
  for (char c : sha) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Joined to a folder, `path` names something strictly inside it, by the file system's reading.
bool StaysInside(absl::string_view path) {
  const fs::path p{std::string(path)};
  if (!p.is_relative() || p.has_root_name() || p.has_root_directory()) return false;
  for (const fs::path& part : p) {
    if (part == "..") return false;
  }
  const std::string joined = (fs::path("/base") / p).lexically_normal().string();
  return absl::StartsWith(joined, "/base/") && joined.size() > 6;
}

void CheckAgrees(const absl::Status& status, bool rule, absl::string_view check,
                 absl::string_view input) {
  SCHED_FUZZ_CHECK(status.ok() == rule,
                   absl::StrCat(check, "(\"", absl::CEscape(input), "\") answered ",
                                Describe(status), ", the rule says ", rule ? "valid" : "invalid"));
  SCHED_FUZZ_CHECK(status.ok() || absl::IsInvalidArgument(status), Describe(status));
}

// Chunks a file of `size` bytes needs, reckoned without wrapping.
unsigned __int128 ChunksFor(uint64_t size) {
  return (static_cast<unsigned __int128>(size) + kChunkBytes - 1) / kChunkBytes;
}

void CheckAcceptedManifest(const v1::Checkpoint& m) {
  const auto fail = [&](absl::string_view what) {
    return absl::StrCat("CheckManifest accepted a manifest whose ", what, ":\n",
                        m.ShortDebugString().substr(0, 2000));
  };
  SCHED_FUZZ_CHECK(NameRule(m.name()), fail("name breaks CheckName's rule"));
  SCHED_FUZZ_CHECK(m.files_size() <= static_cast<int>(checkpoint::kMaxFiles),
                   fail("files are too many"));
  if (!m.is_dir()) {
    SCHED_FUZZ_CHECK(m.files_size() == 1 && m.files(0).path().empty(),
                     fail("single file is not one file with an empty path"));
  }
  std::set<std::string> paths;
  unsigned __int128 total = 0;
  for (const v1::CheckpointFile& f : m.files()) {
    if (m.is_dir()) {
      SCHED_FUZZ_CHECK(PathRule(f.path()) && StaysInside(f.path()),
                       fail(absl::StrCat("path \"", absl::CEscape(f.path()), "\" is unsafe")));
      SCHED_FUZZ_CHECK(paths.insert(f.path()).second, fail("paths repeat"));
    }
    SCHED_FUZZ_CHECK(f.sha256().empty() || ShaRule(f.sha256()), fail("sha256 is malformed"));
    for (const std::string& c : f.chunks()) SCHED_FUZZ_CHECK(ShaRule(c), fail("chunk malformed"));
    SCHED_FUZZ_CHECK(
        static_cast<unsigned __int128>(f.chunks_size()) == ChunksFor(f.size_bytes()),
        fail(absl::StrCat("file of ", f.size_bytes(), " bytes has ", f.chunks_size(), " chunks")));
    SCHED_FUZZ_CHECK(f.mode() <= 07777, fail("mode is out of range"));
    total += f.size_bytes();
  }
  for (const std::string& p : paths) {
    auto next = paths.upper_bound(p);
    SCHED_FUZZ_CHECK(next == paths.end() || !absl::StartsWith(*next, absl::StrCat(p, "/")),
                     fail(absl::StrCat(p, " is a file and a folder")));
  }
  SCHED_FUZZ_CHECK(total <= checkpoint::kMaxCheckpointBytes,
                   fail("files hold more than kMaxCheckpointBytes"));
  SCHED_FUZZ_CHECK(m.size_bytes() == 0 || m.size_bytes() == total,
                   fail("size_bytes is not the files' total"));
}

// ---- Writing one out

struct Scene {
  fs::path root;  // watched: nothing may appear here but the fence and dest
  fs::path dest;  // root/f1/f2/f3/dest: what Writer is given
};

const Scene& TheScene() {
  static const Scene* scene = [] {
    auto* s = new Scene;
    s->root = ScratchDir("checkpoint");
    s->dest = s->root / "f1" / "f2" / "f3" / "dest";
    return s;
  }();
  return *scene;
}

std::string ReadWhole(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Fails unless everything under the scene's root is the fence, dest, or inside `allowed`
// (empty: nothing may be inside dest).
void CheckNothingOutside(const Scene& scene, const fs::path& allowed) {
  const std::set<fs::path> fence = {scene.root / "f1", scene.root / "f1" / "f2",
                                    scene.root / "f1" / "f2" / "f3", scene.dest};
  std::error_code ec;
  for (fs::recursive_directory_iterator it(scene.root, ec), end; !ec && it != end;
       it.increment(ec)) {
    const fs::path& p = it->path();
    SCHED_FUZZ_CHECK(!it->is_symlink(ec), absl::StrCat("a symlink was made: ", p.string()));
    if (fence.count(p) != 0) continue;
    const bool inside =
        !allowed.empty() && (p == allowed || absl::StartsWith(p.string(), allowed.string() + "/"));
    SCHED_FUZZ_CHECK(inside, absl::StrCat("written outside what Writer may leave: ", p.string()));
  }
  SCHED_FUZZ_CHECK(!ec, absl::StrCat("walking ", scene.root.string(), ": ", ec.message()));
}

// After Finish: the checkpoint on disk holds exactly the manifest's files, each with its slice
// of `sent`, and every chunk name is the sha256 of its bytes.
void CheckWritten(const v1::Checkpoint& m, const std::string& sent, const fs::path& final_path) {
  std::set<std::string> expected;
  size_t offset = 0;
  for (const v1::CheckpointFile& f : m.files()) {
    SCHED_FUZZ_CHECK(f.size_bytes() <= sent.size() - offset,
                     "Finish succeeded with fewer bytes than the manifest's files");
    const std::string bytes = sent.substr(offset, f.size_bytes());
    offset += f.size_bytes();
    for (int i = 0; i < f.chunks_size(); ++i) {
      const std::string piece = bytes.substr(static_cast<size_t>(i) * kChunkBytes, kChunkBytes);
      SCHED_FUZZ_CHECK(checkpoint::Sha256Hex(piece) == f.chunks(i),
                       absl::StrCat("Finish succeeded but chunk ", i, " of ", f.path(),
                                    " does not hash to its name"));
    }
    if (!f.sha256().empty()) {
      SCHED_FUZZ_CHECK(checkpoint::Sha256Hex(bytes) == f.sha256(),
                       "Finish succeeded but a file does not hash to its sha256");
    }
    const fs::path file = m.is_dir() ? final_path / f.path() : final_path;
    std::error_code ec;
    SCHED_FUZZ_CHECK(fs::is_regular_file(fs::symlink_status(file, ec)),
                     absl::StrCat(file.string(), " is not a file after Finish"));
    SCHED_FUZZ_CHECK(ReadWhole(file) == bytes, absl::StrCat(file.string(), " holds other bytes"));
    expected.insert(file.string());
  }
  SCHED_FUZZ_CHECK(offset == sent.size(), "Finish succeeded with bytes left over");
  if (!m.is_dir()) return;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(final_path, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->is_directory(ec)) continue;
    SCHED_FUZZ_CHECK(expected.count(it->path().string()) != 0,
                     absl::StrCat("a file the manifest does not name: ", it->path().string()));
  }
}

// Each file's content as the input gives it, at most kMaxContentBytes in all.
std::vector<std::string> Contents(FuzzInput& in, int files) {
  std::vector<std::string> out;
  size_t total = 0;
  for (int i = 0; i < files; ++i) {
    std::string content;
    if (in.Byte() & 1) {
      const char value = static_cast<char>(in.Byte());
      const size_t count =
          std::min<size_t>(in.U32() % (kMaxContentBytes + 1), kMaxContentBytes - total);
      content.assign(count, value);
    } else {
      content = in.String(4096);
      content.resize(std::min(content.size(), kMaxContentBytes - total));
    }
    total += content.size();
    out.push_back(std::move(content));
  }
  return out;
}

void SetFromContent(v1::CheckpointFile& f, const std::string& content, bool whole) {
  f.set_size_bytes(content.size());
  f.clear_chunks();
  for (size_t at = 0; at < content.size(); at += kChunkBytes) {
    f.add_chunks(checkpoint::Sha256Hex(absl::string_view(content).substr(at, kChunkBytes)));
  }
  if (whole) f.set_sha256(checkpoint::Sha256Hex(content));
}

void WriteOut(v1::Checkpoint manifest, FuzzInput& in) {
  const uint8_t flags = in.Byte();
  const std::vector<std::string> contents = Contents(in, manifest.files_size());
  std::string sent;
  for (int i = 0; i < manifest.files_size(); ++i) {
    if (flags & 1) SetFromContent(*manifest.mutable_files(i), contents[i], (flags & 2) != 0);
    sent += contents[i];
  }
  if ((flags & 4) && !sent.empty()) sent[in.U32() % sent.size()] ^= 0x5a;
  if (flags & 8) sent += in.String(64) + "!";

  const Scene& scene = TheScene();
  std::error_code ec;
  fs::remove_all(scene.dest, ec);
  fs::create_directories(scene.dest, ec);
  SCHED_FUZZ_CHECK(!ec, absl::StrCat("making ", scene.dest.string(), ": ", ec.message()));

  const absl::Status shape = checkpoint::CheckManifest(manifest);
  absl::StatusOr<std::string> finished = absl::UnknownError("not finished");
  {
    absl::StatusOr<std::unique_ptr<checkpoint::Writer>> writer =
        checkpoint::Writer::Start(scene.dest.string(), manifest);
    SCHED_FUZZ_CHECK(shape.ok() || !writer.ok(),
                     "Writer::Start took a manifest CheckManifest refuses");
    if (writer.ok()) {
      absl::Status added;
      absl::string_view left = sent;
      for (int piece = 0; added.ok() && !left.empty(); ++piece) {
        size_t take = left.size();
        if (piece + 1 < kMaxPieces && !in.empty()) take = 1 + in.U32() % left.size();
        added = (*writer)->Add(left.substr(0, take));
        left.remove_prefix(take);
      }
      if (added.ok()) finished = (*writer)->Finish();
    }
  }  // the Writer is gone: a partial checkpoint must be too
  if (!finished.ok()) {
    CheckNothingOutside(scene, fs::path());
    return;
  }
  const fs::path final_path = scene.dest / manifest.name();
  SCHED_FUZZ_CHECK(*finished == final_path.string(),
                   absl::StrCat("Finish named ", *finished, ", not ", final_path.string()));
  CheckNothingOutside(scene, final_path);
  CheckWritten(manifest, sent, final_path);
}

}  // namespace
}  // namespace sched::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sched;
  using namespace sched::fuzz;
  FuzzInput in(data, size);

  const std::string name = in.String(300);
  CheckAgrees(checkpoint::CheckName(name), NameRule(name), "CheckName", name);
  const std::string path = in.String(1100);
  const absl::Status path_status = checkpoint::CheckRelativePath(path);
  CheckAgrees(path_status, PathRule(path), "CheckRelativePath", path);
  SCHED_FUZZ_CHECK(!path_status.ok() || StaysInside(path),
                   absl::StrCat("CheckRelativePath accepted \"", absl::CEscape(path),
                                "\", which leaves its folder"));
  const std::string sha = in.String(100);
  CheckAgrees(checkpoint::CheckSha256Hex(sha), ShaRule(sha), "CheckSha256Hex", sha);

  v1::Checkpoint manifest;
  if (!manifest.ParseFromString(in.String())) return 0;
  const absl::Status shape = checkpoint::CheckManifest(manifest);
  SCHED_FUZZ_CHECK(shape.ok() || absl::IsInvalidArgument(shape), Describe(shape));
  if (shape.ok()) CheckAcceptedManifest(manifest);
  if (manifest.files_size() <= kMaxWriterFiles) WriteOut(std::move(manifest), in);
  return 0;
}
