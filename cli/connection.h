// How regdctl reaches regd: the channel (plain, TLS or mTLS; host:port or
// unix:/path), the stubs, and what every call carries (authorization: Bearer,
// x-registry-auth, a deadline for unary calls).
//
// A Connection is thread-safe once opened (gRPC channels and stubs are).
#ifndef REGD_CLI_CONNECTION_H_
#define REGD_CLI_CONNECTION_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "regd/v1/registry.grpc.pb.h"

namespace regdctl {

struct ConnectionOptions {
  std::string address = "127.0.0.1:50051";  // host:port, or unix:/path.sock
  // PEM files; TLS is used when any of the four is set.
  std::string tls_ca;    // CAs that verify the daemon (default: the system's)
  std::string tls_cert;  // client certificate chain, for mTLS (with tls_key)
  std::string tls_key;
  std::string tls_server_name;  // name checked in the daemon's certificate
  bool has_token = false;
  std::string token;          // sent as "authorization: Bearer <token>"
  std::string registry_auth;  // the x-registry-auth value; empty: none
  // Deadline of unary calls; streaming calls (transfers) get none.
  absl::Duration unary_timeout = absl::Seconds(60);
};

class Connection {
 public:
  // Reads the PEM files and builds the channel (connecting happens on the
  // first call; a daemon that is not there is UNAVAILABLE then).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Connection>> Open(ConnectionOptions options);

  regd::v1::Registry::Stub& registry() { return *registry_; }
  grpc::health::v1::Health::Stub& health() { return *health_; }

  // Adds the call metadata, and for unary calls the deadline.
  void PrepareUnary(grpc::ClientContext* ctx) const;
  void PrepareStream(grpc::ClientContext* ctx) const;

 private:
  Connection() = default;
  ConnectionOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<regd::v1::Registry::Stub> registry_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

}  // namespace regdctl

#endif  // REGD_CLI_CONNECTION_H_
