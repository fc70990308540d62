#include "server/tls.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/files.h"
#include "core/status_macros.h"

namespace regd {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

[[nodiscard]] absl::StatusOr<std::string> ReadPem(const std::string& flag,
                                                  const std::string& path) {
  absl::StatusOr<std::string> pem = ReadSmallFile(path, 1 << 20);
  if (!pem.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(flag, ": ", pem.status().message()));
  }
  return pem;
}

// The certificate parses, the key parses, and the key is the certificate's.
[[nodiscard]] absl::Status CheckKeyPair(const ListenerTls& tls) {
  ASSIGN_OR_RETURN(std::string cert_pem, ReadPem("--tls_cert", tls.cert_file));
  ASSIGN_OR_RETURN(std::string key_pem, ReadPem("--tls_key", tls.key_file));
  std::unique_ptr<BIO, BioFree> cert_bio(BIO_new_mem_buf(cert_pem.data(), cert_pem.size()));
  std::unique_ptr<X509, X509Free> cert(
      PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("--tls_cert: ", tls.cert_file, " holds no PEM certificate"));
  }
  std::unique_ptr<BIO, BioFree> key_bio(BIO_new_mem_buf(key_pem.data(), key_pem.size()));
  std::unique_ptr<EVP_PKEY, PkeyFree> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("--tls_key: ", tls.key_file, " holds no PEM private key"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("--tls_key does not belong to the certificate in --tls_cert"));
  }
  if (!tls.client_ca_file.empty()) {
    ASSIGN_OR_RETURN(std::string ca_pem, ReadPem("--tls_client_ca", tls.client_ca_file));
    std::unique_ptr<BIO, BioFree> ca_bio(BIO_new_mem_buf(ca_pem.data(), ca_pem.size()));
    std::unique_ptr<X509, X509Free> ca(PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr));
    if (ca == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("--tls_client_ca: ", tls.client_ca_file, " holds no PEM certificate"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool IsLocalListenAddress(const std::string& listen) {
  if (absl::StartsWith(listen, "unix:")) return true;
  std::string host = listen.substr(0, listen.rfind(':'));
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
    host = host.substr(1, host.size() - 2);
  }
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ListenerCredentials(
    const std::string& listen, const ListenerTls& tls) {
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (!tls.client_ca_file.empty() && !tls.enabled()) {
    return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert and --tls_key");
  }
  if (!tls.enabled()) {
    if (!IsLocalListenAddress(listen) && !tls.allow_insecure_listen) {
      return absl::FailedPreconditionError(absl::StrCat(
          "refusing to serve plain gRPC on ", listen,
          ", which other hosts can reach: anyone there could push with regd's credentials. "
          "Give --tls_cert and --tls_key (and --tls_client_ca to require client certificates), "
          "or --allow_insecure_listen if the network is trusted"));
    }
    return grpc::InsecureServerCredentials();
  }
  if (absl::StartsWith(listen, "unix:")) {
    return absl::InvalidArgumentError("TLS is for TCP listeners, not unix: sockets");
  }
  RETURN_IF_ERROR(CheckKeyPair(tls));
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      tls.key_file, tls.cert_file, tls.client_ca_file,
      static_cast<unsigned int>(std::max<int64_t>(1, absl::ToInt64Seconds(tls.refresh))));
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (!tls.client_ca_file.empty()) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

}  // namespace regd
