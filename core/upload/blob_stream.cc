#include "core/upload/blob_stream.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace regd {

namespace {

// Bytes of a prepared tail, from memory.
class TailRange : public BodySource {
 public:
  TailRange(std::shared_ptr<const std::string> tail, size_t from, int64_t len)
      : tail_(std::move(tail)), from_(from), len_(len) {}
  int64_t size() const override { return len_; }
  absl::StatusOr<size_t> Read(char* buf, size_t len) override {
    size_t left = static_cast<size_t>(len_) - pos_;
    size_t n = std::min(left, len);
    std::memcpy(buf, tail_->data() + from_ + pos_, n);
    pos_ += n;
    return n;
  }
  absl::Status Rewind() override {
    pos_ = 0;
    return absl::OkStatus();
  }

 private:
  const std::shared_ptr<const std::string> tail_;
  const size_t from_;
  const int64_t len_;
  size_t pos_ = 0;
};

}  // namespace

// A body of bytes [start, start+len) of a BlobStream. When the caller fails
// mid-body, the rest is zeros and failure() says why (see BlobStream).
class StreamRange : public BodySource {
 public:
  StreamRange(const BlobStream* stream, int64_t start, int64_t len)
      : stream_(stream), start_(start), len_(len) {}
  int64_t size() const override { return len_; }
  absl::StatusOr<size_t> Read(char* buf, size_t len) override {
    int64_t left = len_ - pos_;
    if (left <= 0) return 0;
    size_t want = static_cast<size_t>(std::min<int64_t>(left, static_cast<int64_t>(len)));
    if (pos_ == 0) stream_->StartPacing();
    if (failure_.ok()) {
      absl::StatusOr<size_t> got = stream_->ReadAt(start_ + pos_, buf, want);
      if (got.ok()) {
        pos_ += static_cast<int64_t>(*got);
        return *got;
      }
      failure_ = got.status();
    }
    // Padding: the request ends cleanly, and does not count.
    std::memset(buf, 0, want);
    pos_ += static_cast<int64_t>(want);
    return want;
  }
  // Going back is asking the caller again (ReadAt sees the stream elsewhere).
  absl::Status Rewind() override {
    pos_ = 0;
    return absl::OkStatus();
  }
  absl::Status failure() const override { return failure_; }

 private:
  const BlobStream* const stream_;
  const int64_t start_;
  const int64_t len_;
  int64_t pos_ = 0;
  absl::Status failure_;
};

absl::StatusOr<std::unique_ptr<BlobStream>> BlobStream::Create(
    Options options, std::function<void(int64_t)> ask_from, std::function<void()> on_room,
    CancelFlag cancelled) {
  if (options.size < 0) return absl::InvalidArgumentError("size must not be negative");
  ASSIGN_OR_RETURN(Digester hasher, Digester::ForDigest(options.digest));
  if (options.size == 0) {
    Digester empty = std::move(hasher);
    std::string got = empty.Finish();
    if (got != options.digest) {
      return absl::InvalidArgumentError(
          absl::StrCat("an empty blob hashes to ", got, ", not to ", options.digest));
    }
    ASSIGN_OR_RETURN(hasher, Digester::ForDigest(options.digest));
  }
  if (!cancelled) cancelled = NewCancelFlag();
  return std::unique_ptr<BlobStream>(new BlobStream(std::move(options), std::move(ask_from),
                                                    std::move(on_room), std::move(cancelled),
                                                    std::move(hasher)));
}

BlobStream::BlobStream(Options options, std::function<void(int64_t)> ask_from,
                       std::function<void()> on_room, CancelFlag cancelled, Digester hasher)
    : options_(std::move(options)),
      ask_from_(std::move(ask_from)),
      on_room_(std::move(on_room)),
      cancelled_(std::move(cancelled)),
      hasher_(std::move(hasher)) {}

BlobStream::~BlobStream() = default;

std::unique_ptr<BodySource> BlobStream::Range(int64_t start, int64_t len) const {
  {
    absl::MutexLock lock(&mu_);
    if (tail_ != nullptr && start >= tail_start_ && start + len <= options_.size) {
      return std::make_unique<TailRange>(tail_, static_cast<size_t>(start - tail_start_), len);
    }
  }
  return std::make_unique<StreamRange>(this, start, len);
}

absl::Status BlobStream::Prepare(int64_t start) const {
  {
    absl::MutexLock lock(&mu_);
    if (tail_ != nullptr && start >= tail_start_) return absl::OkStatus();
  }
  if (start < 0 || start > options_.size || options_.size - start > kMaxTail) {
    return absl::InternalError(absl::StrCat("cannot hold ", options_.size - start, " bytes back"));
  }
  auto tail = std::make_shared<std::string>(static_cast<size_t>(options_.size - start), '\0');
  size_t have = 0;
  while (have < tail->size()) {
    ASSIGN_OR_RETURN(size_t n, ReadAt(start + static_cast<int64_t>(have), tail->data() + have,
                                      tail->size() - have));
    have += n;
  }
  absl::MutexLock lock(&mu_);
  tail_start_ = start;
  tail_ = std::move(tail);
  return absl::OkStatus();
}

int64_t BlobStream::bytes_taken() const {
  absl::MutexLock lock(&mu_);
  return taken_;
}

int BlobStream::asks() const {
  absl::MutexLock lock(&mu_);
  return asks_;
}

bool BlobStream::Offer(int64_t offset, std::string data) {
  absl::MutexLock lock(&mu_);
  if (!error_.ok() || data.empty()) return true;
  const int64_t n = static_cast<int64_t>(data.size());
  if (offset < 0 || offset > options_.size - n) {
    error_ = absl::InvalidArgumentError(
        absl::StrCat("a chunk of ", n, " bytes at offset ", offset, " goes past the blob's ",
                     options_.size, " bytes"));
    return true;
  }
  // Not where the stream is: sent before the caller saw the newest send_from.
  if (expect_ < 0 || offset != expect_) return true;
  queue_.push_back(Chunk{std::move(data), 0});
  buffered_ += static_cast<size_t>(n);
  expect_ += n;
  if (buffered_ >= options_.max_buffered) {
    paused_ = true;
    return false;
  }
  return true;
}

void BlobStream::StartPacing() const {
  absl::MutexLock lock(&mu_);
  window_start_ = absl::Now();
  window_bytes_ = 0;
}

absl::Status BlobStream::CheckPaceLocked() const {
  const absl::Time now = absl::Now();
  if (window_start_ == absl::InfinitePast()) window_start_ = now;
  if (now - window_start_ < options_.window) return absl::OkStatus();
  if (window_bytes_ < options_.min_bytes_per_window) {
    return absl::DeadlineExceededError(absl::StrCat(
        "the caller sent ", window_bytes_, " bytes in ", absl::FormatDuration(options_.window),
        " while regd waited for them (at least ", options_.min_bytes_per_window, " are needed)"));
  }
  window_start_ = now;
  window_bytes_ = 0;
  return absl::OkStatus();
}

void BlobStream::CallerDone() {
  absl::MutexLock lock(&mu_);
  caller_done_ = true;
}

void BlobStream::CallerError(absl::Status st) {
  absl::MutexLock lock(&mu_);
  if (error_.ok()) error_ = std::move(st);
}

absl::StatusOr<size_t> BlobStream::ReadAt(int64_t at, char* buf, size_t len) const {
  mu_.Lock();
  while (true) {
    if (!error_.ok()) {
      absl::Status st = error_;
      mu_.Unlock();
      return st;
    }
    if (cancelled_->load()) {
      mu_.Unlock();
      return absl::CancelledError("upload cancelled");
    }
    if (at_ != at) {
      // The uploader wants bytes from elsewhere: drop what waits and ask.
      queue_.clear();
      buffered_ = 0;
      at_ = at;
      expect_ = at;
      ++asks_;
      const bool resume = paused_;
      paused_ = false;
      window_start_ = absl::Now();  // the caller gets a whole window to answer
      window_bytes_ = 0;
      mu_.Unlock();
      if (ask_from_) ask_from_(at);
      if (resume && on_room_) on_room_();
      mu_.Lock();
      continue;
    }
    if (!queue_.empty()) break;
    if (caller_done_) {
      mu_.Unlock();
      return absl::InvalidArgumentError(absl::StrCat(
          "the caller closed its side of the stream at offset ", at, " of ", options_.size,
          " bytes; send every byte and keep the stream open until the result"));
    }
    if (absl::Status pace = CheckPaceLocked(); !pace.ok()) {
      mu_.Unlock();
      return pace;
    }
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !queue_.empty() || caller_done_ || !error_.ok();
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(100));
  }
  Chunk& front = queue_.front();
  const size_t n = std::min(len, front.data.size() - front.used);
  const char* src = front.data.data() + front.used;
  // Hash bytes the first time they go out; bytes sent again were hashed
  // already (the registry checks the whole blob against the digest anyway).
  const int64_t end = at + static_cast<int64_t>(n);
  // A registry that claims bytes it was never sent would leave a gap: then
  // only the registry's own check of the digest stands.
  if (at > hashed_) hash_gap_ = true;
  if (end > hashed_ && !hash_gap_) {
    const int64_t skip = hashed_ - at;
    hasher_.Update(src + skip, n - static_cast<size_t>(skip));
    hashed_ = end;
    if (hashed_ == options_.size) {
      std::string got = hasher_.Finish();
      if (got != options_.digest) {
        // Held back: the registry never sees the whole (wrong) blob.
        error_ = absl::InvalidArgumentError(absl::StrCat(
            "the streamed bytes hash to ", got, ", not to the given digest ", options_.digest));
        absl::Status st = error_;
        mu_.Unlock();
        return st;
      }
    }
  }
  std::memcpy(buf, src, n);
  front.used += n;
  if (front.used == front.data.size()) queue_.pop_front();
  buffered_ -= n;
  at_ += static_cast<int64_t>(n);
  taken_ += static_cast<int64_t>(n);
  window_bytes_ += static_cast<int64_t>(n);
  const bool resume = paused_ && buffered_ < options_.max_buffered / 2;
  if (resume) paused_ = false;
  mu_.Unlock();
  if (resume && on_room_) on_room_();
  return n;
}

}  // namespace regd
