#include "core/read/pull_service.h"

#include <map>
#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "core/digest.h"
#include "core/log.h"
#include "core/parallel.h"
#include "core/read/blob_reader.h"
#include "core/read/layout_writer.h"
#include "core/status_macros.h"
#include "core/text.h"

namespace regd {
namespace {

constexpr int kDefaultConcurrency = 4;
constexpr int kMaxConcurrency = 16;
constexpr int kMaxIndexDepth = 4;

// What a pull downloads, and the entry for index.json. Manifests (fetched
// and verified while planning) are written to the layout at once, so none is
// held in memory: an index of a thousand 4 MiB manifests costs no more than
// one. Unreferenced until index.json names them, as a crash leaves them.
struct PullPlan {
  std::vector<Descriptor> blobs;  // unique by digest
  Descriptor entry;
};

class PlanBuilder {
 public:
  PlanBuilder(int max_blobs, LayoutWriter* layout) : max_blobs_(max_blobs), layout_(layout) {}

  [[nodiscard]] absl::Status AddBlob(const Descriptor& d) {
    RETURN_IF_ERROR(ValidateDigest(d.digest));
    if (d.size < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("the manifest gives blob ", d.digest, " a negative size"));
    }
    if (!seen_.insert(d.digest).second) return absl::OkStatus();
    if (static_cast<int>(plan.blobs.size()) >= max_blobs_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the image has more than ", max_blobs_, " blobs"));
    }
    plan.blobs.push_back(d);
    return absl::OkStatus();
  }
  [[nodiscard]] absl::Status AddManifest(const FetchedManifest& f) {
    if (!seen_.insert(f.digest).second) return absl::OkStatus();
    return layout_->PutSmallBlob(f.digest, f.raw);
  }
  [[nodiscard]] absl::Status AddImage(const FetchedManifest& f) {
    ASSIGN_OR_RETURN(Manifest m, ParseManifest(f.raw, f.media_type));
    RETURN_IF_ERROR(AddBlob(m.config));
    for (const Descriptor& l : m.layers) RETURN_IF_ERROR(AddBlob(l));
    return AddManifest(f);
  }

  PullPlan plan;

 private:
  const int max_blobs_;
  LayoutWriter* const layout_;
  std::set<std::string> seen_;
};

Descriptor DescriptorOf(const FetchedManifest& f) {
  Descriptor d;
  d.media_type = f.media_type;
  d.digest = f.digest;
  d.size = static_cast<int64_t>(f.raw.size());
  return d;
}

}  // namespace

absl::StatusOr<Descriptor> PullService::PullImage(const CallContext& ctx, const PullSpec& spec) {
  ASSIGN_OR_RETURN(Reference ref, ParseReference(spec.ref));
  RETURN_IF_ERROR(ctx.Allow(ref.repo, Action::kPull));
  if (spec.layout_path.empty()) return absl::InvalidArgumentError("layout.path is empty");
  if (spec.platform.has_value() && spec.all_platforms) {
    return absl::InvalidArgumentError("give a platform or all_platforms, not both");
  }
  if (spec.concurrency < 0) return absl::InvalidArgumentError("concurrency must not be negative");
  const std::vector<std::string>& roots =
      ctx.allowed_paths.has_value() ? *ctx.allowed_paths : allowed_paths_;
  if (roots.empty()) {
    return absl::PermissionDeniedError(
        "the daemon may not write files: it was started without --allowed_paths");
  }
  std::string ref_name = spec.ref_name;
  if (ref_name.empty()) ref_name = ref.tag.empty() ? ref.digest : ref.tag;
  // Open (or create) the layout before anything is fetched: a bad path fails fast.
  ASSIGN_OR_RETURN(std::unique_ptr<LayoutWriter> layout,
                   LayoutWriter::Open(spec.layout_path, roots));

  // 1. What to pull.
  PlanBuilder b(max_image_layers_ + 1 + max_index_entries_, layout.get());
  ASSIGN_OR_RETURN(FetchedManifest top, reads_->FetchManifest(ctx, ref.repo, ref.Identifier()));
  if (top.kind == ManifestKind::kManifest) {
    if (spec.platform.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat(ref.String(), " is a single-platform manifest, not an index: platform ",
                       spec.platform->String(), " cannot be chosen from it"));
    }
    RETURN_IF_ERROR(b.AddImage(top));
    b.plan.entry = DescriptorOf(top);
  } else if (spec.platform.has_value()) {
    ASSIGN_OR_RETURN(Index idx, ParseIndex(top.raw, top.media_type));
    std::optional<size_t> i = MatchIndex(idx, *spec.platform);
    if (!i.has_value()) {
      return absl::NotFoundError(
          absl::StrCat("image reference not found: no manifest for platform ",
                       spec.platform->String(), " in ", ref.String()));
    }
    ASSIGN_OR_RETURN(FetchedManifest child,
                     reads_->FetchManifest(ctx, ref.repo, idx.manifests[*i].digest));
    if (child.kind != ManifestKind::kManifest) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the ", spec.platform->String(), " entry of ", ref.String(), " is itself an index"));
    }
    RETURN_IF_ERROR(b.AddImage(child));
    b.plan.entry = idx.manifests[*i];  // the index's entry: platform and annotations
    b.plan.entry.annotations.erase("org.opencontainers.image.ref.name");
  } else if (spec.all_platforms) {
    // The index whole: every child (nested indexes too, to a bounded depth).
    b.plan.entry = DescriptorOf(top);
    std::vector<std::pair<FetchedManifest, int>> work;
    work.emplace_back(std::move(top), 0);
    int children = 0;
    while (!work.empty()) {
      if (ctx.Cancelled()) return absl::CancelledError("cancelled");
      FetchedManifest f = std::move(work.back().first);
      const int depth = work.back().second;
      work.pop_back();
      if (f.kind == ManifestKind::kManifest) {
        RETURN_IF_ERROR(b.AddImage(f));
        continue;
      }
      if (depth >= kMaxIndexDepth) {
        return absl::FailedPreconditionError(
            absl::StrCat(ref.String(), ": indexes nested deeper than ", kMaxIndexDepth));
      }
      ASSIGN_OR_RETURN(Index idx, ParseIndex(f.raw, f.media_type));
      RETURN_IF_ERROR(b.AddManifest(f));
      for (const Descriptor& c : idx.manifests) {
        if (++children > max_index_entries_) {
          return absl::ResourceExhaustedError(
              absl::StrCat(ref.String(), " has more than ", max_index_entries_, " manifests"));
        }
        ASSIGN_OR_RETURN(FetchedManifest child, reads_->FetchManifest(ctx, ref.repo, c.digest));
        if (child.digest != c.digest) {
          return absl::DataLossError(
              absl::StrCat("index entry ", c.digest, " resolved to ", child.digest));
        }
        if (child.kind == ManifestKind::kManifest) {
          RETURN_IF_ERROR(b.AddImage(child));  // written now; only its descriptors kept
        } else {
          work.emplace_back(std::move(child), depth + 1);  // a nested index (rare)
        }
      }
    }
  } else {
    return absl::FailedPreconditionError(
        absl::StrCat(ref.String(), " is an index (", top.media_type,
                     "); give a platform, or all_platforms to pull it whole"));
  }
  const PullPlan& plan = b.plan;

  // 2. The blobs, in parallel; the first failure stops the rest.
  auto fetch_one = [&](const Descriptor& d,
                       const CancelFlag& stop) -> absl::StatusOr<LayerOutcomeKind> {
    ASSIGN_OR_RETURN(bool present, layout->HasBlob(d, stop));
    if (present) return LayerOutcomeKind::kExisted;
    ASSIGN_OR_RETURN(PartialBlob part, layout->OpenPartial(d.digest, d.size, stop));
    // Another call may have finished it while we waited for its lock.
    ASSIGN_OR_RETURN(present, layout->HasBlob(d, stop));
    if (present) {
      RETURN_IF_ERROR(layout->Discard(std::move(part)));
      return LayerOutcomeKind::kExisted;
    }
    CallContext wctx = ctx;
    wctx.cancelled = stop;
    RegistryApi api = registries_->ApiFor(wctx, ref.repo.registry);
    for (int pass = 0;; ++pass) {
      ASSIGN_OR_RETURN(Digester hasher, Digester::ForDigest(d.digest));
      RETURN_IF_ERROR(part.HashInto(&hasher, stop));
      const int64_t from = part.have();
      if (from > 0) {
        LogInfo("pull: ", d.digest, " resumes from byte ", from, " already on disk");
      }
      absl::Status write_error;
      // Progress at most every 4 MiB or 200 ms a blob: a caller on the same
      // two cores should not spend its CPU on thousands of events a GiB.
      int64_t told = part.have();
      absl::Time told_at = absl::Now();
      BlobRead read;
      read.offset = from;
      read.size = d.size;
      read.verify = &hasher;
      read.retry = ctx.retry;
      read.on_retry = [&](const RetryNotice& n) {
        if (ctx.events.on_retry) ctx.events.on_retry(d.digest, n);
      };
      read.sink = [&](absl::string_view data) -> bool {
        write_error = part.Append(data);
        if (!write_error.ok()) return false;
        if (ctx.bytes) ctx.bytes->fetch_add(static_cast<int64_t>(data.size()));
        if (ctx.events.on_progress && part.have() < d.size &&
            (part.have() - told >= (4 << 20) || absl::Now() - told_at >= absl::Milliseconds(200))) {
          told = part.have();
          told_at = absl::Now();
          ctx.events.on_progress(d.digest, told, d.size);
        }
        return true;
      };
      absl::StatusOr<BlobReadResult> got = ReadBlobResumable(api, ref.repo, d.digest, read);
      if (!write_error.ok()) return write_error;
      if (got.ok()) break;
      if (absl::IsDataLoss(got.status()) && from > 0 && pass == 0) {
        // The bytes on disk were not this blob's start (a torn write before a
        // crash, say): once more from nothing.
        LogWarning("pull: ", d.digest, ": ", got.status().message(),
                   "; the partial file is discarded and the blob fetched again");
        RETURN_IF_ERROR(part.Truncate());
        continue;
      }
      return got.status();
    }
    RETURN_IF_ERROR(layout->Commit(std::move(part)));
    return LayerOutcomeKind::kDownloaded;
  };
  int concurrency = spec.concurrency == 0 ? kDefaultConcurrency : spec.concurrency;
  absl::Status downloaded = RunParallel(
      plan.blobs.size(), std::min(concurrency, kMaxConcurrency), ctx.cancelled,
      [&](size_t i, const CancelFlag& stop) -> absl::Status {
        const Descriptor& d = plan.blobs[i];
        absl::StatusOr<LayerOutcomeKind> out = fetch_one(d, stop);
        if (!out.ok()) {
          return absl::Status(out.status().code(),
                              absl::StrCat("blob ", d.digest, ": ", out.status().message()));
        }
        if (ctx.events.on_progress) ctx.events.on_progress(d.digest, d.size, d.size);
        if (ctx.events.on_layer) ctx.events.on_layer(d.digest, LayerOutcome{d, *out});
        return absl::OkStatus();
      });
  if (ctx.Cancelled()) return absl::CancelledError("pull cancelled");
  RETURN_IF_ERROR(downloaded);

  // 3. Every blob and manifest is in place: name the result.
  RETURN_IF_ERROR(layout->AddToIndex(plan.entry, ref_name, ctx.cancelled));
  return plan.entry;
}

}  // namespace regd
