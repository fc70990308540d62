#include "core/upload/blob_source.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/digest.h"
#include "core/status_macros.h"

namespace regd {
namespace {

[[nodiscard]] absl::StatusOr<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return absl::NotFoundError(absl::StrCat("no such file: ", path));
    }
    return absl::PermissionDeniedError(
        absl::StrCat("cannot resolve ", path, ": ", std::strerror(err)));
  }
  return std::string(buf);
}

class RangeBody : public BodySource {
 public:
  RangeBody(const OpenedBlob* blob, int64_t start, int64_t len)
      : blob_(blob), start_(start), len_(len) {}
  int64_t size() const override { return len_; }
  absl::StatusOr<size_t> Read(char* buf, size_t len) override {
    int64_t left = len_ - pos_;
    if (left <= 0) return 0;
    size_t want = static_cast<size_t>(std::min<int64_t>(left, static_cast<int64_t>(len)));
    ASSIGN_OR_RETURN(size_t got, blob_->ReadAt(start_ + pos_, buf, want));
    if (got == 0) return absl::DataLossError("file shrank while it was being uploaded");
    pos_ += static_cast<int64_t>(got);
    return got;
  }
  absl::Status Rewind() override {
    pos_ = 0;
    return absl::OkStatus();
  }

 private:
  const OpenedBlob* blob_;
  const int64_t start_;
  const int64_t len_;
  int64_t pos_ = 0;
};

}  // namespace

absl::StatusOr<std::string> ResolveAllowedPath(const std::string& path,
                                               const std::vector<std::string>& roots) {
  if (path.empty()) return absl::InvalidArgumentError("file path is empty");
  if (path.front() != '/') {
    return absl::InvalidArgumentError(absl::StrCat("file path must be absolute: ", path));
  }
  if (roots.empty()) {
    return absl::PermissionDeniedError(
        "file sources are disabled: start regd with --allowed_paths to allow them");
  }
  ASSIGN_OR_RETURN(std::string real, RealPath(path));
  for (const std::string& root : roots) {
    absl::StatusOr<std::string> real_root = RealPath(root);
    if (!real_root.ok()) continue;
    std::string prefix = *real_root == "/" ? "/" : absl::StrCat(*real_root, "/");
    if (real == *real_root || absl::StartsWith(real, prefix)) return real;
  }
  return absl::PermissionDeniedError(
      absl::StrCat("path ", path, " resolves outside the allowed paths"));
}

absl::StatusOr<std::unique_ptr<OpenedBlob>> OpenedBlob::OpenFile(const std::string& path) {
  // `path` is already resolved: a symlink here means it was swapped since.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat("no such file: ", path));
    if (err == ELOOP) return absl::PermissionDeniedError(absl::StrCat(path, " is a symlink"));
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open ", path, ": ", std::strerror(err)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a regular file"));
  }
  std::unique_ptr<OpenedBlob> b(new OpenedBlob());
  b->fd_ = fd;
  b->size_ = st.st_size;
  b->path_ = path;
  b->identity_ = absl::StrCat(st.st_dev, ":", st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec,
                              ".", st.st_mtim.tv_nsec);
  // A file modified within the last two seconds may change again without its
  // mtime moving (timestamp granularity).
  b->recently_modified_ = ::time(nullptr) - st.st_mtim.tv_sec <= 2;
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return b;
}

std::unique_ptr<OpenedBlob> OpenedBlob::FromData(std::string data) {
  std::unique_ptr<OpenedBlob> b(new OpenedBlob());
  b->size_ = static_cast<int64_t>(data.size());
  b->data_ = std::move(data);
  return b;
}

OpenedBlob::~OpenedBlob() {
  if (fd_ >= 0) ::close(fd_);
}

std::unique_ptr<BodySource> OpenedBlob::Range(int64_t start, int64_t len) const {
  return std::make_unique<RangeBody>(this, start, len);
}

absl::StatusOr<size_t> OpenedBlob::ReadAt(int64_t offset, char* buf, size_t len) const {
  if (fd_ < 0) {
    if (offset >= size_) return 0;
    size_t n = std::min(len, static_cast<size_t>(size_ - offset));
    std::memcpy(buf, data_.data() + offset, n);
    return n;
  }
  while (true) {
    ssize_t n = ::pread(fd_, buf, len, offset);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) {
      return absl::DataLossError(absl::StrCat("cannot read ", path_, ": ", std::strerror(errno)));
    }
  }
}

absl::StatusOr<std::string> OpenedBlob::ComputeDigest(const std::string& algorithm) const {
  ASSIGN_OR_RETURN(Digester d, Digester::Create(algorithm));
  if (fd_ < 0) {
    d.Update(data_);
    return d.Finish();
  }
  std::string buf(1 << 20, '\0');
  int64_t off = 0;
  while (off < size_) {
    size_t want = static_cast<size_t>(std::min<int64_t>(size_ - off, buf.size()));
    ASSIGN_OR_RETURN(size_t n, ReadAt(off, buf.data(), want));
    if (n == 0) return absl::DataLossError("file shrank while it was being hashed");
    d.Update(buf.data(), n);
    off += static_cast<int64_t>(n);
  }
  return d.Finish();
}

}  // namespace regd
