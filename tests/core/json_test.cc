#include "core/json.h"

#include <string>

#include "core/auth/authenticator.h"
#include "core/manifest/manifest.h"
#include "core/registry/client.h"
#include "gtest/gtest.h"

namespace regd {
namespace {

TEST(JsonTest, DeepNestingIsRefusedNotACrash) {
  // 200,000 levels: the recursive parser overflowed the stack on this.
  const std::string deep(200000, '[');
  rapidjson::Document doc;
  absl::Status st = ParseUntrustedJson(deep, "manifest", &doc);
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_TRUE(absl::IsInvalidArgument(ParseManifest(deep, "").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ParseIndex(deep, "").status()));
  EXPECT_FALSE(ParseImageConfig(std::string(100000, '{')).ok());
  EXPECT_FALSE(ParseTokenResponse("{\"token\":" + deep).ok());
}

TEST(JsonTest, DepthCountsOnlyOutsideStrings) {
  EXPECT_EQ(JsonNestingDepth(R"({"a":"[[[[[[\"[[[","b":[1,{"c":2}]})", 100), 3);
  EXPECT_EQ(JsonNestingDepth("[[[", 2), -1);
  rapidjson::Document doc;
  std::string ok_depth = std::string(64, '[') + std::string(64, ']');
  EXPECT_TRUE(ParseUntrustedJson(ok_depth, "x", &doc).ok());
  std::string too_deep = std::string(65, '[') + std::string(65, ']');
  EXPECT_FALSE(ParseUntrustedJson(too_deep, "x", &doc).ok());
}

TEST(JsonTest, InvalidUtf8AndTrailingGarbageAreRefused) {
  rapidjson::Document doc;
  EXPECT_FALSE(ParseUntrustedJson("{\"a\":\"\xff\xfe\"}", "x", &doc).ok());
  EXPECT_FALSE(ParseUntrustedJson("{} {}", "x", &doc).ok());
  EXPECT_FALSE(ParseUntrustedJson(R"({"a":["\udc00"]})", "x", &doc).ok());  // lone surrogate
  EXPECT_FALSE(ParseUntrustedJson(R"({"\ud800":1})", "x", &doc).ok());
  EXPECT_TRUE(ParseUntrustedJson(R"({"a":"\ud83d\ude00"})", "x", &doc).ok());  // a pair
  EXPECT_TRUE(ParseUntrustedJson(" {\"a\":\"\xc3\xa9\"} \n", "x", &doc).ok());
}

TEST(JsonTest, SizeCapBeforeParsing) {
  rapidjson::Document doc;
  JsonLimits small;
  small.max_bytes = 10;
  EXPECT_TRUE(absl::IsResourceExhausted(ParseUntrustedJson("[1,2,3,4,5,6]", "x", &doc, small)));
}

TEST(JsonTest, TokenResponse) {
  absl::StatusOr<BearerToken> t = ParseTokenResponse(R"({"access_token":"abc","expires_in":300})");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->value, "abc");
  EXPECT_EQ(t->lifetime, absl::Seconds(300));
  EXPECT_FALSE(ParseTokenResponse(R"({"token":"a\r\nX-Evil: 1"})").ok());
  EXPECT_FALSE(ParseTokenResponse(R"({"token":""})").ok());
  t = ParseTokenResponse(R"({"token":"t","expires_in":1e300})");
  ASSERT_TRUE(t.ok());
  EXPECT_LE(t->lifetime, absl::Hours(24));
}

TEST(JsonTest, RangeHeader) {
  EXPECT_EQ(BytesHeldFromRange("0-1234"), 1235);
  EXPECT_EQ(BytesHeldFromRange("bytes=0-0"), 1);
  EXPECT_EQ(BytesHeldFromRange("5-10"), std::nullopt);
  EXPECT_EQ(BytesHeldFromRange("0-9223372036854775807"), std::nullopt);
  EXPECT_EQ(BytesHeldFromRange("0-"), std::nullopt);
  EXPECT_EQ(BytesHeldFromRange("0--1"), std::nullopt);
}

}  // namespace
}  // namespace regd
