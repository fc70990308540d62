// Per-registry settings and their JSON config file.
//
// The --config file:
//   {
//     "registries": {
//       "HOST[:PORT]": {
//         "plain_http": false,          // speak HTTP, not HTTPS
//         "ca_bundle": "/path/ca.pem",  // extra trust for this registry's TLS
//         "credentials_file": "/path/creds.json",
//         "chunk_size": 16777216,       // upload chunk size in bytes
//         "concurrency": 8              // blob uploads at once to this registry
//       }
//     }
//   }
// Unknown keys, wrong types and impossible values are errors: the daemon fails
// fast at start with a message naming the key.
//
// Value types; thread-compatible.
#ifndef REGD_CORE_CONFIG_H_
#define REGD_CORE_CONFIG_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace regd {

struct RegistryConfig {
  bool plain_http = false;
  std::string ca_bundle;         // empty: the system trust store
  std::string credentials_file;  // empty: docker config
  int64_t chunk_size = 0;        // 0: the engine default
  int concurrency = 0;           // 0: the engine default
};

// Registry name ("host[:port]" as in references) → settings.
using RegistryConfigMap = std::map<std::string, RegistryConfig>;

// Parses and validates the config file's JSON text. Checks that files it names
// exist and are readable.
[[nodiscard]] absl::StatusOr<RegistryConfigMap> ParseConfigFile(absl::string_view json);

// Where and how to reach one registry's API.
struct Endpoint {
  std::string registry;  // name as in references: "docker.io", "localhost:5000"
  std::string base_url;  // "https://registry-1.docker.io"
  std::string ca_bundle;
};

}  // namespace regd

#endif  // REGD_CORE_CONFIG_H_
