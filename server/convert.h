// Conversions between regd.v1 protos and core types. Pure functions.
#ifndef REGD_SERVER_CONVERT_H_
#define REGD_SERVER_CONVERT_H_

#include <optional>

#include "absl/status/statusor.h"
#include "core/engine.h"
#include "regd/v1/registry.pb.h"

namespace regd {

// nullopt for an empty message; INVALID_ARGUMENT when only part is set.
[[nodiscard]] absl::StatusOr<std::optional<Platform>> FromProto(const v1::Platform& p);
[[nodiscard]] absl::StatusOr<BlobSpec> FromProto(const v1::BlobSource& b);
// Zero fields take `defaults` (ReadBlob and PullImage: DefaultBlobReadRetry()).
RetryPolicy FromProto(const v1::RetryConfig& r, const RetryPolicy& defaults);
RetryPolicy FromProto(const v1::RetryConfig& r);
[[nodiscard]] absl::StatusOr<PushImageSpec> FromProto(const v1::PushImageRequest& r);
[[nodiscard]] absl::StatusOr<PushIndexSpec> FromProto(const v1::PushIndexRequest& r);

void ToProto(const Descriptor& d, v1::Descriptor* out);
void ToProto(const InspectResult& r, v1::ManifestResult* out);
void ToProto(const ImageResult& r, v1::Image* out);
void ToProto(const LayerOutcome& r, v1::LayerResult* out);
void ToProto(const RetryNotice& r, v1::RetryEvent* out);

}  // namespace regd

#endif  // REGD_SERVER_CONVERT_H_
