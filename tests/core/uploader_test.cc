// BlobUploader against an in-memory registry behind the Transport seam, with
// scripted faults. (The same behaviours are proven end to end against the real
// docker-registry through tests/fixtures/fault_proxy.py; this pins the state
// machine's decisions precisely and fast.)
#include "core/upload/uploader.h"

#include <map>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "core/auth/authenticator.h"
#include "core/digest.h"
#include "gtest/gtest.h"

namespace regd {
namespace {

// A registry's upload API in memory. Faults are keyed by "METHOD#n" (1-based
// count of that method).
class FakeRegistry : public Transport {
 public:
  struct Fault {
    enum Kind { kStatus, kResetAfterBytes, kResetBefore } kind = kStatus;
    long status = 503;
    int64_t bytes = 0;  // kResetAfterBytes: how much of the body lands first
    std::string retry_after;
  };

  // Behaviour switches.
  bool kill_session_on_partial = false;    // distribution 2.8: partial body → session dies
  bool range_stuck = false;                // ECR: Range stops advancing
  bool kill_session_on_put_fault = false;  // a failed commit cancels the session
  int64_t min_chunk = 0;
  int64_t max_patch = 0;  // GHCR: a Content-Range PATCH over this is refused with 416
  std::map<std::string, Fault> faults;

  std::map<std::string, std::string> blobs;  // digest → bytes
  int64_t body_bytes = 0;                    // request-body bytes the registry received
  std::vector<std::string> log;

  absl::StatusOr<HttpResponse> Send(const HttpRequest& req) override {
    absl::MutexLock lock(&mu_);
    std::string path = req.url.substr(req.url.find('/', 8));
    int n = ++counts_[req.method];
    log.push_back(absl::StrCat(req.method, " ", path));
    HttpResponse r;
    std::string body = ReadBody(req);
    auto fault = faults.find(absl::StrCat(req.method, "#", n));
    if (fault != faults.end()) {
      const Fault& f = fault->second;
      if (kill_session_on_put_fault && req.method == "PUT") KillSessionOf(path);
      if (f.kind == Fault::kResetBefore) return absl::UnavailableError("connection reset");
      if (f.kind == Fault::kResetAfterBytes) {
        ApplyPartial(req, path, body.substr(0, f.bytes));
        return absl::UnavailableError("connection reset mid-body");
      }
      r.status = f.status;
      if (!f.retry_after.empty()) r.headers.emplace_back("retry-after", f.retry_after);
      return r;
    }
    if (req.method == "GET" && path == "/v2/") {
      r.status = 200;
      return r;
    }
    if (req.method == "HEAD" && absl::StrContains(path, "/blobs/sha256:")) {
      std::string digest = path.substr(path.rfind('/') + 1);
      r.status = blobs.count(digest) ? 200 : 404;
      return r;
    }
    if (req.method == "POST") {
      std::string id = absl::StrCat("u", ++next_id_);
      sessions_[id] = Session{};
      r.status = 202;
      r.headers.emplace_back("location", Loc(id));
      if (min_chunk > 0) r.headers.emplace_back("oci-chunk-min-length", absl::StrCat(min_chunk));
      return r;
    }
    std::string id, state;
    if (!ParseLoc(path, &id, &state)) {
      r.status = 404;
      return r;
    }
    auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second.dead) {
      r.status = 404;
      return r;
    }
    Session& s = it->second;
    // distribution 2.8: a session that appended a partial body no longer
    // matches any _state; touching it cancels it.
    if (kill_session_on_partial && s.partial) s.dead = true;
    if (s.dead || state != absl::StrCat(s.state)) {
      r.status = 404;
      return r;
    }
    if (req.method == "GET") {
      r.status = 204;
      r.headers.emplace_back("location", Loc(id));
      size_t held = range_stuck && s.first_len > 0 ? s.first_len : s.data.size();
      r.headers.emplace_back("range", absl::StrCat("0-", held == 0 ? 0 : held - 1));
      return r;
    }
    if (req.method == "PATCH") {
      std::string cr;
      for (auto& [k, v] : req.headers)
        if (k == "Content-Range") cr = v;
      int64_t start = 0;
      absl::SimpleAtoi(cr.substr(0, cr.find('-')), &start);
      if (start != static_cast<int64_t>(s.data.size()) ||
          (max_patch > 0 && static_cast<int64_t>(body.size()) > max_patch)) {
        r.status = 416;
        return r;
      }
      s.data += body;
      body_bytes += static_cast<int64_t>(body.size());
      ++s.state;
      r.status = 202;
      r.headers.emplace_back("location", Loc(id));
      int64_t end = range_stuck && s.state > 1 ? static_cast<int64_t>(s.first_len) - 1
                                               : static_cast<int64_t>(s.data.size()) - 1;
      if (s.state == 1) s.first_len = s.data.size();
      r.headers.emplace_back("range", absl::StrCat("0-", end));
      return r;
    }
    if (req.method == "PUT") {
      s.data += body;
      body_bytes += static_cast<int64_t>(body.size());
      std::string digest = path.substr(path.find("digest=") + 7);
      absl::StrReplaceAll({{"%3A", ":"}}, &digest);
      if (Sha256Digest(s.data) != digest) {
        r.status = 400;
        r.body = R"({"errors":[{"code":"DIGEST_INVALID","message":"digest did not match"}]})";
        return r;
      }
      blobs[digest] = s.data;
      sessions_.erase(it);
      r.status = 201;
      return r;
    }
    if (req.method == "DELETE") {
      deleted.push_back(id);
      sessions_.erase(it);
      r.status = 204;
      return r;
    }
    r.status = 405;
    return r;
  }

  std::vector<std::string> deleted;
  size_t open_sessions() {
    absl::MutexLock lock(&mu_);
    return sessions_.size();
  }

 private:
  struct Session {
    std::string data;
    int state = 0;
    bool partial = false;
    bool dead = false;
    size_t first_len = 0;
  };
  std::string Loc(const std::string& id) {
    return absl::StrCat("/v2/r/blobs/uploads/", id, "?_state=", sessions_[id].state);
  }
  bool ParseLoc(const std::string& path, std::string* id, std::string* state) {
    if (!absl::StartsWith(path, "/v2/r/blobs/uploads/")) return false;
    std::string rest = path.substr(strlen("/v2/r/blobs/uploads/"));
    *id = rest.substr(0, rest.find('?'));
    size_t st = rest.find("_state=");
    if (st == std::string::npos) return false;
    *state =
        rest.substr(st + 7, rest.find('&', st) == std::string::npos ? std::string::npos
                                                                    : rest.find('&', st) - st - 7);
    return true;
  }
  std::string ReadBody(const HttpRequest& req) {
    if (req.body_source == nullptr) return req.body;
    std::string out;
    char buf[4096];
    while (true) {
      auto n = req.body_source->Read(buf, sizeof buf);
      if (!n.ok() || *n == 0) break;
      out.append(buf, *n);
    }
    return out;
  }
  void KillSessionOf(const std::string& path) {
    std::string id, state;
    if (ParseLoc(path, &id, &state)) sessions_.erase(id);
  }
  void ApplyPartial(const HttpRequest& req, const std::string& path, const std::string& part) {
    std::string id, state;
    if (!ParseLoc(path, &id, &state)) return;
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    it->second.data += part;  // the registry appended what arrived
    body_bytes += static_cast<int64_t>(part.size());
    it->second.partial = true;
    // A spec registry keeps the session and its Location valid; GET reports
    // the bytes it holds.
    if (!kill_session_on_partial) it->second.partial = false;
  }

  absl::Mutex mu_;
  std::map<std::string, int> counts_;
  std::map<std::string, Session> sessions_;
  int next_id_ = 0;
};

class UploaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937 rng(42);
    data_.resize(10 * 1024 * 1024 + 123);
    for (char& c : data_) c = static_cast<char>(rng());
    digest_ = Sha256Digest(data_);
    blob_ = OpenedBlob::FromData(data_);
  }

  absl::StatusOr<LayerOutcomeKind> Run(int64_t chunk, int max_attempts = 5) {
    CredentialStore::Options co;
    co.docker_config_dir = "/nonexistent";
    creds_ = std::make_unique<CredentialStore>(co, SystemClock());
    auth_ = std::make_unique<Authenticator>(&reg_, SystemClock());
    client_ = std::make_unique<RegistryClient>(&reg_, auth_.get());
    UploadJob job;
    job.endpoint = Endpoint{"fake:5000", "http://fake:5000", ""};
    job.repo = Repository{"fake:5000", "r"};
    job.digest = digest_;
    job.size = static_cast<int64_t>(data_.size());
    job.blob = blob_.get();
    job.who.daemon = creds_.get();
    job.chunk_size = chunk;
    job.monolithic_threshold = chunk;
    job.retry = RetryPolicy{max_attempts, absl::Milliseconds(1), 2, 0.1, absl::Milliseconds(5)};
    job.events.on_retry = [this](const RetryNotice& n) { retries_.push_back(n); };
    job.events.on_progress = [this](int64_t c, int64_t t) {
      progress_.push_back(c);
      EXPECT_EQ(t, static_cast<int64_t>(data_.size()));
    };
    job.sleep = [this](absl::Duration d) {
      slept_.push_back(d);
      return true;
    };
    BlobUploader u(client_.get(), std::move(job));
    return u.Run();
  }

  const int64_t kMiB = 1 << 20;
  std::string data_;
  std::string digest_;
  std::unique_ptr<OpenedBlob> blob_;
  FakeRegistry reg_;
  std::unique_ptr<CredentialStore> creds_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<RegistryClient> client_;
  std::vector<RetryNotice> retries_;
  std::vector<int64_t> progress_;
  std::vector<absl::Duration> slept_;
};

TEST_F(UploaderTest, ChunkedUploadCommits) {
  auto r = Run(4 * kMiB);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, LayerOutcomeKind::kUploaded);
  EXPECT_EQ(reg_.blobs.at(digest_), data_);
  EXPECT_EQ(reg_.body_bytes, static_cast<int64_t>(data_.size()));
  EXPECT_TRUE(retries_.empty());
  for (size_t i = 1; i < progress_.size(); ++i) EXPECT_GE(progress_[i], progress_[i - 1]);
}

TEST_F(UploaderTest, SmallBlobIsOneMonolithicPut) {
  auto r = Run(64 * kMiB);
  ASSERT_TRUE(r.ok()) << r.status();
  int patches = 0;
  for (auto& l : reg_.log) patches += absl::StartsWith(l, "PATCH");
  EXPECT_EQ(patches, 0);
  EXPECT_EQ(reg_.body_bytes, static_cast<int64_t>(data_.size()));
}

TEST_F(UploaderTest, ExistingBlobIsNotSent) {
  reg_.blobs[digest_] = data_;
  auto r = Run(4 * kMiB);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, LayerOutcomeKind::kExisted);
  EXPECT_EQ(reg_.body_bytes, 0);
}

TEST_F(UploaderTest, ResetBetweenChunksResumesWithoutResending) {
  reg_.faults["PATCH#2"] = {FakeRegistry::Fault::kResetBefore};
  auto r = Run(4 * kMiB);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(reg_.blobs.at(digest_), data_);
  EXPECT_EQ(reg_.body_bytes, static_cast<int64_t>(data_.size()));  // nothing re-sent
  ASSERT_EQ(retries_.size(), 1u);
  EXPECT_EQ(retries_[0].attempt, 1);
  EXPECT_EQ(retries_[0].max_attempts, 5);
  EXPECT_NE(retries_[0].error.find("reset"), std::string::npos);
}

TEST_F(UploaderTest, MidBodyResetOnSpecRegistryResumesFromItsRange) {
  reg_.faults["PATCH#2"] = {FakeRegistry::Fault::kResetAfterBytes, 0, 1 * kMiB};
  auto r = Run(4 * kMiB);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(reg_.blobs.at(digest_), data_);
  // The registry kept the 1 MiB that arrived and nothing was sent twice.
  EXPECT_EQ(reg_.body_bytes, static_cast<int64_t>(data_.size()));
}

TEST_F(UploaderTest, MidBodyResetOnDistribution28StartsAFreshSession) {
  reg_.kill_session_on_partial = true;
  reg_.faults["PATCH#2"] = {FakeRegistry::Fault::kResetAfterBytes, 0, 1 * kMiB};
  auto r = Run(4 * kMiB);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(reg_.blobs.at(digest_), data_);
  int posts = 0;
  for (auto& l : reg_.log) posts += absl::StartsWith(l, "POST");
  EXPECT_EQ(posts, 2);
  // No more than a restart: the first chunk plus the whole blob.
  EXPECT_LE(reg_.body_bytes, static_cast<int64_t>(data_.size()) + 4 * kMiB + 1 * kMiB);
}

TEST_F(UploaderTest, ServerErrorsHonourRetryAfterAndCountAttempts) {
  reg_.faults["PATCH#2"] = {FakeRegistry::Fault::kStatus, 503, 0, "3"};
  reg_.faults["PATCH#3"] = {FakeRegistry::Fault::kStatus, 429, 0, ""};
  auto r = Run(4 * kMiB);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(retries_.size(), 2u);
  EXPECT_EQ(retries_[0].attempt, 1);
  EXPECT_EQ(retries_[1].attempt, 2);
  EXPECT_GE(retries_[0].next_retry_in, absl::Seconds(3));
  EXPECT_GE(slept_[0], absl::Seconds(3));
  EXPECT_EQ(reg_.body_bytes, static_cast<int64_t>(data_.size()));
}

TEST_F(UploaderTest, GivesUpAfterMaxAttemptsAndDeletesTheSession) {
  for (int i = 2; i < 10; ++i)
    reg_.faults[absl::StrCat("PATCH#", i)] = {FakeRegistry::Fault::kStatus, 502};
  auto r = Run(4 * kMiB, 3);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("after 3 attempts"), absl::string_view::npos);
  EXPECT_EQ(retries_.size(), 2u);
  EXPECT_EQ(reg_.deleted.size(), 1u);
  EXPECT_EQ(reg_.open_sessions(), 0u);
}

TEST_F(UploaderTest, ARegistryThatKeepsDroppingSessionsCannotLoopForever) {
  // Every session takes one chunk, then loses the next mid-body (and the
  // session with it): the upload never gets past 4 MiB, so it must give up.
  reg_.kill_session_on_partial = true;
  for (int i = 2; i < 200; i += 2) {
    reg_.faults[absl::StrCat("PATCH#", i)] = {FakeRegistry::Fault::kResetAfterBytes, 0, 1 * kMiB};
  }
  auto r = Run(4 * kMiB, 4);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(retries_.size(), 3u);
}

TEST_F(UploaderTest, ForbiddenIsNotRetried) {
  reg_.faults["PATCH#1"] = {FakeRegistry::Fault::kStatus, 403};
  auto r = Run(4 * kMiB);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(retries_.empty());
  EXPECT_EQ(reg_.open_sessions(), 0u);
}

TEST_F(UploaderTest, FailedCommitThatLandedIsSuccess) {
  // The PUT's answer is lost but the blob was stored: HEAD says so.
  reg_.faults["PUT#1"] = {FakeRegistry::Fault::kResetBefore};
  reg_.blobs.clear();
  auto r = Run(4 * kMiB);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(reg_.blobs.at(digest_), data_);
}

TEST_F(UploaderTest, StuckRangeTracksAcknowledgedBytes) {
  reg_.range_stuck = true;
  auto r = Run(2 * kMiB);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(reg_.blobs.at(digest_), data_);
}

TEST_F(UploaderTest, EmptyBlobWhoseCommitFailedIsUploadedAgainNotAssumed) {
  data_.clear();
  digest_ = Sha256Digest(data_);
  blob_ = OpenedBlob::FromData(data_);
  reg_.kill_session_on_put_fault = true;
  reg_.faults["PUT#1"] = {FakeRegistry::Fault::kStatus, 503};
  auto r = Run(4 * kMiB);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, LayerOutcomeKind::kUploaded);
  ASSERT_EQ(reg_.blobs.count(digest_), 1u) << "reported UPLOADED for a blob that never landed";
}

TEST_F(UploaderTest, StuckRangeAfterAFailureKeepsAcknowledgedBytes) {
  reg_.range_stuck = true;
  reg_.faults["PATCH#4"] = {FakeRegistry::Fault::kResetBefore};
  auto r = Run(2 * kMiB);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(reg_.blobs.at(digest_), data_);
  EXPECT_EQ(reg_.body_bytes, static_cast<int64_t>(data_.size()));
  EXPECT_EQ(retries_.size(), 1u);
}

TEST_F(UploaderTest, ChunksHalveWhenTheRegistryRefusesTheirSize) {
  reg_.max_patch = 4 * kMiB;  // GHCR
  auto r = Run(8 * kMiB);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(reg_.blobs.at(digest_), data_);
  EXPECT_EQ(retries_.size(), 1u);  // one refused 8 MiB chunk, then 4 MiB ones
  EXPECT_EQ(reg_.body_bytes, static_cast<int64_t>(data_.size()));
}

TEST_F(UploaderTest, ChunkRaisedToRegistryMinimum) {
  reg_.min_chunk = 5 * kMiB;
  auto r = Run(1 * kMiB);
  ASSERT_TRUE(r.ok()) << r.status();
  int patches = 0;
  for (auto& l : reg_.log) patches += absl::StartsWith(l, "PATCH");
  EXPECT_EQ(patches, 3);  // 10 MiB + 123 bytes in 5 MiB chunks
}

TEST_F(UploaderTest, WrongDigestFailsAndCommitsNothing) {
  digest_ = Sha256Digest("something else");
  auto r = Run(4 * kMiB);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(reg_.blobs.empty());
  EXPECT_EQ(reg_.open_sessions(), 0u);
}

}  // namespace
}  // namespace regd
