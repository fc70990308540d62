// TokenCache: bearer tokens keyed by (registry, scopes), reused until shortly
// before they expire, and fetched once however many callers need the same one
// at the same moment (single flight: the first caller fetches, the others wait
// for its result).
//
// Thread-safe. The fetch function runs on the calling thread without the lock.
#ifndef REGD_CORE_AUTH_TOKEN_CACHE_H_
#define REGD_CORE_AUTH_TOKEN_CACHE_H_

#include <atomic>
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
  // Bounded by count and by the bytes of the tokens held.
  explicit TokenCache(Clock* clock, size_t capacity = 4096, size_t max_bytes = 16 << 20)
      : clock_(clock), capacity_(capacity), max_bytes_(max_bytes) {}

  // A valid token for `key`, fetching with `fetch` when none is cached. A token
  // is reused until min(30 s, lifetime/5) before it expires.
  // A caller waiting for another's fetch stops (CANCELLED) once `cancelled`
  // (may be null) is set.
  [[nodiscard]] absl::StatusOr<std::string> Get(const std::string& key, const Fetcher& fetch,
                                                const std::atomic<bool>* cancelled = nullptr);

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
  // Makes room for one more entry; false when every entry is in use.
  // `keep` (may be null) is never chosen.
  bool EvictLocked(const Entry* keep) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetTokenLocked(Entry& e, std::string token) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Clock* const clock_;
  const size_t capacity_;
  const size_t max_bytes_;
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;  // of the tokens held
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  int64_t fetches_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace regd

#endif  // REGD_CORE_AUTH_TOKEN_CACHE_H_
