// TokenCache: bearer tokens keyed by (registry, scopes), reused until shortly
// before they expire, and fetched once however many callers need the same one
// at the same moment (single flight: the first caller fetches, the others wait
// for its result).
//
// Thread-safe. The fetch function runs on the calling thread without the lock.
#ifndef REGD_CORE_AUTH_TOKEN_CACHE_H_
#define REGD_CORE_AUTH_TOKEN_CACHE_H_

#include <functional>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/clock.h"

namespace regd {

struct BearerToken {
  std::string value;
  absl::Duration lifetime = absl::Seconds(60);  // expires_in as served
};

class TokenCache {
 public:
  using Fetcher = std::function<absl::StatusOr<BearerToken>()>;
  // Holds at most `capacity` tokens: past it, expired ones go first, then
  // those due for refresh soonest (never one a caller is using).
  explicit TokenCache(Clock* clock, size_t capacity = 4096) : clock_(clock), capacity_(capacity) {}

  // A valid token for `key`, fetching with `fetch` when none is cached. A token
  // is reused until min(30 s, lifetime/5) before it expires.
  [[nodiscard]] absl::StatusOr<std::string> Get(const std::string& key, const Fetcher& fetch);

  // Forgets `token` under `key` (after a 401); a newer token stays.
  void Invalidate(const std::string& key, const std::string& token);

  // Fetches performed so far (for tests and metrics).
  int64_t fetches() const;
  size_t size() const;

 private:
  struct Entry {
    std::string token;
    absl::Time refresh_at = absl::InfinitePast();
    bool fetching = false;
    uint64_t generation = 0;  // bumped when a fetch completes
    absl::Status last_error;
    int users = 0;  // callers inside Get holding this entry: never evicted then
  };
  // Makes room for one more entry.
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Clock* const clock_;
  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  int64_t fetches_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace regd

#endif  // REGD_CORE_AUTH_TOKEN_CACHE_H_
