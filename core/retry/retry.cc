#include "core/retry/retry.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace regd {

RetryPolicy RetryPolicy::Sanitised() const {
  RetryPolicy p = *this;
  RetryPolicy d;
  if (p.max_attempts <= 0) p.max_attempts = d.max_attempts;
  p.max_attempts = std::min(p.max_attempts, 100);
  if (p.initial_delay <= absl::ZeroDuration()) p.initial_delay = d.initial_delay;
  if (!(p.factor >= 1.0)) p.factor = d.factor;
  p.factor = std::min(p.factor, 10.0);
  if (!(p.jitter >= 0.0) || p.jitter > 1.0) p.jitter = d.jitter;
  if (p.max_delay <= absl::ZeroDuration()) p.max_delay = d.max_delay;
  p.max_delay = std::max(p.max_delay, p.initial_delay);
  return p;
}

absl::Duration RetryPolicy::Delay(int attempt, double unit_random) const {
  const absl::Duration second = absl::Seconds(1);
  double base =
      absl::FDivDuration(initial_delay, second) * std::pow(factor, std::max(0, attempt - 1));
  base = std::min(base, absl::FDivDuration(max_delay, second));
  double spread = base * jitter * (2.0 * unit_random - 1.0);
  return absl::Seconds(std::max(0.0, base + spread));
}

bool IsRetryableHttpStatus(long s) {
  return s == 408 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504;
}

bool IsRetryableStatus(const absl::Status& st) {
  return absl::IsUnavailable(st) || absl::IsDeadlineExceeded(st) || absl::IsResourceExhausted(st);
}

std::optional<absl::Duration> ParseRetryAfter(absl::string_view value, absl::Time now) {
  value = absl::StripAsciiWhitespace(value);
  int64_t secs = 0;
  if (absl::SimpleAtoi(value, &secs)) return absl::Seconds(std::max<int64_t>(0, secs));
  absl::Time t;
  std::string err;
  // IMF-fixdate, then the obsolete RFC 850 and asctime forms.
  for (const char* fmt :
       {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"}) {
    if (absl::ParseTime(fmt, value, absl::UTCTimeZone(), &t, &err)) {
      return std::max(absl::ZeroDuration(), t - now);
    }
  }
  return std::nullopt;
}

absl::Duration NextRetryWait(const RetryPolicy& policy, int attempt,
                             std::optional<absl::Duration> retry_after,
                             absl::Duration retry_after_cap) {
  static thread_local std::mt19937 rng{std::random_device{}()};
  absl::Duration wait = policy.Delay(attempt, std::uniform_real_distribution<>(0, 1)(rng));
  if (retry_after.has_value()) wait = std::max(wait, std::min(*retry_after, retry_after_cap));
  return wait;
}

bool SleepUnlessCancelled(absl::Duration d, const std::atomic<bool>* cancelled) {
  absl::Time until = absl::Now() + d;
  while (absl::Now() < until) {
    if (cancelled != nullptr && cancelled->load()) return false;
    absl::SleepFor(std::min(absl::Milliseconds(50), until - absl::Now()));
  }
  return cancelled == nullptr || !cancelled->load();
}

}  // namespace regd
