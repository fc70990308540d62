#include "core/read/read_service.h"

#include <algorithm>
#include <deque>
#include <system_error>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/digest.h"
#include "core/log.h"
#include "core/read/blob_reader.h"
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

std::string ReadService::CacheKey(const CallContext& ctx, const Repository& repo,
                                  MetadataCache::Kind kind, const std::string& digest) const {
  if (cache_ == nullptr || cache_->capacity() == 0 || !ValidateDigest(digest).ok()) return "";
  // The identity the registry will see: an entry exists only for credentials
  // whose own request for this repository was answered.
  absl::StatusOr<ResolvedCredentials> who = registries_->ChainFor(ctx).Resolve(repo.registry);
  if (!who.ok()) return "";
  return MetadataCache::KeyOf(kind, repo.registry, repo.path, who->identity, digest);
}

absl::StatusOr<FetchedManifest> ReadService::FetchManifest(const CallContext& ctx,
                                                           const Repository& repo,
                                                           const std::string& identifier) {
  // Only content named by the digest asked for is cached: never a tag's.
  const std::string key = CacheKey(ctx, repo, MetadataCache::Kind::kManifest, identifier);
  if (!key.empty()) {
    if (std::shared_ptr<const MetadataCache::Content> hit = cache_->Lookup(key)) {
      FetchedManifest f;
      f.raw = hit->data;
      f.media_type = hit->media_type;
      f.digest = identifier;
      f.kind = static_cast<ManifestKind>(hit->kind);
      return f;
    }
  }
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
  // Kept only when verified against the digest asked for, and when the call's
  // credentials still resolve to the identity looked up (a store may have
  // re-read its file meanwhile).
  if (!key.empty() && f.digest == identifier &&
      key == CacheKey(ctx, repo, MetadataCache::Kind::kManifest, identifier)) {
    cache_->Insert(key, MetadataCache::Content{f.raw, f.media_type, static_cast<int>(f.kind)});
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
  const std::string key = CacheKey(ctx, repo, MetadataCache::Kind::kBlob, d.digest);
  if (!key.empty()) {
    if (std::shared_ptr<const MetadataCache::Content> hit = cache_->Lookup(key)) return hit->data;
  }
  RegistryApi api = registries_->ApiFor(ctx, repo.registry);
  ASSIGN_OR_RETURN(std::string body, api.GetSmallBlob(repo, d.digest, kMaxManifestBytes));
  RETURN_IF_ERROR(VerifyDigest(body, d.digest, "config blob"));
  // As in FetchManifest: the identity looked up is still the call's.
  if (!key.empty() && key == CacheKey(ctx, repo, MetadataCache::Kind::kBlob, d.digest)) {
    cache_->Insert(key, MetadataCache::Content{body, "", 0});
  }
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

absl::StatusOr<InspectResult> ReadService::Inspect(const CallContext& ctx,
                                                   absl::string_view ref_text,
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
        ASSIGN_OR_RETURN(FetchedManifest child,
                         FetchManifest(ctx, ref.repo, idx.manifests[*def].digest));
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

absl::StatusOr<ImageResult> ReadService::GetImage(const CallContext& ctx,
                                                  absl::string_view ref_text,
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

namespace {

// ReadBlob's second stage: a thread that hashes each full chunk and then hands
// it (or a retry notice, in order) to the sink, while the calling thread goes
// on receiving. On two cores this overlaps the SHA-256 and the gRPC send with
// the download. Bounded: at most `kMaxQueued` chunks wait.
class HashAndSend {
 public:
  static constexpr size_t kMaxQueued = 2;

  HashAndSend(Digester* hasher, const std::function<bool(std::string&&)>* sink,
              std::function<void(const RetryNotice&)> on_retry)
      : hasher_(hasher), sink_(sink), on_retry_(std::move(on_retry)) {}
  ~HashAndSend() { Finish(); }

  // Starts the thread; false when none could be started (then the caller
  // hashes and sends inline).
  bool Start() {
    try {
      thread_ = std::thread([this, log_context = CurrentLogContext()] {
        ScopedLogContext scope(log_context);
        Run();
      });
    } catch (const std::system_error&) {
      return false;
    }
    return true;
  }
  // Queues a chunk or a retry notice; false once the sink said stop.
  bool Put(std::string chunk, std::optional<RetryNotice> retry = std::nullopt) {
    absl::MutexLock lock(&mu_);
    // Full: wait until half of it went (one wake per two chunks, not one each).
    auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopped_ || queue_.size() <= kMaxQueued / 2;
    };
    if (queue_.size() >= kMaxQueued) mu_.Await(absl::Condition(&drained));
    if (stopped_) return false;
    queue_.push_back(Item{std::move(chunk), std::move(retry)});
    return true;
  }
  // Waits until everything queued was hashed and sent; the thread ends.
  // False when the sink said stop.
  bool Finish() {
    {
      absl::MutexLock lock(&mu_);
      closed_ = true;
    }
    if (thread_.joinable()) thread_.join();
    absl::MutexLock lock(&mu_);
    return !stopped_;
  }

 private:
  struct Item {
    std::string data;
    std::optional<RetryNotice> retry;
  };
  void Run() {
    while (true) {
      Item item;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]()
                         ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || closed_; };
        mu_.Await(absl::Condition(&ready));
        if (queue_.empty()) return;  // closed and drained
        item = std::move(queue_.front());
        queue_.pop_front();
      }
      bool ok = true;
      if (item.retry.has_value()) {
        if (on_retry_) on_retry_(*item.retry);
      } else {
        hasher_->Update(item.data);
        ok = (*sink_)(std::move(item.data));
      }
      if (!ok) {
        absl::MutexLock lock(&mu_);
        stopped_ = true;
        queue_.clear();
        return;
      }
    }
  }

  Digester* const hasher_;
  const std::function<bool(std::string&&)>* const sink_;
  const std::function<void(const RetryNotice&)> on_retry_;
  absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace

absl::Status ReadService::ReadBlob(const CallContext& ctx, absl::string_view repo_text,
                                   absl::string_view digest, int64_t offset,
                                   const std::function<bool(std::string&&)>& sink,
                                   const std::function<bool()>& drained) {
  ASSIGN_OR_RETURN(Repository repo, ParseRepository(repo_text));
  RETURN_IF_ERROR(ctx.Allow(repo, Action::kPull));
  RETURN_IF_ERROR(ValidateDigest(digest));
  if (offset < 0) return absl::InvalidArgumentError("offset must not be negative");
  // The fast path when the budget has room for it, else the lean one.
  ByteBudget::Reservation held;
  bool fast = false;
  if (budget_ != nullptr) {
    absl::StatusOr<ByteBudget::Reservation> r = budget_->Reserve(kFastReadMemory);
    if (r.ok()) {
      held = std::move(*r);
      fast = true;
    }
  }
  const size_t chunk_bytes = fast ? kFastReadChunk : kLeanReadChunk;
  const std::string digest_str(digest);
  auto tell_retry = [&](const RetryNotice& n) {
    if (ctx.events.on_retry) ctx.events.on_retry(digest_str, n);
  };
  // From offset 0 every byte is hashed (a resume keeps hashing where it
  // was), on a second thread when one can be had.
  std::optional<Digester> hasher;
  std::unique_ptr<HashAndSend> stage;
  if (offset == 0) {
    ASSIGN_OR_RETURN(Digester d, Digester::ForDigest(digest));
    hasher.emplace(std::move(d));
    if (fast) {
      stage = std::make_unique<HashAndSend>(&*hasher, &sink, tell_retry);
      if (!stage->Start()) stage.reset();
    }
  }
  RegistryApi api = registries_->ApiFor(ctx, repo.registry);
  // The sink gets whole chunks of `chunk_bytes` (the last one shorter).
  std::string buf;
  buf.reserve(chunk_bytes);
  bool consumer_stopped = false;
  auto flush = [&]() -> bool {
    if (buf.empty()) return true;
    if (ctx.bytes) ctx.bytes->fetch_add(static_cast<int64_t>(buf.size()));
    if (stage != nullptr) {
      consumer_stopped = !stage->Put(std::move(buf));
    } else {
      if (hasher.has_value()) hasher->Update(buf);
      consumer_stopped = !sink(std::move(buf));
    }
    buf = std::string();
    buf.reserve(chunk_bytes);
    return !consumer_stopped;
  };
  BlobRead read;
  read.offset = offset;
  read.retry = ctx.retry;
  read.receive_buffer = fast ? (512 << 10) : (64 << 10);
  read.on_retry = [&](const RetryNotice& n) {
    // The held chunk stays held: the retry notice carries no data.
    if (stage != nullptr) {
      consumer_stopped = !stage->Put(std::string(), n);
    } else {
      tell_retry(n);
    }
  };
  read.sink = [&](absl::string_view data) -> bool {
    while (!data.empty()) {
      // A full chunk goes only once a byte after it has come: the last chunk
      // is always still here when the digest is checked.
      if (buf.size() == chunk_bytes && !flush()) return false;
      size_t take = std::min(chunk_bytes - buf.size(), data.size());
      buf.append(data.data(), take);
      data.remove_prefix(take);
    }
    return true;
  };
  absl::StatusOr<BlobReadResult> got = ReadBlobResumable(api, repo, digest_str, read);
  if (stage != nullptr && !stage->Finish()) consumer_stopped = true;
  if (consumer_stopped) return absl::CancelledError("reader went away");
  // What arrived before a failure or a digest mismatch stays here: the
  // caller must not take a half of another blob for the start of this one.
  if (!got.ok()) return got.status();
  if (hasher.has_value()) {
    hasher->Update(buf);  // the last chunk is sent only once all is checked
    std::string sum = hasher->Finish();
    if (sum != digest_str) {
      return absl::DataLossError(
          absl::StrCat("blob digest mismatch: expected ", digest_str, ", content hashes to ", sum));
    }
  }
  if (ctx.bytes) ctx.bytes->fetch_add(static_cast<int64_t>(buf.size()));
  if (!buf.empty() && !sink(std::move(buf))) return absl::CancelledError("reader went away");
  // Return (freeing the budget and the caller's slot) only once the caller
  // has taken what is queued for it.
  if (drained && !drained()) return absl::CancelledError("reader went away");
  return absl::OkStatus();
}

}  // namespace regd
