// Retry policy: exponential backoff with jitter, the classification of
// failures, and Retry-After parsing.
//
// Value types and pure functions; thread-compatible. Randomness comes in
// through a parameter so tests are deterministic.
#ifndef REGD_CORE_RETRY_RETRY_H_
#define REGD_CORE_RETRY_RETRY_H_

#include <atomic>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace regd {

struct RetryPolicy {
  int max_attempts = 5;  // total attempts, including the first
  absl::Duration initial_delay = absl::Seconds(2);
  double factor = 2.0;
  double jitter = 0.1;  // ± fraction of the delay
  absl::Duration max_delay = absl::Seconds(60);

  // Fills zero/invalid fields with the defaults above and clamps the rest.
  RetryPolicy Sanitised() const;
  // The wait after failed attempt `attempt` (1-based). `unit_random` is in [0,1).
  absl::Duration Delay(int attempt, double unit_random) const;
};

// True for HTTP statuses worth retrying: 408, 429, 500, 502, 503, 504.
bool IsRetryableHttpStatus(long status);

// True for Status codes that a retry of the same request may fix
// (UNAVAILABLE, DEADLINE_EXCEEDED, and RESOURCE_EXHAUSTED from a 429).
bool IsRetryableStatus(const absl::Status& st);

// Parses Retry-After: delta-seconds or an HTTP-date (RFC 7231), relative to now.
// Negative results are clamped to zero; nullopt when unparseable.
std::optional<absl::Duration> ParseRetryAfter(absl::string_view value, absl::Time now);

// The wait after failed attempt `attempt`: the policy's backoff with random
// jitter, raised to the server's Retry-After (a floor), which itself is capped
// at `retry_after_cap` so that a broken header cannot park a call for days.
absl::Duration NextRetryWait(const RetryPolicy& policy, int attempt,
                             std::optional<absl::Duration> retry_after,
                             absl::Duration retry_after_cap = absl::Minutes(10));

// Sleeps `d` in 50 ms steps; false (at once) when `cancelled` is set first.
// `cancelled` may be null.
bool SleepUnlessCancelled(absl::Duration d, const std::atomic<bool>* cancelled);

}  // namespace regd

#endif  // REGD_CORE_RETRY_RETRY_H_
