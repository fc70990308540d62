// BlobStream: the bytes of one blob that a caller streams in (UploadBlob),
// handed to the uploader as request bodies with back-pressure.
//
// Two sides:
//  - the caller's side (the server's reactor, on gRPC threads; never blocks)
//    offers chunks {offset, data} as they arrive, and says when the caller
//    half-closes or goes away;
//  - the uploader's side (an engine thread) reads ranges through Range().
//
// The stream is at one offset at a time: the next byte it expects. When the
// uploader wants bytes from another offset (the start, or where the registry
// says it stands after a fault), the queued bytes are dropped and the caller
// is asked, through `ask_from`, to send from there; until chunks at that
// offset come, chunks at any other offset are ones the caller sent before it
// saw the request, and are dropped.
//
// Memory: chunks are moved in, not copied, and at most `max_buffered` bytes
// wait (plus the one chunk that crossed the line): Offer() returns false then,
// and the caller's side stops reading until `on_room` is called.
//
// The stream hashes the bytes as they first go out, in order. The uploader
// sends the blob's last bytes (at most kMaxTail) in a request of their own and
// calls Prepare() first: the tail is read from the caller into memory and the
// whole blob's hash checked before that request starts, so a mismatch
// (INVALID_ARGUMENT) never reaches the registry as a commit, and never cuts a
// request short. A chunk past the declared size is INVALID_ARGUMENT.
//
// When the caller fails mid-request (goes away, falls silent, closes early,
// breaks the protocol), the request's body is padded to its declared length
// and marked failed (BodySource::failure()): the request ends cleanly, so the
// registry keeps a session regd can still delete (distribution 2.8 refuses
// every later request, DELETE included, for a session whose body was cut).
//
// Thread-safe. The uploader's reads stop (CANCELLED) when `cancelled` is set,
// and fail with DEADLINE_EXCEEDED when, while bytes are wanted, the caller
// sends less than `min_bytes_per_window` in a `window`: a caller cannot hold a
// registry session open by trickling, and the request in flight is padded
// and ended by regd, well before curl's own stall limit would cut it.
//
// Bytes the caller sends again after a registry fault (send_from below what
// was already hashed) are not hashed again: for those, the registry's own
// check of the digest at the commit is what stands.
#ifndef REGD_CORE_UPLOAD_BLOB_STREAM_H_
#define REGD_CORE_UPLOAD_BLOB_STREAM_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/digest.h"
#include "core/http/http.h"
#include "core/upload/blob_source.h"

namespace regd {

class BlobStream : public BlobBytes {
 public:
  struct Options {
    int64_t size = 0;
    std::string digest;  // "sha256:..." (validated by the caller of Create)
    size_t max_buffered = 512 << 10;  // the stream pauses at this, and resumes at half
    absl::Duration window = absl::Seconds(20);
    int64_t min_bytes_per_window = 64 << 10;
  };
  // `ask_from(offset)` asks the caller to send from `offset` (it must not
  // block; called on the uploader's thread). `on_room` is called (likewise)
  // when Offer() returned false and there is room again.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<BlobStream>> Create(
      Options options, std::function<void(int64_t)> ask_from, std::function<void()> on_room,
      CancelFlag cancelled);
  ~BlobStream() override;

  // ---- the caller's side ----
  // Takes one chunk. False: stop reading until `on_room` (the buffer is full).
  bool Offer(int64_t offset, std::string data);
  // The caller half-closed: no more chunks will come.
  void CallerDone();
  // The caller broke the protocol: the upload fails with `st`.
  void CallerError(absl::Status st);

  // ---- the uploader's side ----
  std::unique_ptr<BodySource> Range(int64_t start, int64_t len) const override;
  // Reads [start, size) into memory and checks the blob's digest (at most
  // kMaxTail bytes). Ranges within it are then served from memory.
  [[nodiscard]] absl::Status Prepare(int64_t start) const override;

  static constexpr int64_t kMaxTail = 8 << 20;

  int64_t size() const { return options_.size; }
  // Bytes the caller sent that went out (for tests): every pass counted.
  int64_t bytes_taken() const;
  // Times the caller was asked to send from an offset.
  int asks() const;

 private:
  friend class StreamRange;
  BlobStream(Options options, std::function<void(int64_t)> ask_from, std::function<void()> on_room,
             CancelFlag cancelled, Digester hasher);

  // Copies up to `len` bytes at blob offset `at` into `buf`, asking the
  // caller to resend when the stream is elsewhere; blocks for data.
  [[nodiscard]] absl::StatusOr<size_t> ReadAt(int64_t at, char* buf, size_t len) const;
  // A new request starts reading: the caller's pace is measured from now.
  void StartPacing() const;
  // Too slow a caller: the status to fail with, else OK (and the window rolls).
  absl::Status CheckPaceLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  struct Chunk {
    std::string data;
    size_t used = 0;  // bytes of `data` already read
  };

  const Options options_;
  const std::function<void(int64_t)> ask_from_;
  const std::function<void()> on_room_;
  const CancelFlag cancelled_;

  mutable absl::Mutex mu_;
  // The offset of the first queued byte; -1 before the first ask.
  mutable int64_t at_ ABSL_GUARDED_BY(mu_) = -1;
  // The offset the next accepted chunk must start at.
  mutable int64_t expect_ ABSL_GUARDED_BY(mu_) = -1;
  mutable std::deque<Chunk> queue_ ABSL_GUARDED_BY(mu_);
  mutable size_t buffered_ ABSL_GUARDED_BY(mu_) = 0;
  mutable bool paused_ ABSL_GUARDED_BY(mu_) = false;  // Offer said stop
  bool caller_done_ ABSL_GUARDED_BY(mu_) = false;
  mutable absl::Status error_ ABSL_GUARDED_BY(mu_);  // reported to the reader
  mutable Digester hasher_ ABSL_GUARDED_BY(mu_);
  mutable int64_t hashed_ ABSL_GUARDED_BY(mu_) = 0;  // bytes [0, hashed_) went into hasher_
  mutable bool hash_gap_ ABSL_GUARDED_BY(mu_) = false;
  // The prepared tail: bytes [tail_start_, size).
  mutable int64_t tail_start_ ABSL_GUARDED_BY(mu_) = -1;
  mutable std::shared_ptr<const std::string> tail_ ABSL_GUARDED_BY(mu_);
  mutable int64_t taken_ ABSL_GUARDED_BY(mu_) = 0;
  // Pace of the caller while bytes are wanted (see Options::window).
  mutable absl::Time window_start_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  mutable int64_t window_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  mutable int asks_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace regd

#endif  // REGD_CORE_UPLOAD_BLOB_STREAM_H_
