#include "tests/fuzz/fuzz_support.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/stubs/logging.h"

namespace sched::fuzz {

void Fail(const char* file, int line, const char* condition, const std::string& message) {
  std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n  %s\n", file, line, condition,
               message.c_str());
  std::fflush(stderr);
  std::abort();
}

std::string Describe(const absl::Status& status) { return status.ToString(); }

bool KnownIssue(absl::string_view id) {
  static const std::vector<std::string>* const known = [] {
    auto* ids = new std::vector<std::string>;
    if (const char* env = getenv("SCHED_FUZZ_KNOWN_ISSUES"); env != nullptr) {
      *ids = absl::StrSplit(env, ',', absl::SkipEmpty());
    }
    return ids;
  }();
  return std::find(known->begin(), known->end(), id) != known->end();
}

uint64_t FuzzInput::Little(size_t bytes) {
  uint64_t value = 0;
  const size_t n = std::min(bytes, size_);
  for (size_t i = 0; i < n; ++i) value |= uint64_t{data_[i]} << (8 * i);
  data_ += n;
  size_ -= n;
  return value;
}

uint8_t FuzzInput::Byte() { return static_cast<uint8_t>(Little(1)); }
uint16_t FuzzInput::U16() { return static_cast<uint16_t>(Little(2)); }
uint32_t FuzzInput::U32() { return static_cast<uint32_t>(Little(4)); }
uint64_t FuzzInput::U64() { return Little(8); }

std::string FuzzInput::String(size_t max_bytes) {
  const size_t n = std::min<size_t>({U16(), max_bytes, size_});
  std::string out(reinterpret_cast<const char*>(data_), n);
  data_ += n;
  size_ -= n;
  return out;
}

std::string FuzzInput::Rest() {
  std::string out(reinterpret_cast<const char*>(data_), size_);
  data_ += size_;
  size_ = 0;
  return out;
}

std::string DeterministicBytes(const google::protobuf::MessageLite& message) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return out;
}

namespace {

// Inputs that do not parse are the fuzzer's daily bread: protobuf's log line for each (invalid
// UTF-8 in a string field) would only bury the findings.
[[maybe_unused]] const bool kProtobufQuiet = [] {
  google::protobuf::SetLogHandler(nullptr);
  return true;
}();

bool UsableDir(const char* path) {
  return path != nullptr && *path != '\0' && access(path, W_OK | X_OK) == 0;
}

// Removes the folder when the process exits normally (a crash leaves it for a look).
class OwnedDir {
 public:
  explicit OwnedDir(std::string path) : path_(std::move(path)) {}
  ~OwnedDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

const std::string& ScratchDir(absl::string_view tag) {
  static const OwnedDir* const dir = [tag] {
    const char* base = getenv("SCHED_FUZZ_TMPDIR");
    if (!UsableDir(base)) base = "/dev/shm";
    if (!UsableDir(base)) base = getenv("TMPDIR");
    if (!UsableDir(base)) base = "/tmp";
    std::string pattern = absl::StrCat(base, "/sched-fuzz-", tag, "-XXXXXX");
    if (mkdtemp(pattern.data()) == nullptr) {
      Fail(__FILE__, __LINE__, "mkdtemp", absl::StrCat(pattern, ": ", std::strerror(errno)));
    }
    static OwnedDir owned(pattern);
    return &owned;
  }();
  return dir->path();
}

}  // namespace sched::fuzz
