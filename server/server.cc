#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/files.h"
#include "core/log.h"
#include "core/status_macros.h"
#include "regd_version.h"

namespace regd {
namespace {

constexpr char kServiceName[] = "regd.v1.Registry";

// A unix socket path may be taken only when nothing answers on it: a live
// socket is another daemon's (refuse), a dead one is stale (remove it), and
// anything that is not a socket is not ours to delete.
[[nodiscard]] absl::Status ClaimUnixSocketPath(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return absl::OkStatus();  // free
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot listen on unix:", path, ": it exists and is not a socket"));
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return absl::InvalidArgumentError(absl::StrCat("unix socket path too long: ", path));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::ResourceExhaustedError("cannot create a socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot listen on unix:", path, ": another process is serving on it"));
  }
  if (errno != ECONNREFUSED) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot listen on unix:", path, ": ", std::strerror(errno)));
  }
  LogInfo("removing stale socket ", path);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot remove stale socket ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::BuildAndStart(ServerOptions options) {
  std::unique_ptr<Server> s(new Server());
  if (!options.metrics_listen.empty()) {
    Metrics::Options mo;
    mo.listen = options.metrics_listen;
    mo.tenant_label = options.policy != nullptr;
    mo.version = absl::StrCat(REGD_VERSION, "+", REGD_COMMIT);
    ASSIGN_OR_RETURN(s->metrics_, Metrics::Start(std::move(mo)));
    options.engine.observer = s->metrics_.get();
  }
  ASSIGN_OR_RETURN(s->engine_, Engine::Create(std::move(options.engine)));
  s->executor_ = std::make_unique<Executor>(options.max_concurrent_calls);
  s->callers_ = std::make_unique<Callers>(options.policy);
  s->service_ = std::make_unique<RegistryService>(s->engine_.get(), s->executor_.get(),
                                                  s->callers_.get(), s->metrics_.get());

  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                   ListenerCredentials(options.listen, options.tls));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  const bool unix_socket = absl::StartsWith(options.listen, "unix:");
  if (unix_socket) RETURN_IF_ERROR(ClaimUnixSocketPath(options.listen.substr(5)));
  grpc::ServerBuilder builder;
  // gRPC sets SO_REUSEPORT by default, so a second daemon on a busy port
  // would start and take half the connections. Refuse instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int port = 0;
  builder.AddListeningPort(options.listen, credentials, &port);
  builder.RegisterService(s->service_.get());
  builder.SetMaxSendMessageSize(64 << 20);
  // Inline blob data is capped at 4 MiB a blob; a request a few blobs big is
  // the most any call needs (larger blobs go by path).
  builder.SetMaxReceiveMessageSize(8 << 20);
  // Bytes gRPC may hold for incoming messages across all calls: under
  // pressure it shrinks flow-control windows, so callers wait instead of
  // the daemon buffering every request at once.
  grpc::ResourceQuota quota("regd");
  quota.Resize(static_cast<size_t>(options.grpc_memory_bytes));
  builder.SetResourceQuota(quota);
  // What a caller may send ahead of what regd has read, per stream: fixed.
  // gRPC's BDP probing would grow it to many MiB per stream, which an
  // UploadBlob that waits on its registry cannot use, and which fills the
  // quota until gRPC resets streams at random (ENHANCE_YOUR_CALM).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES,
                             static_cast<int>(options.stream_window_bytes));
  s->grpc_server_ = builder.BuildAndStart();
  if (s->grpc_server_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen,
                                               unix_socket ? "" : " (is the port in use?)"));
  }
  if (absl::StartsWith(options.listen, "unix:")) {
    s->address_ = options.listen;
  } else {
    if (port == 0) return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
    std::string host = options.listen.substr(0, options.listen.rfind(':'));
    s->address_ = absl::StrCat(host, ":", port);
  }
  grpc::HealthCheckServiceInterface* health = s->grpc_server_->GetHealthCheckService();
  health->SetServingStatus(true);
  health->SetServingStatus(kServiceName, true);
  return s;
}

Server::~Server() { Shutdown(absl::Seconds(5)); }

void Server::Wait() {
  if (grpc_server_) grpc_server_->Wait();
}

void Server::Drain(absl::Duration delay) {
  if (!grpc_server_ || delay <= absl::ZeroDuration()) return;
  LogInfo("draining: health is NOT_SERVING; still serving calls for ", absl::FormatDuration(delay));
  grpc::HealthCheckServiceInterface* health = grpc_server_->GetHealthCheckService();
  health->SetServingStatus(false);
  absl::SleepFor(delay);
}

void Server::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  if (!grpc_server_) return;
  LogInfo("shutting down: finishing in-flight calls for up to ", absl::FormatDuration(grace));
  grpc_server_->GetHealthCheckService()->Shutdown();
  absl::Time deadline = absl::Now() + grace;
  // Stops accepting, waits for calls until the deadline, then cancels the rest
  // (their reactors see OnCancel and stop their uploads).
  grpc_server_->Shutdown(absl::ToChronoTime(deadline));
  if (!executor_->Drain(absl::Now() + absl::Seconds(10))) {
    LogWarning("shutdown: ", executor_->running(), " engine tasks still running");
    absl::MutexLock lock(&mu_);
    drained_ = false;
  }
}

bool Server::drained() {
  absl::MutexLock lock(&mu_);
  return drained_;
}

}  // namespace regd
