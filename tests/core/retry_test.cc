#include "core/retry/retry.h"

#include "gtest/gtest.h"

namespace regd {
namespace {

TEST(RetryPolicy, DefaultsAndBackoff) {
  RetryPolicy p = RetryPolicy{0, absl::ZeroDuration(), 0, -1, absl::ZeroDuration()}.Sanitised();
  EXPECT_EQ(p.max_attempts, 5);
  EXPECT_EQ(p.initial_delay, absl::Seconds(2));
  EXPECT_EQ(p.factor, 2.0);
  EXPECT_DOUBLE_EQ(p.jitter, 0.1);
  // unit_random 0.5 → no jitter.
  EXPECT_EQ(p.Delay(1, 0.5), absl::Seconds(2));
  EXPECT_EQ(p.Delay(2, 0.5), absl::Seconds(4));
  EXPECT_EQ(p.Delay(3, 0.5), absl::Seconds(8));
  EXPECT_EQ(p.Delay(10, 0.5), absl::Seconds(60));  // capped at max_delay
  // Jitter stays within ±10%.
  EXPECT_GE(p.Delay(1, 0.0), absl::Seconds(1.8));
  EXPECT_LE(p.Delay(1, 0.999), absl::Seconds(2.2));
}

TEST(RetryPolicy, RetryAfterIsAFloorWithACap) {
  RetryPolicy p = RetryPolicy{5, absl::Seconds(2), 2, 0.1, absl::Seconds(60)}.Sanitised();
  EXPECT_LE(NextRetryWait(p, 1, std::nullopt), absl::Seconds(2.2));
  EXPECT_EQ(NextRetryWait(p, 1, absl::Seconds(30)), absl::Seconds(30));
  EXPECT_LE(NextRetryWait(p, 1, absl::Milliseconds(1)), absl::Seconds(2.2));  // a floor only
  EXPECT_EQ(NextRetryWait(p, 1, absl::Hours(48)), absl::Minutes(10));
  EXPECT_EQ(NextRetryWait(p, 1, absl::Seconds(30), absl::Seconds(10)), absl::Seconds(10));
}

TEST(RetryClassification, HttpStatuses) {
  for (long s : {408, 429, 500, 502, 503, 504}) EXPECT_TRUE(IsRetryableHttpStatus(s)) << s;
  for (long s : {200, 400, 401, 403, 404, 416, 501}) EXPECT_FALSE(IsRetryableHttpStatus(s)) << s;
  EXPECT_TRUE(IsRetryableStatus(absl::UnavailableError("x")));
  EXPECT_FALSE(IsRetryableStatus(absl::InvalidArgumentError("x")));
  EXPECT_FALSE(IsRetryableStatus(absl::PermissionDeniedError("x")));
}

TEST(RetryAfter, SecondsAndHttpDate) {
  absl::Time now = absl::FromUnixSeconds(784111777);  // Sun, 06 Nov 1994 08:49:37 GMT
  EXPECT_EQ(ParseRetryAfter("120", now), absl::Seconds(120));
  EXPECT_EQ(ParseRetryAfter(" 3 ", now), absl::Seconds(3));
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:47 GMT", now), absl::Seconds(10));
  EXPECT_EQ(ParseRetryAfter("Sunday, 06-Nov-94 08:49:57 GMT", now), absl::Seconds(20));
  EXPECT_EQ(ParseRetryAfter("Sun Nov  6 08:49:38 1994", now), absl::Seconds(1));
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:00:00 GMT", now), absl::ZeroDuration());
  EXPECT_FALSE(ParseRetryAfter("soon", now).has_value());
  EXPECT_FALSE(ParseRetryAfter("", now).has_value());
}

}  // namespace
}  // namespace regd
