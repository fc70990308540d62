#include "core/files.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace regd {
namespace {

class FilesTest : public ::testing::TestWithParam<Resolver> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/regd-files-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    base_ = tmpl;
    root_ = base_ + "/root";
    outside_ = base_ + "/outside";
    ASSERT_EQ(::mkdir(root_.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir(outside_.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((root_ + "/d").c_str(), 0755), 0);
    Write(root_ + "/d/f", "inside");
    Write(outside_ + "/secret", "outside");
    root_fd_ = UniqueFd(::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root_fd_.valid());
  }
  void TearDown() override { (void)std::system(("rm -rf " + base_).c_str()); }

  static void Write(const std::string& path, const std::string& data) {
    std::ofstream(path) << data;
  }
  absl::StatusOr<std::string> Read(const std::string& rel) {
    absl::StatusOr<UniqueFd> fd =
        OpenBeneath(root_fd_.get(), rel, FileKind::kRegular, rel, GetParam());
    if (!fd.ok()) return fd.status();
    return ReadSmallFd(fd->get(), 1 << 20, rel);
  }

  std::string base_, root_, outside_;
  UniqueFd root_fd_;
};

TEST_P(FilesTest, OpensFilesBeneathTheRoot) {
  EXPECT_EQ(*Read("d/f"), "inside");
  EXPECT_EQ(*Read("d/../d/f"), "inside");
  EXPECT_TRUE(absl::IsNotFound(Read("d/nope").status()));
}

TEST_P(FilesTest, NothingLeadsOut) {
  ASSERT_EQ(::symlink((outside_ + "/secret").c_str(), (root_ + "/abs").c_str()), 0);
  ASSERT_EQ(::symlink("../outside/secret", (root_ + "/rel").c_str()), 0);
  ASSERT_EQ(::symlink(outside_.c_str(), (root_ + "/dirlink").c_str()), 0);
  for (const char* rel :
       {"abs", "rel", "dirlink/secret", "../outside/secret", "d/../../outside/secret"}) {
    absl::StatusOr<std::string> got = Read(rel);
    EXPECT_TRUE(absl::IsPermissionDenied(got.status())) << rel << ": " << got.status();
  }
}

TEST_P(FilesTest, OnlyRegularFilesAndNeverBlocks) {
  ASSERT_EQ(::mkfifo((root_ + "/fifo").c_str(), 0600), 0);
  // A FIFO with no writer would block a plain open() forever.
  EXPECT_TRUE(absl::IsInvalidArgument(Read("fifo").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(Read("d").status()));
  int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::string sock = root_ + "/sock";
  std::strncpy(a.sun_path, sock.c_str(), sizeof a.sun_path - 1);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_TRUE(absl::IsInvalidArgument(Read("sock").status()));
  ::close(s);
}

TEST_P(FilesTest, RootsAsWrittenOrResolved) {
  std::string alias = base_ + "/alias";
  ASSERT_EQ(::symlink(root_.c_str(), alias.c_str()), 0);
  std::vector<std::string> roots = {alias + "/"};
  EXPECT_TRUE(OpenBeneathRoots(alias + "/d/f", roots).ok());
  EXPECT_TRUE(OpenBeneathRoots(root_ + "/d/f", roots).ok());  // the resolved form
  EXPECT_TRUE(absl::IsPermissionDenied(OpenBeneathRoots(outside_ + "/secret", roots).status()));
  EXPECT_TRUE(absl::IsPermissionDenied(OpenBeneathRoots(root_ + "x/d/f", roots).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(OpenBeneathRoots("d/f", roots).status()));
  EXPECT_TRUE(absl::IsPermissionDenied(OpenBeneathRoots(root_ + "/d/f", {}).status()));
  EXPECT_TRUE(OpenBeneathRoots(root_ + "/d", roots, FileKind::kDirectory).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(OpenBeneathRoots(std::string(5000, '/'), roots).status()));
}

INSTANTIATE_TEST_SUITE_P(Resolvers, FilesTest, ::testing::Values(Resolver::kAuto, Resolver::kWalk));

}  // namespace
}  // namespace regd
