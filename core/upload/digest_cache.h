// DigestCache: remembers the digests of files the daemon has hashed, keyed by
// the file's identity (device, inode, size, mtime), so that a file pushed again
// or by several callers at once is hashed once. Concurrent requests for the
// same file share one hashing pass (single flight).
//
// Thread-safe. Bounded: past `capacity` entries the oldest are forgotten.
#ifndef REGD_CORE_UPLOAD_DIGEST_CACHE_H_
#define REGD_CORE_UPLOAD_DIGEST_CACHE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace regd {

class DigestCache {
 public:
  explicit DigestCache(size_t capacity = 4096) : capacity_(capacity) {}

  // The digest for `identity`, computing it with `compute` when unknown.
  // With `remember` false (a file modified too recently to trust its identity
  // later) the result is shared only with callers already waiting for it.
  // A caller waiting for another's pass stops (CANCELLED) once `cancelled`
  // is set; `compute` itself should watch the same flag.
  [[nodiscard]] absl::StatusOr<std::string> Get(
      const std::string& identity, const std::function<absl::StatusOr<std::string>()>& compute,
      bool remember = true, const std::atomic<bool>* cancelled = nullptr);

  // Hashing passes performed (for tests and metrics).
  int64_t computations() const;

 private:
  struct Entry {
    bool computing = false;
    std::string digest;
    uint64_t generation = 0;  // of the computation that produced `digest`
    bool remembered = true;
  };
  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> order_ ABSL_GUARDED_BY(mu_);
  int64_t computations_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_generation_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace regd

#endif  // REGD_CORE_UPLOAD_DIGEST_CACHE_H_
