#include "core/policy.h"

#include <openssl/crypto.h>

#include <cctype>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/digest.h"
#include "core/files.h"
#include "core/json.h"
#include "core/status_macros.h"
#include "core/text.h"
#include "rapidjson/document.h"

namespace regd {
namespace {

// Bounds on the policy file and what it holds.
constexpr size_t kMaxPolicyBytes = 1 << 20;
constexpr int kMaxPolicyDepth = 8;  // {tenants:[{allow:[{actions:[…]}]}]} is 5
constexpr size_t kMaxAllowedPaths = 64;
constexpr size_t kMaxTenants = 1024;
constexpr size_t kMaxRulesPerTenant = 1024;
constexpr size_t kMaxNameLength = 64;
constexpr size_t kMaxStringLength = 4096;
constexpr size_t kMaxDockerConfigBytes = 1 << 20;
constexpr int kMaxConcurrentCalls = 100000;

absl::Status Bad(absl::string_view where, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("policy: ", where, ": ", why));
}

std::string Str(const rapidjson::Value& v) {
  return std::string(v.GetString(), v.GetStringLength());
}

// `tenants[2] ("team-a")`, or `tenants[2]` before the name is known.
std::string TenantWhere(size_t index, absl::string_view name) {
  if (name.empty()) return absl::StrCat("tenants[", index, "]");
  return absl::StrCat("tenants[", index, "] (\"", name, "\")");
}

// A key named in a message: it is file text, so bounded and escaped.
std::string KeyForMessage(const rapidjson::Value& key) {
  return absl::StrCat("\"", ForMessage(Str(key), 64), "\"");
}

// Refuses a key seen twice in one object (RapidJSON keeps both).
[[nodiscard]] absl::Status CheckNotRepeated(std::set<std::string>* seen, const std::string& key,
                                            absl::string_view where) {
  if (!seen->insert(key).second) return Bad(where, "appears twice");
  return absl::OkStatus();
}

// A string value of at most `max` bytes; never echoes the value.
[[nodiscard]] absl::StatusOr<std::string> StringValue(const rapidjson::Value& v,
                                                      absl::string_view where,
                                                      size_t max = kMaxStringLength) {
  if (!v.IsString()) return Bad(where, "must be a string");
  if (v.GetStringLength() == 0) return Bad(where, "must not be empty");
  if (v.GetStringLength() > max) return Bad(where, absl::StrCat("longer than ", max, " bytes"));
  return Str(v);
}

bool HasControlOrSpace(absl::string_view s, bool allow_space) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (std::iscntrl(u) || u == 0x7f) return true;
    if (!allow_space && std::isspace(u)) return true;
  }
  return false;
}

[[nodiscard]] absl::StatusOr<std::string> ParseName(const rapidjson::Value& v,
                                                    absl::string_view where) {
  ASSIGN_OR_RETURN(std::string name, StringValue(v, where, kMaxNameLength));
  for (char c : name) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) {
      return Bad(where, "may hold only letters, digits, '.', '_' and '-'");
    }
  }
  return name;
}

// 64 hex characters, returned lower-case. The value never reaches a message.
[[nodiscard]] absl::StatusOr<std::string> ParseTokenHash(const rapidjson::Value& v,
                                                         absl::string_view where) {
  if (!v.IsString()) return Bad(where, "must be a string");
  std::string hex = Str(v);
  bool ok = hex.size() == 64;
  for (char c : hex) ok = ok && absl::ascii_isxdigit(static_cast<unsigned char>(c));
  if (!ok) {
    return Bad(where,
               "must be 64 hex characters, the SHA-256 of the token "
               "(printf %s \"$TOKEN\" | sha256sum)");
  }
  return absl::AsciiStrToLower(hex);
}

// The registry part of a prefix, lower-cased and with Docker Hub's aliases
// folded to "docker.io".
std::string NormaliseRegistry(absl::string_view registry) {
  std::string r = absl::AsciiStrToLower(registry);
  if (r == "index.docker.io" || r == kDockerHubApiHost) r = std::string(kDockerHubDomain);
  return r;
}

// The checks with their own message, before the reference grammar has its say.
[[nodiscard]] absl::Status CheckPrefixShape(absl::string_view raw) {
  if (raw.empty()) return absl::InvalidArgumentError("must not be empty");
  if (HasControlOrSpace(raw, /*allow_space=*/false)) {
    return absl::InvalidArgumentError("must not contain whitespace or control characters");
  }
  if (absl::StrContains(raw, "://")) {
    return absl::InvalidArgumentError("must be registry[:port]/path, without a scheme");
  }
  if (raw.find_first_of("*?{}") != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        "must be a literal prefix: glob characters are not supported (a prefix already covers "
        "everything beneath it)");
  }
  return absl::OkStatus();
}

// "Reg.Example.com:5000/team-a" → "reg.example.com:5000/team-a/"; the error
// message is the reason alone (the caller says where).
[[nodiscard]] absl::StatusOr<std::string> NormalisePrefix(absl::string_view raw) {
  RETURN_IF_ERROR(CheckPrefixShape(raw));
  absl::string_view body = raw;
  if (absl::EndsWith(body, "/")) body.remove_suffix(1);
  std::vector<absl::string_view> segments = absl::StrSplit(body, '/');
  if (segments[0].empty()) {
    return absl::InvalidArgumentError("must start with a registry host[:port], not \"/\"");
  }
  for (absl::string_view s : segments) {
    if (s.empty()) return absl::InvalidArgumentError("has an empty path segment (\"//\")");
    if (s == "." || s == "..") {
      return absl::InvalidArgumentError("has a \".\" or \"..\" segment");
    }
  }
  const std::string registry = NormaliseRegistry(segments[0]);
  if (registry.find_first_of(".:") == std::string::npos && registry != "localhost") {
    return absl::InvalidArgumentError(
        "must start with a registry host[:port] (a name with a '.' or ':', or \"localhost\"), "
        "e.g. \"docker.io/library/\"");
  }
  const size_t slash = body.find('/');
  const absl::string_view path =
      slash == absl::string_view::npos ? absl::string_view() : body.substr(slash + 1);
  // The reference grammar judges the host, port and path segments; a
  // whole-registry prefix is checked with a stand-in path.
  absl::StatusOr<Repository> repo =
      ParseRepository(absl::StrCat(registry, "/", path.empty() ? "x" : path));
  if (!repo.ok()) {
    // Its message is `invalid image reference "<name>": <why>`; keep the why.
    absl::string_view why = repo.status().message();
    const size_t cut = why.find("\": ");
    if (cut != absl::string_view::npos) why.remove_prefix(cut + 3);
    return absl::InvalidArgumentError(why);
  }
  if (repo->registry != registry) {
    return absl::InvalidArgumentError("does not start with a registry host[:port]");
  }
  if (path.empty()) return absl::StrCat(registry, "/");
  return absl::StrCat(registry, "/", path, "/");
}

[[nodiscard]] absl::Status ParseActions(const rapidjson::Value& v, absl::string_view where,
                                        AllowRule* rule) {
  if (!v.IsArray() || v.Empty()) {
    return Bad(where, "must be a non-empty array of \"pull\"/\"push\"");
  }
  for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
    const rapidjson::Value& a = v[i];
    const std::string here = absl::StrCat(where, "[", i, "]");
    if (!a.IsString()) return Bad(here, "must be \"pull\" or \"push\"");
    const std::string name = Str(a);
    if (name == "pull") {
      rule->pull = true;
    } else if (name == "push") {
      rule->push = true;
    } else {
      return Bad(here, absl::StrCat("\"", ForMessage(name, 32),
                                    "\" is not an action (expected \"pull\" or \"push\")"));
    }
  }
  return absl::OkStatus();
}

[[nodiscard]] absl::StatusOr<AllowRule> ParseRule(const rapidjson::Value& v,
                                                  absl::string_view where) {
  if (!v.IsObject()) return Bad(where, "must be an object {\"prefix\": …, \"actions\": […]}");
  AllowRule rule;
  bool have_prefix = false, have_actions = false;
  std::set<std::string> seen;
  for (const auto& m : v.GetObject()) {
    const std::string key = Str(m.name);
    const std::string here = absl::StrCat(where, ".", ForMessage(key, 64));
    RETURN_IF_ERROR(CheckNotRepeated(&seen, key, here));
    if (key == "prefix") {
      ASSIGN_OR_RETURN(std::string raw, StringValue(m.value, here));
      absl::StatusOr<std::string> prefix = NormalisePrefix(raw);
      if (!prefix.ok()) {
        return Bad(here,
                   absl::StrCat("\"", ForMessage(raw, 100), "\": ", prefix.status().message()));
      }
      rule.prefix = *std::move(prefix);
      have_prefix = true;
    } else if (key == "actions") {
      RETURN_IF_ERROR(ParseActions(m.value, here, &rule));
      have_actions = true;
    } else {
      return Bad(where, absl::StrCat("unknown key ", KeyForMessage(m.name),
                                     " (expected \"prefix\" and \"actions\")"));
    }
  }
  if (!have_prefix) return Bad(where, "needs a \"prefix\"");
  if (!have_actions) return Bad(where, "needs \"actions\"");
  return rule;
}

[[nodiscard]] absl::Status ParseAllow(const rapidjson::Value& v, absl::string_view where,
                                      std::vector<AllowRule>* rules) {
  if (!v.IsArray()) return Bad(where, "must be an array of rules");
  if (v.Empty()) return Bad(where, "must hold at least one rule");
  if (v.Size() > kMaxRulesPerTenant) {
    return Bad(where, absl::StrCat("has more than ", kMaxRulesPerTenant, " rules"));
  }
  for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
    ASSIGN_OR_RETURN(AllowRule rule, ParseRule(v[i], absl::StrCat(where, "[", i, "]")));
    rules->push_back(std::move(rule));
  }
  return absl::OkStatus();
}

// The file must be there, readable, at most 1 MiB and a JSON object now, so
// that a typo stops the daemon at start rather than failing a call later.
[[nodiscard]] absl::Status CheckDockerConfig(const std::string& path, absl::string_view where) {
  if (path.front() != '/') return Bad(where, "must be an absolute path");
  if (HasControlOrSpace(path, /*allow_space=*/true)) {
    return Bad(where, "must not contain control characters");
  }
  absl::StatusOr<std::string> text = ReadSmallFile(path, kMaxDockerConfigBytes);
  if (!text.ok()) return Bad(where, text.status().message());
  rapidjson::Document doc;
  absl::Status st = ParseUntrustedJson(*text, absl::StrCat("\"", ForMessage(path), "\""), &doc);
  if (!st.ok()) return Bad(where, st.message());
  if (!doc.IsObject()) {
    return Bad(where, absl::StrCat("\"", ForMessage(path), "\" is not a JSON object"));
  }
  return absl::OkStatus();
}

// The name is found first, so that every later message can name the tenant.
[[nodiscard]] absl::StatusOr<std::string> FindTenantName(const rapidjson::Value& v, size_t index) {
  const std::string where = TenantWhere(index, "");
  if (!v.IsObject()) return Bad(where, "must be an object");
  const rapidjson::Value* name = nullptr;
  for (const auto& m : v.GetObject()) {
    if (Str(m.name) != "name") continue;
    if (name != nullptr) return Bad(absl::StrCat(where, ".name"), "appears twice");
    name = &m.value;
  }
  if (name == nullptr) return Bad(where, "needs a \"name\"");
  return ParseName(*name, absl::StrCat(where, ".name"));
}

// One identity key (client_cert_cn, client_cert_uri_san or token_sha256).
[[nodiscard]] absl::Status ParseIdentity(const std::string& key, const rapidjson::Value& v,
                                         absl::string_view where, Tenant* t) {
  if (key == "token_sha256") {
    ASSIGN_OR_RETURN(t->token_sha256, ParseTokenHash(v, where));
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::string id, StringValue(v, where));
  if (key == "client_cert_cn") {
    if (HasControlOrSpace(id, /*allow_space=*/true)) {
      return Bad(where, "must not contain control characters");
    }
    t->client_cert_cn = std::move(id);
  } else {
    if (HasControlOrSpace(id, /*allow_space=*/false)) {
      return Bad(where, "must not contain whitespace or control characters");
    }
    t->client_cert_uri_san = std::move(id);
  }
  return absl::OkStatus();
}

// Every key except "name" (FindTenantName's job).
[[nodiscard]] absl::Status ParseTenantKey(const std::string& key, const rapidjson::Value& v,
                                          absl::string_view where, Tenant* t, int* identities) {
  if (key == "client_cert_cn" || key == "client_cert_uri_san" || key == "token_sha256") {
    ++*identities;
    return ParseIdentity(key, v, where, t);
  }
  if (key == "allow") return ParseAllow(v, where, &t->allow);
  if (key == "docker_config") {
    ASSIGN_OR_RETURN(t->docker_config, StringValue(v, where));
    return CheckDockerConfig(t->docker_config, where);
  }
  if (key == "allowed_paths") {
    if (!v.IsArray() || v.Size() > kMaxAllowedPaths) {
      return Bad(where,
                 absl::StrCat("must be an array of at most ", kMaxAllowedPaths, " directories"));
    }
    for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
      const std::string at = absl::StrCat(where, "[", i, "]");
      ASSIGN_OR_RETURN(std::string dir, StringValue(v[i], at));
      if (dir.empty() || dir.front() != '/') return Bad(at, "must be an absolute path");
      if (HasControlOrSpace(dir, /*allow_space=*/true)) {
        return Bad(at, "must not contain control characters");
      }
      t->allowed_paths.push_back(std::move(dir));
    }
    return absl::OkStatus();
  }
  if (key == "max_concurrent_calls") {
    if (!v.IsInt() || v.GetInt() < 1 || v.GetInt() > kMaxConcurrentCalls) {
      return Bad(where, absl::StrCat("must be an integer between 1 and ", kMaxConcurrentCalls));
    }
    t->max_concurrent_calls = v.GetInt();
    return absl::OkStatus();
  }
  return absl::InternalError("unreachable");
}

bool IsTenantKey(absl::string_view key) {
  return key == "name" || key == "client_cert_cn" || key == "client_cert_uri_san" ||
         key == "token_sha256" || key == "allow" || key == "docker_config" ||
         key == "max_concurrent_calls" || key == "allowed_paths";
}

[[nodiscard]] absl::StatusOr<Tenant> ParseTenant(const rapidjson::Value& v, size_t index) {
  Tenant t;
  ASSIGN_OR_RETURN(t.name, FindTenantName(v, index));
  const std::string where = TenantWhere(index, t.name);
  int identities = 0;
  std::set<std::string> seen;
  for (const auto& m : v.GetObject()) {
    const std::string key = Str(m.name);
    if (!IsTenantKey(key)) {
      return Bad(where, absl::StrCat("unknown key ", KeyForMessage(m.name)));
    }
    const std::string here = absl::StrCat(where, ".", key);
    RETURN_IF_ERROR(CheckNotRepeated(&seen, key, here));
    if (key == "name") continue;
    RETURN_IF_ERROR(ParseTenantKey(key, m.value, here, &t, &identities));
  }
  if (identities != 1) {
    return Bad(where, absl::StrCat("needs exactly one of \"client_cert_cn\", "
                                   "\"client_cert_uri_san\" and \"token_sha256\" (has ",
                                   identities, ")"));
  }
  if (seen.count("allow") == 0) return Bad(where, "needs \"allow\"");
  return t;
}

// `t` (at `index`) against the tenants before it: names and identities are
// unique. A token hash is never shown.
[[nodiscard]] absl::Status CheckUnique(const std::vector<Tenant>& earlier, const Tenant& t,
                                       size_t index) {
  const std::string where = TenantWhere(index, t.name);
  for (size_t i = 0; i < earlier.size(); ++i) {
    const Tenant& e = earlier[i];
    const std::string other = TenantWhere(i, e.name);
    if (e.name == t.name) return Bad(where, absl::StrCat("name is already used by ", other));
    if (!t.client_cert_cn.empty() && e.client_cert_cn == t.client_cert_cn) {
      return Bad(absl::StrCat(where, ".client_cert_cn"),
                 absl::StrCat("\"", ForMessage(t.client_cert_cn), "\" is already ", other, "'s"));
    }
    if (!t.client_cert_uri_san.empty() && e.client_cert_uri_san == t.client_cert_uri_san) {
      return Bad(
          absl::StrCat(where, ".client_cert_uri_san"),
          absl::StrCat("\"", ForMessage(t.client_cert_uri_san), "\" is already ", other, "'s"));
    }
    if (!t.token_sha256.empty() && e.token_sha256 == t.token_sha256) {
      return Bad(absl::StrCat(where, ".token_sha256"),
                 absl::StrCat("is the same token as ", other, "'s"));
    }
  }
  return absl::OkStatus();
}

[[nodiscard]] absl::StatusOr<std::vector<Tenant>> ParseTenants(const rapidjson::Value& v) {
  if (!v.IsArray()) return Bad("tenants", "must be an array");
  if (v.Empty()) return Bad("tenants", "must hold at least one tenant");
  if (v.Size() > kMaxTenants) {
    return Bad("tenants", absl::StrCat("has more than ", kMaxTenants, " tenants"));
  }
  std::vector<Tenant> tenants;
  tenants.reserve(v.Size());
  for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
    ASSIGN_OR_RETURN(Tenant t, ParseTenant(v[i], i));
    RETURN_IF_ERROR(CheckUnique(tenants, t, i));
    tenants.push_back(std::move(t));
  }
  return tenants;
}

// "registry/path/" of a repository, in the form prefixes are written in.
std::string NormalisedRepository(const Repository& repo) {
  return absl::StrCat(NormaliseRegistry(repo.registry), "/", repo.path, "/");
}

bool RuleAllows(const AllowRule& rule, Action action) {
  return action == Action::kPull ? rule.pull : rule.push;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Policy>> Policy::Parse(absl::string_view json) {
  rapidjson::Document doc;
  JsonLimits limits;
  limits.max_bytes = kMaxPolicyBytes;
  limits.max_depth = kMaxPolicyDepth;
  absl::Status parsed = ParseUntrustedJson(json, "policy", &doc, limits);
  if (!parsed.ok()) return absl::InvalidArgumentError(parsed.message());
  if (!doc.IsObject()) return Bad("top level", "must be an object {\"tenants\": […]}");
  const rapidjson::Value* tenants = nullptr;
  for (const auto& m : doc.GetObject()) {
    if (Str(m.name) != "tenants") {
      return Bad("top level",
                 absl::StrCat("unknown key ", KeyForMessage(m.name), " (expected \"tenants\")"));
    }
    if (tenants != nullptr) return Bad("tenants", "appears twice");
    tenants = &m.value;
  }
  if (tenants == nullptr) return Bad("top level", "needs \"tenants\"");
  auto policy = std::make_unique<Policy>();
  ASSIGN_OR_RETURN(policy->tenants_, ParseTenants(*tenants));
  return policy;
}

absl::StatusOr<std::unique_ptr<Policy>> Policy::Load(const std::string& path) {
  absl::StatusOr<std::string> text = ReadSmallFile(path, kMaxPolicyBytes);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("policy file: ", text.status().message()));
  }
  return Parse(*text);
}

const Tenant* Policy::Identify(const CallerIdentity& who) const {
  if (!who.cert_cn.empty()) {
    for (const Tenant& t : tenants_) {
      if (!t.client_cert_cn.empty() && t.client_cert_cn == who.cert_cn) return &t;
    }
  }
  // A certificate whose URI SANs name several tenants is the first of them
  // in policy order.
  for (const Tenant& t : tenants_) {
    if (t.client_cert_uri_san.empty()) continue;
    for (const std::string& san : who.uri_sans) {
      if (san == t.client_cert_uri_san) return &t;
    }
  }
  if (who.bearer_token.empty()) return nullptr;
  const std::string digest = Sha256Digest(who.bearer_token);  // "sha256:<64 hex>"
  const absl::string_view hex = absl::string_view(digest).substr(digest.find(':') + 1);
  // Every stored hash is compared, in constant time, whatever matched.
  const Tenant* found = nullptr;
  for (const Tenant& t : tenants_) {
    if (t.token_sha256.size() != hex.size()) continue;
    if (CRYPTO_memcmp(t.token_sha256.data(), hex.data(), hex.size()) == 0 && found == nullptr) {
      found = &t;
    }
  }
  return found;
}

absl::Status Policy::Check(const Tenant& tenant, const Repository& repo, Action action) const {
  const std::string target = NormalisedRepository(repo);
  for (const AllowRule& rule : tenant.allow) {
    if (RuleAllows(rule, action) && absl::StartsWith(target, rule.prefix)) {
      return absl::OkStatus();
    }
  }
  return absl::PermissionDeniedError(
      absl::StrCat("tenant \"", ForMessage(tenant.name, 64), "\" may not ", ActionName(action),
                   action == Action::kPull ? " from " : " to ", ForMessage(repo.String())));
}

absl::string_view ActionName(Action a) {
  switch (a) {
    case Action::kPull:
      return "pull";
    case Action::kPush:
      return "push";
  }
  return "unknown";
}

}  // namespace regd
