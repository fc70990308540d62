// Observer: what the core reports as it works, for metrics.
//
// core/ knows nothing of Prometheus: it calls these hooks, and the server's
// metrics exporter (server/metrics.h) implements them. The default does
// nothing. Label values are bounded by construction: registry hosts (as
// configured or named by callers, capped by the exporter), fixed operation
// and reason names, status classes; never references, digests or tags.
//
// Implementations are thread-safe and never block: hooks run on transfer
// threads, some inside curl callbacks.
#ifndef REGD_CORE_OBSERVER_H_
#define REGD_CORE_OBSERVER_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace regd {

class Observer {
 public:
  virtual ~Observer() = default;

  // One HTTP exchange with a registry (or its token service). `operation`
  // is one of ping, manifest, blob, upload, token, other; `status` is the
  // HTTP status, 0 when the exchange failed before one came.
  virtual void RegistryRequest(const std::string& host, absl::string_view operation,
                               absl::string_view method, long status, absl::Duration took,
                               int64_t bytes_sent, int64_t bytes_received) {}
  // How a blob of a write call ended: uploaded, existed, mounted, shared, failed.
  virtual void BlobOutcome(absl::string_view outcome) {}
  // A retry is about to happen, for `reason` (a status code name in lower
  // case: unavailable, resource_exhausted, aborted, out_of_range, ...).
  virtual void Retry(absl::string_view reason) {}
  // Blob uploads running now (+1 when one starts, -1 when it ends).
  virtual void UploadsInFlight(int delta) {}
  // A blob upload had to wait for one of its registry's upload slots.
  virtual void UploadSlotWaited(absl::Duration waited) {}
  // A bearer token fetch from a token service.
  virtual void TokenFetch(const std::string& host, bool ok) {}
  // The registry's RateLimit-Remaining (the first number of it), when it sends one.
  virtual void RateLimitRemaining(const std::string& host, double remaining) {}
  // A lookup in the metadata cache (manifests and configs by digest).
  virtual void CacheLookup(bool hit) {}
  // Bytes the metadata cache holds now (after an insert and its evictions).
  virtual void CacheBytes(int64_t bytes) {}
};

// An Observer that does nothing (the default).
Observer* NullObserver();

// The reason label of a retry after `st`: its code's name in lower case.
std::string RetryReason(const absl::Status& st);

// The operation name of a registry URL path ("/v2/<name>/blobs/uploads/..."
// → upload): one of ping, manifest, blob, upload, other.
absl::string_view RegistryOperationOf(absl::string_view url);

}  // namespace regd

#endif  // REGD_CORE_OBSERVER_H_
