#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/log.h"
#include "core/status_macros.h"

namespace regd {
namespace {

constexpr char kServiceName[] = "regd.v1.Registry";

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::BuildAndStart(ServerOptions options) {
  std::unique_ptr<Server> s(new Server());
  ASSIGN_OR_RETURN(s->engine_, Engine::Create(std::move(options.engine)));
  s->executor_ = std::make_unique<Executor>(options.max_concurrent_calls);
  s->service_ = std::make_unique<RegistryService>(s->engine_.get(), s->executor_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(s->service_.get());
  builder.SetMaxSendMessageSize(64 << 20);
  builder.SetMaxReceiveMessageSize(16 << 20);  // inline blob data is capped at 4 MiB
  s->grpc_server_ = builder.BuildAndStart();
  if (s->grpc_server_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
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
