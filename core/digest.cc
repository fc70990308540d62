#include "core/digest.h"

#include <openssl/evp.h>

#include "absl/strings/str_cat.h"
#include "core/reference/reference.h"
#include "core/status_macros.h"

namespace regd {

struct Digester::Ctx {
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx;
  const EVP_MD* md = nullptr;
};

Digester::Digester(std::unique_ptr<Ctx> ctx, std::string algorithm)
    : ctx_(std::move(ctx)), algorithm_(std::move(algorithm)) {}
Digester::Digester(Digester&&) noexcept = default;
Digester& Digester::operator=(Digester&&) noexcept = default;
Digester::~Digester() = default;

absl::StatusOr<Digester> Digester::Create(absl::string_view algorithm) {
  auto ctx = std::make_unique<Ctx>();
  if (algorithm == "sha256") {
    ctx->md = EVP_sha256();
  } else if (algorithm == "sha512") {
    ctx->md = EVP_sha512();
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported digest algorithm \"", algorithm, "\""));
  }
  ctx->ctx.reset(EVP_MD_CTX_new());
  if (!ctx->ctx || EVP_DigestInit_ex(ctx->ctx.get(), ctx->md, nullptr) != 1) {
    return absl::InternalError("cannot initialise the digest context");
  }
  return Digester(std::move(ctx), std::string(algorithm));
}

absl::StatusOr<Digester> Digester::ForDigest(absl::string_view digest) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  return Create(digest.substr(0, digest.find(':')));
}

void Digester::Update(const void* data, size_t len) {
  if (len > 0) EVP_DigestUpdate(ctx_->ctx.get(), data, len);
}

std::string Digester::Finish() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx_->ctx.get(), out, &n);
  EVP_DigestInit_ex(ctx_->ctx.get(), ctx_->md, nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(n * 2);
  for (unsigned int i = 0; i < n; ++i) {
    hex.push_back(kHex[out[i] >> 4]);
    hex.push_back(kHex[out[i] & 0xf]);
  }
  return absl::StrCat(algorithm_, ":", hex);
}

std::string Sha256Digest(absl::string_view data) {
  auto d = Digester::Create("sha256");
  if (!d.ok()) abort();  // sha256 is always available: a broken invariant
  d->Update(data);
  return d->Finish();
}

}  // namespace regd
