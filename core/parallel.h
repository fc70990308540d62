// RunParallel: `count` jobs on up to `threads` threads of their own, for the
// blobs of one call (PushImage's uploads, PullImage's downloads).
//
// Threads take the next job index in turn. The first job that fails stops
// the others (their flag is set; jobs not yet started do not start) and its
// status is the result. The caller's `cancelled` is relayed to that flag.
// Thread creation can fail (RLIMIT_NPROC, a cgroup's pids limit): the jobs
// run on the threads that did start, or on the calling thread when none did;
// never an abort. Each thread's log lines carry the caller's log context.
#ifndef REGD_CORE_PARALLEL_H_
#define REGD_CORE_PARALLEL_H_

#include <cstddef>
#include <functional>

#include "absl/status/status.h"
#include "core/cancel.h"

namespace regd {

// CANCELLED when `cancelled` was set, else the first failure, else OK.
[[nodiscard]] absl::Status RunParallel(
    size_t count, int threads, const CancelFlag& cancelled,
    const std::function<absl::Status(size_t job, const CancelFlag& stop)>& run);

}  // namespace regd

#endif  // REGD_CORE_PARALLEL_H_
