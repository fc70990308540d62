#include "cli/upload.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "cli/exit_codes.h"
#include "cli/local_files.h"

namespace regdctl {
namespace {

using regd::v1::UploadBlobEvent;
using regd::v1::UploadBlobRequest;
using Stream = grpc::ClientReaderWriter<UploadBlobRequest, UploadBlobEvent>;

constexpr absl::Duration kStopWait = absl::Seconds(10);

// The sending side of one UploadBlob stream: streams the file from the
// offsets regd asks for, on a thread of its own. SendFrom and Stop come from
// the reading thread.
class ChunkSender {
 public:
  ChunkSender(Stream* stream, grpc::ClientContext* ctx, int fd, int64_t size, int64_t chunk_bytes)
      : stream_(stream), ctx_(ctx), fd_(fd), size_(size), chunk_bytes_(chunk_bytes) {
    thread_ = std::thread([this] { Run(); });
  }
  ~ChunkSender() { StopAndJoin(/*half_close=*/false); }

  // A new offset: ends the current pass; replaces one not yet picked up.
  void SendFrom(int64_t offset) {
    absl::MutexLock lock(&mu_);
    next_ = offset;
  }

  // Stops sending (half-closing the stream when asked, after the result) and
  // waits for the thread; one stuck in Write for kStopWait gets the call
  // cancelled under it.
  void StopAndJoin(bool half_close) {
    if (!thread_.joinable()) return;
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
      half_close_ = half_close;
      if (!mu_.AwaitWithTimeout(absl::Condition(&done_), kStopWait)) ctx_->TryCancel();
    }
    thread_.join();
  }

  absl::Status error() const {
    absl::MutexLock lock(&mu_);
    return error_;
  }
  int64_t sent() const {
    absl::MutexLock lock(&mu_);
    return sent_;
  }
  int passes() const {
    absl::MutexLock lock(&mu_);
    return passes_;
  }

 private:
  void Run() {
    UploadBlobRequest req;
    bool open = true;
    std::optional<int64_t> offset = NextOffset();
    while (offset.has_value() && open) {
      offset = Pass(*offset, &req, &open);
    }
    bool half_close;
    {
      absl::MutexLock lock(&mu_);
      half_close = half_close_;
    }
    if (open && half_close) stream_->WritesDone();
    absl::MutexLock lock(&mu_);
    done_ = true;
  }

  bool Ready() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_ || next_.has_value(); }

  // Waits for a send_from; nullopt once stopped.
  std::optional<int64_t> NextOffset() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &ChunkSender::Ready));
    if (stop_) return std::nullopt;
    std::optional<int64_t> off = next_;
    next_.reset();
    ++passes_;
    return off;
  }

  // Streams from `offset` to the end, then waits. Returns the next pass's
  // offset, or nullopt when stopped (or the stream is over: *open false).
  std::optional<int64_t> Pass(int64_t offset, UploadBlobRequest* req, bool* open) {
    while (offset < size_) {
      {
        absl::MutexLock lock(&mu_);
        if (stop_) return std::nullopt;
        if (next_.has_value()) break;  // a new send_from: this pass is over
      }
      std::string* data = req->mutable_chunk()->mutable_data();
      data->resize(static_cast<size_t>(std::min(chunk_bytes_, size_ - offset)));
      ssize_t n = pread(fd_, data->data(), data->size(), offset);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        absl::MutexLock lock(&mu_);
        error_ = n < 0 ? ErrnoStatus(errno, "reading the blob")
                       : absl::DataLossError("the file got shorter while it was being uploaded");
        ctx_->TryCancel();
        *open = false;
        return std::nullopt;
      }
      data->resize(static_cast<size_t>(n));
      req->mutable_chunk()->set_offset(offset);
      if (!stream_->Write(*req)) {  // the call is over; the reader reports its status
        *open = false;
        return std::nullopt;
      }
      offset += n;
      absl::MutexLock lock(&mu_);
      sent_ += n;
    }
    return NextOffset();  // not half-closed: regd may ask again until the result
  }

  Stream* const stream_;
  grpc::ClientContext* const ctx_;
  const int fd_;
  const int64_t size_;
  const int64_t chunk_bytes_;
  mutable absl::Mutex mu_;
  std::optional<int64_t> next_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool half_close_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  int64_t sent_ ABSL_GUARDED_BY(mu_) = 0;
  int passes_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

regd::v1::UploadBlobRequest StartMessage(const UploadRequest& req) {
  UploadBlobRequest msg;
  regd::v1::UploadBlobStart* start = msg.mutable_start();
  start->set_repo(req.repo);
  start->set_digest(req.digest);
  start->set_size(req.size);
  start->set_media_type(req.media_type);
  start->set_mount_from(req.mount_from);
  *start->mutable_retry() = req.retry;
  return msg;
}

}  // namespace

std::string OutcomeName(regd::v1::LayerResult::Outcome outcome) {
  return absl::AsciiStrToLower(regd::v1::LayerResult::Outcome_Name(outcome));
}

absl::Duration DurationOf(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

void ReportRetry(ProgressDisplay* display, const std::string& id,
                 const regd::v1::RetryEvent& retry) {
  display->Retry(id, retry.attempt(), retry.max_attempts(), DurationOf(retry.next_retry_in()),
                 retry.error());
}

absl::StatusOr<UploadOutcome> UploadFile(Connection& conn, const UploadRequest& req,
                                         ProgressDisplay* display, const std::string& id,
                                         CallGroup* group) {
  int fd = open(req.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, req.path);
  struct FdCloser {
    int fd;
    ~FdCloser() { close(fd); }
  } closer{fd};

  UploadOutcome out;
  grpc::ClientContext ctx;
  conn.PrepareStream(&ctx);
  ScopedCall scoped(&ctx, group);
  std::unique_ptr<Stream> stream = conn.registry().UploadBlob(&ctx);
  stream->Write(StartMessage(req));  // a failure shows in Read/Finish
  ChunkSender sender(stream.get(), &ctx, fd, req.size, req.chunk_bytes);

  bool have_result = false;
  UploadBlobEvent ev;
  while (!have_result && stream->Read(&ev)) {
    switch (ev.event_case()) {
      case UploadBlobEvent::kSendFrom:
        out.send_from.push_back(ev.send_from().offset());
        sender.SendFrom(ev.send_from().offset());
        break;
      case UploadBlobEvent::kProgress:
        display->Progress(id, ev.progress().complete(), ev.progress().total());
        break;
      case UploadBlobEvent::kRetry:
        ++out.retries;
        ReportRetry(display, id, ev.retry());
        break;
      case UploadBlobEvent::kResult:
        out.result = ev.result();
        have_result = true;
        break;
      default:
        break;
    }
  }
  sender.StopAndJoin(/*half_close=*/have_result);
  if (have_result) {
    while (stream->Read(&ev)) {
    }
  }
  grpc::Status status = stream->Finish();
  out.bytes_sent = sender.sent();
  out.passes = sender.passes();
  if (have_result) return out;  // committed; how the stream closed after that does not matter
  if (!sender.error().ok()) return sender.error();
  if (status.ok()) return absl::InternalError("UploadBlob ended without a result");
  return FromGrpc(status);
}

}  // namespace regdctl
