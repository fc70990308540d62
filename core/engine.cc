#include "core/engine.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/digest.h"
#include "core/http/curl_transport.h"
#include "core/status_macros.h"

namespace regd {
namespace {

// Idempotent reads retry a little on their own: a flaky network should not
// fail an Inspect. Writes carry the caller's RetryConfig instead.
constexpr RetryPolicy kReadRetry{3, absl::Milliseconds(200), 2.0, 0.2, absl::Seconds(2)};

std::vector<std::string> Pull(const Repository& repo) { return {PullScope(repo.path)}; }

std::string ManifestPath(const Repository& repo, absl::string_view id) {
  return absl::StrCat("/v2/", repo.path, "/manifests/", id);
}
std::string BlobPath(const Repository& repo, absl::string_view digest) {
  return absl::StrCat("/v2/", repo.path, "/blobs/", digest);
}

int64_t ContentLength(const HttpResponse& resp) {
  int64_t n = -1;
  auto h = resp.Header("content-length");
  if (h.has_value() && absl::SimpleAtoi(*h, &n)) return n;
  return -1;
}

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

Engine::Engine(EngineOptions options)
    : options_(std::move(options)), inline_budget_(options_.inline_budget_bytes) {}

Engine::~Engine() = default;

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(EngineOptions options) {
  for (const std::string& host : options.insecure_registries) {
    if (host.empty() || host.find('/') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--insecure_registries: \"", host, "\" is not a host[:port]"));
    }
    options.registries[host].plain_http = true;
  }
  EgressOptions eo;
  eo.allowed_registries = options.allowed_registries;
  for (const std::string& p : options.allowed_registries) {
    absl::Status st = EgressPolicy::ValidatePattern(p);
    if (!st.ok())
      return absl::InvalidArgumentError(absl::StrCat("--allowed_registries: ", st.message()));
  }
  for (const auto& [name, rc] : options.registries) {
    if (rc.plain_http) eo.insecure_registries.push_back(name);
  }
  // Named exactly (no wildcard) anywhere: such a host may be link-local.
  for (const std::string& p : options.allowed_registries) {
    if (!absl::StartsWith(p, "*.")) eo.explicit_hosts.push_back(p);
  }
  for (const auto& [name, rc] : options.registries) eo.explicit_hosts.push_back(name);
  auto egress = std::make_shared<const EgressPolicy>(std::move(eo));
  options.transport.egress = egress;
  std::unique_ptr<Engine> e(new Engine(std::move(options)));
  e->egress_ = egress;
  e->clock_ = e->options_.clock != nullptr ? e->options_.clock : SystemClock();
  e->transport_ = e->options_.transport_override
                      ? e->options_.transport_override
                      : std::make_shared<CurlTransport>(e->options_.transport);
  CredentialStore::Options co;
  co.docker_config_dir = e->options_.docker_config_dir;
  for (const auto& [name, rc] : e->options_.registries) {
    if (!rc.credentials_file.empty()) co.credentials_files[name] = rc.credentials_file;
  }
  e->credentials_ = std::make_unique<CredentialStore>(std::move(co), e->clock_);
  e->auth_ = std::make_unique<Authenticator>(e->transport_.get(), e->clock_, e->egress_.get());
  e->client_ =
      std::make_unique<RegistryClient>(e->transport_.get(), e->auth_.get(), e->egress_.get());
  e->uploads_ = std::make_unique<SharedUploads>();
  Engine* raw = e.get();
  e->slots_ = std::make_unique<RegistrySlots>([raw](const std::string& registry) {
    const RegistryConfig* rc = raw->ConfigFor(registry);
    return rc != nullptr && rc->concurrency > 0 ? rc->concurrency
                                                : raw->options_.default_registry_concurrency;
  });
  return e;
}

const RegistryConfig* Engine::ConfigFor(const std::string& registry) const {
  auto it = options_.registries.find(registry);
  return it == options_.registries.end() ? nullptr : &it->second;
}

Endpoint Engine::EndpointFor(const std::string& registry) const {
  Endpoint ep;
  ep.registry = registry;
  const RegistryConfig* rc = ConfigFor(registry);
  Repository r{registry, ""};
  ep.base_url = absl::StrCat(rc != nullptr && rc->plain_http ? "http://" : "https://", r.ApiHost());
  if (rc != nullptr) ep.ca_bundle = rc->ca_bundle;
  return ep;
}

std::optional<absl::Duration> Engine::RetryAfterOf(const absl::StatusOr<HttpResponse>& resp) {
  if (!resp.ok()) return std::nullopt;
  std::optional<std::string> value = resp->Header("retry-after");
  if (!value.has_value()) return std::nullopt;
  return ParseRetryAfter(*value, clock_->Now());
}

CredentialChain Engine::ChainFor(const CallContext& ctx) const {
  CredentialChain chain;
  chain.own = ctx.credentials.get();
  chain.tenant = ctx.tenant_credentials.get();
  chain.daemon = credentials_.get();
  return chain;
}

absl::StatusOr<HttpResponse> Engine::SendRead(const CallContext& ctx, const Repository& repo,
                                              HttpRequest req) {
  Endpoint ep = EndpointFor(repo.registry);
  req.cancelled = ctx.cancelled;
  const CredentialChain who = ChainFor(ctx);
  for (int attempt = 1;; ++attempt) {
    absl::StatusOr<HttpResponse> resp = client_->Send(who, ep, Pull(repo), req);
    bool retry =
        resp.ok() ? IsRetryableHttpStatus(resp->status) : absl::IsUnavailable(resp.status());
    if (!retry || attempt >= kReadRetry.max_attempts) return resp;
    // A read waits out a Retry-After of at most 10 s; it fails rather than park.
    absl::Duration wait = NextRetryWait(kReadRetry, attempt, RetryAfterOf(resp), absl::Seconds(10));
    if (!SleepUnlessCancelled(wait, req.cancelled.get())) return absl::CancelledError("cancelled");
  }
}

absl::StatusOr<Engine::Fetched> Engine::FetchManifest(const CallContext& ctx,
                                                      const Repository& repo,
                                                      const std::string& identifier) {
  HttpRequest req;
  req.method = "GET";
  req.url = ManifestPath(repo, identifier);
  req.headers.emplace_back("Accept", std::string(media::kManifestAccept));
  req.max_body = kMaxManifestBytes;
  absl::StatusOr<HttpResponse> resp = SendRead(ctx, repo, std::move(req));
  if (absl::IsResourceExhausted(resp.status())) {
    return absl::ResourceExhaustedError(
        absl::StrCat("manifest larger than ", kMaxManifestBytes, " bytes"));
  }
  if (!resp.ok()) return resp.status();
  if (resp->status != 200) {
    return StatusFromHttp(*resp, "GET manifest", NotFoundMeaning::kImage);
  }
  Fetched f;
  f.raw = std::move(resp->body);
  std::string header_digest = resp->Header("docker-content-digest").value_or("");
  // Verify against the digest we asked for, else the one the registry claims,
  // else just name the content by its sha256.
  std::string expect =
      absl::StartsWith(identifier, "sha") && identifier.find(':') != std::string::npos
          ? identifier
          : header_digest;
  if (!expect.empty() && ValidateDigest(expect).ok()) {
    RETURN_IF_ERROR(VerifyDigest(f.raw, expect, "manifest"));
    f.digest = expect;
  } else {
    f.digest = Sha256Digest(f.raw);
  }
  std::string ct = BareMediaType(resp->Header("content-type").value_or(""));
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

absl::StatusOr<std::string> Engine::FetchSmallBlob(const CallContext& ctx, const Repository& repo,
                                                   const Descriptor& d) {
  if (d.size > static_cast<int64_t>(kMaxManifestBytes)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("config blob ", d.digest, " is larger than ", kMaxManifestBytes, " bytes"));
  }
  HttpRequest req;
  req.method = "GET";
  req.url = BlobPath(repo, d.digest);
  req.follow_redirects = true;
  req.max_body = kMaxManifestBytes;
  ASSIGN_OR_RETURN(HttpResponse resp, SendRead(ctx, repo, std::move(req)));
  if (resp.status != 200) return StatusFromHttp(resp, "GET config blob", NotFoundMeaning::kImage);
  RETURN_IF_ERROR(VerifyDigest(resp.body, d.digest, "config blob"));
  return std::move(resp.body);
}

absl::StatusOr<std::map<std::string, std::string>> Engine::LabelsOf(const CallContext& ctx,
                                                                    const Repository& repo,
                                                                    const Manifest& m) {
  ASSIGN_OR_RETURN(std::string raw, FetchSmallBlob(ctx, repo, m.config));
  ASSIGN_OR_RETURN(ImageConfigInfo info, ParseImageConfig(raw));
  return info.labels;
}

// Resolves `ref` to a single manifest, choosing from an index by platform.
// `fetched` holds the top manifest when it was fetched already (raw non-empty).
absl::StatusOr<Manifest> Engine::ResolveImage(const CallContext& ctx, const Reference& ref,
                                              const std::optional<Platform>& platform,
                                              Fetched* fetched) {
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

absl::StatusOr<InspectResult> Engine::Inspect(const CallContext& ctx, absl::string_view ref_text,
                                              const std::optional<Platform>& platform) {
  ASSIGN_OR_RETURN(Reference ref, ParseReference(ref_text));
  RETURN_IF_ERROR(ctx.Allow(ref.repo, Action::kPull));
  InspectResult out;
  Fetched top;
  if (!platform.has_value()) {
    ASSIGN_OR_RETURN(top, FetchManifest(ctx, ref.repo, ref.Identifier()));
    if (top.kind == ManifestKind::kIndex) {
      ASSIGN_OR_RETURN(Index idx, ParseIndex(top.raw, top.media_type));
      out.schema_version = idx.schema_version;
      out.media_type = top.media_type;
      out.digest = top.digest;
      out.manifests = idx.manifests;
      if (std::optional<size_t> def = DefaultIndexEntry(idx)) {
        ASSIGN_OR_RETURN(Fetched child, FetchManifest(ctx, ref.repo, idx.manifests[*def].digest));
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

absl::StatusOr<ImageResult> Engine::GetImage(const CallContext& ctx, absl::string_view ref_text,
                                             const std::optional<Platform>& platform) {
  ASSIGN_OR_RETURN(Reference ref, ParseReference(ref_text));
  RETURN_IF_ERROR(ctx.Allow(ref.repo, Action::kPull));
  Fetched f;
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

absl::StatusOr<HttpResponse> Engine::HeadManifest(const CallContext& ctx, const Reference& ref) {
  HttpRequest req;
  req.method = "HEAD";
  req.url = ManifestPath(ref.repo, ref.Identifier());
  req.headers.emplace_back("Accept", std::string(media::kManifestAccept));
  return SendRead(ctx, ref.repo, std::move(req));
}

absl::StatusOr<bool> Engine::Exists(const CallContext& ctx, absl::string_view ref_text) {
  ASSIGN_OR_RETURN(Reference ref, ParseReference(ref_text));
  RETURN_IF_ERROR(ctx.Allow(ref.repo, Action::kPull));
  ASSIGN_OR_RETURN(HttpResponse resp, HeadManifest(ctx, ref));
  if (resp.status == 200) return true;
  if (resp.status == 404) return false;
  return StatusFromHttp(resp, "HEAD manifest", NotFoundMeaning::kImage);
}

absl::StatusOr<Descriptor> Engine::GetDescriptor(const CallContext& ctx,
                                                 absl::string_view ref_text) {
  ASSIGN_OR_RETURN(Reference ref, ParseReference(ref_text));
  RETURN_IF_ERROR(ctx.Allow(ref.repo, Action::kPull));
  ASSIGN_OR_RETURN(HttpResponse resp, HeadManifest(ctx, ref));
  if (resp.status != 200) return StatusFromHttp(resp, "HEAD manifest", NotFoundMeaning::kImage);
  Descriptor d;
  d.media_type = BareMediaType(resp.Header("content-type").value_or(""));
  d.digest = resp.Header("docker-content-digest").value_or("");
  if (!ValidateDigest(d.digest).ok()) d.digest.clear();  // garbage is no answer
  d.size = ContentLength(resp);
  if (d.digest.empty() || d.size < 0 ||
      (!IsIndexMediaType(d.media_type) && !IsManifestMediaType(d.media_type))) {
    // The HEAD did not tell us enough: GET the manifest and hash it.
    ASSIGN_OR_RETURN(Fetched f, FetchManifest(ctx, ref.repo, ref.Identifier()));
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

absl::Status Engine::ReadBlob(const CallContext& ctx, absl::string_view repo_text,
                              absl::string_view digest, int64_t offset,
                              const std::function<bool(absl::string_view)>& sink,
                              size_t chunk_bytes) {
  ASSIGN_OR_RETURN(Repository repo, ParseRepository(repo_text));
  RETURN_IF_ERROR(ctx.Allow(repo, Action::kPull));
  const CancelFlag& cancelled = ctx.cancelled;
  const CredentialChain who = ChainFor(ctx);
  RETURN_IF_ERROR(ValidateDigest(digest));
  if (offset < 0) return absl::InvalidArgumentError("offset must not be negative");
  ASSIGN_OR_RETURN(Digester hasher, Digester::ForDigest(digest));
  std::string buf;
  buf.reserve(chunk_bytes);
  bool started = false;
  int64_t skip = 0;  // bytes to drop when the registry ignores our Range
  bool consumer_stopped = false;
  auto flush = [&]() -> bool {
    if (buf.empty() || consumer_stopped) return !consumer_stopped;
    consumer_stopped = !sink(buf);
    buf.clear();
    return !consumer_stopped;
  };
  HttpRequest req;
  req.method = "GET";
  req.url = BlobPath(repo, digest);
  req.follow_redirects = true;
  req.cancelled = cancelled;
  if (offset > 0) req.headers.emplace_back("Range", absl::StrCat("bytes=", offset, "-"));
  const Endpoint ep = EndpointFor(repo.registry);
  req.on_body = [&](long status, absl::string_view data) -> bool {
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
  absl::StatusOr<HttpResponse> resp = client_->Send(who, ep, Pull(repo), req);
  if (resp.ok() && resp->status == 416 && offset > 0) {
    // Some registries (go-containerregistry's) take only closed ranges: ask
    // for the blob's size and name the last byte.
    HttpRequest head;
    head.method = "HEAD";
    head.url = BlobPath(repo, digest);
    head.follow_redirects = true;
    ASSIGN_OR_RETURN(HttpResponse h, SendRead(ctx, repo, std::move(head)));
    const int64_t size = ContentLength(h);
    if (h.status == 200 && offset < size) {
      req.headers.back().second = absl::StrCat("bytes=", offset, "-", size - 1);
      started = false;
      resp = client_->Send(who, ep, Pull(repo), req);
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
