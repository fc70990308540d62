// EgressPolicy: which registries, redirect targets and addresses regd may
// connect to. A shared regd connects wherever a caller names, so:
//   - with --allowed_registries set, any other registry is PERMISSION_DENIED
//     before a byte is sent, and so is a redirect or upload Location that
//     leaves the allowed hosts;
//   - plain HTTP only to --insecure_registries, and never a step down from
//     HTTPS to HTTP;
//   - link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10,
//     fd00:ec2::254, 100.100.100.200, 168.63.129.16, and those IPv4 ones
//     inside IPv6: mapped, compatible, NAT64, 6to4) are refused at connect
//     time, after DNS (so a name that resolves there is caught too), unless
//     the host is listed explicitly.
//
// Immutable after construction; thread-safe.
#ifndef REGD_CORE_HTTP_EGRESS_H_
#define REGD_CORE_HTTP_EGRESS_H_

#include <sys/socket.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace regd {

struct EgressOptions {
  // host[:port] patterns; "*.example.com" matches any subdomain. A pattern
  // without a port matches every port. Empty: every registry is allowed.
  std::vector<std::string> allowed_registries;
  // host[:port] spoken to over plain HTTP.
  std::vector<std::string> insecure_registries;
  // Hosts named exactly (not by a wildcard) in the lists above or in the
  // config file: only these may resolve to link-local/metadata addresses.
  std::vector<std::string> explicit_hosts;
};

class EgressPolicy {
 public:
  explicit EgressPolicy(EgressOptions options);

  // INVALID_ARGUMENT unless `pattern` is a host[:port] pattern.
  [[nodiscard]] static absl::Status ValidatePattern(absl::string_view pattern);

  // PERMISSION_DENIED unless the registry `host_port` may be used.
  [[nodiscard]] absl::Status CheckRegistry(absl::string_view host_port) const;

  // PERMISSION_DENIED unless a request that was going to `from` (an absolute
  // URL, or "" for a first request) may go on to `to` (a redirect target or
  // an upload Location): http/https only, no HTTPS → HTTP, plain HTTP only to
  // insecure registries, and with an allow list, only to allowed hosts.
  [[nodiscard]] absl::Status CheckHop(absl::string_view from, absl::string_view to) const;

  // PERMISSION_DENIED unless a registry at `registry_url` may send us to the
  // token service `realm`: http/https only, never HTTPS → HTTP, and with an
  // allow list, only to an allowed host (list auth.docker.io for Docker Hub).
  // A plain-HTTP realm of a plain-HTTP registry needs no listing of its own.
  [[nodiscard]] absl::Status CheckRealm(absl::string_view registry_url,
                                        absl::string_view realm) const;

  // False when `addr` is link-local or a metadata address and `host_port`
  // (the URL's authority) is not listed explicitly.
  bool AddressAllowed(const struct sockaddr* addr, absl::string_view host_port) const;

  // Redirects followed per request.
  static constexpr int kMaxRedirects = 5;

 private:
  bool Listed(const std::vector<std::string>& patterns, absl::string_view host_port,
              bool exact_only) const;
  EgressOptions options_;
};

// "host:port" (lower case, default port dropped) of an absolute URL, or "".
std::string UrlHostPort(absl::string_view url);
// True for addresses regd never connects to unless told to explicitly.
bool IsLinkLocalOrMetadata(const struct sockaddr* addr);

}  // namespace regd

#endif  // REGD_CORE_HTTP_EGRESS_H_
