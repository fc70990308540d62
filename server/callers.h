// Callers: who is calling, what they may do, and what they bring.
//
// For each RPC, Admit() turns the transport's view of the caller (its client
// certificate, its metadata) into a CallContext:
//  - with a --policy, the caller must be a tenant (client certificate CN or
//    URI SAN, or "authorization: Bearer <token>"): else UNAUTHENTICATED; the
//    context checks every repository the call touches against the tenant's
//    allow list (PERMISSION_DENIED before anything is sent to a registry); a
//    tenant over its max_concurrent_calls gets RESOURCE_EXHAUSTED and holds no
//    one else up; the tenant's docker_config supplies its registry credentials;
//  - "x-registry-auth" metadata (base64url of Docker's AuthConfig JSON) is the
//    call's own registry credentials, ahead of the tenant's and the daemon's.
// Without a policy every caller is admitted as before.
//
// Thread-safe. Never logs or returns a token or a credential.
#ifndef REGD_SERVER_CALLERS_H_
#define REGD_SERVER_CALLERS_H_

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/call.h"
#include "core/policy.h"

namespace regd {

class Callers {
 public:
  // An admitted call: its context, and its place under its tenant's limit
  // (given back when the last copy of `slot` goes).
  struct Admission {
    CallContext ctx;
    std::shared_ptr<void> slot;
  };

  // `policy` may be null (no policy).
  explicit Callers(std::shared_ptr<const Policy> policy);

  [[nodiscard]] absl::StatusOr<Admission> Admit(grpc::CallbackServerContext* sctx);
  // Only whether the caller is someone (a tenant, or anyone without a
  // policy): UNAUTHENTICATED otherwise. Takes no slot.
  [[nodiscard]] absl::Status Recognise(grpc::CallbackServerContext* sctx) const;

  bool has_policy() const { return policy_ != nullptr; }

 private:
  struct TenantState {
    std::shared_ptr<CredentialStore> credentials;  // its docker_config; may be null
    int running = 0;
  };

  const std::shared_ptr<const Policy> policy_;
  absl::Mutex mu_;
  std::map<const Tenant*, TenantState> tenants_ ABSL_GUARDED_BY(mu_);
};

// The caller's identity as the transport reports it.
CallerIdentity IdentityOf(grpc::CallbackServerContext* sctx);

// The call's request id: the caller's x-request-id when it is a sane one
// (at most 128 of [A-Za-z0-9._:-]), else a new random one. Also sent back
// to the caller in the response's initial metadata (x-request-id).
std::string RequestIdOf(grpc::CallbackServerContext* sctx);

}  // namespace regd

#endif  // REGD_SERVER_CALLERS_H_
