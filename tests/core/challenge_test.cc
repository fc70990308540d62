#include "core/auth/challenge.h"

#include "gtest/gtest.h"

namespace regd {
namespace {

TEST(Challenge, Bearer) {
  auto c = ParseWwwAuthenticate(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull")");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].scheme, "bearer");
  EXPECT_EQ(c[0].Param("realm"), "https://auth.docker.io/token");
  EXPECT_EQ(c[0].Param("service"), "registry.docker.io");
  EXPECT_EQ(c[0].Param("scope"), "repository:library/alpine:pull");
}

TEST(Challenge, Basic) {
  auto c = ParseWwwAuthenticate(R"(Basic realm="Registry Realm")");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].scheme, "basic");
  EXPECT_EQ(c[0].Param("realm"), "Registry Realm");
}

TEST(Challenge, CaseInsensitiveSchemeAndKeys) {
  auto c = ParseWwwAuthenticate(R"(BEARER Realm="r", SERVICE="s")");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].scheme, "bearer");
  EXPECT_EQ(c[0].Param("realm"), "r");
  EXPECT_EQ(c[0].Param("service"), "s");
}

TEST(Challenge, SeveralChallengesInOneHeader) {
  auto c = ParseWwwAuthenticate(
      R"(Bearer realm="https://a/token",scope="repository:x:pull,push", Basic realm="fallback")");
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].scheme, "bearer");
  EXPECT_EQ(c[0].Param("scope"), "repository:x:pull,push");  // comma inside quotes
  EXPECT_EQ(c[1].scheme, "basic");
  EXPECT_EQ(c[1].Param("realm"), "fallback");
}

TEST(Challenge, EscapesAndUnquotedValues) {
  auto c = ParseWwwAuthenticate(R"(Bearer realm="a\"b\\c", service=plain,  error=invalid_token)");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].Param("realm"), "a\"b\\c");
  EXPECT_EQ(c[0].Param("service"), "plain");
  EXPECT_EQ(c[0].Param("error"), "invalid_token");
}

TEST(Challenge, SpacesAroundEquals) {
  auto c = ParseWwwAuthenticate(R"(Bearer realm = "r" , service = "s")");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].Param("realm"), "r");
  EXPECT_EQ(c[0].Param("service"), "s");
}

TEST(Challenge, SchemeWithoutParams) {
  auto c = ParseWwwAuthenticate("Negotiate");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].scheme, "negotiate");
  EXPECT_TRUE(c[0].params.empty());
}

TEST(Challenge, GarbageDoesNotCrash) {
  for (const char* h : {"", ",,,", "=", "Bearer realm=\"unterminated", "Bearer ;;; x=1",
                        "\"quoted\"", "Bearer realm=", "Basic , , realm=x"}) {
    auto c = ParseWwwAuthenticate(h);
    (void)c;
  }
  auto c = ParseWwwAuthenticate("Bearer realm=\"unterminated");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].Param("realm"), "unterminated");
}

}  // namespace
}  // namespace regd
