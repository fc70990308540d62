// HTTP request/response values and the Transport seam.
//
// HttpRequest describes one exchange. Its body is either an in-memory string
// (small: manifests, tokens) or a BodySource that streams from elsewhere (a
// file range) so that memory stays O(1) in the blob size. The response body is
// either buffered (capped) or handed chunk by chunk to a sink.
//
// Transport is an interface so tests can inject faults; CurlTransport is the
// production implementation. Implementations are thread-safe: Send may be
// called from many threads at once, each call blocking its own thread.
#ifndef REGD_CORE_HTTP_HTTP_H_
#define REGD_CORE_HTTP_HTTP_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/cancel.h"

namespace regd {

class EgressPolicy;

// A re-readable stream of request-body bytes of a known length.
// Owned by the caller of Transport::Send; used by one thread at a time.
class BodySource {
 public:
  virtual ~BodySource() = default;
  virtual int64_t size() const = 0;
  // Reads up to `len` bytes into `buf`; returns 0 only at the end.
  [[nodiscard]] virtual absl::StatusOr<size_t> Read(char* buf, size_t len) = 0;
  // Goes back to the first byte (curl may need to resend on a dead reused connection).
  [[nodiscard]] virtual absl::Status Rewind() = 0;
  // Why the body could not be read to its end, when it could not: such a
  // source pads the rest (so the request ends cleanly and the registry's
  // session stays usable, to be deleted) and the request must not count.
  virtual absl::Status failure() const { return absl::OkStatus(); }
};

struct HttpResponse;

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;

  std::string body;                   // used when body_source is null
  BodySource* body_source = nullptr;  // not owned

  // Response body: when `on_body` is set, 2xx bodies go to it chunk by chunk
  // (return false to abort); otherwise the body is buffered up to `max_body`
  // bytes and a larger one fails with RESOURCE_EXHAUSTED. Error bodies are
  // always buffered (capped) so they can be reported.
  std::function<bool(long status, absl::string_view data)> on_body;
  size_t max_body = 4 << 20;
  // With `on_body`: called once per 2xx response, with its status and headers,
  // before its first body byte goes to `on_body` (return false to abort). A
  // 2xx answer without a body never calls it (see the returned headers).
  std::function<bool(const HttpResponse& head)> on_head;
  // libcurl's receive buffer (CURLOPT_BUFFERSIZE) for this request; 0: its
  // default (16 KiB). Large downloads use more, for fewer, larger callbacks.
  size_t receive_buffer = 0;

  // Called with the number of body bytes sent so far (from the transfer thread).
  std::function<void(int64_t)> on_upload_progress;

  // Follow up to EgressPolicy::kMaxRedirects redirects, each hop checked by
  // the egress policy; Authorization is never sent to another origin.
  bool follow_redirects = false;
  // Overrides TransportOptions::stall_timeout for this request (zero: default).
  absl::Duration stall_timeout = absl::ZeroDuration();
  // A limit on the whole exchange (zero: none; transfers are bounded by the
  // stall timeout instead). For clean-up requests that must not pin a call.
  absl::Duration total_timeout = absl::ZeroDuration();
  std::string ca_bundle;  // PEM file for TLS verification; empty: system store
  CancelFlag cancelled;   // optional
  // Once `cancelled` is set, the transfer may go on this long before it is
  // aborted (zero: abort at once). An upload chunk uses it to end cleanly,
  // so that the registry's session can still be deleted: distribution 2.8
  // refuses every later request for a session whose PATCH body was cut.
  absl::Duration cancel_grace = absl::ZeroDuration();
};

struct HttpResponse {
  long status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  int64_t bytes_sent = 0;  // request body bytes curl reports as sent
  std::string url;         // the URL that answered (after any redirects)

  // First header with this lower-case name.
  std::optional<std::string> Header(absl::string_view lower_name) const;
  // Every header with this lower-case name, in order.
  std::vector<std::string> Headers(absl::string_view lower_name) const;
};

struct TransportOptions {
  // A transfer that moves no bytes in either direction for this long fails
  // (UNAVAILABLE). A slow but progressing transfer never times out.
  absl::Duration stall_timeout = absl::Seconds(60);
  absl::Duration connect_timeout = absl::Seconds(30);
  // Idle easy handles (each keeping its connections alive) kept for reuse.
  int max_pooled_handles = 64;
  // Connections kept alive per pooled handle.
  int max_connects_per_handle = 4;
  // Where connections and redirects may go; null: anywhere (tests).
  std::shared_ptr<const EgressPolicy> egress;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Performs one exchange. Transport failures (DNS, connect, reset, stall) are
  // UNAVAILABLE; a cancelled transfer is CANCELLED. Any HTTP status is OK here.
  [[nodiscard]] virtual absl::StatusOr<HttpResponse> Send(const HttpRequest& req) = 0;
};

// Resolves `ref` (absolute or relative, as in a Location header) against `base`.
std::string ResolveUrl(absl::string_view base, absl::string_view ref);
// "scheme://host[:port]" of a URL, lower-cased, without a default port.
std::string UrlOrigin(absl::string_view url);
// Percent-encodes a query value.
std::string UrlEncode(absl::string_view s);

}  // namespace regd

#endif  // REGD_CORE_HTTP_HTTP_H_
