#include "core/write/write_service.h"

#include <sys/stat.h>

#include <atomic>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/digest.h"
#include "core/files.h"
#include "core/json.h"
#include "core/log.h"
#include "core/parallel.h"
#include "core/status_macros.h"
#include "core/text.h"
#include "core/upload/uploader.h"
#include "rapidjson/document.h"

namespace regd {
namespace {

// The most a BlobStream holds for its call: a 512 KiB queue, the 1 MiB
// message that filled it, the 1 MiB held tail, and slack.
constexpr int64_t kStreamMemory = 3 << 20;

}  // namespace

WriteService::WriteService(WriteOptions options, const Registries* registries, ReadService* reads)
    : options_(std::move(options)),
      registries_(registries),
      reads_(reads),
      slots_([this](const std::string& registry) {
        const RegistryConfig* rc = registries_->ConfigFor(registry);
        return rc != nullptr && rc->concurrency > 0 ? rc->concurrency
                                                    : options_.default_registry_concurrency;
      }),
      inline_budget_(options_.inline_budget_bytes) {}

namespace {

constexpr char kRefNameAnnotation[] = "org.opencontainers.image.ref.name";

[[nodiscard]] absl::StatusOr<Repository> ParseWriteRepository(absl::string_view repo) {
  if (repo.empty()) return absl::InvalidArgumentError("repo is empty");
  return ParseRepository(repo);
}

// The path of a blob inside an OCI layout, relative to the layout.
[[nodiscard]] absl::StatusOr<std::string> LayoutBlobPath(const std::string& digest) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  size_t colon = digest.find(':');
  return absl::StrCat("blobs/", digest.substr(0, colon), "/", digest.substr(colon + 1));
}

// An open OCI layout directory: every file is opened beneath it.
struct LayoutDir {
  UniqueFd fd;
  std::string shown;  // the caller's path, for messages

  [[nodiscard]] absl::StatusOr<UniqueFd> Open(const std::string& rel) const {
    return OpenBeneath(fd.get(), rel, FileKind::kRegular, absl::StrCat(shown, "/", rel));
  }
  [[nodiscard]] absl::StatusOr<UniqueFd> OpenBlob(const Descriptor& d) const {
    ASSIGN_OR_RETURN(std::string rel, LayoutBlobPath(d.digest));
    absl::StatusOr<UniqueFd> fd = Open(rel);
    if (absl::IsNotFound(fd.status())) {
      return absl::NotFoundError(absl::StrCat("OCI layout is missing blob ", d.digest));
    }
    return fd;
  }
};

// Reads a small blob from a layout and checks its digest.
[[nodiscard]] absl::StatusOr<std::string> ReadLayoutBlob(const LayoutDir& dir,
                                                         const Descriptor& d) {
  if (d.size < 0 || d.size > static_cast<int64_t>(kMaxManifestBytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("OCI layout manifest ", d.digest, " claims ", d.size, " bytes"));
  }
  ASSIGN_OR_RETURN(UniqueFd fd, dir.OpenBlob(d));
  ASSIGN_OR_RETURN(std::string raw, ReadSmallFd(fd.get(), kMaxManifestBytes, d.digest));
  std::string got;
  {
    ASSIGN_OR_RETURN(Digester h, Digester::ForDigest(d.digest));
    h.Update(raw);
    got = h.Finish();
  }
  if (got != d.digest) {
    return absl::DataLossError(absl::StrCat("OCI layout blob ", d.digest, " hashes to ", got));
  }
  return raw;
}

std::string ManifestMediaType(const std::string& declared, absl::string_view raw) {
  if (!declared.empty()) return declared;
  rapidjson::Document doc;
  if (ParseUntrustedJson(raw, "manifest", &doc).ok() && doc.IsObject()) {
    auto it = doc.FindMember("mediaType");
    if (it != doc.MemberEnd() && it->value.IsString()) return it->value.GetString();
  }
  return std::string(media::kOciManifest);
}

}  // namespace

// ---------------------------------------------------------------- blobs ----

absl::StatusOr<WriteService::PreparedBlob> WriteService::PrepareBlob(
    const CallContext& ctx, BlobSpec spec, absl::string_view default_media_type) {
  PreparedBlob p;
  if (!spec.path.has_value() && !spec.data.has_value() && !spec.digest.empty()) {
    // Named by digest only: a blob already in the registry (UploadBlob put it
    // there, say). Its size goes into the manifest, so it must be given.
    RETURN_IF_ERROR(ValidateDigest(spec.digest));
    if (spec.size <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "blob ", spec.digest, " has neither path nor data: its size is required too"));
    }
    p.registry_only = true;
    p.descriptor.digest = spec.digest;
    p.descriptor.size = spec.size;
    p.descriptor.media_type =
        spec.media_type.empty() ? std::string(default_media_type) : spec.media_type;
    p.mount_from = spec.mount_from;
    return p;
  }
  if (spec.path.has_value()) {
    RETURN_IF_ERROR(FileSourcesAllowed(ctx));
    const std::vector<std::string>& roots = RootsFor(ctx);
    ASSIGN_OR_RETURN(UniqueFd fd, OpenBeneathRoots(*spec.path, roots));
    ASSIGN_OR_RETURN(p.blob, OpenedBlob::FromFd(std::move(fd), *spec.path));
    p.identity = p.blob->identity();
    p.reopen = [path = *spec.path, roots]() -> absl::StatusOr<std::unique_ptr<OpenedBlob>> {
      ASSIGN_OR_RETURN(UniqueFd fd, OpenBeneathRoots(path, roots));
      return OpenedBlob::FromFd(std::move(fd), path);
    };
  } else if (spec.data.has_value()) {
    if (static_cast<int64_t>(spec.data->size()) > options_.max_inline_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("inline data is ", spec.data->size(), " bytes; the cap is ",
                       options_.max_inline_bytes, " (use a file path for larger blobs)"));
    }
    // Held (once: regd borrows the request's bytes) while the call runs.
    ASSIGN_OR_RETURN(p.inline_bytes,
                     inline_budget_.Reserve(static_cast<int64_t>(spec.data->size())));
    p.blob = OpenedBlob::FromView(*spec.data);
  } else {
    return absl::InvalidArgumentError(
        "blob source needs a path or data (or, for a blob already in the registry, its digest "
        "and size)");
  }
  if (spec.size >= 0 && spec.size != p.blob->size()) {
    return absl::InvalidArgumentError(absl::StrCat("size mismatch: request says ", spec.size,
                                                   " bytes, the source has ", p.blob->size()));
  }
  if (spec.digest.empty()) {
    ASSIGN_OR_RETURN(p.descriptor.digest, DigestOf(*p.blob, "sha256", ctx.cancelled));
    p.digest_computed = true;
  } else {
    RETURN_IF_ERROR(ValidateDigest(spec.digest));
    p.descriptor.digest = spec.digest;
  }
  p.descriptor.size = p.blob->size();
  p.descriptor.media_type =
      spec.media_type.empty() ? std::string(default_media_type) : spec.media_type;
  p.mount_from = spec.mount_from;
  return p;
}

namespace {

// `text` names a repository on `target`'s registry: either a full name on it
// ("reg:5000/team/app") or just a path ("team/app"). Mounts cannot cross
// registries.
[[nodiscard]] absl::StatusOr<std::string> ResolveMountFrom(const Repository& target,
                                                           const std::string& text) {
  if (text.empty()) return std::string();
  ASSIGN_OR_RETURN(Repository parsed, ParseRepository(text));
  if (parsed.registry == target.registry) return parsed.path;
  const bool named_registry =
      parsed.registry != kDockerHubDomain || absl::StartsWith(text, "docker.io/") ||
      absl::StartsWith(text, "index.docker.io/") || absl::StartsWith(text, "registry-1.docker.io/");
  if (named_registry) {
    return absl::InvalidArgumentError(absl::StrCat("mount_from \"", text, "\" is on registry ",
                                                   parsed.registry, "; a mount only works within ",
                                                   target.registry));
  }
  ASSIGN_OR_RETURN(Repository on_target, ParseRepository(absl::StrCat(target.registry, "/", text)));
  return on_target.path;
}

}  // namespace

bool WriteService::MayMountFrom(const CallContext& ctx, const Repository& repo,
                                const std::string& path) const {
  if (path.empty() || path == repo.path) return true;
  return ctx.Allow(Repository{repo.registry, path}, Action::kPull).ok();
}

absl::StatusOr<LayerOutcomeKind> WriteService::RunUploader(
    const CallContext& ctx, const Repository& repo, const PreparedBlob& blob,
    const std::string& mount_from, const UploadEvents& events, const CancelFlag& cancelled) {
  UploadJob job;
  job.endpoint = registries_->EndpointFor(repo.registry);
  job.repo = repo;
  job.digest = blob.descriptor.digest;
  job.size = blob.descriptor.size;
  job.blob = blob.bytes();
  job.who = registries_->ChainFor(ctx);
  // A source the caller's tenant may not read is never mounted from.
  job.mount_from = MayMountFrom(ctx, repo, mount_from) ? mount_from : std::string();
  const RegistryConfig* rc = registries_->ConfigFor(repo.registry);
  job.chunk_size =
      rc != nullptr && rc->chunk_size > 0 ? rc->chunk_size : options_.default_chunk_size;
  job.monolithic_threshold = job.chunk_size;  // up to one chunk: a single PUT
  // Bytes a caller streams may fail mid-way: their last MiB waits, checked,
  // for the commit (see BlobStream::Prepare).
  if (blob.streamed != nullptr) job.held_tail = 1 << 20;
  job.retry = ctx.retry;
  job.events = events;
  job.cancelled = cancelled;
  job.clock = registries_->clock();
  job.cancel_grace = options_.upload_cancel_grace;
  // The registry's upload slots pace the uploads regd drives from files and
  // inline data. A streamed upload goes at its caller's pace (each stream is
  // one call, under the caller's own limits): it takes no slot, so a caller
  // trickling bytes holds up nobody else's uploads.
  Observer* observer = registries_->client()->observer();
  job.observer = observer;
  std::optional<RegistrySlots::Slot> slot;
  if (blob.streamed == nullptr) {
    const absl::Time asked = absl::Now();
    ASSIGN_OR_RETURN(RegistrySlots::Slot taken, slots_.Acquire(repo.registry, cancelled));
    const absl::Duration waited = absl::Now() - asked;
    if (waited > absl::Milliseconds(1)) observer->UploadSlotWaited(waited);
    slot.emplace(std::move(taken));
  }
  BlobUploader uploader(registries_->client(), std::move(job));
  observer->UploadsInFlight(+1);
  absl::StatusOr<LayerOutcomeKind> kind = uploader.Run();
  observer->UploadsInFlight(-1);
  return kind;
}

absl::StatusOr<LayerOutcome> WriteService::UploadPrepared(const CallContext& ctx,
                                                          const Repository& repo,
                                                          const PreparedBlob& blob,
                                                          const UploadEvents& events,
                                                          const CancelFlag& cancelled) {
  absl::StatusOr<LayerOutcome> out = UploadOnce(ctx, repo, blob, events, cancelled);
  Observer* observer = registries_->client()->observer();
  if (out.ok()) {
    observer->BlobOutcome(OutcomeName(out->outcome));
    if (out->outcome == LayerOutcomeKind::kUploaded && ctx.bytes) {
      ctx.bytes->fetch_add(blob.descriptor.size);
    }
  } else {
    observer->BlobOutcome(absl::IsCancelled(out.status()) ? "cancelled" : "failed");
  }
  return out;
}

absl::StatusOr<LayerOutcome> WriteService::UploadOnce(const CallContext& ctx,
                                                      const Repository& repo,
                                                      const PreparedBlob& blob,
                                                      const UploadEvents& events,
                                                      const CancelFlag& cancelled) {
  const int64_t size = blob.descriptor.size;
  LayerOutcome out;
  out.descriptor = blob.descriptor;
  auto finish = [&](LayerOutcomeKind kind) -> absl::StatusOr<LayerOutcome> {
    if (kind != LayerOutcomeKind::kUploaded) {
      // No byte of ours reached the registry, so it checked nothing: check
      // that the caller's source really is the blob it named.
      RETURN_IF_ERROR(VerifySourceDigest(blob, cancelled));
    }
    if (events.on_progress) events.on_progress(size, size);  // always, before the result
    out.outcome = kind;
    return out;
  };
  ASSIGN_OR_RETURN(const std::string mount_from, ResolveMountFrom(repo, blob.mount_from));
  if (blob.registry_only) {
    // No bytes to share: HEAD (or mount), or FAILED_PRECONDITION.
    ASSIGN_OR_RETURN(LayerOutcomeKind kind,
                     RunUploader(ctx, repo, blob, mount_from, events, cancelled));
    return finish(kind);
  }
  // The size is part of the key (a caller whose source has another size than
  // the flight's never shares it), and so are the credentials: a caller only
  // ever shares an upload made with the very credentials it brought.
  ASSIGN_OR_RETURN(ResolvedCredentials who, registries_->ChainFor(ctx).Resolve(repo.registry));
  const std::string key = absl::StrCat(repo.registry, "|", blob.descriptor.digest, "|",
                                       blob.descriptor.size, "|", who.identity);
  const RetryPolicy policy = ctx.retry.Sanitised();
  for (int handovers = 0;; ++handovers) {
    SharedUploads::Ticket ticket = uploads_.Join(key, repo.path);
    if (!ticket.leader) {
      const std::string leader_repo = ticket.flight->leader_repo();
      const bool same_repo = leader_repo == repo.path;
      if (!same_repo && !MayMountFrom(ctx, repo, leader_repo)) {
        // The bytes are going where this caller may not read them (another
        // tenant's repository): it could not mount them, so it uploads on
        // its own rather than wait (outside the flight).
        ASSIGN_OR_RETURN(LayerOutcomeKind kind,
                         RunUploader(ctx, repo, blob, mount_from, events, cancelled));
        return finish(kind);
      }
      // Another repository's upload is not this caller's progress: it waits
      // for it silently, then mounts (progress then jumps to the end).
      absl::Status leader =
          uploads_.Wait(ticket.flight, same_repo ? events.on_progress : nullptr, cancelled);
      if (absl::IsCancelled(leader) && cancelled && cancelled->load()) return leader;
      if (!leader.ok()) {
        // The caller whose upload we shared failed or was cancelled: we take
        // over. Progress starts again, so say why first.
        if (handovers + 1 >= policy.max_attempts) return leader;
        registries_->client()->observer()->Retry("handover");
        if (events.on_retry) {
          events.on_retry(RetryNotice{handovers + 1, policy.max_attempts,
                                      absl::StrCat("the shared upload of another caller failed (",
                                                   leader.message(), "); taking it over"),
                                      absl::ZeroDuration()});
        }
        continue;
      }
      if (same_repo) return finish(LayerOutcomeKind::kShared);
      // Same registry, other repository: the bytes are there now; mount them.
      ASSIGN_OR_RETURN(LayerOutcomeKind kind,
                       RunUploader(ctx, repo, blob, leader_repo, events, cancelled));
      return finish(kind);
    }
    UploadEvents lead = events;
    std::shared_ptr<SharedUploads::Flight> flight = ticket.flight;
    lead.on_progress = [&events, flight](int64_t complete, int64_t total) {
      if (events.on_progress) events.on_progress(complete, total);
      flight->Publish(complete, total);
    };
    absl::StatusOr<LayerOutcomeKind> kind =
        RunUploader(ctx, repo, blob, mount_from, lead, cancelled);
    uploads_.Finish(key, flight, kind.status());
    if (!kind.ok()) return kind.status();
    return finish(*kind);
  }
}

absl::Status WriteService::VerifySourceDigest(const PreparedBlob& blob,
                                              const CancelFlag& cancelled) {
  if (blob.digest_computed || blob.blob == nullptr) return absl::OkStatus();
  const std::string& want = blob.descriptor.digest;
  ASSIGN_OR_RETURN(std::string got,
                   DigestOf(*blob.blob, want.substr(0, want.find(':')), cancelled));
  if (got != want) {
    return absl::InvalidArgumentError(
        absl::StrCat("the source's bytes hash to ", got, ", not to the given digest ", want));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> WriteService::DigestOf(const OpenedBlob& blob,
                                                   const std::string& algorithm,
                                                   const CancelFlag& cancelled) {
  const std::atomic<bool>* stop = cancelled.get();
  auto compute = [&blob, &algorithm, stop] { return blob.ComputeDigest(algorithm, stop); };
  // Files hash once per identity (the cache holds sha256 only); inline data is cheap.
  if (blob.identity().empty() || algorithm != "sha256") return compute();
  return digests_.Get(blob.identity(), compute, !blob.recently_modified(), stop);
}

absl::StatusOr<LayerOutcome> WriteService::OpenAndUpload(const CallContext& ctx,
                                                         const Repository& repo,
                                                         const PreparedBlob& planned,
                                                         const UploadEvents& events,
                                                         const CancelFlag& cancelled) {
  if (planned.blob != nullptr || !planned.reopen) {
    return UploadPrepared(ctx, repo, planned, events, cancelled);
  }
  PreparedBlob opened;
  ASSIGN_OR_RETURN(opened.blob, planned.reopen());
  if (opened.blob->size() != planned.descriptor.size ||
      (!planned.identity.empty() && opened.blob->identity() != planned.identity)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the file of blob ", planned.descriptor.digest, " changed during the push"));
  }
  opened.descriptor = planned.descriptor;
  opened.mount_from = planned.mount_from;
  opened.digest_computed = planned.digest_computed;
  return UploadPrepared(ctx, repo, opened, events, cancelled);
}

namespace {

// One blob's events, from a call's digest-keyed ones.
UploadEvents EventsFor(const PushEvents& events, const std::string& digest) {
  UploadEvents ev;
  if (events.on_progress) {
    ev.on_progress = [&events, digest](int64_t c, int64_t t) { events.on_progress(digest, c, t); };
  }
  if (events.on_retry) {
    ev.on_retry = [&events, digest](const RetryNotice& n) { events.on_retry(digest, n); };
  }
  return ev;
}

}  // namespace

absl::StatusOr<LayerOutcome> WriteService::WriteLayer(const CallContext& ctx,
                                                      absl::string_view repo_text, BlobSpec spec) {
  ASSIGN_OR_RETURN(Repository repo, ParseWriteRepository(repo_text));
  RETURN_IF_ERROR(ctx.Allow(repo, Action::kPush));
  if (!spec.path.has_value() && !spec.data.has_value()) {
    return absl::InvalidArgumentError("layer needs a path or data");
  }
  ASSIGN_OR_RETURN(PreparedBlob blob, PrepareBlob(ctx, std::move(spec), media::kOciLayerGzip));
  return UploadPrepared(ctx, repo, blob, EventsFor(ctx.events, blob.descriptor.digest),
                        ctx.cancelled);
}

absl::StatusOr<LayerOutcome> WriteService::UploadStream(const CallContext& ctx,
                                                        absl::string_view repo_text,
                                                        const BlobSpec& spec,
                                                        const BlobStream* stream) {
  ASSIGN_OR_RETURN(Repository repo, ParseWriteRepository(repo_text));
  RETURN_IF_ERROR(ctx.Allow(repo, Action::kPush));
  RETURN_IF_ERROR(ValidateDigest(spec.digest));
  if (spec.size < 0 || stream == nullptr || stream->size() != spec.size) {
    return absl::InvalidArgumentError("size is required and must not be negative");
  }
  PreparedBlob blob;
  // What a stream may hold in memory (its queue and the chunk that filled it,
  // the held tail) comes out of the same budget as inline data: the daemon's
  // memory is base + --grpc_memory + --inline_memory, whatever the callers do.
  ASSIGN_OR_RETURN(blob.inline_bytes, inline_budget_.Reserve(kStreamMemory));
  blob.streamed = stream;
  blob.descriptor.digest = spec.digest;
  blob.descriptor.size = spec.size;
  blob.descriptor.media_type =
      spec.media_type.empty() ? std::string(media::kOciLayerGzip) : spec.media_type;
  blob.mount_from = spec.mount_from;
  return UploadPrepared(ctx, repo, blob, EventsFor(ctx.events, blob.descriptor.digest),
                        ctx.cancelled);
}

// ------------------------------------------------------------ PushImage ----

absl::Status WriteService::FileSourcesAllowed(const CallContext& ctx) const {
  if (ctx.allowed_paths.has_value() && ctx.allowed_paths->empty()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "tenant \"", ctx.caller,
        "\" has no allowed_paths in the policy: send the bytes (UploadBlob, inline data)"));
  }
  return absl::OkStatus();
}

const std::vector<std::string>& WriteService::RootsFor(const CallContext& ctx) const {
  return ctx.allowed_paths.has_value() ? *ctx.allowed_paths : options_.allowed_paths;
}

absl::StatusOr<WriteService::PushPlan> WriteService::PlanFromLayout(const CallContext& ctx,
                                                                    const PushImageSpec& spec) {
  // Every file of the layout is opened beneath the layout directory, which is
  // itself opened beneath an allowed root.
  RETURN_IF_ERROR(FileSourcesAllowed(ctx));
  auto dir = std::make_shared<LayoutDir>();
  ASSIGN_OR_RETURN(dir->fd,
                   OpenBeneathRoots(spec.layout_path, RootsFor(ctx), FileKind::kDirectory));
  dir->shown = ForMessage(spec.layout_path);
  absl::StatusOr<UniqueFd> marker_fd = dir->Open("oci-layout");
  absl::StatusOr<std::string> marker =
      marker_fd.ok() ? ReadSmallFd(marker_fd->get(), 64 << 10, "oci-layout") : marker_fd.status();
  if (absl::IsPermissionDenied(marker.status())) return marker.status();
  if (!marker.ok() || !absl::StrContains(*marker, "imageLayoutVersion")) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir->shown, " is not an OCI image layout (no valid oci-layout file)"));
  }
  ASSIGN_OR_RETURN(UniqueFd index_fd, dir->Open("index.json"));
  ASSIGN_OR_RETURN(std::string index_json,
                   ReadSmallFd(index_fd.get(), kMaxManifestBytes, "index.json"));
  absl::StatusOr<Index> index = ParseIndex(index_json, media::kOciIndex);
  if (!index.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("OCI layout index.json: ", index.status().message()));
  }
  const Descriptor* chosen = nullptr;
  if (!spec.ref_name.empty()) {
    for (const Descriptor& d : index->manifests) {
      auto it = d.annotations.find(kRefNameAnnotation);
      if (it != d.annotations.end() && it->second == spec.ref_name) chosen = &d;
    }
    if (chosen == nullptr) {
      return absl::NotFoundError(absl::StrCat("OCI layout has no manifest with ref name \"",
                                              ForMessage(spec.ref_name), "\""));
    }
  } else if (index->manifests.size() == 1) {
    chosen = &index->manifests[0];
  } else {
    return absl::InvalidArgumentError(absl::StrCat("OCI layout holds ", index->manifests.size(),
                                                   " manifests; name one with ref_name"));
  }

  PushPlan plan;
  std::map<std::string, bool> seen;
  auto add_blob = [&](const Descriptor& d) -> absl::Status {
    if (seen[d.digest]) return absl::OkStatus();
    seen[d.digest] = true;
    if (plan.blobs.size() >= static_cast<size_t>(options_.max_image_layers)) {
      return absl::InvalidArgumentError(
          absl::StrCat("OCI layout image has more than ", options_.max_image_layers, " blobs"));
    }
    // Checked now, opened again when its upload starts: a push holds one
    // descriptor per blob in flight, not one per blob of the image.
    ASSIGN_OR_RETURN(UniqueFd fd, dir->OpenBlob(d));
    ASSIGN_OR_RETURN(std::unique_ptr<OpenedBlob> opened,
                     OpenedBlob::FromFd(std::move(fd), d.digest));
    if (opened->size() != d.size) {
      return absl::InvalidArgumentError(absl::StrCat("OCI layout blob ", d.digest, " has ",
                                                     opened->size(), " bytes, descriptor says ",
                                                     d.size));
    }
    PreparedBlob b;
    b.identity = opened->identity();
    b.reopen = [dir, d]() -> absl::StatusOr<std::unique_ptr<OpenedBlob>> {
      ASSIGN_OR_RETURN(UniqueFd fd, dir->OpenBlob(d));
      return OpenedBlob::FromFd(std::move(fd), d.digest);
    };
    b.descriptor = d;
    plan.blobs.push_back(std::move(b));
    return absl::OkStatus();
  };
  auto add_image = [&](const Descriptor& d, const std::string& raw) -> absl::Status {
    ASSIGN_OR_RETURN(Manifest m, ParseManifest(raw, d.media_type));
    RETURN_IF_ERROR(add_blob(m.config));
    for (const Descriptor& l : m.layers) RETURN_IF_ERROR(add_blob(l));
    return absl::OkStatus();
  };

  ASSIGN_OR_RETURN(std::string top_raw, ReadLayoutBlob(*dir, *chosen));
  plan.top.raw = top_raw;
  plan.top.descriptor = *chosen;
  plan.top.descriptor.size = static_cast<int64_t>(top_raw.size());
  plan.top.descriptor.platform.reset();
  plan.top.descriptor.annotations.clear();
  plan.top.descriptor.media_type = ManifestMediaType(chosen->media_type, top_raw);
  ASSIGN_OR_RETURN(ManifestKind kind, DetectManifestKind(plan.top.descriptor.media_type, top_raw));
  if (kind == ManifestKind::kManifest) {
    RETURN_IF_ERROR(add_image(*chosen, top_raw));
    return plan;
  }
  ASSIGN_OR_RETURN(Index idx, ParseIndex(top_raw, plan.top.descriptor.media_type));
  for (const Descriptor& child : idx.manifests) {
    if (plan.children.size() >= static_cast<size_t>(options_.max_index_entries)) {
      return absl::InvalidArgumentError(
          absl::StrCat("OCI layout index has more than ", options_.max_index_entries, " entries"));
    }
    ASSIGN_OR_RETURN(std::string raw, ReadLayoutBlob(*dir, child));
    ManifestToPush m{raw, child};
    m.descriptor.media_type = ManifestMediaType(child.media_type, raw);
    ASSIGN_OR_RETURN(ManifestKind ck, DetectManifestKind(m.descriptor.media_type, raw));
    if (ck != ManifestKind::kManifest) {
      return absl::InvalidArgumentError("nested indexes in an OCI layout are not supported");
    }
    RETURN_IF_ERROR(add_image(child, raw));
    plan.children.push_back(std::move(m));
  }
  return plan;
}

absl::StatusOr<WriteService::PushPlan> WriteService::PlanFromImage(const CallContext& ctx,
                                                                   const PushImageSpec& spec) {
  if (spec.layers.size() > static_cast<size_t>(options_.max_image_layers)) {
    return absl::InvalidArgumentError(
        absl::StrCat("an image may have at most ", options_.max_image_layers, " layers"));
  }
  const bool docker = spec.media_type == media::kDockerManifest;
  if (!spec.media_type.empty() && !docker && spec.media_type != media::kOciManifest) {
    return absl::InvalidArgumentError(absl::StrCat("image.media_type must be ", media::kOciManifest,
                                                   " or ", media::kDockerManifest));
  }
  PushPlan plan;
  Manifest m;
  m.media_type = std::string(docker ? media::kDockerManifest : media::kOciManifest);
  m.annotations = spec.annotations;
  if (docker && !spec.annotations.empty()) {
    return absl::InvalidArgumentError("Docker schema2 manifests have no annotations");
  }
  ASSIGN_OR_RETURN(
      PreparedBlob config,
      PrepareBlob(ctx, spec.config, docker ? media::kDockerConfig : media::kOciConfig));
  if (config.reopen) config.blob.reset();  // files open again when their upload starts
  m.config = config.descriptor;
  std::map<std::string, bool> seen{{config.descriptor.digest, true}};
  plan.blobs.push_back(std::move(config));
  for (const BlobSpec& l : spec.layers) {
    ASSIGN_OR_RETURN(PreparedBlob b,
                     PrepareBlob(ctx, l, docker ? media::kDockerLayerGzip : media::kOciLayerGzip));
    if (b.reopen) b.blob.reset();
    m.layers.push_back(b.descriptor);
    if (!seen[b.descriptor.digest]) {
      seen[b.descriptor.digest] = true;
      plan.blobs.push_back(std::move(b));
    }
  }
  plan.top.raw = SerializeManifest(m);
  plan.top.descriptor.media_type = m.media_type;
  plan.top.descriptor.digest = Sha256Digest(plan.top.raw);
  plan.top.descriptor.size = static_cast<int64_t>(plan.top.raw.size());
  return plan;
}

absl::Status WriteService::UploadAll(const CallContext& ctx, const Repository& repo,
                                     const PushPlan& plan, int concurrency) {
  const PushEvents& events = ctx.events;
  // `concurrency` threads; the first failure stops the rest.
  absl::Status st = RunParallel(
      plan.blobs.size(), concurrency, ctx.cancelled,
      [&](size_t i, const CancelFlag& flag) -> absl::Status {
        const PreparedBlob& planned = plan.blobs[i];
        const std::string& digest = planned.descriptor.digest;
        absl::StatusOr<LayerOutcome> out =
            OpenAndUpload(ctx, repo, planned, EventsFor(events, digest), flag);
        if (!out.ok()) {
          return absl::Status(out.status().code(),
                              absl::StrCat("blob ", digest, ": ", out.status().message()));
        }
        if (events.on_layer) events.on_layer(digest, *out);
        return absl::OkStatus();
      });
  if (absl::IsCancelled(st) && ctx.Cancelled()) return absl::CancelledError("push cancelled");
  return st;
}

absl::Status WriteService::PutManifest(const CallContext& ctx, const Repository& repo,
                                       const std::string& reference, const ManifestToPush& m,
                                       const RetryPolicy& retry) {
  RegistryApi api = registries_->ApiFor(ctx, repo.registry);
  const PushEvents& events = ctx.events;
  const std::string& digest = m.descriptor.digest;
  absl::Status st = api.PutManifest(repo, reference, m.descriptor.media_type, m.raw, digest, retry,
                                    [&events, &digest](const RetryNotice& n) {
                                      if (events.on_retry) events.on_retry(digest, n);
                                    });
  if (ctx.Cancelled()) return absl::CancelledError("push cancelled");
  return st;
}

absl::StatusOr<Descriptor> WriteService::PushImage(const CallContext& ctx,
                                                   const PushImageSpec& spec) {
  ASSIGN_OR_RETURN(Reference ref, ParseReference(spec.ref));
  RETURN_IF_ERROR(ctx.Allow(ref.repo, Action::kPush));
  PushPlan plan;
  if (!spec.layout_path.empty()) {
    ASSIGN_OR_RETURN(plan, PlanFromLayout(ctx, spec));
  } else {
    ASSIGN_OR_RETURN(plan, PlanFromImage(ctx, spec));
  }
  if (!ref.digest.empty() && ref.digest != plan.top.descriptor.digest) {
    return absl::InvalidArgumentError(absl::StrCat("ref names digest ", ref.digest,
                                                   " but the image's manifest is ",
                                                   plan.top.descriptor.digest));
  }
  int concurrency = spec.concurrency > 0 ? std::min(spec.concurrency, 64) : 4;
  RETURN_IF_ERROR(UploadAll(ctx, ref.repo, plan, concurrency));
  // Manifests go last, children by digest first, so the tag never names an
  // image whose parts are missing.
  for (const ManifestToPush& child : plan.children) {
    RETURN_IF_ERROR(PutManifest(ctx, ref.repo, child.descriptor.digest, child, ctx.retry));
  }
  RETURN_IF_ERROR(
      PutManifest(ctx, ref.repo, ref.tag.empty() ? ref.digest : ref.tag, plan.top, ctx.retry));
  Descriptor out = plan.top.descriptor;
  return out;
}

// ------------------------------------------------------------ PushIndex ----

absl::StatusOr<Descriptor> WriteService::PushIndex(const CallContext& ctx,
                                                   const PushIndexSpec& spec) {
  ASSIGN_OR_RETURN(Reference ref, ParseReference(spec.ref));
  RETURN_IF_ERROR(ctx.Allow(ref.repo, Action::kPush));
  // It reads the manifests it indexes (and their configs) too.
  RETURN_IF_ERROR(ctx.Allow(ref.repo, Action::kPull));
  if (spec.manifests.empty())
    return absl::InvalidArgumentError("an index needs at least one manifest");
  if (spec.manifests.size() > static_cast<size_t>(options_.max_index_entries)) {
    return absl::InvalidArgumentError(
        absl::StrCat("an index may have at most ", options_.max_index_entries, " entries"));
  }
  const bool docker = spec.media_type == media::kDockerList;
  if (!spec.media_type.empty() && !docker && spec.media_type != media::kOciIndex) {
    return absl::InvalidArgumentError(
        absl::StrCat("media_type must be ", media::kOciIndex, " or ", media::kDockerList));
  }
  Index idx;
  idx.media_type = std::string(docker ? media::kDockerList : media::kOciIndex);
  idx.annotations = spec.annotations;
  for (const IndexEntrySpec& e : spec.manifests) {
    std::string id;
    if (ValidateDigest(e.ref).ok()) {
      id = e.ref;
    } else if (e.ref.find_first_of("/@:") == std::string::npos) {
      // A tag in the index's repository: it must be one, or it would reach
      // the URL as is ("latest?x=1").
      absl::Status tag = ValidateTag(e.ref);
      if (!tag.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("index entry \"", ForMessage(e.ref),
                                                       "\" is not a tag, digest or reference"));
      }
      id = e.ref;
    } else {
      ASSIGN_OR_RETURN(Reference child, ParseReference(e.ref));
      if (child.repo.registry != ref.repo.registry || child.repo.path != ref.repo.path) {
        return absl::InvalidArgumentError(absl::StrCat("index entry ", ForMessage(e.ref),
                                                       " is not in the index's repository ",
                                                       ref.repo.String()));
      }
      id = child.Identifier();
    }
    absl::StatusOr<FetchedManifest> f = reads_->FetchManifest(ctx, ref.repo, id);
    if (!f.ok()) {
      return absl::Status(f.status().code(), absl::StrCat(f.status().message(), " (index entry ",
                                                          ForMessage(e.ref), ")"));
    }
    if (f->kind != ManifestKind::kManifest) {
      return absl::InvalidArgumentError(
          absl::StrCat("index entry ", ForMessage(e.ref), " is itself an index"));
    }
    Descriptor d;
    d.media_type = f->media_type;
    d.digest = f->digest;
    d.size = static_cast<int64_t>(f->raw.size());
    d.annotations = e.annotations;
    if (e.platform.has_value()) {
      d.platform = *e.platform;
    } else {
      ASSIGN_OR_RETURN(Manifest m, ParseManifest(f->raw, f->media_type));
      ASSIGN_OR_RETURN(std::string cfg, reads_->FetchSmallBlob(ctx, ref.repo, m.config));
      ASSIGN_OR_RETURN(ImageConfigInfo info, ParseImageConfig(cfg));
      if (info.platform.os.empty() || info.platform.architecture.empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("index entry ", ForMessage(e.ref),
                         ": its config names no os/architecture; give a platform"));
      }
      d.platform = info.platform;
    }
    idx.manifests.push_back(std::move(d));
  }
  ManifestToPush top;
  top.raw = SerializeIndex(idx);
  top.descriptor.media_type = idx.media_type;
  top.descriptor.digest = Sha256Digest(top.raw);
  top.descriptor.size = static_cast<int64_t>(top.raw.size());
  if (!ref.digest.empty() && ref.digest != top.descriptor.digest) {
    return absl::InvalidArgumentError("ref names a digest other than the built index's");
  }
  RETURN_IF_ERROR(
      PutManifest(ctx, ref.repo, ref.tag.empty() ? ref.digest : ref.tag, top, RetryPolicy()));
  return top.descriptor;
}

}  // namespace regd
