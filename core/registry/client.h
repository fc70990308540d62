// RegistryClient: authenticated requests to a registry's /v2/ API, and the
// one place where HTTP answers become absl::Status values.
//
// Send() adds the Authorization header (only for URLs on the registry's own
// origin, never for a redirect or Location on another host), and on a 401
// re-authenticates once and resends. It does not retry other failures; the
// callers own their retry policy.
//
// Borrows the Transport and Authenticator (which outlive it). Thread-safe.
#ifndef REGD_CORE_REGISTRY_CLIENT_H_
#define REGD_CORE_REGISTRY_CLIENT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/auth/authenticator.h"
#include "core/config.h"
#include "core/http/egress.h"
#include "core/http/http.h"
#include "core/observer.h"

namespace regd {

// What a 404 means for the caller.
enum class NotFoundMeaning {
  kImage,    // "image reference not found" (manifests and blobs alike)
  kGeneric,  // the registry's own words
};

// Maps a non-2xx registry answer to a Status. `what` names the operation
// ("GET manifest"); the registry's error code/message (from its JSON body) is
// appended. Never includes request headers.
[[nodiscard]] absl::Status StatusFromHttp(const HttpResponse& resp, absl::string_view what,
                                          NotFoundMeaning not_found = NotFoundMeaning::kGeneric);

// An upload session's `Range` header ("0-1234" or "bytes=0-1234") as the
// number of bytes the registry holds (1235); nullopt when garbled or when it
// does not start at 0.
std::optional<int64_t> BytesHeldFromRange(absl::string_view range);

class RegistryClient {
 public:
  // `egress` (may be null: no policy) must outlive the client.
  // `observer` (may be null) hears of every exchange.
  RegistryClient(Transport* transport, Authenticator* auth, const EgressPolicy* egress = nullptr,
                 Observer* observer = nullptr)
      : transport_(transport),
        auth_(auth),
        egress_(egress),
        observer_(observer != nullptr ? observer : NullObserver()) {}

  // `req.url` may be a path ("/v2/...") on `ep`, or absolute (a Location).
  // Returns any HTTP status; transport errors are UNAVAILABLE. The egress
  // policy is checked first: PERMISSION_DENIED for a registry or a Location
  // it does not allow, before anything is sent.
  // `who` names the credentials (the calling caller's, never another's).
  [[nodiscard]] absl::StatusOr<HttpResponse> Send(const CredentialChain& who, const Endpoint& ep,
                                                  const std::vector<std::string>& scopes,
                                                  HttpRequest req);

  Transport* transport() const { return transport_; }
  Authenticator* authenticator() const { return auth_; }
  Observer* observer() const { return observer_; }

 private:
  // One exchange, timed and reported to the observer.
  [[nodiscard]] absl::StatusOr<HttpResponse> Exchange(const Endpoint& ep, HttpRequest& req);

  Transport* const transport_;
  Authenticator* const auth_;
  const EgressPolicy* const egress_;
  Observer* const observer_;
};

}  // namespace regd

#endif  // REGD_CORE_REGISTRY_CLIENT_H_
