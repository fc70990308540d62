#include "cli/connection.h"

#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cli/args.h"
#include "cli/local_files.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace regdctl {
namespace {

constexpr int64_t kMaxPem = 1 << 20;
// An Image carries its manifest and config (4 MiB each at most).
constexpr int kMaxReceiveMessage = 16 << 20;

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* flag) {
  if (path.empty()) return std::string();
  absl::StatusOr<std::string> pem = ReadSmallFile(path, kMaxPem);
  if (!pem.ok()) {
    return absl::Status(pem.status().code(), absl::StrCat(flag, ": ", pem.status().message()));
  }
  return pem;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> Credentials(const ConnectionOptions& o) {
  bool tls =
      !o.tls_ca.empty() || !o.tls_cert.empty() || !o.tls_key.empty() || !o.tls_server_name.empty();
  if (!tls) return grpc::InsecureChannelCredentials();
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return UsageError("--tls-cert and --tls-key go together");
  }
  grpc::SslCredentialsOptions ssl;
  absl::StatusOr<std::string> ca = ReadPem(o.tls_ca, "--tls-ca");
  absl::StatusOr<std::string> cert = ReadPem(o.tls_cert, "--tls-cert");
  absl::StatusOr<std::string> key = ReadPem(o.tls_key, "--tls-key");
  for (const auto* s : {&ca, &cert, &key}) {
    if (!s->ok()) return s->status();
  }
  ssl.pem_root_certs = *ca;
  ssl.pem_cert_chain = *cert;
  ssl.pem_private_key = *key;
  return grpc::SslCredentials(ssl);
}

bool UsesTls(const ConnectionOptions& o) {
  return !o.tls_ca.empty() || !o.tls_cert.empty() || !o.tls_key.empty() ||
         !o.tls_server_name.empty();
}

// Addresses whose traffic never leaves the machine.
bool IsLocal(absl::string_view address) {
  return absl::StartsWith(address, "unix:") || absl::StartsWith(address, "127.") ||
         absl::StartsWith(address, "localhost:") || absl::StartsWith(address, "[::1]") ||
         absl::StartsWith(address, "ipv4:127.") || absl::StartsWith(address, "ipv6:[::1]");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(ConnectionOptions options) {
  if (!UsesTls(options) && (options.has_token || !options.registry_auth.empty()) &&
      !IsLocal(options.address)) {
    return UsageError(
        absl::StrCat("refusing to send a token or registry credentials in plain text to ",
                     options.address, ": give --tls-ca (TLS), or use a loopback or unix: address"));
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds = Credentials(options);
  if (!creds.ok()) return creds.status();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveMessage);
  if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  std::unique_ptr<Connection> c(new Connection());
  c->channel_ = grpc::CreateCustomChannel(options.address, *creds, args);
  c->registry_ = regd::v1::Registry::NewStub(c->channel_);
  c->health_ = grpc::health::v1::Health::NewStub(c->channel_);
  c->options_ = std::move(options);
  return c;
}

void Connection::PrepareStream(grpc::ClientContext* ctx) const {
  if (options_.has_token) ctx->AddMetadata("authorization", "Bearer " + options_.token);
  if (!options_.registry_auth.empty()) ctx->AddMetadata("x-registry-auth", options_.registry_auth);
}

void Connection::PrepareUnary(grpc::ClientContext* ctx) const {
  PrepareStream(ctx);
  if (options_.unary_timeout > absl::ZeroDuration() &&
      options_.unary_timeout != absl::InfiniteDuration()) {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      absl::ToChronoMilliseconds(options_.unary_timeout));
  }
}

}  // namespace regdctl
