// Metrics: regd's Prometheus metrics, served at /metrics by prometheus-cpp's
// pull exposer (--metrics_listen).
//
// It is the core's Observer (registry requests, bytes, retries, blob
// outcomes, uploads in flight, slot waits, token fetches, RateLimit-Remaining,
// metadata cache lookups and bytes)
// and the server's record of gRPC calls, in the go-grpc-prometheus shape
// (grpc_server_started_total, grpc_server_handled_total,
// grpc_server_handling_seconds), with a `tenant` label when a policy is
// loaded. Names follow Prometheus' conventions: a regd_ prefix, base units,
// _total counters. No label takes an unbounded value: registry hosts are
// capped (the rest count as "other"), and references, digests and tags never
// appear.
//
// Thread-safe; hooks never block for long (prometheus-cpp's families lock
// briefly to find a series).
#ifndef REGD_SERVER_METRICS_H_
#define REGD_SERVER_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/observer.h"

namespace regd {

class Metrics : public Observer {
 public:
  struct Options {
    std::string listen;          // "host:port" (port 0 picks one); "" : no exposer (tests)
    bool tenant_label = false;   // a policy is loaded: call metrics carry `tenant`
    std::string version;         // regd_build_info{version}
    size_t max_registries = 64;  // distinct registry label values; the rest are "other"
  };
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Metrics>> Start(Options options);
  ~Metrics() override;

  // The port the exposer listens on (0 without one).
  int port() const { return port_; }
  prometheus::Registry& registry() { return *registry_; }

  // ---- gRPC calls ----
  // `type`: unary, server_stream or bidi_stream.
  void CallStarted(absl::string_view method, absl::string_view type, absl::string_view tenant);
  void CallHandled(absl::string_view method, absl::string_view type, absl::string_view tenant,
                   absl::StatusCode code, absl::Duration took);
  // Streaming calls running now.
  void StreamsInFlight(int delta);

  // ---- Observer ----
  void RegistryRequest(const std::string& host, absl::string_view operation,
                       absl::string_view method, long status, absl::Duration took,
                       int64_t bytes_sent, int64_t bytes_received) override;
  void BlobOutcome(absl::string_view outcome) override;
  void Retry(absl::string_view reason) override;
  void UploadsInFlight(int delta) override;
  void UploadSlotWaited(absl::Duration waited) override;
  void TokenFetch(const std::string& host, bool ok) override;
  void RateLimitRemaining(const std::string& host, double remaining) override;
  void CacheLookup(bool hit) override;
  void CacheBytes(int64_t bytes) override;

 private:
  explicit Metrics(Options options);
  // `host`, or "other" once max_registries distinct hosts were seen.
  std::string RegistryLabel(const std::string& host);
  // `host` if it already has a label, else "other" (takes no slot).
  std::string KnownRegistryLabel(const std::string& host);
  prometheus::Labels CallLabels(absl::string_view method, absl::string_view type,
                                absl::string_view tenant) const;

  const Options options_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;

  prometheus::Family<prometheus::Counter>* started_;
  prometheus::Family<prometheus::Counter>* handled_;
  prometheus::Family<prometheus::Histogram>* handling_seconds_;
  prometheus::Gauge* streams_in_flight_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Histogram>* request_seconds_;
  prometheus::Family<prometheus::Counter>* sent_bytes_;
  prometheus::Family<prometheus::Counter>* received_bytes_;
  prometheus::Family<prometheus::Counter>* blobs_;
  prometheus::Family<prometheus::Counter>* retries_;
  prometheus::Gauge* uploads_in_flight_;
  prometheus::Counter* slot_waits_;
  prometheus::Histogram* slot_wait_seconds_;
  prometheus::Family<prometheus::Counter>* token_fetches_;
  prometheus::Family<prometheus::Gauge>* ratelimit_remaining_;
  prometheus::Counter* cache_hits_;
  prometheus::Counter* cache_misses_;
  prometheus::Gauge* cache_bytes_;

  absl::Mutex mu_;
  std::set<std::string> registries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace regd

#endif  // REGD_SERVER_METRICS_H_
