// Registry credentials: where they come from and how they are resolved.
//
// Sources, first match wins:
//   1. the --config file's per-registry `credentials_file`;
//   2. the docker config ($DOCKER_CONFIG/config.json, else ~/.docker/config.json):
//      `credHelpers[host]`, then `auths[host]`, then `credsStore`.
// Credential helpers are run with the docker-credential-* protocol
// ("get", server URL on stdin, JSON {Username, Secret} on stdout).
//
// CredentialStore caches each registry's resolution for `ttl` so that a helper
// is not run (nor a file re-read) on every call. Thread-safe. Credentials are
// never logged and never put into a Status message.
#ifndef REGD_CORE_AUTH_CREDENTIALS_H_
#define REGD_CORE_AUTH_CREDENTIALS_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/clock.h"

namespace regd {

struct Credentials {
  std::string username;
  std::string password;
  std::string identity_token;  // OAuth2 refresh token (docker "identitytoken")
  std::string registry_token;  // a bearer token to send as-is ("registrytoken")

  bool empty() const {
    return username.empty() && password.empty() && identity_token.empty() && registry_token.empty();
  }
};

// A name for a set of credentials, for cache keys: equal credentials give the
// same name, different ones (in practice) different names. "anonymous" for
// none; otherwise "c:" and 128 bits of a SHA-256 of every field. It reveals
// nothing usable about the secret, but is still kept out of logs.
std::string CredentialIdentity(const Credentials& c);

// Credentials a caller sends with one call (Docker's AuthConfig, as in the
// X-Registry-Auth header): {"username","password"} | {"auth"} |
// {"identitytoken"} | {"registrytoken"}, optionally "serveraddress" (then
// `registry` holds it normalised to host[:port], and the credentials apply to
// that registry only). INVALID_ARGUMENT without naming any value.
struct CallCredentials {
  Credentials creds;
  std::string registry;  // "" : every registry of the call
};
[[nodiscard]] absl::StatusOr<CallCredentials> ParseAuthConfig(absl::string_view json);

// Reads docker-config-style JSON (`auths`, `credHelpers`, `credsStore`) and
// returns the credentials for `registry` ("host[:port]"; "docker.io" also
// matches the legacy "https://index.docker.io/v1/" key). NOT_FOUND when the file
// names none. `helper_runner` runs a credential helper (seam for tests).
using HelperRunner = std::function<absl::StatusOr<std::string>(const std::string& helper,
                                                               const std::string& server)>;
[[nodiscard]] absl::StatusOr<Credentials> CredentialsFromDockerConfig(
    absl::string_view json, const std::string& registry, const HelperRunner& helper_runner);

// Parses a credentials file: {"username": "...", "password": "..."} or
// {"identitytoken": "..."} or {"registrytoken": "..."}.
[[nodiscard]] absl::StatusOr<Credentials> ParseCredentialsFile(absl::string_view json);

// Runs `docker-credential-<helper> get` with `server` on stdin; returns stdout.
[[nodiscard]] absl::StatusOr<std::string> RunCredentialHelper(const std::string& helper,
                                                              const std::string& server);

class CredentialStore {
 public:
  struct Options {
    // Docker config directory; empty: $DOCKER_CONFIG, else $HOME/.docker.
    std::string docker_config_dir;
    // A docker config.json to read instead of the directory's (a tenant's).
    std::string docker_config_file;
    // Per-registry credentials files from the --config file.
    std::map<std::string, std::string> credentials_files;
    // How long a resolution (including "no credentials") is reused.
    absl::Duration ttl = absl::Minutes(5);
    HelperRunner helper_runner = RunCredentialHelper;
  };
  CredentialStore(Options options, Clock* clock);

  // Credentials for "host[:port]" (as named in references); empty when none
  // are configured. Errors only for broken configuration (unreadable file,
  // failing helper).
  [[nodiscard]] absl::StatusOr<Credentials> Get(const std::string& registry);

  // Drops the cached resolution so the next Get re-reads (after a 401).
  void Invalidate(const std::string& registry);

 private:
  [[nodiscard]] absl::StatusOr<Credentials> Resolve(const std::string& registry);

  const Options options_;
  Clock* const clock_;
  struct Entry {
    Credentials creds;
    absl::Time expires;
  };
  absl::Mutex mu_;
  std::map<std::string, Entry> cache_ ABSL_GUARDED_BY(mu_);
};

// Credentials resolved for one registry, with their cache key name.
struct ResolvedCredentials {
  Credentials creds;
  std::string identity;  // CredentialIdentity(creds)
};

// Where one call's registry credentials come from, first match wins: the
// call's own (x-registry-auth), its tenant's docker config, the daemon's.
// When the call brought its own for a registry, nothing else is used for it,
// even when they are refused. Borrows everything; a value, one per call.
struct CredentialChain {
  const CallCredentials* own = nullptr;
  CredentialStore* tenant = nullptr;
  CredentialStore* daemon = nullptr;

  [[nodiscard]] absl::StatusOr<ResolvedCredentials> Resolve(const std::string& registry) const;
  // After a 401: the stores re-read before their next use.
  void Invalidate(const std::string& registry) const;
};

}  // namespace regd

#endif  // REGD_CORE_AUTH_CREDENTIALS_H_
