#include "core/engine.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/http/curl_transport.h"

namespace regd {

Engine::~Engine() = default;

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(EngineOptions options) {
  if (options.cache_bytes < 0) {
    return absl::InvalidArgumentError("--cache_bytes must not be negative");
  }
  for (const std::string& host : options.insecure_registries) {
    if (host.empty() || host.find('/') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--insecure_registries: \"", host, "\" is not a host[:port]"));
    }
    options.registries[host].plain_http = true;
  }
  EgressOptions eo;
  eo.allowed_registries = options.allowed_registries;
  for (const std::string& p : options.allowed_registries) {
    absl::Status st = EgressPolicy::ValidatePattern(p);
    if (!st.ok())
      return absl::InvalidArgumentError(absl::StrCat("--allowed_registries: ", st.message()));
  }
  for (const auto& [name, rc] : options.registries) {
    if (rc.plain_http) eo.insecure_registries.push_back(name);
  }
  // Named exactly (no wildcard) anywhere: such a host may be link-local.
  for (const std::string& p : options.allowed_registries) {
    if (!absl::StartsWith(p, "*.")) eo.explicit_hosts.push_back(p);
  }
  for (const auto& [name, rc] : options.registries) eo.explicit_hosts.push_back(name);
  auto egress = std::make_shared<const EgressPolicy>(std::move(eo));
  options.transport.egress = egress;
  std::unique_ptr<Engine> e(new Engine());
  e->egress_ = egress;
  Clock* clock = options.clock != nullptr ? options.clock : SystemClock();
  e->transport_ = options.transport_override ? options.transport_override
                                             : std::make_shared<CurlTransport>(options.transport);
  CredentialStore::Options co;
  co.docker_config_dir = options.docker_config_dir;
  for (const auto& [name, rc] : options.registries) {
    if (!rc.credentials_file.empty()) co.credentials_files[name] = rc.credentials_file;
  }
  e->credentials_ = std::make_unique<CredentialStore>(std::move(co), clock);
  e->auth_ = std::make_unique<Authenticator>(e->transport_.get(), clock, e->egress_.get(),
                                             options.observer);
  e->client_ = std::make_unique<RegistryClient>(e->transport_.get(), e->auth_.get(),
                                                e->egress_.get(), options.observer);
  e->registries_ = std::make_unique<Registries>(std::move(options.registries), e->client_.get(),
                                                e->credentials_.get(), clock);
  e->cache_ = std::make_unique<MetadataCache>(options.cache_bytes, options.observer);
  e->reads_ = std::make_unique<ReadService>(e->registries_.get(), e->cache_.get());
  e->pulls_ =
      std::make_unique<PullService>(e->registries_.get(), e->reads_.get(), options.allowed_paths,
                                    options.max_index_entries, options.max_image_layers);
  WriteOptions wo;
  wo.allowed_paths = std::move(options.allowed_paths);
  wo.default_chunk_size = options.default_chunk_size;
  wo.default_registry_concurrency = options.default_registry_concurrency;
  wo.max_inline_bytes = options.max_inline_bytes;
  wo.inline_budget_bytes = options.inline_budget_bytes;
  wo.upload_cancel_grace = options.upload_cancel_grace;
  wo.max_index_entries = options.max_index_entries;
  wo.max_image_layers = options.max_image_layers;
  e->writes_ = std::make_unique<WriteService>(std::move(wo), e->registries_.get(), e->reads_.get());
  e->reads_->set_buffer_budget(e->writes_->inline_budget());
  return e;
}

}  // namespace regd
