#include "server/metrics.h"

#include <exception>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace regd {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;

// Seconds: from a cached HEAD to a multi-GiB push.
const Histogram::BucketBoundaries& CallBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
  return *b;
}
const Histogram::BucketBoundaries& RequestBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  return *b;
}

std::string StatusClass(long status) {
  if (status <= 0) return "error";  // no HTTP answer (connection, TLS, timeout)
  return absl::StrCat(status / 100, "xx");
}

// "INVALID_ARGUMENT" → the go-grpc-prometheus spelling "InvalidArgument".
std::string CodeName(absl::StatusCode code) {
  std::string upper = absl::StatusCodeToString(code);
  if (code == absl::StatusCode::kOk) return "OK";
  if (code == absl::StatusCode::kCancelled) return "Canceled";  // Go's spelling
  std::string out;
  bool start = true;
  for (char c : upper) {
    if (c == '_') {
      start = true;
      continue;
    }
    out.push_back(start ? c : absl::ascii_tolower(c));
    start = false;
  }
  return out;
}

}  // namespace

Metrics::Metrics(Options options)
    : options_(std::move(options)), registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::Registry& r = *registry_;
  started_ = &BuildCounter()
                  .Name("grpc_server_started_total")
                  .Help("RPCs started on the server.")
                  .Register(r);
  handled_ = &BuildCounter()
                  .Name("grpc_server_handled_total")
                  .Help("RPCs completed on the server, by status code.")
                  .Register(r);
  handling_seconds_ = &BuildHistogram()
                           .Name("grpc_server_handling_seconds")
                           .Help("Time from the start of an RPC to its status, in seconds.")
                           .Register(r);
  streams_in_flight_ = &BuildGauge()
                            .Name("regd_streams_in_flight")
                            .Help("Streaming RPCs running now.")
                            .Register(r)
                            .Add({});
  requests_ = &BuildCounter()
                   .Name("regd_registry_requests_total")
                   .Help(
                       "HTTP requests to registries and their token services, by registry, "
                       "operation, method and status class (error: no HTTP answer).")
                   .Register(r);
  request_seconds_ = &BuildHistogram()
                          .Name("regd_registry_request_duration_seconds")
                          .Help("Time of one HTTP exchange with a registry, in seconds.")
                          .Register(r);
  sent_bytes_ = &BuildCounter()
                     .Name("regd_registry_sent_bytes_total")
                     .Help("Request body bytes sent to registries.")
                     .Register(r);
  received_bytes_ = &BuildCounter()
                         .Name("regd_registry_received_bytes_total")
                         .Help("Response body bytes received from registries.")
                         .Register(r);
  blobs_ = &BuildCounter()
                .Name("regd_blobs_total")
                .Help(
                    "Blobs of write calls by outcome: uploaded, existed, mounted, shared, "
                    "failed, cancelled.")
                .Register(r);
  retries_ = &BuildCounter()
                  .Name("regd_retries_total")
                  .Help("Retries by reason (the status code of the failure, or handover).")
                  .Register(r);
  uploads_in_flight_ = &BuildGauge()
                            .Name("regd_uploads_in_flight")
                            .Help("Blob uploads running now.")
                            .Register(r)
                            .Add({});
  slot_waits_ = &BuildCounter()
                     .Name("regd_upload_slot_waits_total")
                     .Help("Blob uploads that waited for one of their registry's upload slots.")
                     .Register(r)
                     .Add({});
  slot_wait_seconds_ = &BuildHistogram()
                            .Name("regd_upload_slot_wait_seconds")
                            .Help("Time blob uploads waited for an upload slot, in seconds.")
                            .Register(r)
                            .Add({}, RequestBuckets());
  token_fetches_ = &BuildCounter()
                        .Name("regd_token_fetches_total")
                        .Help("Bearer token fetches from token services, by registry and result.")
                        .Register(r);
  ratelimit_remaining_ = &BuildGauge()
                              .Name("regd_registry_ratelimit_remaining")
                              .Help("The registry's last RateLimit-Remaining, by registry.")
                              .Register(r);
  auto& cache_requests = BuildCounter()
                             .Name("regd_cache_requests_total")
                             .Help(
                                 "Lookups in the metadata cache (manifests and configs by "
                                 "digest), by result: hit or miss.")
                             .Register(r);
  cache_hits_ = &cache_requests.Add({{"result", "hit"}});
  cache_misses_ = &cache_requests.Add({{"result", "miss"}});
  cache_bytes_ = &BuildGauge()
                      .Name("regd_cache_bytes")
                      .Help("Bytes the metadata cache holds (--cache_bytes bounds it).")
                      .Register(r)
                      .Add({});
  BuildGauge()
      .Name("regd_build_info")
      .Help("regd's version; always 1.")
      .Register(r)
      .Add({{"version", options_.version}})
      .Set(1);
}

Metrics::~Metrics() = default;

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Start(Options options) {
  std::unique_ptr<Metrics> m(new Metrics(options));
  if (options.listen.empty()) return m;
  // prometheus-cpp reports a listener it cannot open by throwing: caught
  // here, so nothing crosses into the rest of regd.
  try {
    m->exposer_ = std::make_unique<prometheus::Exposer>(options.listen, 2);
    m->exposer_->RegisterCollectable(m->registry_);
    std::vector<int> ports = m->exposer_->GetListeningPorts();
    m->port_ = ports.empty() ? 0 : ports[0];
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("--metrics_listen=", options.listen, ": cannot listen (", e.what(), ")"));
  }
  return m;
}

std::string Metrics::KnownRegistryLabel(const std::string& host) {
  absl::MutexLock lock(&mu_);
  return registries_.count(host) > 0 ? host : "other";
}

std::string Metrics::RegistryLabel(const std::string& host) {
  absl::MutexLock lock(&mu_);
  if (registries_.count(host) > 0) return host;
  if (registries_.size() >= options_.max_registries) return "other";
  registries_.insert(host);
  return host;
}

prometheus::Labels Metrics::CallLabels(absl::string_view method, absl::string_view type,
                                       absl::string_view tenant) const {
  prometheus::Labels l{{"grpc_service", "regd.v1.Registry"},
                       {"grpc_method", std::string(method)},
                       {"grpc_type", std::string(type)}};
  if (options_.tenant_label) l["tenant"] = tenant.empty() ? "none" : std::string(tenant);
  return l;
}

void Metrics::CallStarted(absl::string_view method, absl::string_view type,
                          absl::string_view tenant) {
  started_->Add(CallLabels(method, type, tenant)).Increment();
}

void Metrics::CallHandled(absl::string_view method, absl::string_view type,
                          absl::string_view tenant, absl::StatusCode code, absl::Duration took) {
  prometheus::Labels l = CallLabels(method, type, tenant);
  handling_seconds_->Add(l, CallBuckets()).Observe(absl::ToDoubleSeconds(took));
  l["grpc_code"] = CodeName(code);
  handled_->Add(l).Increment();
}

void Metrics::StreamsInFlight(int delta) { streams_in_flight_->Increment(delta); }

void Metrics::RegistryRequest(const std::string& host, absl::string_view operation,
                              absl::string_view method, long status, absl::Duration took,
                              int64_t bytes_sent, int64_t bytes_received) {
  // Only a host that answered HTTP takes one of the label slots: callers
  // naming hosts that do not exist must not crowd the real registries out.
  const std::string registry = status > 0 ? RegistryLabel(host) : KnownRegistryLabel(host);
  requests_
      ->Add({{"registry", registry},
             {"operation", std::string(operation)},
             {"method", std::string(method)},
             {"status_class", StatusClass(status)}})
      .Increment();
  request_seconds_
      ->Add({{"registry", registry}, {"operation", std::string(operation)}}, RequestBuckets())
      .Observe(absl::ToDoubleSeconds(took));
  if (bytes_sent > 0) {
    sent_bytes_->Add({{"registry", registry}}).Increment(static_cast<double>(bytes_sent));
  }
  if (bytes_received > 0) {
    received_bytes_->Add({{"registry", registry}}).Increment(static_cast<double>(bytes_received));
  }
}

void Metrics::BlobOutcome(absl::string_view outcome) {
  blobs_->Add({{"outcome", std::string(outcome)}}).Increment();
}

void Metrics::Retry(absl::string_view reason) {
  retries_->Add({{"reason", std::string(reason)}}).Increment();
}

void Metrics::UploadsInFlight(int delta) { uploads_in_flight_->Increment(delta); }

void Metrics::UploadSlotWaited(absl::Duration waited) {
  slot_waits_->Increment();
  slot_wait_seconds_->Observe(absl::ToDoubleSeconds(waited));
}

void Metrics::TokenFetch(const std::string& host, bool ok) {
  token_fetches_->Add({{"registry", RegistryLabel(host)}, {"result", ok ? "ok" : "error"}})
      .Increment();
}

void Metrics::RateLimitRemaining(const std::string& host, double remaining) {
  ratelimit_remaining_->Add({{"registry", RegistryLabel(host)}}).Set(remaining);
}

void Metrics::CacheLookup(bool hit) { (hit ? cache_hits_ : cache_misses_)->Increment(); }

void Metrics::CacheBytes(int64_t bytes) { cache_bytes_->Set(static_cast<double>(bytes)); }

}  // namespace regd
