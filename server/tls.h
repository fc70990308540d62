// Transport security for the listener: TLS (and mTLS) credentials from PEM
// files that are watched for rotation, and the rule that a listener other
// hosts can reach speaks TLS unless the operator says otherwise.
//
// Free functions; thread-compatible.
#ifndef REGD_SERVER_TLS_H_
#define REGD_SERVER_TLS_H_

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace regd {

struct ListenerTls {
  std::string cert_file;       // PEM certificate chain (--tls_cert)
  std::string key_file;        // PEM private key (--tls_key)
  std::string client_ca_file;  // PEM CAs; set: client certificates required (--tls_client_ca)
  // How often the files are re-read (cert-manager rotates them in place).
  absl::Duration refresh = absl::Seconds(60);
  bool allow_insecure_listen = false;  // plain gRPC on a non-loopback address

  bool enabled() const { return !cert_file.empty(); }
};

// True for "unix:…" and TCP addresses on loopback (127.0.0.0/8, ::1, localhost).
bool IsLocalListenAddress(const std::string& listen);

// The credentials for `listen`: insecure on a local address without TLS,
// else TLS from the files (checked now: readable PEM, key matching the
// certificate). FAILED_PRECONDITION for a non-local address without TLS
// unless allow_insecure_listen, and for unusable files.
[[nodiscard]] absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ListenerCredentials(
    const std::string& listen, const ListenerTls& tls);

}  // namespace regd

#endif  // REGD_SERVER_TLS_H_
