#include "core/auth/authenticator.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/json.h"
#include "core/registry/paths.h"
#include "core/status_macros.h"
#include "core/text.h"
#include "rapidjson/document.h"

namespace regd {
namespace {

// A challenge is re-read from /v2/ at least this often.
constexpr absl::Duration kChallengeTtl = absl::Minutes(5);
// Real tokens (JWTs from ECR, GCR, ACR, Docker Hub) are a few KiB.
constexpr size_t kMaxTokenBytes = 64 << 10;
// Registries whose challenge is remembered; past it, idle ones are forgotten.
constexpr size_t kMaxRegistries = 4096;
// Ping and token requests must answer within this.
constexpr absl::Duration kAuthRequestLimit = absl::Seconds(30);

const Challenge* Pick(const std::vector<Challenge>& chs, absl::string_view scheme) {
  for (const Challenge& c : chs) {
    if (c.scheme == scheme) return &c;
  }
  return nullptr;
}

// True when `scopes` already grant every action `scope` names for its resource
// ("repository:a/b:pull" is covered by "repository:a/b:push,pull").
bool ScopeCovered(const std::vector<std::string>& scopes, absl::string_view scope) {
  size_t cut = scope.rfind(':');
  if (cut == absl::string_view::npos) return false;
  absl::string_view resource = scope.substr(0, cut);
  for (absl::string_view action : absl::StrSplit(scope.substr(cut + 1), ',')) {
    bool found = false;
    for (const std::string& have : scopes) {
      size_t hcut = have.rfind(':');
      if (hcut == std::string::npos || absl::string_view(have).substr(0, hcut) != resource)
        continue;
      for (absl::string_view a : absl::StrSplit(absl::string_view(have).substr(hcut + 1), ',')) {
        found = found || a == action;
      }
    }
    if (!found) return false;
  }
  return true;
}

absl::string_view ScopeResource(absl::string_view scope) {
  size_t cut = scope.rfind(':');
  return cut == absl::string_view::npos ? scope : scope.substr(0, cut);
}

bool SameResourceAs(const std::vector<std::string>& scopes, absl::string_view scope) {
  for (const std::string& have : scopes) {
    if (ScopeResource(have) == ScopeResource(scope)) return true;
  }
  return false;
}

std::string BasicHeader(const Credentials& c) {
  return absl::StrCat("Basic ", absl::Base64Escape(absl::StrCat(c.username, ":", c.password)));
}

absl::Status TokenError(const Endpoint& ep, const HttpResponse& resp) {
  std::string where = absl::StrCat("token service for ", ep.registry);
  if (resp.status == 401) {
    return absl::UnauthenticatedError(absl::StrCat(where, " refused the credentials (401)"));
  }
  if (resp.status == 403) {
    return absl::PermissionDeniedError(absl::StrCat(where, " denied access (403)"));
  }
  if (resp.status == 429 || resp.status >= 500) {
    return absl::UnavailableError(absl::StrCat(where, " answered ", resp.status));
  }
  return absl::FailedPreconditionError(absl::StrCat(where, " answered ", resp.status));
}

}  // namespace

absl::StatusOr<BearerToken> ParseTokenResponse(absl::string_view body) {
  rapidjson::Document doc;
  JsonLimits limits;
  limits.max_bytes = 1 << 20;
  limits.max_depth = 16;
  if (!ParseUntrustedJson(body, "token response", &doc, limits).ok() || !doc.IsObject()) {
    return absl::InvalidArgumentError("sent invalid JSON");
  }
  BearerToken tok;
  for (const char* key : {"token", "access_token"}) {
    tok.value = JsonStringMember(doc, key);
    if (!tok.value.empty()) break;
  }
  if (tok.value.empty()) return absl::InvalidArgumentError("sent no token");
  if (tok.value.size() > kMaxTokenBytes) {
    return absl::InvalidArgumentError(absl::StrCat("sent a token of ", tok.value.size(),
                                                   " bytes (at most ", kMaxTokenBytes, ")"));
  }
  // A token goes into an HTTP header: refuse bytes that would break it.
  for (char c : tok.value) {
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) {
      return absl::InvalidArgumentError("sent a token with characters a header cannot carry");
    }
  }
  auto exp = doc.FindMember("expires_in");
  if (exp != doc.MemberEnd() && exp->value.IsNumber()) {
    double secs = exp->value.GetDouble();
    // Bounded: a day at most; nonsense (negative, NaN) keeps the default.
    if (secs > 0 && secs < 86400.0 * 365) tok.lifetime = absl::Seconds(std::min(secs, 86400.0));
  }
  return tok;
}

absl::StatusOr<HttpResponse> Authenticator::Exchange(const Endpoint& ep,
                                                     absl::string_view operation,
                                                     const HttpRequest& req) {
  const absl::Time start = absl::Now();
  absl::StatusOr<HttpResponse> resp = transport_->Send(req);
  observer_->RegistryRequest(ep.registry, operation, req.method, resp.ok() ? resp->status : 0,
                             absl::Now() - start, resp.ok() ? resp->bytes_sent : 0,
                             resp.ok() ? static_cast<int64_t>(resp->body.size()) : 0);
  return resp;
}

std::string PullScope(const std::string& repo_path) {
  return absl::StrCat("repository:", repo_path, ":pull");
}
std::string PushScope(const std::string& repo_path) {
  return absl::StrCat("repository:", repo_path, ":push,pull");
}

Authenticator::Authenticator(Transport* transport, Clock* clock, const EgressPolicy* egress,
                             Observer* observer)
    : transport_(transport),
      clock_(clock),
      observer_(observer != nullptr ? observer : NullObserver()),
      egress_(egress),
      tokens_(clock) {}

void Authenticator::ForgetIdleRegistryLocked() {
  for (auto it = registries_.begin(); it != registries_.end(); ++it) {
    if (!it->second.pinging && it->second.waiters == 0) {
      registries_.erase(it);
      return;
    }
  }
}

void Authenticator::ForgetChallenge(const std::string& registry) {
  absl::MutexLock lock(&mu_);
  auto it = registries_.find(registry);
  if (it != registries_.end() && !it->second.pinging) it->second.known = false;
}

absl::StatusOr<std::vector<Challenge>> Authenticator::Ping(const Endpoint& ep,
                                                           const CancelFlag& cancelled) {
  HttpRequest req;
  req.cancelled = cancelled;
  req.method = "GET";
  req.url = absl::StrCat(ep.base_url, PingPath());
  req.ca_bundle = ep.ca_bundle;
  req.max_body = 64 << 10;
  req.total_timeout = kAuthRequestLimit;
  ASSIGN_OR_RETURN(HttpResponse resp, Exchange(ep, "ping", req));
  if (resp.status == 401) {
    std::vector<Challenge> out;
    for (const std::string& h : resp.Headers("www-authenticate")) {
      for (Challenge& c : ParseWwwAuthenticate(h)) out.push_back(std::move(c));
    }
    return out;
  }
  if (resp.status >= 200 && resp.status < 300) return std::vector<Challenge>{};
  if (resp.status == 404) {
    return absl::FailedPreconditionError(
        absl::StrCat(ep.registry, " does not serve the registry API (/v2/ answered 404)"));
  }
  return absl::UnavailableError(absl::StrCat(ep.registry, " /v2/ answered ", resp.status));
}

absl::StatusOr<std::vector<Challenge>> Authenticator::Challenges(const Endpoint& ep,
                                                                 const CancelFlag& cancelled) {
  {
    absl::MutexLock lock(&mu_);
    if (registries_.size() >= kMaxRegistries && registries_.count(ep.registry) == 0) {
      ForgetIdleRegistryLocked();
    }
    RegistryState& st = registries_[ep.registry];
    ++st.waiters;
    struct Leave {
      RegistryState& st;
      ~Leave() { --st.waiters; }
    } leave{st};
    while (!st.known && st.pinging) {
      // Another caller is pinging: wait for it, but not past our own cancel.
      std::pair<RegistryState*, uint64_t> waiting(&st, st.generation);
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](std::pair<RegistryState*, uint64_t>* w) {
                                 return w->first->generation != w->second;
                               },
                               &waiting),
                           absl::Milliseconds(100));
      if (cancelled && cancelled->load()) return absl::CancelledError("cancelled");
      // Waiters share the outcome of the ping they waited for.
      if (st.generation != waiting.second && !st.known && !st.last_error.ok()) {
        return st.last_error;
      }
    }
    // A stale challenge still serves while someone else re-reads it: one
    // ping at a time, not one per caller.
    if (st.known && (st.pinging || clock_->Now() - st.learned < kChallengeTtl)) {
      return st.challenges;
    }
    st.pinging = true;
  }
  absl::StatusOr<std::vector<Challenge>> got = Ping(ep, cancelled);
  absl::MutexLock lock(&mu_);
  RegistryState& st = registries_[ep.registry];
  st.pinging = false;
  ++st.generation;
  // A ping that stopped because its own caller went away says nothing about
  // the registry: the waiters ping again themselves.
  st.last_error = absl::IsCancelled(got.status()) ? absl::OkStatus() : got.status();
  if (got.ok()) {
    st.known = true;
    st.learned = clock_->Now();
    st.challenges = *got;
  }
  return got;
}

std::string Authenticator::TokenKey(const std::string& registry, const std::string& identity,
                                    const std::vector<std::string>& scopes) {
  return absl::StrCat(registry, " ", identity, " ", absl::StrJoin(scopes, " "));
}

absl::StatusOr<std::string> Authenticator::Authorize(const Endpoint& ep,
                                                     const std::vector<std::string>& scopes,
                                                     const CredentialChain& who,
                                                     const CancelFlag& cancelled) {
  ASSIGN_OR_RETURN(std::vector<Challenge> challenges, Challenges(ep, cancelled));
  if (challenges.empty()) return std::string();
  ASSIGN_OR_RETURN(ResolvedCredentials resolved, who.Resolve(ep.registry));
  const Credentials& creds = resolved.creds;
  if (const Challenge* bearer = Pick(challenges, "bearer")) {
    if (!creds.registry_token.empty()) return absl::StrCat("Bearer ", creds.registry_token);
    std::string key = TokenKey(ep.registry, resolved.identity, scopes);
    const Challenge challenge = *bearer;  // a copy: the cached one may be replaced
    absl::StatusOr<std::string> token = tokens_.Get(
        key, [&] { return FetchToken(ep, challenge, scopes, creds, cancelled); }, cancelled.get());
    if (!token.ok()) {
      if (!absl::IsCancelled(token.status())) ForgetChallenge(ep.registry);
      return token.status();
    }
    return absl::StrCat("Bearer ", *token);
  }
  if (Pick(challenges, "basic") != nullptr) {
    if (creds.username.empty() && creds.password.empty()) return std::string();
    return BasicHeader(creds);
  }
  ForgetChallenge(ep.registry);
  return absl::FailedPreconditionError(
      absl::StrCat(ep.registry, " asks for an authentication scheme regd does not speak: ",
                   ForMessage(challenges[0].scheme, 40)));
}

std::vector<std::string> Authenticator::OnUnauthorized(const Endpoint& ep,
                                                       const std::vector<std::string>& scopes,
                                                       const std::string& authorization,
                                                       const HttpResponse& resp,
                                                       const CredentialChain& who) {
  if (absl::StartsWith(authorization, "Bearer ")) {
    absl::StatusOr<ResolvedCredentials> resolved = who.Resolve(ep.registry);
    if (resolved.ok()) {
      tokens_.Invalidate(TokenKey(ep.registry, resolved->identity, scopes),
                         authorization.substr(7));
    }
  }
  who.Invalidate(ep.registry);
  std::vector<Challenge> fresh;
  for (const std::string& h : resp.Headers("www-authenticate")) {
    for (Challenge& c : ParseWwwAuthenticate(h)) fresh.push_back(std::move(c));
  }
  std::vector<std::string> wanted = scopes;
  const Challenge* bearer = Pick(fresh, "bearer");
  if (bearer != nullptr && bearer->Param("error") == "insufficient_scope") {
    for (absl::string_view sc : absl::StrSplit(bearer->Param("scope"), ' ', absl::SkipEmpty())) {
      // Only more actions on a resource this request is about, never another one.
      if (SameResourceAs(wanted, sc) && !ScopeCovered(wanted, sc)) wanted.emplace_back(sc);
    }
  }
  absl::MutexLock lock(&mu_);
  RegistryState& st = registries_[ep.registry];
  if (!fresh.empty()) {
    st.known = true;
    st.learned = clock_->Now();
    st.challenges = std::move(fresh);
  } else if (!st.pinging) {
    // A refused token or credentials and no challenge with the 401 (GCR):
    // ping again rather than trust what may be the cause.
    st.known = false;
  }
  return wanted;
}

absl::StatusOr<BearerToken> Authenticator::FetchToken(const Endpoint& ep, const Challenge& ch,
                                                      const std::vector<std::string>& scopes,
                                                      const Credentials& creds,
                                                      const CancelFlag& cancelled) {
  std::string realm = ch.Param("realm");
  if (realm.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(ep.registry, " sent a Bearer challenge without a realm"));
  }
  // The realm is a host the registry names: the egress policy decides (never
  // HTTPS to HTTP, the allow list, see EgressPolicy::CheckRealm).
  if (egress_ != nullptr) RETURN_IF_ERROR(egress_->CheckRealm(ep.base_url, realm));
  // Credentials for an HTTPS registry never go to a token service over plain HTTP.
  if (absl::StartsWith(ep.base_url, "https://") && !absl::StartsWith(realm, "https://") &&
      !creds.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        ep.registry,
        " names a token service that is not HTTPS; regd will not send it credentials"));
  }
  HttpRequest req;
  req.cancelled = cancelled;
  req.ca_bundle = ep.ca_bundle;
  req.max_body = 1 << 20;
  std::string service = ch.Param("service");
  if (!creds.identity_token.empty()) {
    // OAuth2 refresh-token grant.
    req.method = "POST";
    req.url = realm;
    req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    req.body = absl::StrCat("grant_type=refresh_token&client_id=regd&refresh_token=",
                            UrlEncode(creds.identity_token), "&service=", UrlEncode(service));
    for (const std::string& s : scopes) absl::StrAppend(&req.body, "&scope=", UrlEncode(s));
  } else {
    req.method = "GET";
    std::string url = realm;
    char sep = realm.find('?') == std::string::npos ? '?' : '&';
    if (!service.empty()) {
      absl::StrAppend(&url, std::string(1, sep), "service=", UrlEncode(service));
      sep = '&';
    }
    for (const std::string& s : scopes) {
      absl::StrAppend(&url, std::string(1, sep), "scope=", UrlEncode(s));
      sep = '&';
    }
    req.url = std::move(url);
    if (!creds.username.empty() || !creds.password.empty()) {
      req.headers.emplace_back("Authorization", BasicHeader(creds));
    }
  }
  req.total_timeout = kAuthRequestLimit;
  absl::StatusOr<HttpResponse> sent = Exchange(ep, "token", req);
  observer_->TokenFetch(ep.registry, sent.ok() && sent->status == 200);
  ASSIGN_OR_RETURN(HttpResponse resp, std::move(sent));
  if (resp.status != 200) return TokenError(ep, resp);
  absl::StatusOr<BearerToken> tok = ParseTokenResponse(resp.body);
  if (!tok.ok()) {
    return absl::UnavailableError(
        absl::StrCat("token service for ", ep.registry, ": ", tok.status().message()));
  }
  return tok;
}

}  // namespace regd
