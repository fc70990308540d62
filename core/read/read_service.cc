#include "core/read/read_service.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/digest.h"
#include "core/status_macros.h"

namespace regd {
namespace {

[[nodiscard]] absl::Status VerifyDigest(absl::string_view body, const std::string& want,
                                        absl::string_view what) {
  ASSIGN_OR_RETURN(Digester d, Digester::ForDigest(want));
  d.Update(body);
  std::string got = d.Finish();
  if (got != want) {
    return absl::DataLossError(
        absl::StrCat(what, " digest mismatch: expected ", want, ", content hashes to ", got));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<FetchedManifest> ReadService::FetchManifest(const CallContext& ctx,
                                                          const Repository& repo,
                                                          const std::string& identifier) {
  RegistryApi api = registries_->ApiFor(ctx, repo.registry);
  ASSIGN_OR_RETURN(RawManifest got, api.GetManifest(repo, identifier, kMaxManifestBytes));
  FetchedManifest f;
  f.raw = std::move(got.body);
  // Verify against the digest we asked for, else the one the registry claims,
  // else just name the content by its sha256.
  std::string expect =
      absl::StartsWith(identifier, "sha") && identifier.find(':') != std::string::npos
          ? identifier
          : got.header_digest;
  if (!expect.empty() && ValidateDigest(expect).ok()) {
    RETURN_IF_ERROR(VerifyDigest(f.raw, expect, "manifest"));
    f.digest = expect;
  } else {
    f.digest = Sha256Digest(f.raw);
  }
  const std::string& ct = got.content_type;
  ASSIGN_OR_RETURN(f.kind, DetectManifestKind(ct, f.raw));
  f.media_type = ct;
  if (!IsIndexMediaType(ct) && !IsManifestMediaType(ct)) {
    // Content-Type missing or generic: take the body's mediaType.
    if (f.kind == ManifestKind::kIndex) {
      ASSIGN_OR_RETURN(Index idx, ParseIndex(f.raw, ""));
      f.media_type = idx.media_type;
    } else {
      ASSIGN_OR_RETURN(Manifest m, ParseManifest(f.raw, ""));
      f.media_type = m.media_type;
    }
  }
  return f;
}

absl::StatusOr<std::string> ReadService::FetchSmallBlob(const CallContext& ctx,
                                                        const Repository& repo,
                                                        const Descriptor& d) {
  if (d.size > static_cast<int64_t>(kMaxManifestBytes)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("config blob ", d.digest, " is larger than ", kMaxManifestBytes, " bytes"));
  }
  RegistryApi api = registries_->ApiFor(ctx, repo.registry);
  ASSIGN_OR_RETURN(std::string body, api.GetSmallBlob(repo, d.digest, kMaxManifestBytes));
  RETURN_IF_ERROR(VerifyDigest(body, d.digest, "config blob"));
  return body;
}

absl::StatusOr<std::map<std::string, std::string>> ReadService::LabelsOf(const CallContext& ctx,
                                                                    const Repository& repo,
                                                                    const Manifest& m) {
  ASSIGN_OR_RETURN(std::string raw, FetchSmallBlob(ctx, repo, m.config));
  ASSIGN_OR_RETURN(ImageConfigInfo info, ParseImageConfig(raw));
  return info.labels;
}

// Resolves `ref` to a single manifest, choosing from an index by platform.
// `fetched` holds the top manifest when it was fetched already (raw non-empty).
absl::StatusOr<Manifest> ReadService::ResolveImage(const CallContext& ctx, const Reference& ref,
                                              const std::optional<Platform>& platform,
                                              FetchedManifest* fetched) {
  if (fetched->raw.empty()) {
    ASSIGN_OR_RETURN(*fetched, FetchManifest(ctx, ref.repo, ref.Identifier()));
  }
  if (fetched->kind == ManifestKind::kManifest) {
    if (platform.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat(ref.String(), " is a single-platform manifest, not an index: platform ",
                       platform->String(), " cannot be chosen from it"));
    }
    return ParseManifest(fetched->raw, fetched->media_type);
  }
  if (!platform.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        ref.String(), " is an index (", fetched->media_type, "); a platform is required"));
  }
  ASSIGN_OR_RETURN(Index idx, ParseIndex(fetched->raw, fetched->media_type));
  std::optional<size_t> i = MatchIndex(idx, *platform);
  if (!i.has_value()) {
    return absl::NotFoundError(absl::StrCat("image reference not found: no manifest for platform ",
                                            platform->String(), " in ", ref.String()));
  }
  ASSIGN_OR_RETURN(*fetched, FetchManifest(ctx, ref.repo, idx.manifests[*i].digest));
  if (fetched->kind != ManifestKind::kManifest) {
    return absl::FailedPreconditionError(absl::StrCat("the ", platform->String(), " entry of ",
                                                      ref.String(), " is itself an index"));
  }
  return ParseManifest(fetched->raw, fetched->media_type);
}

absl::StatusOr<InspectResult> ReadService::Inspect(const CallContext& ctx, absl::string_view ref_text,
                                              const std::optional<Platform>& platform) {
  ASSIGN_OR_RETURN(Reference ref, ParseReference(ref_text));
  RETURN_IF_ERROR(ctx.Allow(ref.repo, Action::kPull));
  InspectResult out;
  FetchedManifest top;
  if (!platform.has_value()) {
    ASSIGN_OR_RETURN(top, FetchManifest(ctx, ref.repo, ref.Identifier()));
    if (top.kind == ManifestKind::kIndex) {
      ASSIGN_OR_RETURN(Index idx, ParseIndex(top.raw, top.media_type));
      out.schema_version = idx.schema_version;
      out.media_type = top.media_type;
      out.digest = top.digest;
      out.manifests = idx.manifests;
      if (std::optional<size_t> def = DefaultIndexEntry(idx)) {
        ASSIGN_OR_RETURN(FetchedManifest child, FetchManifest(ctx, ref.repo, idx.manifests[*def].digest));
        if (child.kind == ManifestKind::kManifest) {
          ASSIGN_OR_RETURN(Manifest cm, ParseManifest(child.raw, child.media_type));
          ASSIGN_OR_RETURN(out.labels, LabelsOf(ctx, ref.repo, cm));
        }
      }
      return out;
    }
  }
  ASSIGN_OR_RETURN(Manifest m, ResolveImage(ctx, ref, platform, &top));
  out.schema_version = m.schema_version;
  out.media_type = top.media_type;
  out.digest = top.digest;
  for (const Descriptor& l : m.layers) out.layers.push_back(l.digest);
  out.config = m.config.digest;
  ASSIGN_OR_RETURN(out.labels, LabelsOf(ctx, ref.repo, m));
  return out;
}

absl::StatusOr<ImageResult> ReadService::GetImage(const CallContext& ctx, absl::string_view ref_text,
                                             const std::optional<Platform>& platform) {
  ASSIGN_OR_RETURN(Reference ref, ParseReference(ref_text));
  RETURN_IF_ERROR(ctx.Allow(ref.repo, Action::kPull));
  FetchedManifest f;
  ASSIGN_OR_RETURN(Manifest m, ResolveImage(ctx, ref, platform, &f));
  ImageResult out;
  out.descriptor.media_type = f.media_type;
  out.descriptor.digest = f.digest;
  out.descriptor.size = static_cast<int64_t>(f.raw.size());
  out.descriptor.annotations = m.annotations;
  out.raw_manifest = std::move(f.raw);
  ASSIGN_OR_RETURN(out.raw_config, FetchSmallBlob(ctx, ref.repo, m.config));
  out.config = m.config;
  out.layers = m.layers;
  return out;
}

absl::StatusOr<bool> ReadService::Exists(const CallContext& ctx, absl::string_view ref_text) {
  ASSIGN_OR_RETURN(Reference ref, ParseReference(ref_text));
  RETURN_IF_ERROR(ctx.Allow(ref.repo, Action::kPull));
  RegistryApi api = registries_->ApiFor(ctx, ref.repo.registry);
  ASSIGN_OR_RETURN(std::optional<ManifestHead> head, api.HeadManifest(ref.repo, ref.Identifier()));
  return head.has_value();
}

absl::StatusOr<Descriptor> ReadService::GetDescriptor(const CallContext& ctx,
                                                      absl::string_view ref_text) {
  ASSIGN_OR_RETURN(Reference ref, ParseReference(ref_text));
  RETURN_IF_ERROR(ctx.Allow(ref.repo, Action::kPull));
  RegistryApi api = registries_->ApiFor(ctx, ref.repo.registry);
  ASSIGN_OR_RETURN(std::optional<ManifestHead> head, api.HeadManifest(ref.repo, ref.Identifier()));
  if (!head.has_value()) return absl::NotFoundError("image reference not found");
  Descriptor d;
  d.media_type = head->media_type;
  d.digest = head->digest;
  d.size = head->size;
  if (d.digest.empty() || d.size < 0 ||
      (!IsIndexMediaType(d.media_type) && !IsManifestMediaType(d.media_type))) {
    // The HEAD did not tell us enough: GET the manifest and hash it.
    ASSIGN_OR_RETURN(FetchedManifest f, FetchManifest(ctx, ref.repo, ref.Identifier()));
    d.media_type = f.media_type;
    d.digest = f.digest;
    d.size = static_cast<int64_t>(f.raw.size());
    return d;
  }
  if (!ref.digest.empty() && d.digest != ref.digest) {
    return absl::DataLossError(
        absl::StrCat("registry reports digest ", d.digest, " for ", ref.String()));
  }
  return d;
}

absl::Status ReadService::ReadBlob(const CallContext& ctx, absl::string_view repo_text,
                                   absl::string_view digest, int64_t offset,
                                   const std::function<bool(absl::string_view)>& sink,
                                   size_t chunk_bytes) {
  ASSIGN_OR_RETURN(Repository repo, ParseRepository(repo_text));
  RETURN_IF_ERROR(ctx.Allow(repo, Action::kPull));
  RETURN_IF_ERROR(ValidateDigest(digest));
  if (offset < 0) return absl::InvalidArgumentError("offset must not be negative");
  ASSIGN_OR_RETURN(Digester hasher, Digester::ForDigest(digest));
  RegistryApi api = registries_->ApiFor(ctx, repo.registry);
  std::string buf;
  buf.reserve(chunk_bytes);
  bool started = false;
  int64_t skip = 0;  // bytes to drop when the registry ignores our Range
  bool consumer_stopped = false;
  auto flush = [&]() -> bool {
    if (buf.empty() || consumer_stopped) return !consumer_stopped;
    if (ctx.bytes) ctx.bytes->fetch_add(static_cast<int64_t>(buf.size()));
    consumer_stopped = !sink(buf);
    buf.clear();
    return !consumer_stopped;
  };
  auto on_body = [&](long status, absl::string_view data) -> bool {
    if (!started) {
      started = true;
      if (status == 200 && offset > 0) skip = offset;  // Range ignored: whole blob
    }
    size_t drop = static_cast<size_t>(std::min<int64_t>(skip, static_cast<int64_t>(data.size())));
    data.remove_prefix(drop);
    skip -= static_cast<int64_t>(drop);
    if (offset == 0) hasher.Update(data);
    while (!data.empty()) {
      size_t take = std::min(chunk_bytes - buf.size(), data.size());
      buf.append(data.data(), take);
      data.remove_prefix(take);
      if (buf.size() == chunk_bytes && !flush()) return false;
    }
    return true;
  };
  absl::StatusOr<HttpResponse> resp = api.GetBlobStream(repo, digest, offset, -1, on_body);
  if (resp.ok() && resp->status == 416 && offset > 0) {
    // Some registries (go-containerregistry's) take only closed ranges: ask
    // for the blob's size and name the last byte.
    ASSIGN_OR_RETURN(std::optional<int64_t> size, api.HeadBlob(repo, digest));
    if (size.has_value() && offset < *size) {
      started = false;
      resp = api.GetBlobStream(repo, digest, offset, *size - 1, on_body);
    }
  }
  if (!resp.ok()) {
    if (consumer_stopped) return absl::CancelledError("reader went away");
    return resp.status();
  }
  if (resp->status == 416) {
    return absl::OutOfRangeError(absl::StrCat("offset ", offset, " is past the end of the blob"));
  }
  if (resp->status != 200 && resp->status != 206) {
    return StatusFromHttp(*resp, "GET blob", NotFoundMeaning::kImage);
  }
  if (!flush()) return absl::CancelledError("reader went away");
  if (offset == 0) {
    std::string got = hasher.Finish();
    if (got != digest) {
      return absl::DataLossError(
          absl::StrCat("blob digest mismatch: expected ", digest, ", content hashes to ", got));
    }
  }
  return absl::OkStatus();
}

}  // namespace regd
