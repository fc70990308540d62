#include "core/read/blob_reader.h"

#include "gtest/gtest.h"

namespace regd {
namespace {

TEST(ParseContentRangeTest, Valid) {
  std::optional<ContentRange> r = ParseContentRange("bytes 100-199/1000");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->first, 100);
  EXPECT_EQ(r->last, 199);
  EXPECT_EQ(r->total, 1000);
  r = ParseContentRange("  bytes 0-0/*  ");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->total, -1);
}

TEST(ParseContentRangeTest, Invalid) {
  for (const char* v : {"", "bytes", "bytes */1000", "bytes 5-4/10", "bytes 0-9/9", "bytes -1-5/10",
                        "items 0-1/2", "bytes 0-1/-3", "bytes 0-99999999999999999999/1",
                        "bytes 1-2", "bytes 1/2-3", "bytes 0-1/2x"}) {
    EXPECT_FALSE(ParseContentRange(v).has_value()) << v;
  }
}

TEST(DefaultBlobReadRetryTest, ShortWaits) {
  RetryPolicy p = DefaultBlobReadRetry();
  EXPECT_EQ(p.max_attempts, 5);
  EXPECT_LE(p.max_delay, absl::Seconds(3));
  EXPECT_EQ(p.Sanitised().initial_delay, absl::Milliseconds(200));
}

}  // namespace
}  // namespace regd
