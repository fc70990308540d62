// Authenticator: turns (registry, scopes) into an Authorization header value.
//
// Per registry it pings GET /v2/ once to learn the challenge (none, Basic or
// Bearer) and caches it. Bearer tokens come from the TokenCache, keyed by
// (registry, credential identity, scopes): calls with the same credentials
// share one token, and a token fetched with one caller's credentials never
// serves a caller with other (or no) credentials. Each call's credentials
// come from its CredentialChain.
//
// Owns its TokenCache; borrows the Transport and Clock, which must outlive it. Thread-safe. Never
// logs or returns credentials or tokens in a Status message.
#ifndef REGD_CORE_AUTH_AUTHENTICATOR_H_
#define REGD_CORE_AUTH_AUTHENTICATOR_H_

#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/auth/challenge.h"
#include "core/auth/credentials.h"
#include "core/auth/token_cache.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/http/egress.h"
#include "core/http/http.h"
#include "core/observer.h"

namespace regd {

// "repository:<path>:pull" / "repository:<path>:push,pull".
std::string PullScope(const std::string& repo_path);
std::string PushScope(const std::string& repo_path);

// A token service's JSON answer: `token` or `access_token`, and `expires_in`
// (clamped to a day). INVALID_ARGUMENT for anything else.
[[nodiscard]] absl::StatusOr<BearerToken> ParseTokenResponse(absl::string_view body);

class Authenticator {
 public:
  // `egress` (may be null: no policy) vets token realms; it must outlive this.
  // `observer` (may be null) hears of pings and token fetches.
  Authenticator(Transport* transport, Clock* clock, const EgressPolicy* egress = nullptr,
                Observer* observer = nullptr);

  // The Authorization header value for a request to `ep` that needs `scopes`
  // (push scope first), or "" when the registry needs none.
  [[nodiscard]] absl::StatusOr<std::string> Authorize(const Endpoint& ep,
                                                      const std::vector<std::string>& scopes,
                                                      const CredentialChain& who,
                                                      const CancelFlag& cancelled = nullptr);

  // After a request sent with `authorization` got 401: forgets that token and,
  // when the 401 carries a challenge, adopts it. Returns the scopes to ask for
  // on the retry: `scopes` plus any the challenge names that they lack (a
  // DELETE on distribution needs the "delete" action, for instance). The caller
  // then calls Authorize with them and retries once.
  std::vector<std::string> OnUnauthorized(const Endpoint& ep,
                                          const std::vector<std::string>& scopes,
                                          const std::string& authorization,
                                          const HttpResponse& resp, const CredentialChain& who);

  const TokenCache& tokens() const { return tokens_; }

 private:
  struct RegistryState {
    bool known = false;
    absl::Time learned;  // when `challenges` came; re-pinged after kChallengeTtl
    int waiters = 0;     // callers waiting for a ping: the entry is kept
    bool pinging = false;
    uint64_t generation = 0;            // bumped when a ping ends
    absl::Status last_error;            // of the last ping, shared with its waiters
    std::vector<Challenge> challenges;  // empty: no auth needed
  };

  // Forgets the registry's challenge: the next call pings again. Called when
  // a token fetch fails or a challenge cannot be used, so a registry that
  // was misconfigured works again once it is fixed, without a restart.
  void ForgetChallenge(const std::string& registry);
  // Drops one registry that nobody is pinging (the map is bounded).
  void ForgetIdleRegistryLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  [[nodiscard]] absl::StatusOr<std::vector<Challenge>> Challenges(const Endpoint& ep,
                                                                  const CancelFlag& cancelled);
  [[nodiscard]] absl::StatusOr<std::vector<Challenge>> Ping(const Endpoint& ep,
                                                            const CancelFlag& cancelled);
  [[nodiscard]] absl::StatusOr<BearerToken> FetchToken(const Endpoint& ep, const Challenge& ch,
                                                       const std::vector<std::string>& scopes,
                                                       const Credentials& creds,
                                                       const CancelFlag& cancelled);

  // The token cache key of (registry, credentials, scopes).
  static std::string TokenKey(const std::string& registry, const std::string& identity,
                              const std::vector<std::string>& scopes);

  // Sends one request of the auth flow (`operation`: ping or token), reported.
  [[nodiscard]] absl::StatusOr<HttpResponse> Exchange(const Endpoint& ep,
                                                      absl::string_view operation,
                                                      const HttpRequest& req);

  Transport* const transport_;
  Clock* const clock_;
  Observer* const observer_;
  const EgressPolicy* const egress_;
  TokenCache tokens_;
  absl::Mutex mu_;
  std::map<std::string, RegistryState> registries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace regd

#endif  // REGD_CORE_AUTH_AUTHENTICATOR_H_
