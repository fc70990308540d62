// Policy: which callers (tenants) may use which repositories, from --policy.
//
// The --policy file (docs/CONFIG.md has the full description):
//   {"tenants": [
//     {"name": "team-a",
//      "client_cert_cn": "team-a",          // exactly one of these three keys
//      "client_cert_uri_san": "spiffe://...",
//      "token_sha256": "<64 hex>",          //   (hex SHA-256 of a bearer token)
//      "allow": [{"prefix": "registry.example.com/team-a/", "actions": ["pull", "push"]}],
//      "docker_config": "/etc/regd/tenants/team-a.json",   // optional
//      "allowed_paths": ["/shared/team-a"],                  // optional
//      "max_concurrent_calls": 32}                        // optional
//   ]}
// Unknown keys, wrong types, duplicate names or identities, and prefixes that
// are not a registry (and optional path) are errors: the daemon fails fast at
// start with a message naming the tenant and key.
//
// A prefix is matched on whole path segments of the normalised repository
// "registry[:port]/path/": "reg.example.com/team-a/" matches
// "reg.example.com/team-a/app" but not "reg.example.com/team-ab/app".
//
// Immutable once loaded; safe to use from any number of threads.
#ifndef REGD_CORE_POLICY_H_
#define REGD_CORE_POLICY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/reference/reference.h"

namespace regd {

enum class Action { kPull, kPush };

struct AllowRule {
  std::string prefix;  // normalised: "host[:port]/" or "host[:port]/path/"
  bool pull = false;
  bool push = false;
};

struct Tenant {
  std::string name;
  // Exactly one is set.
  std::string client_cert_cn;
  std::string client_cert_uri_san;
  std::string token_sha256;  // lower-case hex
  std::vector<AllowRule> allow;
  std::string docker_config;  // a docker config.json for this tenant; "" none
  // Directories its file sources (BlobSource.path, OciLayout.path) may be read
  // from. Under a policy only these count (not --allowed_paths): a tenant
  // without any has no file sources, so no tenant reads another's files.
  std::vector<std::string> allowed_paths;
  int max_concurrent_calls = 0;  // 0: no limit of its own
};

// What the transport says about a caller.
struct CallerIdentity {
  std::string cert_cn;                // the client certificate's Subject CN, if any
  std::vector<std::string> uri_sans;  // its URI SANs
  std::string bearer_token;           // from "authorization: Bearer ..."; never logged
};

class Policy {
 public:
  // Parses and validates the policy JSON (bounded; see core/json.h). Checks
  // that every docker_config file exists and is readable.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Policy>> Parse(absl::string_view json);
  // Reads `path` (at most 1 MiB) and parses it.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Policy>> Load(const std::string& path);

  // The tenant the caller is, or null. A client certificate is tried first
  // (CN, then URI SANs), then the bearer token (compared in constant time).
  const Tenant* Identify(const CallerIdentity& who) const;

  // OK when `tenant` may do `action` on `repo`; else PERMISSION_DENIED naming
  // the tenant, the repository and the action.
  [[nodiscard]] absl::Status Check(const Tenant& tenant, const Repository& repo,
                                   Action action) const;

  const std::vector<Tenant>& tenants() const { return tenants_; }

 private:
  std::vector<Tenant> tenants_;
};

// "pull" / "push".
absl::string_view ActionName(Action a);

}  // namespace regd

#endif  // REGD_CORE_POLICY_H_
