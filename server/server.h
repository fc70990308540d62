// Server: owns the gRPC server, the Engine, the Executor and the health
// service, and runs their lifecycle: BuildAndStart → Wait → Shutdown.
//
// Shutdown stops accepting calls, gives in-flight calls until the deadline to
// finish (then cancels them, which stops and cleans up their uploads), and
// waits for the engine workers. Thread-safe: Shutdown may be called from a
// signal-handling thread while another thread is in Wait.
#ifndef REGD_SERVER_SERVER_H_
#define REGD_SERVER_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/engine.h"
#include "core/executor.h"
#include "core/policy.h"
#include "server/callers.h"
#include "server/metrics.h"
#include "server/registry_service.h"
#include "server/tls.h"

namespace regd {

struct ServerOptions {
  // "host:port" (port 0 picks a free one) or "unix:/path".
  std::string listen = "127.0.0.1:50051";
  // Calls running at once; beyond it calls fail with RESOURCE_EXHAUSTED.
  int max_concurrent_calls = 256;
  // Memory gRPC may use for calls in flight (its ResourceQuota).
  int64_t grpc_memory_bytes = 64 << 20;
  // Bytes a caller may send on one stream ahead of what regd has read (the
  // HTTP/2 window). Per stream throughput is at most about window / RTT.
  int64_t stream_window_bytes = 1 << 20;
  ListenerTls tls;
  // "host:port" for Prometheus' /metrics; "" : no metrics endpoint.
  std::string metrics_listen;
  // Tenants and what they may do (--policy); null: every caller, as before.
  std::shared_ptr<const Policy> policy;
  EngineOptions engine;
};

class Server {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Server>> BuildAndStart(ServerOptions options);
  ~Server();

  // The address actually bound: "127.0.0.1:43123" or "unix:/path".
  const std::string& address() const { return address_; }
  Engine* engine() const { return engine_.get(); }
  // The /metrics port (0: none).
  int metrics_port() const { return metrics_ != nullptr ? metrics_->port() : 0; }

  // Blocks until Shutdown completes.
  void Wait();
  // The first step of a graceful stop: health turns NOT_SERVING, and every
  // call (new ones too) is still served for `delay`, so that load balancers
  // move away before the listener closes. Returns after `delay`.
  void Drain(absl::Duration delay);
  // Idempotent.
  void Shutdown(absl::Duration grace);
  // After Shutdown: false when engine work was still running at its deadline
  // (the caller should then exit without destroying the Server).
  bool drained();

 private:
  Server() = default;

  std::string address_;
  std::unique_ptr<Metrics> metrics_;  // null without --metrics_listen; outlives the engine
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<Callers> callers_;
  std::unique_ptr<RegistryService> service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  bool drained_ ABSL_GUARDED_BY(mu_) = true;
};

}  // namespace regd

#endif  // REGD_SERVER_SERVER_H_
