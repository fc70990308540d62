#include "core/auth/credentials.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/digest.h"
#include "core/files.h"
#include "core/json.h"
#include "core/status_macros.h"
#include "core/text.h"
#include "rapidjson/document.h"

extern char** environ;

namespace regd {
namespace {

// Registries whose credentials are remembered at once.
constexpr size_t kMaxCachedRegistries = 4096;

constexpr absl::Duration kHelperTimeout = absl::Seconds(30);

std::string JsonString(const rapidjson::Value& obj, const char* key) {
  if (!obj.IsObject()) return "";
  auto it = obj.FindMember(key);
  if (it == obj.MemberEnd() || !it->value.IsString()) return "";
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

// "https://host:port/v1/" → "host:port"; "host" → "host".
std::string NormaliseConfigKey(absl::string_view key) {
  absl::ConsumePrefix(&key, "https://");
  absl::ConsumePrefix(&key, "http://");
  key = key.substr(0, key.find('/'));
  return std::string(key);
}

bool KeyMatches(absl::string_view key, const std::string& registry) {
  std::string k = NormaliseConfigKey(key);
  if (k == registry) return true;
  if (registry == "docker.io") {
    return k == "index.docker.io" || k == "registry-1.docker.io" || k == "registry.hub.docker.com";
  }
  return false;
}

// The server name docker passes to helpers.
std::string HelperServer(const std::string& registry) {
  return registry == "docker.io" ? "https://index.docker.io/v1/" : registry;
}

[[nodiscard]] absl::StatusOr<Credentials> FromHelperOutput(absl::string_view out) {
  rapidjson::Document doc;
  JsonLimits limits;
  limits.max_bytes = 1 << 20;
  limits.max_depth = 8;
  if (!ParseUntrustedJson(out, "credential helper output", &doc, limits).ok() || !doc.IsObject()) {
    // Never echo what the helper printed: it may hold a secret.
    return absl::FailedPreconditionError("credential helper printed invalid JSON");
  }
  Credentials c;
  std::string user = JsonString(doc, "Username");
  std::string secret = JsonString(doc, "Secret");
  if (user == "<token>") {
    c.identity_token = secret;
  } else {
    c.username = user;
    c.password = secret;
  }
  return c;
}

[[nodiscard]] absl::StatusOr<Credentials> FromAuthEntry(const rapidjson::Value& entry) {
  Credentials c;
  std::string auth = JsonString(entry, "auth");
  if (!auth.empty()) {
    std::string decoded;
    if (!absl::Base64Unescape(auth, &decoded) || decoded.find(':') == std::string::npos) {
      return absl::FailedPreconditionError(
          "docker config: an \"auth\" entry is not base64 user:password");
    }
    size_t colon = decoded.find(':');
    c.username = decoded.substr(0, colon);
    c.password = decoded.substr(colon + 1);
  }
  if (c.username.empty()) c.username = JsonString(entry, "username");
  if (c.password.empty()) c.password = JsonString(entry, "password");
  c.identity_token = JsonString(entry, "identitytoken");
  c.registry_token = JsonString(entry, "registrytoken");
  return c;
}

}  // namespace

absl::StatusOr<Credentials> CredentialsFromDockerConfig(absl::string_view json,
                                                        const std::string& registry,
                                                        const HelperRunner& helper_runner) {
  rapidjson::Document doc;
  if (!ParseUntrustedJson(json, "docker config", &doc).ok() || !doc.IsObject()) {
    return absl::FailedPreconditionError("docker config is not a JSON object");
  }
  auto helpers = doc.FindMember("credHelpers");
  if (helpers != doc.MemberEnd() && helpers->value.IsObject()) {
    for (auto& m : helpers->value.GetObject()) {
      if (m.value.IsString() && KeyMatches(m.name.GetString(), registry)) {
        ASSIGN_OR_RETURN(std::string out,
                         helper_runner(m.value.GetString(), HelperServer(registry)));
        return FromHelperOutput(out);
      }
    }
  }
  auto auths = doc.FindMember("auths");
  if (auths != doc.MemberEnd() && auths->value.IsObject()) {
    for (auto& m : auths->value.GetObject()) {
      if (KeyMatches(m.name.GetString(), registry)) {
        ASSIGN_OR_RETURN(Credentials c, FromAuthEntry(m.value));
        if (!c.empty()) return c;
      }
    }
  }
  std::string store = JsonString(doc, "credsStore");
  if (!store.empty()) {
    absl::StatusOr<std::string> out = helper_runner(store, HelperServer(registry));
    if (out.ok()) return FromHelperOutput(*out);
    if (!absl::IsNotFound(out.status())) return out.status();
  }
  return absl::NotFoundError("no credentials for this registry");
}

absl::StatusOr<Credentials> ParseCredentialsFile(absl::string_view json) {
  rapidjson::Document doc;
  if (!ParseUntrustedJson(json, "credentials file", &doc).ok() || !doc.IsObject()) {
    return absl::InvalidArgumentError("credentials file is not a JSON object");
  }
  ASSIGN_OR_RETURN(Credentials c, FromAuthEntry(doc));
  if (c.empty()) {
    return absl::InvalidArgumentError(
        "credentials file has none of username/password, auth, identitytoken, registrytoken");
  }
  return c;
}

absl::StatusOr<std::string> RunCredentialHelper(const std::string& helper,
                                                const std::string& server) {
  for (char ch : helper) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' ||
          ch == '.')) {
      return absl::FailedPreconditionError("credential helper name has invalid characters");
    }
  }
  std::string prog = absl::StrCat("docker-credential-", helper);
  int in_pipe[2], out_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    close(in_pipe[0]);
    close(in_pipe[1]);
    return absl::InternalError("pipe failed");
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_pipe[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  // The helper's stderr may hold secrets or the caller-chosen server name;
  // it never reaches regd's log.
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  // The daemon blocks SIGTERM/SIGINT in every thread and ignores SIGPIPE; the
  // helper gets the ordinary defaults back.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGTERM, SIGINT}) sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  char* argv[] = {prog.data(), const_cast<char*>("get"), nullptr};
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, prog.c_str(), &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(in_pipe[0]);
  close(out_pipe[1]);
  if (rc != 0) {
    close(in_pipe[1]);
    close(out_pipe[0]);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run ", prog, ": ", std::strerror(rc)));
  }
  std::string input = server;
  (void)!write(in_pipe[1], input.data(), input.size());
  close(in_pipe[1]);
  // A helper that hangs (a keychain prompt nobody answers) must not pin the
  // call: it gets kHelperTimeout to answer.
  std::string out;
  char buf[4096];
  bool timed_out = false;
  const absl::Time deadline = absl::Now() + kHelperTimeout;
  while (out.size() <= (1 << 20)) {
    int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (wait_ms <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{out_pipe[0], POLLIN, 0};
    int ready = poll(&pfd, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      timed_out = ready == 0;
      break;
    }
    ssize_t n = read(out_pipe[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(out_pipe[0]);
  if (timed_out) kill(pid, SIGKILL);
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return absl::UnavailableError(
        absl::StrCat(prog, " did not answer within ", absl::FormatDuration(kHelperTimeout)));
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    // docker-credential helpers print "credentials not found in native keychain".
    if (absl::StrContains(out, "not found"))
      return absl::NotFoundError("helper has no credentials");
    return absl::FailedPreconditionError(absl::StrCat(prog, " failed"));
  }
  return out;
}

std::string CredentialIdentity(const Credentials& c) {
  if (c.empty()) return "anonymous";
  Digester d = *Digester::Create("sha256");
  for (const std::string* f : {&c.username, &c.password, &c.identity_token, &c.registry_token}) {
    // Length-prefixed, so that no two field splits hash alike.
    std::string len = absl::StrCat(f->size(), ":");
    d.Update(len);
    d.Update(*f);
  }
  std::string hex = d.Finish();  // "sha256:<64 hex>"
  return absl::StrCat("c:", hex.substr(7, 32));
}

absl::StatusOr<CallCredentials> ParseAuthConfig(absl::string_view json) {
  rapidjson::Document doc;
  if (!ParseUntrustedJson(json, "x-registry-auth", &doc).ok() || !doc.IsObject()) {
    return absl::InvalidArgumentError("x-registry-auth is not a JSON object");
  }
  CallCredentials out;
  for (auto it = doc.MemberBegin(); it != doc.MemberEnd(); ++it) {
    absl::string_view key(it->name.GetString(), it->name.GetStringLength());
    static constexpr absl::string_view kKnown[] = {
        "username", "password", "auth", "identitytoken", "registrytoken", "serveraddress", "email"};
    bool known = false;
    for (absl::string_view k : kKnown) known = known || k == key;
    if (!known) {
      return absl::InvalidArgumentError(
          absl::StrCat("x-registry-auth has an unknown key \"", ForMessage(key, 40), "\""));
    }
    if (!it->value.IsString()) {
      return absl::InvalidArgumentError(
          absl::StrCat("x-registry-auth: \"", key, "\" must be a string"));
    }
  }
  absl::StatusOr<Credentials> creds = FromAuthEntry(doc);
  if (!creds.ok())
    return absl::InvalidArgumentError("x-registry-auth: \"auth\" is not base64 user:password");
  out.creds = *std::move(creds);
  if (out.creds.empty()) {
    return absl::InvalidArgumentError(
        "x-registry-auth has none of username/password, auth, identitytoken, registrytoken");
  }
  for (auto it = doc.MemberBegin(); it != doc.MemberEnd(); ++it) {
    if (absl::string_view(it->name.GetString()) != "serveraddress") continue;
    std::string server(it->value.GetString(), it->value.GetStringLength());
    if (server.empty()) continue;
    absl::string_view host = server;
    absl::ConsumePrefix(&host, "https://");
    absl::ConsumePrefix(&host, "http://");
    host = host.substr(0, host.find('/'));
    std::string name = absl::AsciiStrToLower(host);
    if (name == "index.docker.io" || name == "registry-1.docker.io") name = "docker.io";
    if (name.empty() || name.find_first_of(" \t\r\n@") != std::string::npos) {
      return absl::InvalidArgumentError("x-registry-auth: serveraddress is not a registry");
    }
    out.registry = name;
  }
  return out;
}

absl::StatusOr<ResolvedCredentials> CredentialChain::Resolve(const std::string& registry) const {
  ResolvedCredentials r;
  if (own != nullptr && (own->registry.empty() || own->registry == registry)) {
    r.creds = own->creds;
  } else {
    if (tenant != nullptr) {
      ASSIGN_OR_RETURN(r.creds, tenant->Get(registry));
    }
    if (r.creds.empty() && daemon != nullptr) {
      ASSIGN_OR_RETURN(r.creds, daemon->Get(registry));
    }
  }
  r.identity = CredentialIdentity(r.creds);
  return r;
}

void CredentialChain::Invalidate(const std::string& registry) const {
  // The call's own credentials were refused: nothing the stores hold is to
  // blame (and a caller must not make everyone's helpers run again).
  if (own != nullptr && (own->registry.empty() || own->registry == registry)) return;
  if (tenant != nullptr) tenant->Invalidate(registry);
  if (daemon != nullptr) daemon->Invalidate(registry);
}

CredentialStore::CredentialStore(Options options, Clock* clock)
    : options_(std::move(options)), clock_(clock) {}

absl::StatusOr<Credentials> CredentialStore::Get(const std::string& registry) {
  absl::Time now = clock_->Now();
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(registry);
    if (it != cache_.end() && it->second.expires > now) return it->second.creds;
  }
  ASSIGN_OR_RETURN(Credentials creds, Resolve(registry));
  absl::MutexLock lock(&mu_);
  if (cache_.size() >= kMaxCachedRegistries && cache_.count(registry) == 0) {
    // Bounded: drop expired entries, and if none, the one expiring first.
    auto oldest = cache_.begin();
    for (auto it = cache_.begin(); it != cache_.end();) {
      if (it->second.expires <= now) {
        it = cache_.erase(it);
        continue;
      }
      if (it->second.expires < oldest->second.expires) oldest = it;
      ++it;
    }
    if (cache_.size() >= kMaxCachedRegistries && !cache_.empty()) {
      oldest = cache_.begin();
      for (auto it = cache_.begin(); it != cache_.end(); ++it) {
        if (it->second.expires < oldest->second.expires) oldest = it;
      }
      cache_.erase(oldest);
    }
  }
  cache_[registry] = Entry{creds, now + options_.ttl};
  return creds;
}

void CredentialStore::Invalidate(const std::string& registry) {
  absl::MutexLock lock(&mu_);
  cache_.erase(registry);
}

absl::StatusOr<Credentials> CredentialStore::Resolve(const std::string& registry) {
  auto file = options_.credentials_files.find(registry);
  if (file != options_.credentials_files.end()) {
    ASSIGN_OR_RETURN(std::string json, ReadSmallFile(file->second, 1 << 20));
    return ParseCredentialsFile(json);
  }
  if (!options_.docker_config_file.empty()) {
    ASSIGN_OR_RETURN(std::string json, ReadSmallFile(options_.docker_config_file, 4 << 20));
    absl::StatusOr<Credentials> c =
        CredentialsFromDockerConfig(json, registry, options_.helper_runner);
    if (absl::IsNotFound(c.status())) return Credentials{};
    return c;
  }
  std::string dir = options_.docker_config_dir;
  if (dir.empty()) {
    const char* env = std::getenv("DOCKER_CONFIG");
    const char* home = std::getenv("HOME");
    if (env != nullptr && *env != '\0') {
      dir = env;
    } else if (home != nullptr) {
      dir = absl::StrCat(home, "/.docker");
    }
  }
  if (dir.empty()) return Credentials{};
  absl::StatusOr<std::string> json = ReadSmallFile(dir + "/config.json", 4 << 20);
  if (absl::IsNotFound(json.status())) return Credentials{};
  if (!json.ok()) return json.status();
  absl::StatusOr<Credentials> c =
      CredentialsFromDockerConfig(*json, registry, options_.helper_runner);
  if (absl::IsNotFound(c.status())) return Credentials{};
  return c;
}

}  // namespace regd
