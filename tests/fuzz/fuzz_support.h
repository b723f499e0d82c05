#pragma once
// What the fuzz targets share: a reader that turns the fuzzer's bytes into values, a check that
// stops the process in every build (assert is off in RelWithDebInfo), deterministic protobuf
// bytes for comparing messages, and a scratch folder in memory.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message_lite.h"

namespace sched::fuzz {

[[noreturn]] void Fail(const char* file, int line, const char* condition,
                       const std::string& message);

// Stops the process (abort, which libFuzzer and the replay test both report) when `condition`
// is false. `message` is evaluated only then.
#define SCHED_FUZZ_CHECK(condition, message)                                          \
  do {                                                                                \
    if (!(condition)) ::sched::fuzz::Fail(__FILE__, __LINE__, #condition, (message)); \
  } while (0)

// Whether the product issue `id` is listed in $SCHED_FUZZ_KNOWN_ISSUES (comma-separated). A check
// that a reported, not yet fixed issue breaks is skipped when listed, so a fuzzing run can look
// past it (docs/fuzzing.md lists the ids). Unset, as in the replay tests: every check runs.
bool KnownIssue(absl::string_view id);

// "INVALID_ARGUMENT: what"; for messages of failed checks.
std::string Describe(const absl::Status& status);

// Reads values off the front of the fuzzer's bytes. Past the end every read gives zeros or
// empty strings, so a target never has to ask whether enough is left.
class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool empty() const { return size_ == 0; }
  size_t remaining() const { return size_; }

  uint8_t Byte();
  bool Bool() { return (Byte() & 1) != 0; }
  uint16_t U16();
  uint32_t U32();
  uint64_t U64();
  // A length (two bytes, at most `max_bytes`) and then that many bytes, or what is left.
  std::string String(size_t max_bytes = 0xffff);
  // Everything not read yet.
  std::string Rest();

 private:
  uint64_t Little(size_t bytes);

  const uint8_t* data_;
  size_t size_;
};

// `message` serialized with map entries in key order, so that equal messages give equal bytes.
std::string DeterministicBytes(const google::protobuf::MessageLite& message);

// A folder of this process's own, made on first use under $SCHED_FUZZ_TMPDIR, else /dev/shm
// (writes and fsyncs there cost no disk I/O), else $TMPDIR or /tmp, named
// sched-fuzz-<tag>-XXXXXX. Removed at a normal exit; a crash, or libFuzzer's fork mode ending a
// job, leaves it behind.
const std::string& ScratchDir(absl::string_view tag);

}  // namespace sched::fuzz
