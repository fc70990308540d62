// BlobStream between a simulated caller (a thread that honours send_from) and
// the reads an uploader makes. The end-to-end proof, through the real server
// and registry, is tests/integration/test_upload_blob.py.
#include "core/upload/blob_stream.h"

#include <atomic>
#include <random>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "core/digest.h"
#include "gtest/gtest.h"

namespace regd {
namespace {

// A caller: sends `data` in `chunk`-byte pieces from each offset it is asked
// for, restarting when asked again, pausing while the stream is full.
class Caller {
 public:
  Caller(std::string data, size_t chunk) : data_(std::move(data)), chunk_(chunk) {}
  ~Caller() { Stop(); }

  void Attach(BlobStream* stream) {
    stream_ = stream;
    thread_ = std::thread([this] { Run(); });
  }
  void AskFrom(int64_t offset) {
    absl::MutexLock lock(&mu_);
    asked_.push_back(offset);
    restart_ = true;
  }
  void Room() {
    absl::MutexLock lock(&mu_);
    room_ = true;
  }
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }
  std::vector<int64_t> asked() {
    absl::MutexLock lock(&mu_);
    return asked_;
  }
  int pauses() {
    absl::MutexLock lock(&mu_);
    return pauses_;
  }
  // Sends these before honouring the first ask.
  std::vector<std::pair<int64_t, std::string>> junk_first;
  bool close_after_first_pass = false;

 private:
  void Run() {
    for (auto& [off, bytes] : junk_first) stream_->Offer(off, bytes);
    int64_t pos = -1;
    bool closed = false;
    while (true) {
      if (close_after_first_pass && !closed && pos >= static_cast<int64_t>(data_.size())) {
        stream_->CallerDone();
        closed = true;
      }
      {
        absl::MutexLock lock(&mu_);
        auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stop_ || restart_ || room_;
        };
        if (pos < 0 || pos >= static_cast<int64_t>(data_.size()) || paused_) {
          mu_.Await(absl::Condition(&wake));
        }
        if (stop_) return;
        if (restart_) {
          pos = asked_.back();
          restart_ = false;
          paused_ = false;
        }
        if (room_) {
          room_ = false;
          paused_ = false;
        }
        if (paused_ || pos < 0) continue;
      }
      if (pos >= static_cast<int64_t>(data_.size())) continue;
      size_t n = std::min(chunk_, data_.size() - static_cast<size_t>(pos));
      bool more = stream_->Offer(pos, data_.substr(static_cast<size_t>(pos), n));
      pos += static_cast<int64_t>(n);
      if (!more) {
        absl::MutexLock lock(&mu_);
        // on_room may already have come (it is called after Offer returns).
        if (!room_) {
          paused_ = true;
          ++pauses_;
        }
      }
    }
  }

  const std::string data_;
  const size_t chunk_;
  BlobStream* stream_ = nullptr;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<int64_t> asked_ ABSL_GUARDED_BY(mu_);
  bool restart_ ABSL_GUARDED_BY(mu_) = false;
  bool room_ ABSL_GUARDED_BY(mu_) = false;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int pauses_ ABSL_GUARDED_BY(mu_) = 0;
};

std::string RandomBytes(size_t n, unsigned seed = 7) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

struct Fixture {
  Fixture(std::string data, std::string digest, size_t chunk, size_t max_buffered = 1 << 20,
          absl::Duration window = absl::Seconds(10))
      : caller(data, chunk), cancelled(NewCancelFlag()) {
    BlobStream::Options o;
    o.size = static_cast<int64_t>(data.size());
    o.digest = std::move(digest);
    o.max_buffered = max_buffered;
    o.window = window;
    auto s = BlobStream::Create(
        o, [this](int64_t off) { caller.AskFrom(off); }, [this] { caller.Room(); }, cancelled);
    EXPECT_TRUE(s.ok()) << s.status();
    stream = *std::move(s);
  }
  void Start() { caller.Attach(stream.get()); }

  // Reads [start, start+len) the way curl does, in `piece`-byte reads.
  absl::StatusOr<std::string> ReadRange(int64_t start, int64_t len, size_t piece = 64 << 10) {
    std::unique_ptr<BodySource> body = stream->Range(start, len);
    std::string out;
    std::string buf(piece, '\0');
    while (true) {
      absl::StatusOr<size_t> n = body->Read(buf.data(), buf.size());
      if (!n.ok()) {
        partial = out;
        return n.status();
      }
      if (*n == 0) break;
      out.append(buf.data(), *n);
    }
    // A failed body is padded to its length, so the request can end cleanly.
    EXPECT_EQ(static_cast<int64_t>(out.size()), len);
    if (!body->failure().ok()) {
      partial = out;
      return body->failure();
    }
    return out;
  }

  Caller caller;
  CancelFlag cancelled;
  std::unique_ptr<BlobStream> stream;
  std::string partial;  // what a failed ReadRange had got
};

TEST(BlobStream, StreamsTheWholeBlobFromOneAsk) {
  std::string data = RandomBytes(3 << 20);
  Fixture f(data, Sha256Digest(data), 100 << 10);
  f.Start();
  absl::StatusOr<std::string> got = f.ReadRange(0, static_cast<int64_t>(data.size()));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, data);
  EXPECT_EQ(f.caller.asked(), std::vector<int64_t>{0});
  EXPECT_EQ(f.stream->bytes_taken(), static_cast<int64_t>(data.size()));
  // 3 MiB through a 1 MiB buffer: the caller had to wait for room.
  EXPECT_GT(f.caller.pauses(), 0);
}

TEST(BlobStream, RangesInOrderNeedNoNewAsk) {
  std::string data = RandomBytes(2 << 20);
  Fixture f(data, Sha256Digest(data), 64 << 10);
  f.Start();
  const int64_t half = 1 << 20;
  ASSERT_EQ(*f.ReadRange(0, half), data.substr(0, half));
  ASSERT_EQ(*f.ReadRange(half, half), data.substr(half));
  EXPECT_EQ(f.caller.asked(), std::vector<int64_t>{0});
}

TEST(BlobStream, GoingBackAsksTheCallerAgainAndDropsStaleChunks) {
  std::string data = RandomBytes(3 << 20);
  Fixture f(data, Sha256Digest(data), 96 << 10);
  f.Start();
  ASSERT_EQ(*f.ReadRange(0, 2 << 20), data.substr(0, 2 << 20));
  // The registry confirmed only 1 MiB: the uploader goes on from there.
  absl::StatusOr<std::string> rest = f.ReadRange(1 << 20, 2 << 20);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(*rest, data.substr(1 << 20));
  EXPECT_EQ(f.caller.asked(), (std::vector<int64_t>{0, 1 << 20}));
  EXPECT_EQ(f.stream->asks(), 2);
}

TEST(BlobStream, RewindAsksAgain) {
  std::string data = RandomBytes(512 << 10);
  Fixture f(data, Sha256Digest(data), 64 << 10);
  f.Start();
  std::unique_ptr<BodySource> body = f.stream->Range(0, 512 << 10);
  std::string buf(100 << 10, '\0');
  ASSERT_TRUE(body->Read(buf.data(), buf.size()).ok());
  ASSERT_TRUE(body->Rewind().ok());
  std::string all;
  while (true) {
    absl::StatusOr<size_t> n = body->Read(buf.data(), buf.size());
    ASSERT_TRUE(n.ok()) << n.status();
    if (*n == 0) break;
    all.append(buf.data(), *n);
  }
  EXPECT_EQ(all, data);
  EXPECT_EQ(f.caller.asked(), (std::vector<int64_t>{0, 0}));
}

TEST(BlobStream, ChunksAtOtherOffsetsAreDropped) {
  std::string data = RandomBytes(300 << 10);
  Fixture f(data, Sha256Digest(data), 50 << 10);
  // (A chunk at the very offset wanted is taken: a caller's bytes at one
  // offset are the same in every pass.)
  f.caller.junk_first = {{12345, std::string(1000, 'x')}, {5000, std::string(1000, 'y')}};
  f.Start();
  EXPECT_EQ(*f.ReadRange(0, static_cast<int64_t>(data.size())), data);
}

TEST(BlobStream, DigestMismatchNeverSendsTheLastBytes) {
  std::string data = RandomBytes(1 << 20);
  Fixture f(data, Sha256Digest("something else"), 64 << 10);
  f.Start();
  absl::StatusOr<std::string> got = f.ReadRange(0, static_cast<int64_t>(data.size()));
  ASSERT_TRUE(absl::IsInvalidArgument(got.status())) << got.status();
  EXPECT_NE(got.status().message().find("hash to"), std::string::npos);
  // What went out ends in padding, not in the blob's last bytes.
  EXPECT_NE(f.partial.substr(f.partial.size() - 1000), data.substr(data.size() - 1000));
  // And it stays failed.
  EXPECT_TRUE(absl::IsInvalidArgument(f.ReadRange(0, 10).status()));
}

TEST(BlobStream, PrepareChecksTheDigestBeforeTheTailGoesOut) {
  std::string data = RandomBytes(3 << 20);
  const int64_t tail = 1 << 20;
  const int64_t start = static_cast<int64_t>(data.size()) - tail;
  {
    Fixture f(data, Sha256Digest(data), 100 << 10);
    f.Start();
    ASSERT_EQ(*f.ReadRange(0, start), data.substr(0, start));
    ASSERT_TRUE(f.stream->Prepare(start).ok());
    // Served from memory, as often as needed, with no new ask.
    EXPECT_EQ(*f.ReadRange(start, tail), data.substr(start));
    EXPECT_EQ(*f.ReadRange(start + 10, tail - 10), data.substr(start + 10));
    EXPECT_EQ(f.caller.asked(), std::vector<int64_t>{0});
  }
  {
    Fixture f(data, Sha256Digest("other"), 100 << 10);
    f.Start();
    ASSERT_TRUE(f.ReadRange(0, start).ok());
    absl::Status ready = f.stream->Prepare(start);
    EXPECT_TRUE(absl::IsInvalidArgument(ready)) << ready;
  }
  {
    std::string big = RandomBytes(BlobStream::kMaxTail + 1);
    Fixture f(big, Sha256Digest(big), 100 << 10);
    f.Start();
    EXPECT_FALSE(f.stream->Prepare(0).ok()) << "more than kMaxTail is never held";
  }
}

TEST(BlobStream, ChunkPastTheSizeIsRefused) {
  std::string data = RandomBytes(1000);
  Fixture f(data, Sha256Digest(data), 1000);
  f.caller.junk_first = {{900, std::string(200, 'z')}};
  f.Start();
  absl::StatusOr<std::string> got = f.ReadRange(0, 1000);
  EXPECT_TRUE(absl::IsInvalidArgument(got.status())) << got.status();
}

TEST(BlobStream, CallerClosingEarlyIsAnError) {
  std::string data = RandomBytes(100 << 10);
  Fixture f(data, Sha256Digest(data), 10 << 10);
  f.caller.close_after_first_pass = true;
  f.Start();
  ASSERT_EQ(*f.ReadRange(0, 100 << 10), data);
  f.caller.Stop();
  // Asking for bytes again after the caller closed: nobody can send them.
  absl::StatusOr<std::string> again = f.ReadRange(0, 100 << 10);
  EXPECT_TRUE(absl::IsInvalidArgument(again.status())) << again.status();
}

TEST(BlobStream, CancelStopsAWaitingRead) {
  std::string data = RandomBytes(1000);
  Fixture f(data, Sha256Digest(data), 1000);  // caller never started: nothing comes
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(200));
    f.cancelled->store(true);
  });
  absl::Time start = absl::Now();
  absl::StatusOr<std::string> got = f.ReadRange(0, 1000);
  canceller.join();
  EXPECT_TRUE(absl::IsCancelled(got.status())) << got.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(BlobStream, SilentCallerTimesOut) {
  std::string data = RandomBytes(1000);
  Fixture f(data, Sha256Digest(data), 1000, 1 << 20, absl::Milliseconds(300));
  absl::StatusOr<std::string> got = f.ReadRange(0, 1000);
  EXPECT_TRUE(absl::IsDeadlineExceeded(got.status())) << got.status();
}

TEST(BlobStream, EmptyBlobMustHaveTheEmptyDigest) {
  BlobStream::Options o;
  o.size = 0;
  o.digest = Sha256Digest("x");
  EXPECT_TRUE(absl::IsInvalidArgument(BlobStream::Create(o, nullptr, nullptr, nullptr).status()));
  o.digest = Sha256Digest("");
  EXPECT_TRUE(BlobStream::Create(o, nullptr, nullptr, nullptr).ok());
  o.digest = "md5:abc";
  EXPECT_FALSE(BlobStream::Create(o, nullptr, nullptr, nullptr).ok());
}

}  // namespace
}  // namespace regd
