#include "client/uuid.h"

#include <cstdint>

#include "absl/random/distributions.h"
#include "absl/strings/str_format.h"

namespace sched::client {

std::string NewUuidV4(absl::BitGenRef gen) {
  const uint64_t hi = absl::Uniform<uint64_t>(gen);
  const uint64_t lo = absl::Uniform<uint64_t>(gen);
  const uint64_t version_hi = (hi & ~uint64_t{0xf000}) | uint64_t{0x4000};
  const uint64_t variant_lo = (lo & ~(uint64_t{0xc} << 60)) | (uint64_t{0x8} << 60);
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", version_hi >> 32, (version_hi >> 16) & 0xffff,
                         version_hi & 0xffff, variant_lo >> 48, variant_lo & 0xffffffffffffULL);
}

}  // namespace sched::client
