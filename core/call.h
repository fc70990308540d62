// CallContext: what one call brings to the engine.
//
// Every Engine entry point takes one. It carries the call's cancellation, its
// retry policy, where its events go, who the caller is, the registry
// credentials it brought, and the check its tenant's policy makes on every
// repository the call touches. The server builds one per RPC from the request
// and its metadata; tests build them directly.
//
// A CallContext is a value owned by the call. The Engine borrows it for the
// duration of the call and never keeps it, nor anything obtained with its
// credentials, for another caller (see CredentialChain and TokenCache).
// Thread-compatible: the engine may read it from several of the call's own
// worker threads at once; nobody writes it while the call runs.
#ifndef REGD_CORE_CALL_H_
#define REGD_CORE_CALL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/auth/credentials.h"
#include "core/cancel.h"
#include "core/http/http.h"
#include "core/policy.h"
#include "core/reference/reference.h"
#include "core/retry/retry.h"
#include "core/upload/types.h"

namespace regd {

struct CallContext {
  // Set when the caller goes away, its deadline passes or the server stops.
  CancelFlag cancelled = NewCancelFlag();
  RetryPolicy retry;
  // Progress, retries and per-blob outcomes, each naming its blob's digest.
  // Called on engine threads; they must not block.
  PushEvents events;
  // Who is calling, for logs: the tenant's name, or "" without a policy.
  std::string caller;
  // The request id (the caller's x-request-id, or one regd made): on every
  // log line about this call.
  std::string request_id;
  // Blob bytes this call moved (uploaded or read), for its access line.
  std::shared_ptr<std::atomic<int64_t>> bytes = std::make_shared<std::atomic<int64_t>>(0);
  // Registry credentials this call brought (x-registry-auth); none: null.
  std::shared_ptr<const CallCredentials> credentials;
  // The caller's tenant's credential store (its docker_config); none: null.
  std::shared_ptr<CredentialStore> tenant_credentials;
  // The policy check: OK or PERMISSION_DENIED for `action` on `repo`. Null:
  // everything is allowed (no --policy).
  std::function<absl::Status(const Repository& repo, Action action)> authorize;
  // Where this call's file sources may be read from; unset: the daemon's
  // --allowed_paths (no policy). A tenant's own list under a policy.
  std::optional<std::vector<std::string>> allowed_paths;

  bool Cancelled() const { return cancelled && cancelled->load(); }
  [[nodiscard]] absl::Status Allow(const Repository& repo, Action action) const {
    return authorize ? authorize(repo, action) : absl::OkStatus();
  }
};

}  // namespace regd

#endif  // REGD_CORE_CALL_H_
