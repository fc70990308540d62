#include "cli/command.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "cli/registry_auth.h"

namespace regdctl {
namespace {

std::string EnvOr(const char* name, absl::string_view fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : std::string(fallback);
}

// The x-registry-auth value the flags ask for ("" for none).
absl::StatusOr<std::string> RegistryAuth(const ParsedArgs& args, absl::string_view registry) {
  bool from_config = args.Has("registry-auth-from-docker-config");
  bool user = args.Has("registry-user");
  bool password = args.Has("registry-password") || std::getenv("REGD_REGISTRY_PASSWORD") != nullptr;
  if (from_config && (user || args.Has("registry-password"))) {
    return UsageError(
        "--registry-auth-from-docker-config and --registry-user/--registry-password exclude each "
        "other");
  }
  if (from_config) {
    if (registry.empty())
      return std::string();  // no registry (health), or a reference regd will refuse
    absl::StatusOr<RegistryLogin> login = LoginFromDockerConfig(DockerConfigPath(), registry);
    if (!login.ok()) return login.status();
    return RegistryAuthValue(*login, registry);
  }
  if (!user) {
    if (args.Has("registry-password"))
      return UsageError("--registry-password needs --registry-user");
    return std::string();
  }
  if (!password) {
    return UsageError("--registry-user needs --registry-password (or $REGD_REGISTRY_PASSWORD)");
  }
  RegistryLogin login;
  login.username = args.Value("registry-user");
  login.password = args.Has("registry-password") ? args.Value("registry-password")
                                                 : EnvOr("REGD_REGISTRY_PASSWORD", "");
  return RegistryAuthValue(login, registry);
}

}  // namespace

const std::vector<OptionSpec>& GlobalOptions() {
  static const std::vector<OptionSpec>* specs = new std::vector<OptionSpec>{
      {"addr", 0, "ADDR",
       "daemon address: host:port or unix:/path.sock (default $REGD_ADDR, else 127.0.0.1:50051)"},
      {"tls-ca", 0, "PEM", "CA certificates that verify the daemon (turns TLS on)"},
      {"tls-cert", 0, "PEM", "client certificate chain for mTLS (with --tls-key)"},
      {"tls-key", 0, "PEM", "private key of --tls-cert"},
      {"tls-server-name", 0, "NAME", "name to check in the daemon's certificate (turns TLS on)"},
      {"token", 0, "TOKEN", "send 'authorization: Bearer TOKEN' (default $REGD_TOKEN)"},
      {"registry-user", 0, "USER",
       "registry credentials for this call (x-registry-auth), with --registry-password"},
      {"registry-password", 0, "PASS", "see --registry-user (default $REGD_REGISTRY_PASSWORD)"},
      {"registry-auth-from-docker-config", 0, "",
       "send the `auths` entry of $DOCKER_CONFIG/config.json (or ~/.docker/config.json) for the "
       "reference's registry"},
      {"timeout", 0, "DURATION", "deadline of non-streaming calls (default 60s; 0 for none)"},
      {"output", 'o', "FORMAT", "text (default) or json: the result as one JSON object on stdout"},
      {"progress", 0, "MODE",
       "auto (default: live bars when stderr is a terminal, else plain lines), tty, plain, none"},
      {"quiet", 'q', "", "no progress output (same as --progress none)"},
      {"help", 'h', "", "show help"},
      {"version", 0, "", "print the version"},
  };
  return *specs;
}

std::vector<OptionSpec> RetryOptions(absl::string_view daemon_delay) {
  return {
      {"max-attempts", 0, "N",
       "attempts per blob before the call fails (default: the daemon's, 5)"},
      {"retry-delay", 0, "DURATION",
       absl::StrCat("first retry delay, doubled each time (default: the daemon's, ", daemon_delay,
                    ")")},
  };
}

std::vector<OptionSpec> With(std::vector<OptionSpec> a, const std::vector<OptionSpec>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::unique_ptr<ProgressDisplay> CommandEnv::NewDisplay() const {
  ProgressOptions o;
  o.mode = progress_;
  return std::make_unique<ProgressDisplay>(o);
}

absl::StatusOr<Connection*> CommandEnv::Connect(absl::string_view registry) {
  if (connection_ != nullptr) return connection_.get();
  ConnectionOptions o;
  o.address = args_.Value("addr", EnvOr("REGD_ADDR", "127.0.0.1:50051"));
  o.tls_ca = args_.Value("tls-ca");
  o.tls_cert = args_.Value("tls-cert");
  o.tls_key = args_.Value("tls-key");
  o.tls_server_name = args_.Value("tls-server-name");
  o.token = args_.Value("token", EnvOr("REGD_TOKEN", ""));
  o.has_token = !o.token.empty();
  absl::StatusOr<absl::Duration> timeout = args_.Duration("timeout", absl::Seconds(60));
  if (!timeout.ok()) return timeout.status();
  o.unary_timeout = *timeout == absl::ZeroDuration() ? absl::InfiniteDuration() : *timeout;
  absl::StatusOr<std::string> auth = RegistryAuth(args_, registry);
  if (!auth.ok()) return auth.status();
  o.registry_auth = *std::move(auth);
  absl::StatusOr<std::unique_ptr<Connection>> c = Connection::Open(std::move(o));
  if (!c.ok()) return c.status();
  connection_ = *std::move(c);
  return connection_.get();
}

absl::StatusOr<regd::v1::RetryConfig> CommandEnv::Retry() const {
  regd::v1::RetryConfig r;
  absl::StatusOr<int64_t> attempts = args_.Int("max-attempts", 0);
  if (!attempts.ok()) return attempts.status();
  if (*attempts < 0 || *attempts > 100) return UsageError("--max-attempts must be 0..100");
  r.set_max_attempts(static_cast<int32_t>(*attempts));
  absl::StatusOr<absl::Duration> delay = args_.Duration("retry-delay", absl::ZeroDuration());
  if (!delay.ok()) return delay.status();
  if (*delay > absl::ZeroDuration()) {
    int64_t nanos = absl::ToInt64Nanoseconds(*delay);
    r.mutable_initial_delay()->set_seconds(nanos / 1000000000);
    r.mutable_initial_delay()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
  }
  return r;
}

bool CommandEnv::RetryGiven() const {
  return args_.Has("max-attempts") || args_.Has("retry-delay");
}

std::string TerminalSafe(absl::string_view text, bool keep_newlines) {
  // Text from the daemon (labels, annotations, registry error messages) is
  // hostile: control bytes (C0, DEL) and C1 controls (U+0080-U+009F, as UTF-8
  // C2 80..C2 9F) could move the cursor, retitle or rewrite the terminal.
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if ((c == '\n' && keep_newlines) || c == '\t') {
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c == 0x7f) {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    } else if (c == 0xc2 && i + 1 < text.size() &&
               static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
      absl::StrAppend(&out, "\\u00",
                      absl::Hex(static_cast<unsigned char>(text[i + 1]), absl::kZeroPad2));
      ++i;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

void PrintText(absl::string_view text) {
  const std::string safe = TerminalSafe(text, /*keep_newlines=*/true);
  std::fwrite(safe.data(), 1, safe.size(), stdout);
  std::fflush(stdout);
}

}  // namespace regdctl
