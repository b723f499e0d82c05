#pragma once

#include <string>

#include "absl/random/bit_gen_ref.h"

namespace sched::client {

// A random (version 4, RFC 4122 variant) UUID in its 36-character lowercase form.
std::string NewUuidV4(absl::BitGenRef gen);

}  // namespace sched::client
