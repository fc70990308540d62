#include "core/registry/registries.h"

#include "absl/strings/str_cat.h"

namespace regd {

const RegistryConfig* Registries::ConfigFor(const std::string& registry) const {
  auto it = configs_.find(registry);
  return it == configs_.end() ? nullptr : &it->second;
}

Endpoint Registries::EndpointFor(const std::string& registry) const {
  Endpoint ep;
  ep.registry = registry;
  const RegistryConfig* rc = ConfigFor(registry);
  Repository r{registry, ""};
  ep.base_url = absl::StrCat(rc != nullptr && rc->plain_http ? "http://" : "https://", r.ApiHost());
  if (rc != nullptr) ep.ca_bundle = rc->ca_bundle;
  return ep;
}

CredentialChain Registries::ChainFor(const CallContext& ctx) const {
  CredentialChain chain;
  chain.own = ctx.credentials.get();
  chain.tenant = ctx.tenant_credentials.get();
  chain.daemon = daemon_credentials_;
  return chain;
}

}  // namespace regd
