#include "core/http/http.h"

#include "gtest/gtest.h"

namespace regd {
namespace {

TEST(Url, OriginDropsDefaultPortsAndLowersCase) {
  EXPECT_EQ(UrlOrigin("https://Reg.Example.com:443/v2/x?y=1"), "https://reg.example.com");
  EXPECT_EQ(UrlOrigin("https://reg.example.com/v2/"), "https://reg.example.com");
  EXPECT_EQ(UrlOrigin("http://reg:80/v2/"), "http://reg");
  EXPECT_EQ(UrlOrigin("http://reg:5000/v2/"), "http://reg:5000");
  EXPECT_EQ(UrlOrigin("https://reg:5443"), "https://reg:5443");
  EXPECT_NE(UrlOrigin("http://reg:443/"), UrlOrigin("https://reg/"));
  EXPECT_EQ(UrlOrigin("no-scheme"), "");
}

TEST(Url, ResolveLocationForms) {
  const char* base = "https://reg:443/v2/a/blobs/uploads/u1?_state=x";
  EXPECT_EQ(ResolveUrl(base, "https://other/v2/p"), "https://other/v2/p");
  EXPECT_EQ(ResolveUrl(base, "/v2/a/blobs/uploads/u1?_state=y"),
            "https://reg:443/v2/a/blobs/uploads/u1?_state=y");
  EXPECT_EQ(ResolveUrl(base, "//cdn.example/blob"), "https://cdn.example/blob");
  EXPECT_EQ(ResolveUrl(base, "u2?_state=z"), "https://reg:443/v2/a/blobs/uploads/u2?_state=z");
  EXPECT_EQ(ResolveUrl("http://r:5000", "/v2/"), "http://r:5000/v2/");
}

TEST(Url, Encode) {
  EXPECT_EQ(UrlEncode("sha256:ab"), "sha256%3Aab");
  EXPECT_EQ(UrlEncode("repository:a/b:push,pull"), "repository%3Aa%2Fb%3Apush%2Cpull");
  EXPECT_EQ(UrlEncode("A-z_0.9~"), "A-z_0.9~");
}

}  // namespace
}  // namespace regd
