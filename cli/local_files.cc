#include "cli/local_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/digest.h"

namespace regdctl {
namespace {

constexpr size_t kPiece = 1 << 20;

// Closes a file descriptor at scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

absl::StatusOr<int> OpenRegular(const std::string& path, struct stat* st) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, path);
  if (fstat(fd, st) != 0) {
    int err = errno;
    close(fd);
    return ErrnoStatus(err, path);
  }
  if (!S_ISREG(st->st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  return fd;
}

}  // namespace

absl::Status ErrnoStatus(int err, absl::string_view what) { return absl::ErrnoToStatus(err, what); }

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, int64_t max_bytes) {
  struct stat st;
  absl::StatusOr<int> fd_or = OpenRegular(path, &st);
  if (!fd_or.ok()) return fd_or.status();
  Fd fd(*fd_or);
  if (st.st_size > max_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat(path, ": ", st.st_size, " bytes, more than the ", max_bytes, " allowed"));
  }
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, path);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (static_cast<int64_t>(out.size()) > max_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(path, ": more than ", max_bytes, " bytes"));
    }
  }
  return out;
}

absl::StatusOr<std::string> AbsolutePath(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("empty file path");
  if (path[0] == '/') return path;
  std::vector<char> cwd(4096);
  if (getcwd(cwd.data(), cwd.size()) == nullptr) return ErrnoStatus(errno, "getcwd");
  std::string dir(cwd.data());
  absl::string_view rel = path;
  while (rel.substr(0, 2) == "./") rel.remove_prefix(2);
  return absl::StrCat(dir, dir.back() == '/' ? "" : "/", rel);
}

absl::StatusOr<int64_t> RegularFileSize(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, path);
  if (!S_ISREG(st.st_mode))
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  return static_cast<int64_t>(st.st_size);
}

absl::StatusOr<FileDigest> HashFile(const std::string& path,
                                    const std::function<bool(int64_t, int64_t)>& on_progress) {
  struct stat st;
  absl::StatusOr<int> fd_or = OpenRegular(path, &st);
  if (!fd_or.ok()) return fd_or.status();
  Fd fd(*fd_or);
  absl::StatusOr<regd::Digester> digester = regd::Digester::Create("sha256");
  if (!digester.ok()) return digester.status();
  std::vector<char> buf(kPiece);
  FileDigest out;
  for (;;) {
    ssize_t n = read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, path);
    if (n == 0) break;
    digester->Update(buf.data(), static_cast<size_t>(n));
    out.size += n;
    if (on_progress && !on_progress(out.size, st.st_size)) {
      return absl::CancelledError(absl::StrCat("hashing ", path, " stopped"));
    }
  }
  out.digest = digester->Finish();
  return out;
}

}  // namespace regdctl
