#include "core/text.h"

#include <string>

#include "gtest/gtest.h"

namespace regd {
namespace {

TEST(Text, SanitizeUtf8) {
  EXPECT_EQ(SanitizeUtf8("plain"), "plain");
  EXPECT_EQ(SanitizeUtf8("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_TRUE(
      IsValidUtf8(SanitizeUtf8("a\xff\xfe"
                               "b")));
  EXPECT_TRUE(IsValidUtf8(SanitizeUtf8("\xed\xa0\x80")));               // a surrogate
  EXPECT_TRUE(IsValidUtf8(SanitizeUtf8("\xc0\xaf")));                   // overlong
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));                        // past U+10FFFF
  EXPECT_TRUE(IsValidUtf8(SanitizeUtf8(std::string("x\xe2\x82", 3))));  // cut short
}

TEST(Text, ForMessageBoundsAndEscapes) {
  std::string huge(1 << 20, 'a');
  std::string m = ForMessage(huge);
  EXPECT_LT(m.size(), 300u);
  EXPECT_NE(m.find("1048576 bytes"), std::string::npos);
  EXPECT_EQ(ForMessage("a\nb"), "a\\x0ab");
  EXPECT_TRUE(IsValidUtf8(ForMessage("\xff\xff")));
}

TEST(Text, RedactsCredentials) {
  const std::string body =
      R"({"errors":[{"message":"Authorization: Basic dXNlcjpwYXNzd29yZA== was refused; )"
      R"(Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijklmnopqrstuvwxyz012345 )"
      R"(token=supersecretvalue123&x=1 password: hunter2 "access_token":"abc123"}]})";
  std::string r = RedactSecrets(body);
  for (const char* secret :
       {"dXNlcjpwYXNzd29yZA", "eyJhbGciOiJIUzI1NiJ9", "supersecretvalue123", "hunter2", "abc123"}) {
    EXPECT_EQ(r.find(secret), std::string::npos) << secret << " in " << r;
  }
  // Names that end in a secret's name, quoted values with spaces, tabs,
  // percent-encoding, and hex keys that are not digests.
  const std::string more =
      "X-Registry-Auth: hunter2secret {\"x_password\":\"hunter2\"} client_secret=s3cr3t "
      "private-token: 0123456789abcdef0123456789abcdef \"password\": \"p@ss w0rd\" "
      "Bearer\tabcdefghijkl Authorization%3A%20Basic%20dXNlcjpwYXNz";
  std::string rm = RedactSecrets(more);
  for (const char* secret : {"hunter2secret", "hunter2", "s3cr3t", "0123456789abcdef0123", "p@ss",
                             "w0rd", "abcdefghijkl", "dXNlcjpwYXNz"}) {
    EXPECT_EQ(rm.find(secret), std::string::npos) << secret << " in " << rm;
  }
  // Digests and ordinary words survive.
  const std::string digest =
      "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  EXPECT_NE(RedactSecrets("blob unknown " + digest).find(digest), std::string::npos);
  EXPECT_EQ(RedactSecrets("manifest unknown to registry"), "manifest unknown to registry");
  EXPECT_EQ(RedactSecrets("tokenizer: fine"), "tokenizer: fine");
}

}  // namespace
}  // namespace regd
