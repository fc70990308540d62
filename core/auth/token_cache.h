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
  explicit TokenCache(Clock* clock) : clock_(clock) {}

  // A valid token for `key`, fetching with `fetch` when none is cached. A token
  // is reused until min(30 s, lifetime/5) before it expires.
  [[nodiscard]] absl::StatusOr<std::string> Get(const std::string& key, const Fetcher& fetch);

  // Forgets `token` under `key` (after a 401); a newer token stays.
  void Invalidate(const std::string& key, const std::string& token);

  // Fetches performed so far (for tests and metrics).
  int64_t fetches() const;

 private:
  struct Entry {
    std::string token;
    absl::Time refresh_at = absl::InfinitePast();
    bool fetching = false;
    uint64_t generation = 0;  // bumped when a fetch completes
    absl::Status last_error;
  };
  Clock* const clock_;
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  int64_t fetches_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace regd

#endif  // REGD_CORE_AUTH_TOKEN_CACHE_H_
