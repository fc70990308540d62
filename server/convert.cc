#include "server/convert.h"

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/text.h"

namespace regd {
namespace {

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

void ToProto(absl::Duration d, google::protobuf::Duration* out) {
  int64_t nanos = absl::ToInt64Nanoseconds(d);
  out->set_seconds(nanos / 1000000000);
  out->set_nanos(static_cast<int32_t>(nanos % 1000000000));
}

template <typename M>
std::map<std::string, std::string> ToMap(const M& m) {
  return std::map<std::string, std::string>(m.begin(), m.end());
}

}  // namespace

absl::StatusOr<std::optional<Platform>> FromProto(const v1::Platform& p) {
  if (p.os().empty() && p.architecture().empty() && p.variant().empty()) return std::nullopt;
  if (p.os().empty() || p.architecture().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "platform needs both os and architecture (got \"", p.os(), "/", p.architecture(), "\")"));
  }
  return Platform{p.os(), p.architecture(), p.variant(), ""};
}

absl::StatusOr<BlobSpec> FromProto(const v1::BlobSource& b) {
  BlobSpec s;
  switch (b.source_case()) {
    case v1::BlobSource::kPath:
      s.path = b.path();
      break;
    case v1::BlobSource::kData:
      s.data = b.data();
      break;
    default:
      // Neither: a blob already in the registry, named by digest and size
      // (PushImage checks it there; WriteLayer refuses it).
      if (b.digest().empty()) {
        return absl::InvalidArgumentError(
            "blob source needs a path or data, or (for a blob already in the registry) its "
            "digest and size");
      }
      break;
  }
  s.digest = b.digest();
  if (b.size() < 0) return absl::InvalidArgumentError("blob size must not be negative");
  s.size = b.size() > 0 ? b.size() : -1;
  s.media_type = b.media_type();
  s.mount_from = b.mount_from();
  return s;
}

RetryPolicy FromProto(const v1::RetryConfig& r, const RetryPolicy& defaults) {
  RetryPolicy p = FromProto(r);
  // Fields the caller left at zero take `defaults` rather than RetryPolicy's.
  if (r.max_attempts() <= 0) p.max_attempts = defaults.max_attempts;
  if (!r.has_initial_delay()) p.initial_delay = defaults.initial_delay;
  if (!(r.factor() >= 1.0)) p.factor = defaults.factor;
  if (r.jitter() == 0) p.jitter = defaults.jitter;
  if (!r.has_max_delay()) p.max_delay = std::max(defaults.max_delay, p.initial_delay);
  return p.Sanitised();
}

RetryPolicy FromProto(const v1::RetryConfig& r) {
  RetryPolicy p;
  p.max_attempts = r.max_attempts();
  p.initial_delay = r.has_initial_delay() ? FromProto(r.initial_delay()) : absl::ZeroDuration();
  p.factor = r.factor();
  p.jitter = r.jitter();
  p.max_delay = r.has_max_delay() ? FromProto(r.max_delay()) : absl::ZeroDuration();
  // Zero means default; an explicit 0 jitter cannot be told apart, so keep the default.
  if (p.jitter == 0) p.jitter = RetryPolicy().jitter;
  return p.Sanitised();
}

absl::StatusOr<PushImageSpec> FromProto(const v1::PushImageRequest& r) {
  PushImageSpec s;
  s.ref = r.ref();
  s.concurrency = r.concurrency();
  if (r.concurrency() < 0) return absl::InvalidArgumentError("concurrency must not be negative");
  switch (r.source_case()) {
    case v1::PushImageRequest::kLayout:
      if (r.layout().path().empty()) return absl::InvalidArgumentError("layout.path is empty");
      s.layout_path = r.layout().path();
      s.ref_name = r.layout().ref_name();
      break;
    case v1::PushImageRequest::kImage: {
      if (!r.image().has_config()) return absl::InvalidArgumentError("image.config is required");
      ASSIGN_OR_RETURN(s.config, FromProto(r.image().config()));
      for (const auto& l : r.image().layers()) {
        ASSIGN_OR_RETURN(BlobSpec b, FromProto(l));
        s.layers.push_back(std::move(b));
      }
      s.media_type = r.image().media_type();
      s.annotations = ToMap(r.image().annotations());
      break;
    }
    default:
      return absl::InvalidArgumentError("push needs a layout or an image source");
  }
  return s;
}

absl::StatusOr<PushIndexSpec> FromProto(const v1::PushIndexRequest& r) {
  PushIndexSpec s;
  s.ref = r.ref();
  s.media_type = r.media_type();
  s.annotations = ToMap(r.annotations());
  for (const auto& m : r.manifests()) {
    IndexEntrySpec e;
    e.ref = m.ref();
    ASSIGN_OR_RETURN(e.platform, FromProto(m.platform()));
    e.annotations = ToMap(m.annotations());
    s.manifests.push_back(std::move(e));
  }
  return s;
}

void ToProto(const Descriptor& d, v1::Descriptor* out) {
  out->set_media_type(SanitizeUtf8(d.media_type));
  out->set_digest(SanitizeUtf8(d.digest));
  out->set_size(d.size);
  for (const auto& [k, v] : d.annotations)
    (*out->mutable_annotations())[SanitizeUtf8(k)] = SanitizeUtf8(v);
  if (d.platform.has_value()) {
    out->mutable_platform()->set_os(SanitizeUtf8(d.platform->os));
    out->mutable_platform()->set_architecture(SanitizeUtf8(d.platform->architecture));
    out->mutable_platform()->set_variant(SanitizeUtf8(d.platform->variant));
  }
}

void ToProto(const InspectResult& r, v1::ManifestResult* out) {
  out->set_schema_version(r.schema_version);
  out->set_media_type(SanitizeUtf8(r.media_type));
  out->set_digest(SanitizeUtf8(r.digest));
  for (const Descriptor& d : r.manifests) {
    v1::PlatformManifest* pm = out->add_manifests();
    pm->set_digest(SanitizeUtf8(d.digest));
    pm->set_media_type(SanitizeUtf8(d.media_type));
    pm->set_size(d.size);
    if (d.platform.has_value()) {
      pm->set_os(SanitizeUtf8(d.platform->os));
      pm->set_architecture(SanitizeUtf8(d.platform->architecture));
      pm->set_variant(SanitizeUtf8(d.platform->variant));
    }
    for (const auto& [k, v] : d.annotations)
      (*pm->mutable_annotations())[SanitizeUtf8(k)] = SanitizeUtf8(v);
  }
  for (const std::string& l : r.layers) out->add_layers(l);
  out->set_config(SanitizeUtf8(r.config));
  for (const auto& [k, v] : r.labels) (*out->mutable_labels())[SanitizeUtf8(k)] = SanitizeUtf8(v);
}

void ToProto(const ImageResult& r, v1::Image* out) {
  ToProto(r.descriptor, out->mutable_descriptor_());
  out->set_raw_manifest(r.raw_manifest);
  out->set_raw_config(r.raw_config);
  ToProto(r.config, out->mutable_config());
  for (const Descriptor& d : r.layers) ToProto(d, out->add_layers());
}

void ToProto(const LayerOutcome& r, v1::LayerResult* out) {
  ToProto(r.descriptor, out->mutable_descriptor_());
  switch (r.outcome) {
    case LayerOutcomeKind::kUploaded:
      out->set_outcome(v1::LayerResult::UPLOADED);
      break;
    case LayerOutcomeKind::kExisted:
      out->set_outcome(v1::LayerResult::EXISTED);
      break;
    case LayerOutcomeKind::kMounted:
      out->set_outcome(v1::LayerResult::MOUNTED);
      break;
    case LayerOutcomeKind::kShared:
      out->set_outcome(v1::LayerResult::SHARED);
      break;
    case LayerOutcomeKind::kDownloaded:
      out->set_outcome(v1::LayerResult::DOWNLOADED);
      break;
  }
}

void ToProto(const RetryNotice& r, v1::RetryEvent* out) {
  out->set_attempt(r.attempt);
  out->set_max_attempts(r.max_attempts);
  out->set_error(SanitizeUtf8(r.error));
  ToProto(r.next_retry_in, out->mutable_next_retry_in());
}

}  // namespace regd
