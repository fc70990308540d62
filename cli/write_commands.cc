// The write commands: write-layer, upload, push, push-index; and pull, which
// writes an OCI layout on the daemon's side and shows its blobs as push does.
#include <algorithm>
#include <atomic>
#include <optional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "cli/calls.h"
#include "cli/command.h"
#include "cli/exit_codes.h"
#include "cli/json_output.h"
#include "cli/local_files.h"
#include "cli/registry_auth.h"
#include "cli/text_output.h"
#include "cli/upload.h"
#include "core/reference/reference.h"

namespace regdctl {
namespace {

constexpr int64_t kMaxChunkBytes = 8 << 20;  // UploadChunk's cap
constexpr int kMaxConcurrency = 64;

std::string BaseName(absl::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == absl::string_view::npos ? path : path.substr(slash + 1));
}

// "oci" / "docker" / a media type as given.
std::string ManifestMediaType(absl::string_view kind, bool index) {
  if (kind == "oci") {
    return index ? "application/vnd.oci.image.index.v1+json"
                 : "application/vnd.oci.image.manifest.v1+json";
  }
  if (kind == "docker") {
    return index ? "application/vnd.docker.distribution.manifest.list.v2+json"
                 : "application/vnd.docker.distribution.manifest.v2+json";
  }
  return std::string(kind);
}

absl::Status AddAnnotations(const ParsedArgs& args,
                            google::protobuf::Map<std::string, std::string>* out) {
  for (const std::string& kv : args.Values("annotation")) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return UsageError(absl::StrCat("--annotation wants KEY=VALUE, got \"", kv, "\""));
    }
    (*out)[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return absl::OkStatus();
}

absl::StatusOr<int> Concurrency(const ParsedArgs& args) {
  absl::StatusOr<int64_t> n = args.Int("concurrency", 4);
  if (!n.ok()) return n.status();
  if (*n < 1 || *n > kMaxConcurrency) return UsageError("--concurrency must be 1..64");
  return static_cast<int>(*n);
}

// A blob's outcome, for the JSON result.
struct BlobOutcome {
  std::string digest;
  int64_t size = 0;
  std::string outcome;
};

void WriteBlobOutcomes(const std::vector<BlobOutcome>& blobs, JsonWriter* w) {
  w->StartArray();
  for (const BlobOutcome& b : blobs) {
    w->StartObject();
    w->Key("digest");
    WriteString(b.digest, w);
    w->Key("size");
    w->Int64(b.size);
    w->Key("outcome");
    WriteString(b.outcome, w);
    w->EndObject();
  }
  w->EndArray();
}

void WriteTotals(const ProgressDisplay::Totals& t, JsonWriter* w) {
  w->Key("retries");
  w->Int(t.retries);
  w->Key("bytes_transferred");
  w->Int64(t.bytes_transferred);
  w->Key("seconds");
  w->Double(absl::ToDoubleSeconds(t.elapsed));
}

std::string LayerResultText(const regd::v1::LayerResult& r) {
  Fields f = {{"outcome", OutcomeName(r.outcome())}};
  for (auto& kv : DescriptorFields(r.descriptor_())) f.push_back(std::move(kv));
  return FieldLines(f);
}

// ---- write-layer ----

absl::StatusOr<regd::v1::BlobSource> FileSource(const ParsedArgs& a, const std::string& file) {
  absl::StatusOr<std::string> path = AbsolutePath(file);
  if (!path.ok()) return path.status();
  regd::v1::BlobSource src;
  src.set_path(*path);
  src.set_digest(a.Value("digest"));
  src.set_media_type(a.Value("media-type"));
  src.set_mount_from(a.Value("mount-from"));
  return src;
}

absl::StatusOr<int> RunWriteLayer(CommandEnv& env) {
  const ParsedArgs& a = env.args();
  const std::string& repo = a.positionals()[0];
  regd::v1::WriteLayerRequest req;
  req.set_repo(repo);
  absl::StatusOr<regd::v1::BlobSource> src = FileSource(a, a.positionals()[1]);
  if (!src.ok()) return src.status();
  *req.mutable_layer() = *src;
  absl::StatusOr<regd::v1::RetryConfig> retry = env.Retry();
  if (!retry.ok()) return retry.status();
  *req.mutable_retry() = *retry;
  absl::StatusOr<Connection*> conn = env.Connect(RegistryOfRepository(repo));
  if (!conn.ok()) return conn.status();

  std::unique_ptr<ProgressDisplay> display = env.NewDisplay();
  const std::string id = src->path();
  display->SetLabel(id, src->digest().empty() ? BaseName(src->path()) : ShortDigest(src->digest()));
  grpc::ClientContext ctx;
  (*conn)->PrepareStream(&ctx);
  ScopedCall scoped(&ctx);
  auto reader = (*conn)->registry().WriteLayer(&ctx, req);
  regd::v1::WriteLayerEvent ev;
  std::optional<regd::v1::LayerResult> result;
  while (reader->Read(&ev)) {
    if (ev.has_progress()) display->Progress(id, ev.progress().complete(), ev.progress().total());
    if (ev.has_retry()) ReportRetry(display.get(), id, ev.retry());
    if (ev.has_result()) {
      result = ev.result();
      display->Outcome(id, OutcomeName(result->outcome()), result->descriptor_().size());
    }
  }
  absl::Status s = FromGrpc(reader->Finish());
  if (s.ok() && !result.has_value()) s = absl::InternalError("WriteLayer ended without a result");
  if (!s.ok()) {
    display->Failed(id, s.message());
    return s;
  }
  display->Finish();
  if (env.json()) {
    rapidjson::StringBuffer buf;
    JsonWriter w(buf);
    w.StartObject();
    w.Key("descriptor");
    WriteProto(result->descriptor_(), &w);
    w.Key("outcome");
    WriteString(regd::v1::LayerResult::Outcome_Name(result->outcome()), &w);
    WriteTotals(display->totals(), &w);
    w.EndObject();
    PrintJsonLine(absl::string_view(buf.GetString(), buf.GetSize()));
  } else {
    PrintText(LayerResultText(*result));
  }
  return 0;
}

// ---- upload ----

// Hashes `path` (showing it as a phase of blob `id`) unless `digest` is given.
absl::StatusOr<FileDigest> DigestOf(const std::string& path, const std::string& digest,
                                    ProgressDisplay* display, const std::string& id,
                                    const CallGroup* group) {
  if (!digest.empty()) {
    absl::StatusOr<int64_t> size = RegularFileSize(path);
    if (!size.ok()) return size.status();
    return FileDigest{digest, *size};
  }
  display->SetPhase(id, "hashing");
  absl::StatusOr<FileDigest> d = HashFile(path, [&](int64_t done, int64_t total) {
    display->Progress(id, done, total);
    return !Interrupted() && (group == nullptr || !group->cancelled());
  });
  display->SetPhase(id, "");
  return d;
}

absl::StatusOr<UploadRequest> UploadRequestFrom(CommandEnv& env) {
  const ParsedArgs& a = env.args();
  UploadRequest req;
  req.repo = a.positionals()[0];
  req.path = a.positionals()[1];
  req.digest = a.Value("digest");
  req.media_type = a.Value("media-type");
  req.mount_from = a.Value("mount-from");
  absl::StatusOr<int64_t> chunk = a.Bytes("chunk-bytes", 1 << 20);
  if (!chunk.ok()) return chunk.status();
  if (*chunk < 1 || *chunk > kMaxChunkBytes) return UsageError("--chunk-bytes must be 1..8MiB");
  req.chunk_bytes = *chunk;
  absl::StatusOr<regd::v1::RetryConfig> retry = env.Retry();
  if (!retry.ok()) return retry.status();
  req.retry = *retry;
  return req;
}

void PrintUploadResult(const CommandEnv& env, const UploadOutcome& out,
                       const ProgressDisplay& display) {
  if (!env.json()) {
    Fields f = {{"outcome", OutcomeName(out.result.outcome())}};
    for (auto& kv : DescriptorFields(out.result.descriptor_())) f.push_back(std::move(kv));
    f.emplace_back("sent", absl::StrCat(out.bytes_sent, " bytes in ", out.passes,
                                        out.passes == 1 ? " pass" : " passes"));
    PrintText(FieldLines(f));
    return;
  }
  rapidjson::StringBuffer buf;
  JsonWriter w(buf);
  w.StartObject();
  w.Key("descriptor");
  WriteProto(out.result.descriptor_(), &w);
  w.Key("outcome");
  WriteString(regd::v1::LayerResult::Outcome_Name(out.result.outcome()), &w);
  w.Key("bytes_sent");
  w.Int64(out.bytes_sent);
  w.Key("passes");
  w.Int(out.passes);
  w.Key("send_from");
  w.StartArray();
  for (int64_t off : out.send_from) w.Int64(off);
  w.EndArray();
  WriteTotals(display.totals(), &w);
  w.EndObject();
  PrintJsonLine(absl::string_view(buf.GetString(), buf.GetSize()));
}

absl::StatusOr<int> RunUpload(CommandEnv& env) {
  absl::StatusOr<UploadRequest> req = UploadRequestFrom(env);
  if (!req.ok()) return req.status();
  absl::StatusOr<Connection*> conn = env.Connect(RegistryOfRepository(req->repo));
  if (!conn.ok()) return conn.status();
  std::unique_ptr<ProgressDisplay> display = env.NewDisplay();
  const std::string id = req->path;
  display->SetLabel(id, BaseName(req->path));
  absl::StatusOr<FileDigest> d = DigestOf(req->path, req->digest, display.get(), id, nullptr);
  if (!d.ok()) {
    display->Failed(id, d.status().message());
    return d.status();
  }
  req->digest = d->digest;
  req->size = d->size;
  display->SetLabel(id, absl::StrCat(ShortDigest(d->digest), " ", BaseName(req->path)));
  absl::StatusOr<UploadOutcome> out = UploadFile(**conn, *req, display.get(), id, nullptr);
  if (!out.ok()) {
    display->Failed(id, out.status().message());
    return out.status();
  }
  display->Outcome(id, OutcomeName(out->result.outcome()), out->result.descriptor_().size());
  display->Finish();
  PrintUploadResult(env, *out, *display);
  return 0;
}

// ---- push ----

struct PushFiles {
  std::string config;
  std::vector<std::string> layers;
};

absl::StatusOr<regd::v1::PushImageRequest> PushRequestFrom(CommandEnv& env, PushFiles* files) {
  const ParsedArgs& a = env.args();
  regd::v1::PushImageRequest req;
  req.set_ref(a.positionals()[0]);
  bool layout = a.Has("layout");
  if (layout == (a.Has("config") || a.Has("layer"))) {
    return UsageError("push takes --layout DIR, or --config FILE with --layer FILE...");
  }
  if (layout) {
    if (a.Has("upload"))
      return UsageError("--upload streams --config/--layer files; a --layout is read by regd");
    absl::StatusOr<std::string> dir = AbsolutePath(a.Value("layout"));
    if (!dir.ok()) return dir.status();
    req.mutable_layout()->set_path(*dir);
    req.mutable_layout()->set_ref_name(a.Value("ref-name"));
  } else {
    if (!a.Has("config")) return UsageError("--layer needs --config FILE");
    if (a.Has("ref-name")) return UsageError("--ref-name goes with --layout");
    regd::v1::ImageSpec* spec = req.mutable_image();
    files->config = a.Value("config");
    files->layers = a.Values("layer");
    spec->set_media_type(ManifestMediaType(a.Value("manifest-type"), false));
    if (absl::Status s = AddAnnotations(a, spec->mutable_annotations()); !s.ok()) return s;
  }
  absl::StatusOr<int> concurrency = Concurrency(a);
  if (!concurrency.ok()) return concurrency.status();
  req.set_concurrency(*concurrency);
  absl::StatusOr<regd::v1::RetryConfig> retry = env.Retry();
  if (!retry.ok()) return retry.status();
  *req.mutable_retry() = *retry;
  return req;
}

// The ImageSpec's blobs as files regd reads.
absl::Status SetFileSources(const ParsedArgs& a, const PushFiles& files,
                            regd::v1::ImageSpec* spec) {
  absl::StatusOr<std::string> config = AbsolutePath(files.config);
  if (!config.ok()) return config.status();
  spec->mutable_config()->set_path(*config);
  spec->mutable_config()->set_media_type(a.Value("config-media-type"));
  for (const std::string& layer : files.layers) {
    absl::StatusOr<std::string> path = AbsolutePath(layer);
    if (!path.ok()) return path.status();
    regd::v1::BlobSource* src = spec->add_layers();
    src->set_path(*path);
    src->set_media_type(a.Value("layer-media-type"));
  }
  return absl::OkStatus();
}

// Uploads the config and layers with UploadBlob (`concurrency` at a time),
// then names them by digest in the ImageSpec. The first failure cancels the rest.
class BlobStreamer {
 public:
  BlobStreamer(CommandEnv& env, Connection& conn, ProgressDisplay* display, const std::string& repo)
      : env_(env), conn_(conn), display_(display), repo_(repo) {}

  absl::Status Run(const PushFiles& files, int concurrency, const regd::v1::RetryConfig& retry,
                   regd::v1::ImageSpec* spec) {
    const ParsedArgs& a = env_.args();
    jobs_.push_back({files.config, a.Value("config-media-type"), "config"});
    for (size_t i = 0; i < files.layers.size(); ++i) {
      jobs_.push_back(
          {files.layers[i], a.Value("layer-media-type"), absl::StrCat("layer ", i + 1)});
    }
    retry_ = retry;
    for (Job& j : jobs_) display_->SetLabel(j.id, BaseName(j.path));
    std::vector<std::thread> workers;
    int n = std::min<int>(concurrency, static_cast<int>(jobs_.size()));
    for (int i = 0; i < n; ++i) workers.emplace_back([this] { Work(); });
    for (std::thread& t : workers) t.join();
    absl::MutexLock lock(&mu_);
    if (!first_error_.ok()) return first_error_;
    for (size_t i = 0; i < jobs_.size(); ++i) {
      regd::v1::BlobSource* src = i == 0 ? spec->mutable_config() : spec->add_layers();
      src->set_digest(jobs_[i].digest.digest);
      src->set_size(jobs_[i].digest.size);
      src->set_media_type(jobs_[i].media_type);
    }
    return absl::OkStatus();
  }

  std::vector<BlobOutcome> outcomes() const {
    absl::MutexLock lock(&mu_);
    return outcomes_;
  }

 private:
  struct Job {
    std::string path, media_type, id;
    FileDigest digest;
  };

  void Work() {
    for (size_t i = next_.fetch_add(1); i < jobs_.size(); i = next_.fetch_add(1)) {
      absl::Status s = One(jobs_[i]);
      if (!s.ok()) {
        display_->Failed(jobs_[i].id, s.message());
        absl::MutexLock lock(&mu_);
        if (first_error_.ok()) first_error_ = s;
        group_.CancelAll();
        return;
      }
    }
  }

  absl::Status One(Job& job) {
    if (group_.cancelled()) return absl::CancelledError("another blob failed");
    absl::StatusOr<FileDigest> d = DigestOf(job.path, "", display_, job.id, &group_);
    if (!d.ok()) return d.status();
    job.digest = *d;
    display_->SetLabel(job.id, absl::StrCat(ShortDigest(d->digest), " ", BaseName(job.path)));
    UploadRequest req;
    req.repo = repo_;
    req.path = job.path;
    req.digest = d->digest;
    req.size = d->size;
    req.media_type = job.media_type;
    req.retry = retry_;
    absl::StatusOr<UploadOutcome> out = UploadFile(conn_, req, display_, job.id, &group_);
    if (!out.ok()) return out.status();
    std::string outcome = OutcomeName(out->result.outcome());
    display_->Outcome(job.id, outcome, d->size);
    absl::MutexLock lock(&mu_);
    outcomes_.push_back({d->digest, d->size, outcome});
    return absl::OkStatus();
  }

  CommandEnv& env_;
  Connection& conn_;
  ProgressDisplay* const display_;
  const std::string repo_;
  std::vector<Job> jobs_;  // filled before the workers start; each worker owns the jobs it takes
  regd::v1::RetryConfig retry_;
  std::atomic<size_t> next_{0};
  CallGroup group_;
  mutable absl::Mutex mu_;
  absl::Status first_error_ ABSL_GUARDED_BY(mu_);
  std::vector<BlobOutcome> outcomes_ ABSL_GUARDED_BY(mu_);
};

// Reads an image stream's events to the end: PushImage's or PullImage's
// (both carry blob_digest with progress, retry, layer and result{descriptor}).
// With `blob_events` false (the blobs were streamed before) per-blob events
// are not shown again. `start` opens the call on the context it is given.
template <typename Event, typename Start>
absl::StatusOr<regd::v1::Descriptor> ReadImageEvents(Connection& conn, Start start,
                                                     ProgressDisplay* display, bool blob_events,
                                                     std::vector<BlobOutcome>* outcomes,
                                                     absl::string_view rpc) {
  grpc::ClientContext ctx;
  conn.PrepareStream(&ctx);
  ScopedCall scoped(&ctx);
  std::unique_ptr<grpc::ClientReader<Event>> reader = start(&ctx);
  Event ev;
  std::optional<regd::v1::Descriptor> result;
  while (reader->Read(&ev)) {
    const std::string& id = ev.blob_digest();
    switch (ev.event_case()) {
      case Event::kProgress:
        if (blob_events) display->Progress(id, ev.progress().complete(), ev.progress().total());
        break;
      case Event::kRetry:
        ReportRetry(display, id.empty() ? "manifest" : id, ev.retry());
        break;
      case Event::kLayer: {
        if (!blob_events) break;
        const regd::v1::LayerResult& l = ev.layer();
        std::string digest = id.empty() ? l.descriptor_().digest() : id;
        std::string outcome = OutcomeName(l.outcome());
        display->Outcome(digest, outcome, l.descriptor_().size());
        outcomes->push_back({digest, l.descriptor_().size(), outcome});
        break;
      }
      case Event::kResult:
        result = ev.result().descriptor_();
        break;
      default:
        break;
    }
  }
  absl::Status s = FromGrpc(reader->Finish());
  if (s.ok() && !result.has_value()) {
    s = absl::InternalError(absl::StrCat(rpc, " ended without a result"));
  }
  if (!s.ok()) return s;
  return *result;
}

absl::StatusOr<regd::v1::Descriptor> RunPushImage(Connection& conn,
                                                  const regd::v1::PushImageRequest& req,
                                                  ProgressDisplay* display, bool blob_events,
                                                  std::vector<BlobOutcome>* outcomes) {
  return ReadImageEvents<regd::v1::PushEvent>(
      conn, [&](grpc::ClientContext* ctx) { return conn.registry().PushImage(ctx, req); }, display,
      blob_events, outcomes, "PushImage");
}

// The result of push and pull: `fields` ("ref", ...), then the descriptor;
// with -o json also the blobs' outcomes and the totals.
void PrintImageResult(const CommandEnv& env, const Fields& fields, const regd::v1::Descriptor& d,
                      const std::vector<BlobOutcome>& outcomes, const ProgressDisplay& display) {
  if (!env.json()) {
    Fields f = fields;
    for (auto& kv : DescriptorFields(d)) f.push_back(std::move(kv));
    PrintText(FieldLines(f));
    return;
  }
  rapidjson::StringBuffer buf;
  JsonWriter w(buf);
  w.StartObject();
  for (const auto& [key, value] : fields) {
    w.Key(key.c_str());
    WriteString(value, &w);
  }
  w.Key("descriptor");
  WriteProto(d, &w);
  w.Key("blobs");
  WriteBlobOutcomes(outcomes, &w);
  WriteTotals(display.totals(), &w);
  w.EndObject();
  PrintJsonLine(absl::string_view(buf.GetString(), buf.GetSize()));
}

absl::StatusOr<int> RunPush(CommandEnv& env) {
  PushFiles files;
  absl::StatusOr<regd::v1::PushImageRequest> req = PushRequestFrom(env, &files);
  if (!req.ok()) return req.status();
  const std::string& ref = req->ref();
  absl::StatusOr<Connection*> conn = env.Connect(RegistryOfReference(ref));
  if (!conn.ok()) return conn.status();
  std::unique_ptr<ProgressDisplay> display = env.NewDisplay();
  bool upload = env.args().Has("upload");
  std::vector<BlobOutcome> outcomes;
  if (upload) {
    std::string repo(absl::string_view(ref).substr(0, ref.find('@')));
    size_t colon = repo.rfind(':');
    if (colon != std::string::npos && repo.find('/', colon) == std::string::npos)
      repo.resize(colon);
    BlobStreamer streamer(env, **conn, display.get(), repo);
    absl::Status s = streamer.Run(files, req->concurrency(), req->retry(), req->mutable_image());
    outcomes = streamer.outcomes();
    if (!s.ok()) return s;
  } else if (req->has_image()) {
    if (absl::Status s = SetFileSources(env.args(), files, req->mutable_image()); !s.ok()) return s;
  }
  absl::StatusOr<regd::v1::Descriptor> d =
      RunPushImage(**conn, *req, display.get(), !upload, &outcomes);
  if (!d.ok()) return d.status();
  display->Finish();
  PrintImageResult(env, {{"ref", ref}}, *d, outcomes, *display);
  return 0;
}

// ---- pull ----

// The index.json name regd gives a pull without --ref-name: the reference's
// tag (after normalisation: "latest" when it has neither), else its digest.
std::string DefaultRefName(absl::string_view ref) {
  absl::StatusOr<regd::Reference> r = regd::ParseReference(ref);
  if (!r.ok()) return "";  // regd refuses the reference and says why
  return r->tag.empty() ? r->digest : r->tag;
}

absl::StatusOr<regd::v1::PullImageRequest> PullRequestFrom(CommandEnv& env) {
  const ParsedArgs& a = env.args();
  regd::v1::PullImageRequest req;
  req.set_ref(a.positionals()[0]);
  if (!a.Has("layout")) return UsageError("pull needs --layout DIR");
  absl::StatusOr<std::string> dir = AbsolutePath(a.Value("layout"));
  if (!dir.ok()) return dir.status();
  req.mutable_layout()->set_path(*dir);
  req.mutable_layout()->set_ref_name(a.Value("ref-name"));
  if (a.Has("platform") && a.Has("all-platforms")) {
    return UsageError("--platform and --all-platforms exclude each other");
  }
  if (a.Has("platform")) {
    absl::StatusOr<PlatformSpec> p = ParsePlatform(a.Value("platform"));
    if (!p.ok()) return p.status();
    req.mutable_platform()->set_os(p->os);
    req.mutable_platform()->set_architecture(p->architecture);
    req.mutable_platform()->set_variant(p->variant);
  }
  req.set_all_platforms(a.Has("all-platforms"));
  absl::StatusOr<int> concurrency = Concurrency(a);
  if (!concurrency.ok()) return concurrency.status();
  req.set_concurrency(*concurrency);
  // Unset, regd applies its read policy (short delays); set, the fields given.
  if (env.RetryGiven()) {
    absl::StatusOr<regd::v1::RetryConfig> retry = env.Retry();
    if (!retry.ok()) return retry.status();
    *req.mutable_retry() = *retry;
  }
  return req;
}

absl::StatusOr<int> RunPull(CommandEnv& env) {
  absl::StatusOr<regd::v1::PullImageRequest> req = PullRequestFrom(env);
  if (!req.ok()) return req.status();
  const std::string& ref = req->ref();
  absl::StatusOr<Connection*> conn = env.Connect(RegistryOfReference(ref));
  if (!conn.ok()) return conn.status();
  std::unique_ptr<ProgressDisplay> display = env.NewDisplay();
  std::vector<BlobOutcome> outcomes;
  absl::StatusOr<regd::v1::Descriptor> d = ReadImageEvents<regd::v1::PullEvent>(
      **conn, [&](grpc::ClientContext* ctx) { return (*conn)->registry().PullImage(ctx, *req); },
      display.get(), /*blob_events=*/true, &outcomes, "PullImage");
  if (!d.ok()) return d.status();
  display->Finish();
  const std::string& name = req->layout().ref_name();
  PrintImageResult(env,
                   {{"ref", ref},
                    {"layout", req->layout().path()},
                    {"ref_name", name.empty() ? DefaultRefName(ref) : name}},
                   *d, outcomes, *display);
  return 0;
}

// ---- push-index ----

absl::StatusOr<regd::v1::IndexManifest> IndexEntry(const std::string& arg) {
  regd::v1::IndexManifest m;
  std::string ref = arg;
  size_t at = arg.rfind('@');
  if (at != std::string::npos) {
    absl::string_view tail = absl::string_view(arg).substr(at + 1);
    if (absl::StrContains(tail, '/') && !absl::StrContains(tail, ':')) {
      absl::StatusOr<PlatformSpec> p = ParsePlatform(tail);
      if (!p.ok()) return p.status();
      m.mutable_platform()->set_os(p->os);
      m.mutable_platform()->set_architecture(p->architecture);
      m.mutable_platform()->set_variant(p->variant);
      ref = arg.substr(0, at);
    }
  }
  if (ref.empty()) return UsageError(absl::StrCat("--manifest \"", arg, "\" names no manifest"));
  m.set_ref(ref);
  return m;
}

absl::StatusOr<int> RunPushIndex(CommandEnv& env) {
  const ParsedArgs& a = env.args();
  regd::v1::PushIndexRequest req;
  req.set_ref(a.positionals()[0]);
  if (!a.Has("manifest")) return UsageError("push-index needs at least one --manifest");
  for (const std::string& m : a.Values("manifest")) {
    absl::StatusOr<regd::v1::IndexManifest> entry = IndexEntry(m);
    if (!entry.ok()) return entry.status();
    *req.add_manifests() = *entry;
  }
  req.set_media_type(ManifestMediaType(a.Value("media-type"), true));
  if (absl::Status s = AddAnnotations(a, req.mutable_annotations()); !s.ok()) return s;
  absl::StatusOr<Connection*> conn = env.Connect(RegistryOfReference(req.ref()));
  if (!conn.ok()) return conn.status();
  regd::v1::Descriptor res;
  grpc::ClientContext ctx;
  (*conn)->PrepareUnary(&ctx);
  ScopedCall scoped(&ctx);
  absl::Status s = FromGrpc((*conn)->registry().PushIndex(&ctx, req, &res));
  if (!s.ok()) return s;
  if (env.json()) {
    PrintJsonLine(ProtoToJson(res));
  } else {
    Fields f = {{"ref", req.ref()}};
    for (auto& kv : DescriptorFields(res)) f.push_back(std::move(kv));
    PrintText(FieldLines(f));
  }
  return 0;
}

}  // namespace

std::vector<Command> WriteCommands() {
  const std::vector<OptionSpec> blob_options = {
      {"digest", 0, "DIGEST", "the blob's digest (default: computed)"},
      {"media-type", 0, "TYPE", "the blob's media type (default: OCI gzip layer)"},
      {"mount-from", 0, "REPO", "a repository on the same registry to mount the blob from"},
  };
  return {
      {"write-layer", "write-layer REPO FILE [--digest D] [--media-type T] [--mount-from R]",
       "upload one blob from a file the daemon reads (WriteLayer)",
       "WriteLayer. FILE is a path on the daemon's machine, inside its --allowed_paths\n"
       "(a relative path is made absolute here first).",
       With(blob_options, RetryOptions()), 2, 2, RunWriteLayer},
      {"upload",
       "upload REPO FILE [--digest D] [--media-type T] [--mount-from R] [--chunk-bytes N]",
       "stream one blob from a local file (UploadBlob): works against a remote gateway",
       "UploadBlob. regdctl hashes FILE (unless --digest is given), streams it in\n"
       "--chunk-bytes messages (default 1MiB, at most 8MiB) from every offset regd asks\n"
       "for (send_from: again after a registry fault), and keeps the stream open until\n"
       "the result. EXISTED, MOUNTED and SHARED blobs send no bytes.",
       With(With(blob_options, {{"chunk-bytes", 0, "N", "bytes per chunk message (default 1MiB)"}}),
            RetryOptions()),
       2, 2, RunUpload},
      {"push",
       "push REF (--layout DIR [--ref-name N] | --config FILE --layer FILE...) [--upload] "
       "[--concurrency N]",
       "push an image (PushImage): its blobs, then its manifest",
       "PushImage. --layout DIR is an OCI image layout the daemon reads (--ref-name picks\n"
       "an entry of its index.json). --config/--layer name files the daemon reads, and\n"
       "regd builds the manifest (--manifest-type oci|docker, --annotation K=V).\n"
       "With --upload, regdctl first streams the config and layers with UploadBlob\n"
       "(--concurrency at a time), then pushes the image naming them by digest, so no\n"
       "file needs to be on the daemon's machine (a remote gateway).",
       With({{"layout", 0, "DIR", "an OCI image layout directory (read by the daemon)"},
             {"ref-name", 0, "NAME",
              "the layout's index.json entry (org.opencontainers.image.ref.name)"},
             {"config", 0, "FILE", "the image config"},
             {"layer", 0, "FILE", "a layer, in order (repeat the option)", true},
             {"upload", 0, "", "stream --config/--layer from here with UploadBlob first"},
             {"concurrency", 0, "N", "blobs uploaded at once (default 4)"},
             {"manifest-type", 0, "TYPE", "oci (default) or docker"},
             {"config-media-type", 0, "TYPE", "the config's media type (default: OCI config)"},
             {"layer-media-type", 0, "TYPE", "the layers' media type (default: OCI gzip layer)"},
             {"annotation", 0, "K=V", "a manifest annotation (repeatable)", true}},
            RetryOptions()),
       1, 1, RunPush},
      {"pull",
       "pull REF --layout DIR [--ref-name N] [--platform os/arch[/variant] | --all-platforms] "
       "[--concurrency N]",
       "pull an image into an OCI image layout on the daemon's disk (PullImage)",
       "PullImage. DIR is an OCI image layout directory on the daemon's machine, inside\n"
       "its --allowed_paths (a relative path is made absolute here first); regd creates\n"
       "it or adds to it. Blobs download --concurrency at a time into partial files that\n"
       "are verified and renamed; blobs already there are verified and skipped (existed),\n"
       "and faults resume from the bytes on disk. index.json names the image --ref-name\n"
       "(default: REF's tag, else its digest). An index needs --platform (that child) or\n"
       "--all-platforms (the whole index): without either, FAILED_PRECONDITION (exit 9).\n"
       "Unless --max-attempts or --retry-delay is given, regd retries reads after short\n"
       "delays (200ms, doubling, at most 3s).",
       With({{"layout", 0, "DIR", "the OCI image layout to write (on the daemon's side)"},
             {"ref-name", 0, "NAME",
              "the index.json entry's name (org.opencontainers.image.ref.name)"},
             {"platform", 0, "os/arch[/variant]", "from an index, pull this platform's image"},
             {"all-platforms", 0, "", "from an index, pull every image and the index itself"},
             {"concurrency", 0, "N", "blobs downloaded at once (default 4)"}},
            RetryOptions("200ms")),
       1, 1, RunPull},
      {"push-index",
       "push-index REF --manifest REF_OR_DIGEST[@os/arch[/variant]]...",
       "push an index (manifest list) of manifests already in the repository (PushIndex)",
       "PushIndex. Each --manifest is a tag or digest in REF's repository (or a full\n"
       "reference to it), optionally with its platform after an @ (default: read from\n"
       "the child's config).",
       {{"manifest", 0, "M", "an entry: tag, digest or reference[@os/arch[/variant]] (repeatable)",
         true},
        {"media-type", 0, "TYPE", "oci (default) or docker"},
        {"annotation", 0, "K=V", "an index annotation (repeatable)", true}},
       1,
       1,
       RunPushIndex},
  };
}

}  // namespace regdctl
