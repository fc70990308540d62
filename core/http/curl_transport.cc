#include "core/http/curl_transport.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "core/http/egress.h"
#include "core/log.h"
#include "core/text.h"

namespace regd {
namespace {

// CURLOPT_UPLOAD_BUFFERSIZE for blob bodies: libcurl 7.88's maximum.
constexpr long kUploadBuffer = 2 << 20;

struct CurlSlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using CurlSlistPtr = std::unique_ptr<curl_slist, CurlSlistFree>;

struct CurlEasyFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
using CurlEasyPtr = std::unique_ptr<CURL, CurlEasyFree>;

struct CurlShareFree {
  void operator()(CURLSH* s) const { curl_share_cleanup(s); }
};
using CurlSharePtr = std::unique_ptr<CURLSH, CurlShareFree>;

// Per-transfer state the curl callbacks see.
struct Transfer {
  const HttpRequest* req = nullptr;
  const EgressPolicy* egress = nullptr;
  std::string host_port;        // of req->url, for the egress check
  std::string blocked_address;  // set when the egress policy refused a connect
  CURL* easy = nullptr;
  HttpResponse* resp = nullptr;
  size_t body_offset = 0;  // for the in-memory body
  absl::Status body_error;
  bool sink_aborted = false;
  bool head_told = false;  // on_head was called for the current response
  bool too_large = false;
  bool error_body_capped = false;  // a non-2xx body passed max_body: stop reading
  absl::Time cancel_seen = absl::InfiniteFuture();
  int64_t max_sent = 0;  // the most body bytes curl ever reported sent
};

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  absl::string_view line(data, size * n);
  if (absl::StartsWith(line, "HTTP/")) {
    t->resp->headers.clear();  // a new response (after 100-continue or a redirect)
    t->head_told = false;
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon != absl::string_view::npos) {
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
    t->resp->headers.emplace_back(std::move(name), std::string(value));
  }
  return size * n;
}

size_t OnWrite(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  long code = 0;
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
  if (t->req->on_body && code >= 200 && code < 300) {
    if (!t->head_told) {
      t->head_told = true;
      t->resp->status = code;
      if (t->req->on_head && !t->req->on_head(*t->resp)) {
        t->sink_aborted = true;
        return 0;
      }
    }
    if (!t->req->on_body(code, absl::string_view(data, len))) {
      t->sink_aborted = true;
      return 0;
    }
    return len;
  }
  if (t->resp->body.size() + len > t->req->max_body) {
    if (code >= 200 && code < 300) {
      t->too_large = true;
      return 0;
    }
    // Keep the capped prefix of an error body and stop: a registry that
    // streams an endless error must not pin the call.
    t->error_body_capped = true;
    return 0;
  }
  t->resp->body.append(data, len);
  return len;
}

// At --log_level=debug, libcurl's own informational text goes through regd's
// logger. Only CURLINFO_TEXT: headers and data (credentials, tokens) never,
// and text lines that mention users or auth are dropped too.
int OnCurlDebug(CURL*, curl_infotype type, char* data, size_t size, void*) {
  if (type != CURLINFO_TEXT) return 0;
  absl::string_view text(data, size);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  const std::string lower = absl::AsciiStrToLower(text);
  if (absl::StrContains(lower, "user") || absl::StrContains(lower, "auth") ||
      absl::StrContains(lower, "bearer") || absl::StrContains(lower, "token")) {
    return 0;
  }
  LogDebug("curl: ", RedactSecrets(ForMessage(text, 300)));
  return 0;
}

size_t OnRead(char* buf, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  if (t->req->body_source != nullptr) {
    absl::StatusOr<size_t> got = t->req->body_source->Read(buf, len);
    if (!got.ok()) {
      t->body_error = got.status();
      return CURL_READFUNC_ABORT;
    }
    return *got;
  }
  const std::string& body = t->req->body;
  size_t take = std::min(len, body.size() - t->body_offset);
  std::memcpy(buf, body.data() + t->body_offset, take);
  t->body_offset += take;
  return take;
}

int OnSeek(void* user, curl_off_t offset, int origin) {
  auto* t = static_cast<Transfer*>(user);
  if (origin != SEEK_SET || offset != 0) return CURL_SEEKFUNC_CANTSEEK;
  t->body_offset = 0;
  return CURL_SEEKFUNC_OK;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t ulnow) {
  auto* t = static_cast<Transfer*>(user);
  if (t->req->cancelled && t->req->cancelled->load(std::memory_order_relaxed)) {
    if (t->req->cancel_grace <= absl::ZeroDuration()) return 1;
    const absl::Time now = absl::Now();
    if (t->cancel_seen == absl::InfiniteFuture()) t->cancel_seen = now;
    if (now - t->cancel_seen > t->req->cancel_grace) return 1;
  }
  t->resp->bytes_sent = ulnow;
  t->max_sent = std::max<int64_t>(t->max_sent, ulnow);
  if (t->req->on_upload_progress) t->req->on_upload_progress(ulnow);
  return 0;
}

curl_socket_t OnOpenSocket(void* user, curlsocktype purpose, struct curl_sockaddr* address) {
  auto* t = static_cast<Transfer*>(user);
  if (t->egress != nullptr && !t->egress->AddressAllowed(&address->addr, t->host_port)) {
    char text[INET6_ADDRSTRLEN] = "?";
    if (address->family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&address->addr)->sin_addr, text,
                sizeof text);
    } else if (address->family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&address->addr)->sin6_addr, text,
                sizeof text);
    }
    t->blocked_address = text;
    return CURL_SOCKET_BAD;
  }
  return ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

bool IsRedirect(long status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

}  // namespace

struct CurlTransport::Easy {
  CurlEasyPtr handle;
};

struct CurlTransport::Share {
  CurlSharePtr handle;
  std::array<absl::Mutex, CURL_LOCK_DATA_LAST> locks;

  // libcurl's lock/unlock callback pair: one acquires, the other releases, which
  // the thread-safety analysis cannot follow.
  static void Lock(CURL*, curl_lock_data data, curl_lock_access,
                   void* user) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    static_cast<Share*>(user)->locks[data].Lock();
  }
  static void Unlock(CURL*, curl_lock_data data, void* user) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    static_cast<Share*>(user)->locks[data].Unlock();
  }
};

CurlTransport::CurlTransport(TransportOptions options)
    : options_(options), share_(std::make_unique<Share>()) {
  static const CURLcode global_init = curl_global_init(CURL_GLOBAL_ALL);
  (void)global_init;
  share_->handle.reset(curl_share_init());
  CURLSH* sh = share_->handle.get();
  curl_share_setopt(sh, CURLSHOPT_LOCKFUNC, &Share::Lock);
  curl_share_setopt(sh, CURLSHOPT_UNLOCKFUNC, &Share::Unlock);
  curl_share_setopt(sh, CURLSHOPT_USERDATA, share_.get());
  curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
}

CurlTransport::~CurlTransport() {
  absl::MutexLock lock(&mu_);
  idle_.clear();  // easy handles go before the share handle they use
}

int CurlTransport::handles_created() const {
  absl::MutexLock lock(&mu_);
  return created_;
}

std::unique_ptr<CurlTransport::Easy> CurlTransport::Acquire() {
  {
    absl::MutexLock lock(&mu_);
    if (!idle_.empty()) {
      auto easy = std::move(idle_.back());
      idle_.pop_back();
      return easy;
    }
    ++created_;
  }
  auto easy = std::make_unique<Easy>();
  easy->handle.reset(curl_easy_init());
  return easy;
}

void CurlTransport::Release(std::unique_ptr<Easy> easy) {
  curl_easy_reset(easy->handle.get());  // keeps live connections
  absl::MutexLock lock(&mu_);
  if (static_cast<int>(idle_.size()) < options_.max_pooled_handles) {
    idle_.push_back(std::move(easy));
  }
}

absl::StatusOr<HttpResponse> CurlTransport::Send(const HttpRequest& req) {
  if (!req.follow_redirects) return SendOnce(req);
  // Redirects are followed here, not by curl, so that every hop goes through
  // the egress policy and loses Authorization when it leaves the origin.
  HttpRequest hop = req;
  for (int redirects = 0;; ++redirects) {
    absl::StatusOr<HttpResponse> resp = SendOnce(hop);
    if (!resp.ok() || !IsRedirect(resp->status)) return resp;  // resp->url: this hop
    std::optional<std::string> location = resp->Header("location");
    if (!location.has_value() || location->empty()) return resp;
    if (redirects >= EgressPolicy::kMaxRedirects) {
      return absl::FailedPreconditionError(absl::StrCat(hop.method, " ", UrlOrigin(req.url),
                                                        ": more than ", EgressPolicy::kMaxRedirects,
                                                        " redirects"));
    }
    std::string next = ResolveUrl(hop.url, *location);
    if (options_.egress != nullptr) {
      absl::Status allowed = options_.egress->CheckHop(hop.url, next);
      if (!allowed.ok()) return allowed;
    } else if (absl::StartsWith(hop.url, "https://") && !absl::StartsWith(next, "https://")) {
      return absl::PermissionDeniedError("refusing a redirect from HTTPS to another scheme");
    }
    if (UrlOrigin(next) != UrlOrigin(hop.url)) {
      std::vector<std::pair<std::string, std::string>> kept;
      for (auto& h : hop.headers) {
        if (!absl::EqualsIgnoreCase(h.first, "authorization")) kept.push_back(std::move(h));
      }
      hop.headers = std::move(kept);
    }
    if (resp->status == 303) hop.method = hop.method == "HEAD" ? "HEAD" : "GET";
    hop.url = std::move(next);
  }
}

absl::StatusOr<HttpResponse> CurlTransport::SendOnce(const HttpRequest& req) {
  std::unique_ptr<Easy> easy = Acquire();
  if (easy->handle == nullptr) return absl::ResourceExhaustedError("curl_easy_init failed");
  CURL* c = easy->handle.get();
  HttpResponse resp;
  Transfer t;
  t.req = &req;
  t.easy = c;
  t.resp = &resp;
  t.egress = options_.egress.get();
  t.host_port = UrlHostPort(req.url);
  char errbuf[CURL_ERROR_SIZE];
  errbuf[0] = '\0';

  curl_easy_setopt(c, CURLOPT_SHARE, share_->handle.get());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (LogEnabled(LogLevel::kDebug)) {
    curl_easy_setopt(c, CURLOPT_DEBUGFUNCTION, &OnCurlDebug);
    curl_easy_setopt(c, CURLOPT_VERBOSE, 1L);
  } else {
    curl_easy_setopt(c, CURLOPT_VERBOSE, 0L);
  }
  curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);  // Send follows, hop by hop
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, &OnOpenSocket);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &t);
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(c, CURLOPT_MAXCONNECTS, static_cast<long>(options_.max_connects_per_handle));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options_.connect_timeout)));
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  absl::Duration stall =
      req.stall_timeout > absl::ZeroDuration() ? req.stall_timeout : options_.stall_timeout;
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(absl::ToInt64Seconds(stall)));
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  // No proxy from the environment (http_proxy, https_proxy): a proxy would
  // see through the egress checks, which only look at the addresses we
  // connect to ourselves.
  curl_easy_setopt(c, CURLOPT_PROXY, "");
  if (req.total_timeout > absl::ZeroDuration()) {
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(absl::ToInt64Milliseconds(req.total_timeout)));
  }
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &OnWrite);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  if (req.receive_buffer > 0) {
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, static_cast<long>(req.receive_buffer));
  }
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &OnProgress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, nullptr);  // blobs are hashed as served
  if (!req.ca_bundle.empty()) {
    // Extra trust: the bundle plus the system's certificates.
    curl_easy_setopt(c, CURLOPT_CAINFO, req.ca_bundle.c_str());
    curl_easy_setopt(c, CURLOPT_CAPATH, "/etc/ssl/certs");
  }

  const bool has_body = req.body_source != nullptr || !req.body.empty();
  const int64_t body_len =
      req.body_source != nullptr ? req.body_source->size() : static_cast<int64_t>(req.body.size());
  if (req.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (req.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else if (req.method == "PUT" || req.method == "PATCH" || req.method == "POST") {
    // Upload mode for all three so the body streams through OnRead with an
    // explicit Content-Length, even when it is empty.
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(has_body ? body_len : 0));
    curl_easy_setopt(c, CURLOPT_READFUNCTION, &OnRead);
    curl_easy_setopt(c, CURLOPT_READDATA, &t);
    if (req.body_source != nullptr && body_len > (1 << 20)) {
      // A blob body: libcurl's largest upload buffer (2 MiB, default 64 KiB)
      // means 32× fewer reads of the source, sends and polls per byte.
      curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, static_cast<long>(kUploadBuffer));
    }
    // Only in-memory bodies (manifests, tokens) may be rewound by curl itself
    // when a reused connection dies. A streamed blob body never is: once any
    // of it has left, its outcome is unknown, so the transfer fails and the
    // uploader asks the registry where it is first. (curl still resends a
    // request that died before a single body byte was sent: that one cannot
    // have reached the registry.)
    if (req.body_source == nullptr) {
      curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, &OnSeek);
      curl_easy_setopt(c, CURLOPT_SEEKDATA, &t);
    }
    if (req.method != "PUT") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  } else {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }

  curl_slist* raw = nullptr;
  for (const auto& [k, v] : req.headers) {
    raw = curl_slist_append(raw, absl::StrCat(k, ": ", v).c_str());
  }
  raw = curl_slist_append(raw, "Expect:");  // no 100-continue round trip
  CurlSlistPtr headers(raw);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());

  CURLcode rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
  curl_off_t sent = 0;
  if (curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &sent) == CURLE_OK) resp.bytes_sent = sent;
  // Unset our stack pointers before the handle goes back to the pool.
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, nullptr);
  Release(std::move(easy));

  resp.url = req.url;
  if (rc == CURLE_OK) return resp;
  // An error answer whose body we stopped reading at its cap is complete
  // enough: its status is what counts.
  if (rc == CURLE_WRITE_ERROR && t.error_body_capped && resp.status >= 300) return resp;
  // An error answer whose body was cut short (a 416 that declares the blob's
  // length, say) is still a complete answer as far as its status goes.
  if (rc == CURLE_PARTIAL_FILE && resp.status >= 300) return resp;
  if (!t.body_error.ok()) return t.body_error;
  if (t.too_large) {
    return absl::ResourceExhaustedError(
        absl::StrCat("response body larger than ", req.max_body, " bytes"));
  }
  if (rc == CURLE_ABORTED_BY_CALLBACK || (rc == CURLE_WRITE_ERROR && t.sink_aborted)) {
    if (req.cancelled && req.cancelled->load()) return absl::CancelledError("request cancelled");
    if (t.sink_aborted) return absl::AbortedError("response body consumer stopped");
  }
  if (!t.blocked_address.empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat("regd does not connect to link-local or metadata addresses (", t.host_port,
                     " is ", t.blocked_address, "); list the registry explicitly to allow it"));
  }
  std::string why;
  if (rc == CURLE_SEND_FAIL_REWIND) {
    // curl wanted to resend a body it cannot rewind: the connection died
    // under the request. Say that, not curl's words for its own next step.
    why = absl::StrCat("connection lost while sending the request body (",
                       std::max<int64_t>(t.max_sent, resp.bytes_sent), " bytes sent)");
  } else {
    why = errbuf[0] != '\0' ? std::string(errbuf) : curl_easy_strerror(rc);
    while (!why.empty() && (why.back() == '\n' || why.back() == '\r')) why.pop_back();
  }
  return absl::UnavailableError(
      absl::StrCat(req.method, " ", UrlOrigin(req.url), ": ", ForMessage(why)));
}

}  // namespace regd
