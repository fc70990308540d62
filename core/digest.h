// Streaming content digests (sha256 / sha512) backed by OpenSSL's EVP API.
//
// A Digester is owned by one thread at a time; it is movable, not copyable.
#ifndef REGD_CORE_DIGEST_H_
#define REGD_CORE_DIGEST_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace regd {

class Digester {
 public:
  // `algorithm` is "sha256" or "sha512".
  [[nodiscard]] static absl::StatusOr<Digester> Create(absl::string_view algorithm = "sha256");
  // For a full digest string ("sha256:..."), a digester of its algorithm.
  [[nodiscard]] static absl::StatusOr<Digester> ForDigest(absl::string_view digest);

  Digester(Digester&&) noexcept;
  Digester& operator=(Digester&&) noexcept;
  ~Digester();

  void Update(const void* data, size_t len);
  void Update(absl::string_view data) { Update(data.data(), data.size()); }
  // "sha256:<hex>". Resets the digester for reuse.
  std::string Finish();

 private:
  struct Ctx;
  Digester(std::unique_ptr<Ctx> ctx, std::string algorithm);
  std::unique_ptr<Ctx> ctx_;
  std::string algorithm_;
};

// sha256 of a buffer, as "sha256:<hex>".
std::string Sha256Digest(absl::string_view data);

}  // namespace regd

#endif  // REGD_CORE_DIGEST_H_
