// Fuzzes the header values regd acts on: Retry-After (ParseRetryAfter, then
// NextRetryWait), an upload's Range (BytesHeldFromRange) and Location
// (ResolveUrl against the request URL, UrlOrigin of both).
//
// Input: "retry-after\nrange\nbase-url\nlocation" (missing parts are empty;
// the location keeps any further newlines).
#include <cstddef>
#include <cstdint>

#include "absl/time/time.h"
#include "core/http/http.h"
#include "core/registry/client.h"
#include "core/retry/retry.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<absl::string_view> parts =
      regd::fuzz::SplitInto(regd::fuzz::AsView(data, size), '\n', 4);

  // A fixed "now" keeps runs reproducible.
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  std::optional<absl::Duration> wait = regd::ParseRetryAfter(parts[0], now);
  if (wait.has_value()) FUZZ_CHECK(*wait >= absl::ZeroDuration());
  regd::RetryPolicy policy;
  const absl::Duration cap = absl::Minutes(10);
  absl::Duration next = regd::NextRetryWait(policy.Sanitised(), 1, wait, cap);
  FUZZ_CHECK(next >= absl::ZeroDuration());
  if (wait.has_value()) FUZZ_CHECK(next >= std::min(*wait, cap));

  std::optional<int64_t> held = regd::BytesHeldFromRange(parts[1]);
  if (held.has_value()) FUZZ_CHECK(*held >= 1);

  const std::string resolved = regd::ResolveUrl(parts[2], parts[3]);
  (void)regd::UrlOrigin(parts[2]);
  (void)regd::UrlOrigin(parts[3]);
  (void)regd::UrlOrigin(resolved);
  return 0;
}
