#include "server/callers.h"

#include <grpc/grpc_security_constants.h>

#include <optional>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/clock.h"
#include "core/status_macros.h"

namespace regd {
namespace {

constexpr size_t kMaxRegistryAuthBytes = 16 << 10;

std::optional<std::string> Metadata(grpc::CallbackServerContext* sctx, const char* key) {
  const auto& md = sctx->client_metadata();
  auto it = md.find(key);
  if (it == md.end()) return std::nullopt;
  return std::string(it->second.data(), it->second.size());
}

// base64url (RFC 4648 §5), padded or not; standard base64 is taken too.
[[nodiscard]] absl::StatusOr<std::string> DecodeBase64Any(absl::string_view text) {
  std::string out;
  if (absl::WebSafeBase64Unescape(text, &out)) return out;
  if (absl::Base64Unescape(text, &out)) return out;
  return absl::InvalidArgumentError("x-registry-auth is not base64url");
}

[[nodiscard]] absl::StatusOr<std::shared_ptr<const CallCredentials>> RegistryAuthOf(
    grpc::CallbackServerContext* sctx) {
  std::optional<std::string> sent = Metadata(sctx, "x-registry-auth");
  if (!sent.has_value()) return nullptr;
  // Present but empty is a caller's mistake, not "no credentials": the
  // daemon's own must not stand in for ones it meant to send.
  if (sent->empty()) return absl::InvalidArgumentError("x-registry-auth is empty");
  const std::string& header = *sent;
  if (header.size() > kMaxRegistryAuthBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("x-registry-auth is larger than ", kMaxRegistryAuthBytes, " bytes"));
  }
  ASSIGN_OR_RETURN(std::string json, DecodeBase64Any(header));
  ASSIGN_OR_RETURN(CallCredentials creds, ParseAuthConfig(json));
  return std::make_shared<const CallCredentials>(std::move(creds));
}

}  // namespace

std::string RequestIdOf(grpc::CallbackServerContext* sctx) {
  std::string id = Metadata(sctx, "x-request-id").value_or("");
  bool sane = !id.empty() && id.size() <= 128;
  for (char c : id) {
    sane = sane && (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
                    c == ':' || c == '-');
  }
  if (!sane) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    id = absl::StrCat(absl::Hex(rng(), absl::kZeroPad16));
  }
  sctx->AddInitialMetadata("x-request-id", id);
  return id;
}

CallerIdentity IdentityOf(grpc::CallbackServerContext* sctx) {
  CallerIdentity who;
  std::shared_ptr<const grpc::AuthContext> auth = sctx->auth_context();
  if (auth != nullptr && auth->IsPeerAuthenticated()) {
    for (const grpc::string_ref& v : auth->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME)) {
      who.cert_cn.assign(v.data(), v.size());
    }
    for (const grpc::string_ref& v : auth->FindPropertyValues(GRPC_PEER_URI_PROPERTY_NAME)) {
      who.uri_sans.emplace_back(v.data(), v.size());
    }
  }
  std::string authorization = Metadata(sctx, "authorization").value_or("");
  absl::string_view value = authorization;
  if (absl::ConsumePrefix(&value, "Bearer ") || absl::ConsumePrefix(&value, "bearer ")) {
    who.bearer_token = std::string(value);
  }
  return who;
}

Callers::Callers(std::shared_ptr<const Policy> policy) : policy_(std::move(policy)) {
  if (policy_ == nullptr) return;
  absl::MutexLock lock(&mu_);
  for (const Tenant& t : policy_->tenants()) {
    TenantState& st = tenants_[&t];
    if (!t.docker_config.empty()) {
      CredentialStore::Options o;
      o.docker_config_file = t.docker_config;
      st.credentials = std::make_shared<CredentialStore>(std::move(o), SystemClock());
    }
  }
}

absl::Status Callers::Recognise(grpc::CallbackServerContext* sctx) const {
  if (policy_ == nullptr || policy_->Identify(IdentityOf(sctx)) != nullptr) {
    return absl::OkStatus();
  }
  return absl::UnauthenticatedError(
      "no tenant of this gateway's policy matches the caller (send a client certificate or "
      "\"authorization: Bearer <token>\")");
}

absl::StatusOr<Callers::Admission> Callers::Admit(grpc::CallbackServerContext* sctx) {
  Admission a;
  const Tenant* tenant = nullptr;
  if (policy_ != nullptr) {
    // Who the caller is comes first: a stranger learns nothing else.
    tenant = policy_->Identify(IdentityOf(sctx));
    if (tenant == nullptr) {
      return absl::UnauthenticatedError(
          "no tenant of this gateway's policy matches the caller (send a client certificate or "
          "\"authorization: Bearer <token>\")");
    }
  }
  ASSIGN_OR_RETURN(a.ctx.credentials, RegistryAuthOf(sctx));
  if (policy_ == nullptr) return a;
  {
    absl::MutexLock lock(&mu_);
    TenantState& st = tenants_[tenant];
    if (tenant->max_concurrent_calls > 0 && st.running >= tenant->max_concurrent_calls) {
      return absl::ResourceExhaustedError(absl::StrCat("tenant \"", tenant->name, "\" has ",
                                                       st.running, " calls running, its limit"));
    }
    ++st.running;
    a.ctx.tenant_credentials = st.credentials;
  }
  a.slot = std::shared_ptr<void>(nullptr, [this, tenant](void*) {
    absl::MutexLock lock(&mu_);
    --tenants_[tenant].running;
  });
  a.ctx.caller = tenant->name;
  a.ctx.allowed_paths = tenant->allowed_paths;
  const Policy* policy = policy_.get();
  a.ctx.authorize = [policy, tenant](const Repository& repo, Action action) {
    return policy->Check(*tenant, repo, action);
  };
  return a;
}

}  // namespace regd
