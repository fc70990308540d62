// regd: an OCI/Docker registry client daemon over gRPC.
#include <grpc/support/log.h>
#include <malloc.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/internal/program_name.h"
#include "absl/flags/internal/usage.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "core/config.h"
#include "core/files.h"
#include "core/http/egress.h"
#include "core/log.h"
#include "core/text.h"
#include "regd_version.h"
#include "server/server.h"

ABSL_FLAG(std::string, log_format, "text", "Log lines as text or json (one JSON object a line)");
ABSL_FLAG(std::string, log_level, "info",
          "Least severe log lines written: debug, info, warning, error");
ABSL_FLAG(std::string, access_log_level, "info",
          "Level of the one line per call (method, tenant, registry, repository, outcome, bytes, "
          "duration): debug hides it at the default --log_level, off drops it");
ABSL_FLAG(absl::Duration, drain_delay, absl::Seconds(5),
          "On SIGTERM, how long regd answers health checks NOT_SERVING while it still serves "
          "every call (so load balancers move away) before it stops accepting");
ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "Address to serve on: host:port (port 0 picks one) or unix:/path/to.sock");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain: serve TLS on the TCP listener (with --tls_key). The files are "
          "re-read every --tls_refresh, so a rotated certificate needs no restart");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA certificates: require client certificates signed by them (mTLS)");
ABSL_FLAG(absl::Duration, tls_refresh, absl::Seconds(60),
          "How often the TLS files are re-read for rotation");
ABSL_FLAG(bool, allow_insecure_listen, false,
          "Serve plain gRPC on a TCP address other hosts can reach (without it, regd refuses: "
          "only loopback and unix: listeners may go without TLS)");
ABSL_FLAG(std::vector<std::string>, insecure_registries, {},
          "Comma list of registries (host:port) spoken to over plain HTTP; every other "
          "registry is HTTPS with certificate verification");
ABSL_FLAG(std::vector<std::string>, allowed_registries, {},
          "Comma list of host[:port] patterns (\"*.example.com\" for subdomains) of the "
          "registries regd may use; any other is PERMISSION_DENIED before anything is sent, and "
          "redirects must stay within the list. Default: any registry. Link-local and metadata "
          "addresses are refused unless a registry is named exactly here, in "
          "--insecure_registries or in --config");
ABSL_FLAG(int64_t, inline_memory, 64 << 20,
          "Bytes that inline blob data (BlobSource.data) and streamed uploads (UploadBlob: "
          "3 MiB each) of all calls together may hold; past it calls get RESOURCE_EXHAUSTED. "
          "A ReadBlob takes 4 MiB of it for its fast path while there is room (else it reads "
          "on a lean path). regd's memory is about 30 MiB + --grpc_memory + this");
ABSL_FLAG(int64_t, cache_bytes, 64 << 20,
          "Bytes of manifests and configs fetched by digest that regd keeps in memory and serves "
          "again without asking the registry (content named by its digest cannot change; tags "
          "are always looked up). Each entry is kept for the credentials that fetched it. 0: off");
ABSL_FLAG(std::string, metrics_listen, "",
          "host:port to serve Prometheus metrics at /metrics (e.g. 0.0.0.0:9090); empty: off");
ABSL_FLAG(int64_t, stream_window, 1 << 20,
          "Bytes a caller may send on one stream ahead of what regd has read (HTTP/2 window); "
          "bounds memory per UploadBlob, and per-stream throughput to about window / RTT");
ABSL_FLAG(int64_t, grpc_memory, 64 << 20,
          "Memory gRPC may use for calls in flight (its resource quota): past it, gRPC slows "
          "callers down or refuses new calls (UNAVAILABLE)");
ABSL_FLAG(std::vector<std::string>, allowed_paths, {},
          "Comma list of directories that file sources (BlobSource.path, OciLayout.path) may "
          "be read from");
ABSL_FLAG(std::string, config, "", "JSON file with per-registry settings (see docs/CONFIG.md)");
ABSL_FLAG(std::string, policy, "",
          "JSON file of tenants: who may call and which repositories each may pull or push "
          "(see docs/CONFIG.md); empty: every caller, with the daemon's credentials");
ABSL_FLAG(std::string, ready_file, "",
          "When set, the bound address is written to this file once regd is serving (and the "
          "file is removed at start and at shutdown)");
ABSL_FLAG(std::string, unix_socket_mode, "",
          "Octal permissions for a unix:/ listening socket, e.g. 0660 (default: the umask's)");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(30),
          "On SIGTERM/SIGINT, how long in-flight calls may run before they are cancelled");
ABSL_FLAG(absl::Duration, stall_timeout, absl::Seconds(60),
          "Fail a registry transfer that moves no bytes for this long (slow transfers are fine)");
ABSL_FLAG(int, max_concurrent_calls, 256,
          "Calls served at once; more get RESOURCE_EXHAUSTED. Each holds little beyond "
          "--inline_memory and --grpc_memory (about 0.3 MiB: a thread, curl buffers), so the "
          "default fits the 256 MiB limit of deploy/");
ABSL_FLAG(int64_t, chunk_size, 16 << 20, "Default upload chunk size in bytes");
ABSL_FLAG(int, registry_concurrency, 8, "Default concurrent blob uploads per registry");

namespace regd {
namespace {

// How long past --shutdown_grace a SIGTERM may take before regd exits anyway.
constexpr absl::Duration kShutdownSlack = absl::Seconds(20);
// How long destroying the server may take once every call has ended.
constexpr absl::Duration kTeardownLimit = absl::Seconds(5);

[[nodiscard]] absl::Status WriteReadyFile(const std::string& path, const std::string& address) {
  std::string tmp = absl::StrCat(path, ".tmp");
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return absl::FailedPreconditionError(absl::StrCat("cannot write ", tmp));
  bool written = std::fputs(address.c_str(), f) >= 0;
  written = std::fclose(f) == 0 && written;
  if (!written) return absl::FailedPreconditionError(absl::StrCat("cannot write ", tmp));
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot rename ", tmp));
  }
  return absl::OkStatus();
}

[[nodiscard]] absl::Status ApplySocketMode(const std::string& address, const std::string& mode) {
  if (mode.empty()) return absl::OkStatus();
  if (!absl::StartsWith(address, "unix:")) {
    return absl::InvalidArgumentError("--unix_socket_mode needs a unix: --listen address");
  }
  unsigned long bits = 0;
  char* end = nullptr;
  bits = std::strtoul(mode.c_str(), &end, 8);
  if (end == mode.c_str() || *end != '\0' || bits > 0777) {
    return absl::InvalidArgumentError(
        absl::StrCat("--unix_socket_mode \"", mode, "\" is not octal"));
  }
  std::string path = address.substr(5);
  if (::chmod(path.c_str(), static_cast<mode_t>(bits)) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot chmod ", path));
  }
  return absl::OkStatus();
}

[[nodiscard]] absl::StatusOr<ServerOptions> OptionsFromFlags() {
  ServerOptions o;
  o.listen = absl::GetFlag(FLAGS_listen);
  o.max_concurrent_calls = absl::GetFlag(FLAGS_max_concurrent_calls);
  if (o.max_concurrent_calls < 1) {
    return absl::InvalidArgumentError("--max_concurrent_calls must be at least 1");
  }
  o.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  o.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  o.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  o.tls.refresh = absl::GetFlag(FLAGS_tls_refresh);
  o.tls.allow_insecure_listen = absl::GetFlag(FLAGS_allow_insecure_listen);
  if (o.tls.refresh < absl::Seconds(1)) {
    return absl::InvalidArgumentError("--tls_refresh must be at least 1s");
  }
  o.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  o.stream_window_bytes = absl::GetFlag(FLAGS_stream_window);
  if (o.stream_window_bytes < (64 << 10) || o.stream_window_bytes > (64 << 20)) {
    return absl::InvalidArgumentError("--stream_window must be between 65536 and 67108864");
  }
  o.grpc_memory_bytes = absl::GetFlag(FLAGS_grpc_memory);
  if (o.grpc_memory_bytes < (16 << 20)) {
    return absl::InvalidArgumentError("--grpc_memory must be at least 16777216 (16 MiB)");
  }
  EngineOptions& e = o.engine;
  for (const std::string& r : absl::GetFlag(FLAGS_insecure_registries)) {
    if (r.empty()) continue;
    if (r.find('/') != std::string::npos || !EgressPolicy::ValidatePattern(r).ok() ||
        absl::StartsWith(r, "*.")) {
      return absl::InvalidArgumentError(
          absl::StrCat("--insecure_registries: \"", r, "\" is not a host[:port]"));
    }
    e.insecure_registries.push_back(r);
  }
  for (const std::string& r : absl::GetFlag(FLAGS_allowed_registries)) {
    if (r.empty()) continue;
    absl::Status valid = EgressPolicy::ValidatePattern(r);
    if (!valid.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--allowed_registries: ", valid.message()));
    }
    e.allowed_registries.push_back(r);
  }
  e.inline_budget_bytes = absl::GetFlag(FLAGS_inline_memory);
  if (e.inline_budget_bytes < e.max_inline_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("--inline_memory must be at least ", e.max_inline_bytes));
  }
  e.cache_bytes = absl::GetFlag(FLAGS_cache_bytes);
  if (e.cache_bytes < 0) return absl::InvalidArgumentError("--cache_bytes must not be negative");
  for (const std::string& p : absl::GetFlag(FLAGS_allowed_paths)) {
    if (!p.empty()) e.allowed_paths.push_back(p);
  }
  e.transport.stall_timeout = absl::GetFlag(FLAGS_stall_timeout);
  if (e.transport.stall_timeout < absl::Seconds(1)) {
    return absl::InvalidArgumentError("--stall_timeout must be at least 1s");
  }
  e.default_chunk_size = absl::GetFlag(FLAGS_chunk_size);
  if (e.default_chunk_size < (64 << 10)) {
    return absl::InvalidArgumentError("--chunk_size must be at least 65536");
  }
  e.default_registry_concurrency = absl::GetFlag(FLAGS_registry_concurrency);
  if (e.default_registry_concurrency < 1) {
    return absl::InvalidArgumentError("--registry_concurrency must be at least 1");
  }
  std::string config = absl::GetFlag(FLAGS_config);
  if (!config.empty()) {
    absl::StatusOr<std::string> text = ReadSmallFile(config, 1 << 20);
    if (!text.ok()) return text.status();
    absl::StatusOr<RegistryConfigMap> parsed = ParseConfigFile(*text);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(config, ": ", parsed.status().message()));
    }
    e.registries = *std::move(parsed);
  }
  std::string policy = absl::GetFlag(FLAGS_policy);
  if (!policy.empty()) {
    absl::StatusOr<std::unique_ptr<Policy>> loaded = Policy::Load(policy);
    if (!loaded.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(policy, ": ", loaded.status().message()));
    }
    o.policy = std::shared_ptr<const Policy>(*std::move(loaded));
  }
  return o;
}

// The flags a person sees with --help: regd's own (not Abseil's or gRPC's).
bool IsRegdFlagFile(absl::string_view file) { return absl::EndsWith(file, "server/main.cc"); }

std::string VersionString() {
  return absl::StrCat("regd ", REGD_VERSION, " (commit ", REGD_COMMIT, ")\n");
}

// Flags whose value is a duration: a bare number gets a clear message.
constexpr const char* kDurationFlags[] = {"tls_refresh", "shutdown_grace", "stall_timeout",
                                          "drain_delay"};

// --help / -h / --version, and the values Abseil would refuse obscurely.
// Returns the exit code when the process should end now.
std::optional<int> HandleManners(int argc, char** argv) {
  absl::FlagsUsageConfig config;
  config.contains_help_flags = IsRegdFlagFile;
  config.contains_helpshort_flags = IsRegdFlagFile;
  config.version_string = VersionString;
  config.normalize_filename = [](absl::string_view f) {
    size_t at = f.rfind("server/main.cc");
    return std::string(at == absl::string_view::npos ? f : f.substr(at));
  };
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(
      "an OCI/Docker registry client over gRPC (regd.v1.Registry).\n\n"
      "  regd [--listen=ADDR] [flags]\n\n"
      "Durations take a unit (500ms, 5s, 2m). See README.md and docs/CONFIG.md.");
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (a == "--") break;
    if (a == "--version" || a == "-version") {
      std::fputs(VersionString().c_str(), stdout);
      return 0;
    }
    if (a == "--help" || a == "-h" || a == "-help") {
      absl::flags_internal::SetProgramInvocationName("regd");
      // Asked for: the flags with their defaults on stdout, and success.
      absl::flags_internal::FlagsHelp(std::cout, "server/main.cc",
                                      absl::flags_internal::HelpFormat::kHumanReadable,
                                      absl::ProgramUsageMessage());
      return 0;
    }
    for (const char* name : kDurationFlags) {
      for (absl::string_view prefix : {"--", "-"}) {
        absl::string_view v = a;
        if (!absl::ConsumePrefix(&v, prefix) || !absl::ConsumePrefix(&v, name) ||
            !absl::ConsumePrefix(&v, "=")) {
          continue;
        }
        if (!v.empty() && v != "0" &&
            v.find_first_not_of("0123456789.") == absl::string_view::npos) {
          std::fprintf(stderr, "regd: --%s=%s: use a unit, e.g. %ss\n", name,
                       std::string(v).c_str(), std::string(v).c_str());
          return 2;
        }
      }
    }
  }
  return std::nullopt;
}

// argv with -h spelled --help (Abseil knows only the long form).
std::vector<char*> NormalisedArgs(int argc, char** argv) {
  static char kHelp[] = "--help";
  std::vector<char*> args(argv, argv + argc);
  for (size_t i = 1; i < args.size(); ++i) {
    if (absl::string_view(args[i]) == "--") break;
    if (absl::string_view(args[i]) == "-h") args[i] = kHelp;
  }
  return args;
}

absl::Status ConfigureLoggingFromFlags() {
  LogOptions o;
  absl::StatusOr<LogLevel> level = ParseLogLevel(absl::GetFlag(FLAGS_log_level));
  if (!level.ok())
    return absl::InvalidArgumentError(absl::StrCat("--log_level: ", level.status().message()));
  absl::StatusOr<LogLevel> access = ParseLogLevel(absl::GetFlag(FLAGS_access_log_level));
  if (!access.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--access_log_level: ", access.status().message()));
  }
  absl::StatusOr<LogFormat> format = ParseLogFormat(absl::GetFlag(FLAGS_log_format));
  if (!format.ok())
    return absl::InvalidArgumentError(absl::StrCat("--log_format: ", format.status().message()));
  o.level = *level;
  o.access_level = *access;
  o.format = *format;
  ConfigureLogging(o);
  return absl::OkStatus();
}

// gRPC's own messages go through regd's logger (same format, same levels).
void GrpcLog(gpr_log_func_args* args) {
  LogLevel level = LogLevel::kInfo;
  if (args->severity == GPR_LOG_SEVERITY_DEBUG) level = LogLevel::kDebug;
  if (args->severity == GPR_LOG_SEVERITY_ERROR) level = LogLevel::kError;
  const absl::string_view message = args->message != nullptr ? args->message : "";
  // gRPC's traces (GRPC_TRACE=http) print call metadata: never a line that
  // may carry a caller's token or registry credentials.
  const std::string lower = absl::AsciiStrToLower(message);
  if (absl::StrContains(lower, "authorization") || absl::StrContains(lower, "x-registry-auth") ||
      absl::StrContains(lower, "bearer")) {
    return;
  }
  LogEvent(level, absl::StrCat("grpc: ", RedactSecrets(message)));
}

void RouteGrpcLogs() {
  gpr_set_log_function(GrpcLog);
  // gRPC's INFO lines are its internals: shown only at debug.
  gpr_set_log_verbosity(LogEnabled(LogLevel::kDebug) ? GPR_LOG_SEVERITY_DEBUG
                                                     : GPR_LOG_SEVERITY_ERROR);
}

int Run(int argc, char** argv) {
  // Blob bytes pass through in ~1 MiB buffers (gRPC messages, stream
  // queues). glibc would raise its mmap threshold after the first such free
  // and keep every later buffer on per-thread heaps that never shrink: a
  // fixed threshold gives the larger ones back to the system as soon as they
  // go, and few arenas keep idle threads from each pinning their own. At
  // 1 MiB, ReadBlob's 512 KiB messages (and the slices they are serialised
  // into) come from the heap: a fresh mmap for each, zero-filled page by page,
  // cost a third of a read's CPU.
  mallopt(M_MMAP_THRESHOLD, 1024 << 10);
  mallopt(M_ARENA_MAX, 4);
#ifdef NDEBUG
  // Debian's Abseil checks every Mutex acquisition for lock-order cycles (a
  // graph lookup per lock: a few % of a cheap call's CPU). Release builds
  // skip it; the clang -Wthread-safety build and debug builds keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  if (std::optional<int> done = HandleManners(argc, argv)) return *done;
  std::vector<char*> args = NormalisedArgs(argc, argv);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  if (absl::Status logging = ConfigureLoggingFromFlags(); !logging.ok()) {
    std::fprintf(stderr, "regd: %s\n", std::string(logging.message()).c_str());
    return 2;
  }
  RouteGrpcLogs();

  // Block the shutdown signals in every thread; one thread sigwaits for them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<ServerOptions> options = OptionsFromFlags();
  if (!options.ok()) {
    LogError("regd: ", options.status().message());
    return 2;
  }
  const std::string ready = absl::GetFlag(FLAGS_ready_file);
  if (!ready.empty()) std::remove(ready.c_str());  // a stale one must not say "ready"
  absl::StatusOr<std::unique_ptr<Server>> server = Server::BuildAndStart(*std::move(options));
  if (!server.ok()) {
    LogError("regd: ", server.status().message());
    // A busy address is the environment's fault (1); bad settings are ours (2).
    return absl::IsUnavailable(server.status()) ? 1 : 2;
  }
  Server* s = server->get();
  LogInfo("regd listening on ", s->address());
  if (s->metrics_port() != 0) LogInfo("metrics on port ", s->metrics_port(), " at /metrics");
  absl::Status setup = ApplySocketMode(s->address(), absl::GetFlag(FLAGS_unix_socket_mode));
  if (setup.ok() && !ready.empty()) setup = WriteReadyFile(ready, s->address());
  if (!setup.ok()) {
    LogError("regd: ", setup.message());
    s->Shutdown(absl::ZeroDuration());
    return 1;
  }
  std::thread signals;
  try {
    signals = std::thread([s, &sigs] {
      int sig = 0;
      sigwait(&sigs, &sig);
      LogInfo("received signal ", sig);
      const absl::Duration grace = absl::GetFlag(FLAGS_shutdown_grace);
      const absl::Duration drain = absl::GetFlag(FLAGS_drain_delay);
      // Whatever the calls are doing, the process ends soon after the grace
      // period: a call stuck where no cancel reaches cannot hold it up.
      try {
        std::thread([grace, drain] {
          absl::SleepFor(drain + grace + kShutdownSlack);
          LogError("regd: shutdown did not finish ", absl::FormatDuration(kShutdownSlack),
                   " after the grace period; exiting now");
          std::_Exit(1);
        }).detach();
      } catch (const std::system_error&) {
        // No watchdog then; shutdown still proceeds.
      }
      // Health says NOT_SERVING first, while every call (new ones too) is
      // still served, so that load balancers move away; then stop accepting.
      s->Drain(drain);
      s->Shutdown(grace);
    });
  } catch (const std::system_error& e) {
    LogError("regd: cannot start the signal thread: ", e.what());
    s->Shutdown(absl::ZeroDuration());
    return 1;
  }
  s->Wait();
  if (signals.joinable()) signals.join();
  if (!ready.empty()) std::remove(ready.c_str());
  if (!s->drained()) {
    // Work that outlived the grace period must not run against a destroyed
    // engine: leave without running destructors.
    LogWarning("regd stopped with engine work still running");
    std::_Exit(0);
  }
  // Every call has ended. Tearing down gRPC can still hang (gRPC 1.51 waits in
  // grpc_shutdown for a thread of its own that the OS refused to start, e.g.
  // under RLIMIT_NPROC): give it a few seconds, then leave without it.
  absl::Notification torn_down;
  try {
    std::thread([&server, &torn_down] {
      server->reset();
      torn_down.Notify();
    }).detach();
  } catch (const std::system_error&) {
    LogWarning("regd stopped (no thread for the teardown; skipping it)");
    std::_Exit(0);
  }
  if (!torn_down.WaitForNotificationWithTimeout(kTeardownLimit)) {
    LogWarning("regd stopped (gRPC's teardown did not finish in ",
               absl::FormatDuration(kTeardownLimit), "; skipped)");
    std::_Exit(0);
  }
  LogInfo("regd stopped");
  return 0;
}

}  // namespace
}  // namespace regd

int main(int argc, char** argv) { return regd::Run(argc, argv); }
