// Registries: how regd reaches each registry, for every call.
//
// It holds the per-registry settings (--config, --insecure_registries), the
// shared RegistryClient (pooled connections, challenges, token cache) and the
// daemon's own credential store, and makes for a call the two things a
// service needs to speak to a registry on that call's behalf: its
// CredentialChain and a RegistryApi bound to it.
//
// Immutable after construction; thread-safe. Borrows the client, store and
// clock, which outlive it.
#ifndef REGD_CORE_REGISTRY_REGISTRIES_H_
#define REGD_CORE_REGISTRY_REGISTRIES_H_

#include <string>

#include "core/auth/credentials.h"
#include "core/call.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/registry/client.h"
#include "core/registry/v2.h"

namespace regd {

class Registries {
 public:
  Registries(RegistryConfigMap configs, RegistryClient* client, CredentialStore* daemon_credentials,
             Clock* clock)
      : configs_(std::move(configs)),
        client_(client),
        daemon_credentials_(daemon_credentials),
        clock_(clock) {}

  // Settings for "host[:port]", or null for the defaults.
  const RegistryConfig* ConfigFor(const std::string& registry) const;
  // Base URL (https, or http for insecure registries) and trust.
  Endpoint EndpointFor(const std::string& registry) const;
  // The call's credentials: its own, its tenant's, the daemon's.
  CredentialChain ChainFor(const CallContext& ctx) const;
  // The v2 API of `registry` on the call's behalf.
  RegistryApi ApiFor(const CallContext& ctx, const std::string& registry) const {
    return RegistryApi(client_, ChainFor(ctx), EndpointFor(registry), ctx.cancelled, clock_);
  }

  RegistryClient* client() const { return client_; }
  Clock* clock() const { return clock_; }

 private:
  const RegistryConfigMap configs_;
  RegistryClient* const client_;
  CredentialStore* const daemon_credentials_;
  Clock* const clock_;
};

}  // namespace regd

#endif  // REGD_CORE_REGISTRY_REGISTRIES_H_
