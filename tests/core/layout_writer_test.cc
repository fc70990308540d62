#include "core/read/layout_writer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "core/digest.h"
#include "gtest/gtest.h"

namespace regd {
namespace {

class LayoutWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/regd-layout-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    base_ = tmpl;
    root_ = base_ + "/root";
    ASSERT_EQ(::mkdir(root_.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((base_ + "/outside").c_str(), 0755), 0);
  }
  void TearDown() override { (void)std::system(("rm -rf " + base_).c_str()); }

  static std::string Read(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }
  static bool Exists(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
  }
  std::unique_ptr<LayoutWriter> OpenOk(const std::string& path) {
    absl::StatusOr<std::unique_ptr<LayoutWriter>> w = LayoutWriter::Open(path, {root_});
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? std::move(*w) : nullptr;
  }

  std::string base_, root_;
};

TEST_F(LayoutWriterTest, CreatesMissingDirectoriesAndTheMarker) {
  auto w = OpenOk(root_ + "/a/b/layout");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(Read(root_ + "/a/b/layout/oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}");
  // An existing marker is left alone.
  std::ofstream(root_ + "/a/b/layout/oci-layout") << "{\"imageLayoutVersion\":\"1.0.0\",\"x\":1}";
  ASSERT_NE(OpenOk(root_ + "/a/b/layout"), nullptr);
  EXPECT_NE(Read(root_ + "/a/b/layout/oci-layout").find("\"x\""), std::string::npos);
}

TEST_F(LayoutWriterTest, RefusesPathsOutsideTheRootsAndDotDot) {
  EXPECT_FALSE(LayoutWriter::Open(base_ + "/outside/l", {root_}).ok());
  EXPECT_FALSE(LayoutWriter::Open(root_ + "/../outside/l", {root_}).ok());
  EXPECT_FALSE(LayoutWriter::Open("relative/l", {root_}).ok());
  EXPECT_FALSE(LayoutWriter::Open(root_ + "/l", {}).ok());
  EXPECT_FALSE(Exists(base_ + "/outside/l"));
  // A symlink inside the root that points out is not followed.
  ASSERT_EQ(::symlink((base_ + "/outside").c_str(), (root_ + "/link").c_str()), 0);
  EXPECT_FALSE(LayoutWriter::Open(root_ + "/link/l", {root_}).ok());
  EXPECT_FALSE(Exists(base_ + "/outside/l"));
}

TEST_F(LayoutWriterTest, PartialBlobResumesAndCommitsUnderItsDigest) {
  auto w = OpenOk(root_ + "/l");
  ASSERT_NE(w, nullptr);
  const std::string data = "hello, partial world";
  const std::string digest = Sha256Digest(data);
  const std::string hex = digest.substr(7);
  {
    absl::StatusOr<PartialBlob> p = w->OpenPartial(digest, data.size(), CancelFlag());
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->have(), 0);
    ASSERT_TRUE(p->Append(data.substr(0, 7)).ok());
  }  // a failed call: the bytes stay in the partial file
  absl::StatusOr<PartialBlob> p = w->OpenPartial(digest, data.size(), CancelFlag());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->have(), 7);
  absl::StatusOr<Digester> h = Digester::ForDigest(digest);
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(p->HashInto(&*h, CancelFlag()).ok());
  ASSERT_TRUE(p->Append(data.substr(7)).ok());
  h->Update(data.substr(7));
  EXPECT_EQ(h->Finish(), digest);
  EXPECT_FALSE(Exists(root_ + "/l/blobs/sha256/" + hex));
  ASSERT_TRUE(w->Commit(std::move(*p)).ok());
  EXPECT_EQ(Read(root_ + "/l/blobs/sha256/" + hex), data);
  EXPECT_FALSE(Exists(root_ + "/l/.regd-partial/sha256-" + hex));
  Descriptor d;
  d.digest = digest;
  d.size = static_cast<int64_t>(data.size());
  absl::StatusOr<bool> has = w->HasBlob(d, CancelFlag());
  ASSERT_TRUE(has.ok());
  EXPECT_TRUE(*has);
  // Damaged on disk: not present.
  std::ofstream(root_ + "/l/blobs/sha256/" + hex) << "hello, PARTIAL world";
  has = w->HasBlob(d, CancelFlag());
  ASSERT_TRUE(has.ok());
  EXPECT_FALSE(*has);
}

TEST_F(LayoutWriterTest, PartialLongerThanTheBlobStartsOver) {
  auto w = OpenOk(root_ + "/l");
  ASSERT_NE(w, nullptr);
  const std::string digest = Sha256Digest("abc");
  {
    absl::StatusOr<PartialBlob> p = w->OpenPartial(digest, 3, CancelFlag());
    ASSERT_TRUE(p.ok());
    ASSERT_TRUE(p->Append("abcdef").ok());
  }
  absl::StatusOr<PartialBlob> p = w->OpenPartial(digest, 3, CancelFlag());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->have(), 0);
}

TEST_F(LayoutWriterTest, SecondDownloaderOfOneBlobWaitsForTheFirst) {
  auto w = OpenOk(root_ + "/l");
  ASSERT_NE(w, nullptr);
  const std::string digest = Sha256Digest("x");
  absl::StatusOr<PartialBlob> first = w->OpenPartial(digest, 1, CancelFlag());
  ASSERT_TRUE(first.ok());
  CancelFlag cancelled = NewCancelFlag();
  cancelled->store(true);
  absl::StatusOr<PartialBlob> second = w->OpenPartial(digest, 1, cancelled);
  EXPECT_TRUE(absl::IsCancelled(second.status())) << second.status();
}

TEST_F(LayoutWriterTest, WaiterOfACommittedPartialGetsAFreshOne) {
  // B waits for A's lock on the partial file; A commits (renames that very
  // file to the blob's name). B must not write to the committed blob.
  auto w = OpenOk(root_ + "/l");
  ASSERT_NE(w, nullptr);
  const std::string data = "committed content";
  const std::string digest = Sha256Digest(data);
  absl::StatusOr<PartialBlob> a = w->OpenPartial(digest, data.size(), CancelFlag());
  ASSERT_TRUE(a.ok());
  absl::StatusOr<PartialBlob> b = absl::UnknownError("not yet");
  std::thread waiter([&] { b = w->OpenPartial(digest, 3, CancelFlag()); });  // a smaller size
  absl::SleepFor(absl::Milliseconds(100));
  ASSERT_TRUE(a->Append(data).ok());
  ASSERT_TRUE(w->Commit(std::move(*a)).ok());
  a = absl::UnknownError("moved");  // closes A's fd: the lock goes
  waiter.join();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->have(), 0);
  ASSERT_TRUE(b->Append("xyz").ok());
  EXPECT_EQ(Read(root_ + "/l/blobs/sha256/" + digest.substr(7)), data);
  ASSERT_TRUE(w->Discard(std::move(*b)).ok());
  EXPECT_FALSE(Exists(root_ + "/l/.regd-partial/sha256-" + digest.substr(7)));
}

TEST_F(LayoutWriterTest, HardLinkedPartialIsNotWrittenThrough) {
  auto w = OpenOk(root_ + "/l");
  ASSERT_NE(w, nullptr);
  const std::string digest = Sha256Digest("abc");
  std::ofstream(base_ + "/outside/victim") << "precious";
  ASSERT_EQ(::mkdir((root_ + "/l/.regd-partial").c_str(), 0755) == 0 || errno == EEXIST, true);
  ASSERT_EQ(::link((base_ + "/outside/victim").c_str(),
                   (root_ + "/l/.regd-partial/sha256-" + digest.substr(7)).c_str()),
            0);
  absl::StatusOr<PartialBlob> p = w->OpenPartial(digest, 3, CancelFlag());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->have(), 0);
  ASSERT_TRUE(p->Append("abc").ok());
  EXPECT_EQ(Read(base_ + "/outside/victim"), "precious");
}

TEST_F(LayoutWriterTest, IndexKeepsOtherEntriesAndReplacesTheSameName) {
  auto w = OpenOk(root_ + "/l");
  ASSERT_NE(w, nullptr);
  std::ofstream(root_ + "/l/index.json")
      << R"({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
      << R"("digest":"sha256:)" << std::string(64, 'a')
      << R"(","size":5,"artifactType":"keep/me","annotations":{"org.opencontainers.image.ref.name":"old"}}],)"
      << R"("annotations":{"k":"v"}})";
  Descriptor d;
  d.media_type = "application/vnd.oci.image.manifest.v1+json";
  d.digest = "sha256:" + std::string(64, 'b');
  d.size = 7;
  ASSERT_TRUE(w->AddToIndex(d, "new", CancelFlag()).ok());
  d.digest = "sha256:" + std::string(64, 'c');
  ASSERT_TRUE(w->AddToIndex(d, "new", CancelFlag()).ok());
  std::string index = Read(root_ + "/l/index.json");
  EXPECT_NE(index.find("keep/me"), std::string::npos) << index;
  EXPECT_NE(index.find("\"k\":\"v\""), std::string::npos) << index;
  EXPECT_EQ(index.find(std::string(64, 'b')), std::string::npos) << index;
  EXPECT_NE(index.find(std::string(64, 'c')), std::string::npos) << index;
  // A broken index.json is not replaced.
  std::ofstream(root_ + "/l/index.json") << "{not json";
  EXPECT_FALSE(w->AddToIndex(d, "x", CancelFlag()).ok());
  EXPECT_EQ(Read(root_ + "/l/index.json"), "{not json");
}

}  // namespace
}  // namespace regd
