#include "core/http/egress.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "gtest/gtest.h"

namespace regd {
namespace {

sockaddr_in V4(const char* ip) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

sockaddr_in6 V6(const char* ip) {
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  inet_pton(AF_INET6, ip, &a.sin6_addr);
  return a;
}

TEST(Egress, LinkLocalAndMetadataAddresses) {
  auto v4 = [](const char* ip) {
    sockaddr_in a = V4(ip);
    return IsLinkLocalOrMetadata(reinterpret_cast<sockaddr*>(&a));
  };
  auto v6 = [](const char* ip) {
    sockaddr_in6 a = V6(ip);
    return IsLinkLocalOrMetadata(reinterpret_cast<sockaddr*>(&a));
  };
  EXPECT_TRUE(v4("169.254.169.254"));
  EXPECT_TRUE(v4("169.254.0.1"));
  EXPECT_FALSE(v4("127.0.0.1"));
  EXPECT_FALSE(v4("169.253.1.1"));
  EXPECT_TRUE(v6("fe80::1"));
  EXPECT_TRUE(v6("febf::1"));
  EXPECT_FALSE(v6("fec0::1"));
  EXPECT_TRUE(v6("::ffff:169.254.169.254"));
  EXPECT_TRUE(v6("fd00:ec2::254"));
  EXPECT_FALSE(v6("::1"));
  EXPECT_TRUE(v6("64:ff9b::a9fe:a9fe"));  // NAT64
  EXPECT_TRUE(v6("::a9fe:a9fe"));         // IPv4-compatible
  EXPECT_TRUE(v6("2002:a9fe:a9fe::"));    // 6to4
  EXPECT_FALSE(v6("2002:7f00:1::"));
  EXPECT_TRUE(v4("100.100.100.200"));
  EXPECT_TRUE(v4("168.63.129.16"));
}

TEST(Egress, ExplicitHostsMayBeLinkLocal) {
  EgressOptions o;
  o.explicit_hosts = {"169.254.10.10:5000", "meta.internal"};
  EgressPolicy p(o);
  sockaddr_in a = V4("169.254.10.10");
  EXPECT_TRUE(p.AddressAllowed(reinterpret_cast<sockaddr*>(&a), "169.254.10.10:5000"));
  EXPECT_TRUE(p.AddressAllowed(reinterpret_cast<sockaddr*>(&a), "meta.internal:443"));
  EXPECT_FALSE(p.AddressAllowed(reinterpret_cast<sockaddr*>(&a), "evil.example.com"));
  sockaddr_in ok = V4("10.0.0.1");
  EXPECT_TRUE(p.AddressAllowed(reinterpret_cast<sockaddr*>(&ok), "evil.example.com"));
}

TEST(Egress, AllowedRegistries) {
  EgressOptions o;
  o.allowed_registries = {"registry.example.com", "*.corp.example:5000", "docker.io"};
  EgressPolicy p(o);
  EXPECT_TRUE(p.CheckRegistry("registry.example.com").ok());
  EXPECT_TRUE(p.CheckRegistry("registry.example.com:8443").ok());  // no port: any
  EXPECT_TRUE(p.CheckRegistry("a.corp.example:5000").ok());
  EXPECT_FALSE(p.CheckRegistry("a.corp.example:5001").ok());
  EXPECT_FALSE(p.CheckRegistry("corp.example:5000").ok());
  EXPECT_FALSE(p.CheckRegistry("evilcorp.example:5000").ok());
  EXPECT_TRUE(absl::IsPermissionDenied(p.CheckRegistry("ghcr.io")));
  EXPECT_TRUE(p.CheckRegistry("docker.io").ok());
  EgressOptions d;
  d.allowed_registries = {"reg.example.com:443"};
  EXPECT_TRUE(EgressPolicy(d)
                  .CheckHop("https://reg.example.com/v2/", "https://reg.example.com:443/x")
                  .ok());
  EXPECT_TRUE(
      EgressPolicy(d).CheckRealm("https://reg.example.com", "https://reg.example.com/token").ok());
  EXPECT_FALSE(
      EgressPolicy(d).CheckRealm("https://reg.example.com", "https://auth.example.com/t").ok());
  EXPECT_FALSE(EgressPolicy(EgressOptions()).CheckRealm("https://r", "http://r/token").ok());
  EXPECT_TRUE(EgressPolicy(EgressOptions()).CheckRealm("http://r:5000", "http://auth:80/t").ok());
  EXPECT_TRUE(EgressPolicy(EgressOptions()).CheckRegistry("anything:1").ok());
}

TEST(Egress, Hops) {
  EgressOptions o;
  o.insecure_registries = {"127.0.0.1:5000", "storage:9000"};
  EgressPolicy p(o);
  EXPECT_TRUE(p.CheckHop("http://127.0.0.1:5000/v2/", "http://storage:9000/b").ok());
  EXPECT_TRUE(p.CheckHop("https://r/v2/", "https://cdn.example/b").ok());
  // No downgrade, even to a listed insecure host.
  EXPECT_FALSE(p.CheckHop("https://r/v2/", "http://storage:9000/b").ok());
  EXPECT_FALSE(p.CheckHop("http://127.0.0.1:5000/v2/", "http://other:80/b").ok());
  EXPECT_FALSE(p.CheckHop("https://r/v2/", "file:///etc/passwd").ok());
  EXPECT_FALSE(p.CheckHop("https://r/v2/", "gopher://x/").ok());
  // libcurl would stop at the NUL and connect to evil.example.org.
  EXPECT_FALSE(
      p.CheckHop("https://r/v2/", std::string("https://evil.example.org\0.r/v2/", 31)).ok());
  EXPECT_FALSE(p.CheckHop("https://r/v2/", "https://cdn.example/a b").ok());
  EgressOptions strict = o;
  strict.allowed_registries = {"r"};
  EgressPolicy s(strict);
  EXPECT_FALSE(s.CheckHop("https://r/v2/", "https://cdn.example/b").ok());
  EXPECT_TRUE(s.CheckHop("https://r/v2/", "https://r/other").ok());
}

TEST(Egress, Patterns) {
  EXPECT_TRUE(EgressPolicy::ValidatePattern("reg.example.com:5000").ok());
  EXPECT_TRUE(EgressPolicy::ValidatePattern("*.example.com").ok());
  EXPECT_FALSE(EgressPolicy::ValidatePattern("a b").ok());
  EXPECT_FALSE(EgressPolicy::ValidatePattern("").ok());
  EXPECT_FALSE(EgressPolicy::ValidatePattern("host:port").ok());
  EXPECT_EQ(UrlHostPort("https://User@Reg.Example:443/v2/"), "reg.example");
  EXPECT_EQ(UrlHostPort("http://127.0.0.1:5000/x"), "127.0.0.1:5000");
}

}  // namespace
}  // namespace regd
