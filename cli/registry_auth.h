// Registry credentials a call brings: the `x-registry-auth` metadata value,
// base64url (unpadded) of Docker's AuthConfig JSON, built from
// --registry-user/--registry-password or from the user's docker config
// (`auths` entries only: base64 `auth`, username/password or identitytoken;
// no credential helpers). Pure functions over files; thread-safe.
#ifndef REGD_CLI_REGISTRY_AUTH_H_
#define REGD_CLI_REGISTRY_AUTH_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace regdctl {

// The registry ("docker.io", "127.0.0.1:5000") an image reference or a
// repository names, or "" when it does not parse (the daemon then says why).
std::string RegistryOfReference(absl::string_view ref);
std::string RegistryOfRepository(absl::string_view repo);

struct RegistryLogin {
  std::string username;
  std::string password;
  std::string identity_token;
};

// The docker config file regdctl reads: $DOCKER_CONFIG/config.json, else
// $HOME/.docker/config.json.
std::string DockerConfigPath();

// The `auths` entry of the docker config at `path` for `registry`: keys match
// with or without a scheme and path ("https://host/v1/"); Docker Hub's
// spellings (index.docker.io, registry-1.docker.io, its v1 URL) all match
// "docker.io". FAILED_PRECONDITION when the file has none (naming helpers
// when the registry is configured through one).
[[nodiscard]] absl::StatusOr<RegistryLogin> LoginFromDockerConfig(const std::string& path,
                                                                  absl::string_view registry);

// The x-registry-auth value for `login`: {"username","password"} (or
// "identitytoken") plus "serveraddress" when `registry` is not empty.
std::string RegistryAuthValue(const RegistryLogin& login, absl::string_view registry);

}  // namespace regdctl

#endif  // REGD_CLI_REGISTRY_AUTH_H_
