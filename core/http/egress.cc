#include "core/http/egress.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/http/http.h"
#include "core/status_macros.h"
#include "core/text.h"

namespace regd {
namespace {

// Splits "host:port" / "[v6]:port" / "host" into host and port ("" if none).
void SplitHostPort(absl::string_view hp, absl::string_view* host, absl::string_view* port) {
  *port = "";
  if (absl::StartsWith(hp, "[")) {
    size_t close = hp.find(']');
    if (close != absl::string_view::npos) {
      *host = hp.substr(0, close + 1);
      if (close + 1 < hp.size() && hp[close + 1] == ':') *port = hp.substr(close + 2);
      return;
    }
  }
  size_t colon = hp.rfind(':');
  if (colon != absl::string_view::npos && hp.find(':') == colon) {
    *host = hp.substr(0, colon);
    *port = hp.substr(colon + 1);
  } else {
    *host = hp;
  }
}

bool PatternMatches(absl::string_view pattern, absl::string_view host_port, bool exact_only) {
  absl::string_view phost, pport, host, port;
  SplitHostPort(pattern, &phost, &pport);
  SplitHostPort(host_port, &host, &port);
  // "reg:443" names the same place as "reg" (URLs drop default ports).
  const bool default_port = pport == "443" || pport == "80";
  if (!pport.empty() && pport != port && !(default_port && port.empty())) return false;
  if (absl::StartsWith(phost, "*.")) {
    if (exact_only) return false;
    absl::string_view suffix = phost.substr(1);  // ".example.com"
    return host.size() > suffix.size() && absl::EndsWithIgnoreCase(host, suffix);
  }
  return absl::EqualsIgnoreCase(phost, host);
}

[[nodiscard]] absl::Status CheckUrlBytes(absl::string_view url) {
  for (char c : url) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      return absl::PermissionDeniedError(
          absl::StrCat("refusing a URL with spaces or control bytes: ", ForMessage(url, 120)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string UrlHostPort(absl::string_view url) {
  std::string origin = UrlOrigin(url);
  size_t sep = origin.find("://");
  if (sep == std::string::npos) return "";
  std::string hp = origin.substr(sep + 3);
  // Drop userinfo, which regd never sends but a Location could carry.
  size_t at = hp.rfind('@');
  if (at != std::string::npos) hp = hp.substr(at + 1);
  return hp;
}

namespace {

// 169.254.0.0/16, and the cloud metadata services outside it (Alibaba's
// 100.100.100.200, Azure's wire server 168.63.129.16).
bool IsBlockedV4(uint32_t ip) {
  return (ip >> 16) == ((169u << 8) | 254u) ||
         ip == ((100u << 24) | (100u << 16) | (100u << 8) | 200u) ||
         ip == ((168u << 24) | (63u << 16) | (129u << 8) | 16u);
}

uint32_t V4At(const uint8_t* b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

}  // namespace

bool IsLinkLocalOrMetadata(const struct sockaddr* addr) {
  if (addr == nullptr) return false;
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    return IsBlockedV4(ntohl(in->sin_addr.s_addr));
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    const uint8_t* b = in6->sin6_addr.s6_addr;
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return true;  // fe80::/10
    static const uint8_t kEc2[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0,    0,
                                     0,    0,    0,    0,    0, 0, 0x02, 0x54};
    if (std::memcmp(b, kEc2, 16) == 0) return true;  // fd00:ec2::254
    // IPv4 inside IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d),
    // NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::).
    static const uint8_t kZero[12] = {};
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t kNat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (std::memcmp(b, kMapped, 12) == 0 || std::memcmp(b, kZero, 12) == 0 ||
        std::memcmp(b, kNat64, 12) == 0) {
      return IsBlockedV4(V4At(b + 12));
    }
    if (b[0] == 0x20 && b[1] == 0x02) return IsBlockedV4(V4At(b + 2));
  }
  return false;
}

EgressPolicy::EgressPolicy(EgressOptions options) : options_(std::move(options)) {}

absl::Status EgressPolicy::ValidatePattern(absl::string_view pattern) {
  absl::string_view host, port;
  SplitHostPort(pattern, &host, &port);
  absl::string_view name = host;
  absl::ConsumePrefix(&name, "*.");
  bool ok = !name.empty() && name.size() <= 253;
  for (char c : name) {
    ok = ok && (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
                c == '[' || c == ']' || c == ':');
  }
  if (!port.empty()) {
    ok = ok && port.size() <= 5 && port.find_first_not_of("0123456789") == absl::string_view::npos;
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", ForMessage(pattern), "\" is not a host[:port] pattern"));
  }
  return absl::OkStatus();
}

bool EgressPolicy::Listed(const std::vector<std::string>& patterns, absl::string_view host_port,
                          bool exact_only) const {
  for (const std::string& p : patterns) {
    if (PatternMatches(p, host_port, exact_only)) return true;
  }
  return false;
}

absl::Status EgressPolicy::CheckRegistry(absl::string_view host_port) const {
  if (options_.allowed_registries.empty()) return absl::OkStatus();
  // docker.io is reached at registry-1.docker.io; either name allows it.
  if (Listed(options_.allowed_registries, host_port, false) ||
      (host_port == "docker.io" &&
       Listed(options_.allowed_registries, "registry-1.docker.io", false))) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      absl::StrCat("registry ", ForMessage(host_port), " is not in regd's --allowed_registries"));
}

absl::Status EgressPolicy::CheckHop(absl::string_view from, absl::string_view to) const {
  // libcurl reads a URL as a C string: a NUL (or any control byte) would make
  // it connect to another host than the one checked here.
  RETURN_IF_ERROR(CheckUrlBytes(to));
  const bool to_https = absl::StartsWithIgnoreCase(to, "https://");
  const bool to_http = absl::StartsWithIgnoreCase(to, "http://");
  if (!to_https && !to_http) {
    return absl::PermissionDeniedError(
        absl::StrCat("refusing to follow ", ForMessage(to, 120), ": not http or https"));
  }
  const std::string host_port = UrlHostPort(to);
  if (host_port.empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat("refusing to follow ", ForMessage(to, 120), ": no host"));
  }
  if (to_http) {
    if (absl::StartsWithIgnoreCase(from, "https://")) {
      return absl::PermissionDeniedError(absl::StrCat(
          "refusing a redirect from HTTPS to plain HTTP (", ForMessage(host_port), ")"));
    }
    if (!Listed(options_.insecure_registries, host_port, false)) {
      return absl::PermissionDeniedError(absl::StrCat(
          "refusing plain HTTP to ", ForMessage(host_port), ": not in --insecure_registries"));
    }
  }
  if (!options_.allowed_registries.empty() && UrlOrigin(from) != UrlOrigin(to) &&
      !Listed(options_.allowed_registries, host_port, false)) {
    return absl::PermissionDeniedError(
        absl::StrCat("refusing to follow the registry to ", ForMessage(host_port),
                     ": not in --allowed_registries (list the registry's storage host too)"));
  }
  return absl::OkStatus();
}

absl::Status EgressPolicy::CheckRealm(absl::string_view registry_url,
                                      absl::string_view realm) const {
  RETURN_IF_ERROR(CheckUrlBytes(realm));
  const bool https = absl::StartsWithIgnoreCase(realm, "https://");
  const bool http = absl::StartsWithIgnoreCase(realm, "http://");
  const std::string host_port = UrlHostPort(realm);
  if ((!https && !http) || host_port.empty()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "refusing the token service ", ForMessage(realm, 120), ": not an http(s) URL"));
  }
  if (http && absl::StartsWithIgnoreCase(registry_url, "https://")) {
    return absl::PermissionDeniedError(absl::StrCat(
        "refusing the plain-HTTP token service ", ForMessage(host_port), " of an HTTPS registry"));
  }
  if (!options_.allowed_registries.empty() && UrlOrigin(registry_url) != UrlOrigin(realm) &&
      !Listed(options_.allowed_registries, host_port, false)) {
    return absl::PermissionDeniedError(
        absl::StrCat("refusing the token service ", ForMessage(host_port),
                     ": not in --allowed_registries (list the registry's token host too)"));
  }
  return absl::OkStatus();
}

bool EgressPolicy::AddressAllowed(const struct sockaddr* addr, absl::string_view host_port) const {
  if (!IsLinkLocalOrMetadata(addr)) return true;
  return Listed(options_.explicit_hosts, host_port, true);
}

}  // namespace regd
