#pragma once

namespace sched {

// Checkpoint transfers allocate and free megabytes per message (chunks, gRPC's receive buffers,
// the parsed messages). By default glibc gives freed memory at the top of a heap back to the
// kernel once more than a few MiB is free, so each next message faults its pages in and zeroes
// them again: on the transfer benchmark a sixth of the upload's CPU time. Called first thing in
// main(), this keeps up to 64 MiB free per malloc arena for reuse, and serves blocks up to
// 32 MiB from the heaps instead of fresh mappings.
void KeepFreedMemoryForReuse();

}  // namespace sched
