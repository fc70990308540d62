// CurlTransport: the production Transport over libcurl.
//
// Design (see docs/ARCHITECTURE.md): a pool of easy handles. A call takes an
// idle handle (or makes one), runs the transfer on the calling thread, then
// curl_easy_reset()s the handle and returns it to the pool, which keeps its
// live connections for the next call. A share handle carries the DNS cache and
// TLS session cache across all handles (curl's shared *connection* cache is not
// thread-safe in 7.88, so connections stay per handle).
//
// Thread-safety: Send is safe from any number of threads. The transport must
// outlive every call. Owns its handles and the share handle.
#ifndef REGD_CORE_HTTP_CURL_TRANSPORT_H_
#define REGD_CORE_HTTP_CURL_TRANSPORT_H_

#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/http/http.h"

namespace regd {

class CurlTransport : public Transport {
 public:
  explicit CurlTransport(TransportOptions options);
  ~CurlTransport() override;
  CurlTransport(const CurlTransport&) = delete;
  CurlTransport& operator=(const CurlTransport&) = delete;

  // Transport:
  [[nodiscard]] absl::StatusOr<HttpResponse> Send(const HttpRequest& req) override;

  // Easy handles created so far (for tests and metrics).
  int handles_created() const;

 private:
  struct Easy;
  struct Share;
  [[nodiscard]] absl::StatusOr<HttpResponse> SendOnce(const HttpRequest& req);
  std::unique_ptr<Easy> Acquire();
  void Release(std::unique_ptr<Easy> easy);

  const TransportOptions options_;
  std::unique_ptr<Share> share_;
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Easy>> idle_ ABSL_GUARDED_BY(mu_);
  int created_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace regd

#endif  // REGD_CORE_HTTP_CURL_TRANSPORT_H_
