#include "core/files.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/text.h"

namespace regd {
namespace {

constexpr size_t kMaxPathBytes = 4096;

absl::Status OpenError(int err, absl::string_view shown) {
  std::string name = ForMessage(shown);
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(absl::StrCat("no such file: ", name));
    case EXDEV:
    case ELOOP:
      return absl::PermissionDeniedError(
          absl::StrCat("path ", name, " resolves outside the allowed paths"));
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(
          absl::StrCat("cannot open ", name, ": ", std::strerror(err)));
    case EMFILE:
    case ENFILE:
    case ENOMEM:
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot open ", name, ": ", std::strerror(err)));
    case ENXIO:  // a socket, or a device with nothing behind it
    case ENODEV:
      return absl::InvalidArgumentError(absl::StrCat(name, " is not a regular file"));
    default:
      return absl::FailedPreconditionError(
          absl::StrCat("cannot open ", name, ": ", std::strerror(err)));
  }
}

// Resolution opens with O_PATH: it names the file without opening it, so a
// FIFO cannot block and a device sees no open() (some act on one). The kind
// is checked on that handle; only then is the file really opened.
int PathFlags(FileKind kind) {
  int flags = O_PATH | O_CLOEXEC;
  if (kind == FileKind::kDirectory) flags |= O_DIRECTORY;
  return flags;
}

int OpenAt2Raw(int dir_fd, const char* rel, int flags) {
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = static_cast<uint64_t>(flags);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  long fd = -1;
  // EAGAIN: a rename raced with the lookup; the kernel asks for another try.
  for (int tries = 0; tries < 64; ++tries) {
    fd = ::syscall(SYS_openat2, dir_fd, rel, &how, sizeof how);
    if (fd >= 0 || (errno != EINTR && errno != EAGAIN)) break;
  }
  return static_cast<int>(fd);
}

// Whether this kernel (and seccomp filter) lets us use openat2: asked once.
bool HaveOpenAt2() {
  static const bool have = [] {
    int fd = OpenAt2Raw(AT_FDCWD, ".", O_PATH | O_CLOEXEC);
    if (fd >= 0) {
      ::close(fd);
      return true;
    }
    return errno != ENOSYS && errno != EPERM;
  }();
  return have;
}

// The fallback: one openat per component, O_NOFOLLOW each time, `..` only
// back down to the start. Any symlink fails (ELOOP), even a harmless one.
int WalkBeneath(int dir_fd, const std::string& rel, FileKind kind) {
  std::vector<UniqueFd> stack;
  auto current = [&] { return stack.empty() ? dir_fd : stack.back().get(); };
  std::vector<absl::string_view> parts = absl::StrSplit(rel, '/', absl::SkipEmpty());
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string part(parts[i]);
    if (part == ".") continue;
    if (part == "..") {
      if (stack.empty()) {
        errno = EXDEV;
        return -1;
      }
      stack.pop_back();
      continue;
    }
    const bool last = i + 1 == parts.size();
    // O_PATH|O_NOFOLLOW opens a symlink itself rather than failing.
    int fd = ::openat(current(), part.c_str(),
                      (last ? PathFlags(kind) : O_PATH | O_CLOEXEC | O_DIRECTORY) | O_NOFOLLOW);
    if (fd < 0) {
      // O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR: call it what it is.
      struct stat st;
      if (errno == ENOTDIR && ::fstatat(current(), part.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISLNK(st.st_mode)) {
        errno = ELOOP;
      }
      return -1;
    }
    if (last) {
      struct stat st;
      if (::fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) {
        ::close(fd);
        errno = ELOOP;
        return -1;
      }
      return fd;
    }
    stack.emplace_back(fd);
  }
  // "" or "." or "a/..": the start directory itself.
  return ::openat(current(), ".", PathFlags(kind));
}

// Opens for reading the file an O_PATH descriptor names. Through
// /proc/self/fd this is the very same inode (no path is looked up again).
int ReopenForReading(int path_fd, FileKind kind) {
  int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY;
  if (kind == FileKind::kDirectory) flags |= O_DIRECTORY;
  char proc[64];
  std::snprintf(proc, sizeof proc, "/proc/self/fd/%d", path_fd);
  return ::open(proc, flags);
}

}  // namespace

void UniqueFd::Reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

absl::StatusOr<UniqueFd> OpenBeneath(int dir_fd, const std::string& relative, FileKind kind,
                                     absl::string_view shown, Resolver resolver) {
  if (relative.size() > kMaxPathBytes || relative.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("bad file path ", ForMessage(shown)));
  }
  const std::string rel = relative.empty() ? "." : relative;
  const bool walk = resolver == Resolver::kWalk || !HaveOpenAt2();
  int fd = walk ? WalkBeneath(dir_fd, rel, kind) : OpenAt2Raw(dir_fd, rel.c_str(), PathFlags(kind));
  if (fd < 0) return OpenError(errno, shown);
  UniqueFd path(fd);
  struct stat st;
  if (::fstat(path.get(), &st) != 0) return OpenError(errno, shown);
  const bool right_kind = kind == FileKind::kRegular ? S_ISREG(st.st_mode) : S_ISDIR(st.st_mode);
  if (!right_kind) {
    return absl::InvalidArgumentError(absl::StrCat(
        ForMessage(shown), kind == FileKind::kRegular ? " is not a regular file (a FIFO, socket, "
                                                        "device or directory)"
                                                      : " is not a directory"));
  }
  UniqueFd out(ReopenForReading(path.get(), kind));
  if (!out.valid()) {
    if (errno != ENOENT) return OpenError(errno, shown);
    // No /proc: open the name again (non-blocking) and make sure it is still
    // the file that was checked.
    int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK |
                (kind == FileKind::kDirectory ? O_DIRECTORY : 0);
    out = UniqueFd(walk ? -1 : OpenAt2Raw(dir_fd, rel.c_str(), flags));
    struct stat again;
    if (!out.valid() || ::fstat(out.get(), &again) != 0 || again.st_dev != st.st_dev ||
        again.st_ino != st.st_ino) {
      return absl::UnavailableError(
          absl::StrCat(ForMessage(shown), " changed while it was being opened"));
    }
    int fl = ::fcntl(out.get(), F_GETFL);
    if (fl >= 0) (void)::fcntl(out.get(), F_SETFL, fl & ~O_NONBLOCK);
  }
  return out;
}

absl::StatusOr<UniqueFd> OpenBeneathRoots(const std::string& path,
                                          const std::vector<std::string>& roots, FileKind kind) {
  if (path.empty()) return absl::InvalidArgumentError("file path is empty");
  if (path.size() > kMaxPathBytes || path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("file path ", ForMessage(path), " is not a valid path"));
  }
  if (path.front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("file path must be absolute: ", ForMessage(path)));
  }
  if (roots.empty()) {
    return absl::PermissionDeniedError(
        "file sources are disabled: start regd with --allowed_paths to allow them");
  }
  for (const std::string& root : roots) {
    // The root as the operator wrote it, and as it resolves now.
    std::vector<std::string> names;
    std::string written(absl::StripSuffix(root, "/"));
    names.push_back(written.empty() ? "/" : written);
    char buf[PATH_MAX];
    if (::realpath(root.c_str(), buf) != nullptr && names[0] != buf) names.emplace_back(buf);
    for (const std::string& name : names) {
      std::string rel;
      if (name == "/") {
        rel = path.substr(1);
      } else if (path == name) {
        rel = ".";
      } else if (absl::StartsWith(path, name + "/")) {
        rel = path.substr(name.size() + 1);
      } else {
        continue;
      }
      int root_fd = ::open(name.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (root_fd < 0) continue;
      UniqueFd root_dir(root_fd);
      return OpenBeneath(root_dir.get(), rel, kind, path);
    }
  }
  return absl::PermissionDeniedError(
      absl::StrCat("path ", ForMessage(path), " is outside the allowed paths"));
}

absl::StatusOr<std::string> ReadSmallFd(int fd, size_t max_size, absl::string_view shown) {
  std::string out;
  char buf[16384];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot read ", ForMessage(shown), ": ", std::strerror(errno)));
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_size) {
      return absl::ResourceExhaustedError(
          absl::StrCat(ForMessage(shown), " is larger than ", max_size, " bytes"));
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    int err = errno;
    std::string msg = absl::StrCat("cannot open ", path, ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::FailedPreconditionError(msg);
  }
  UniqueFd owned(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, " is not a regular file"));
  }
  return ReadSmallFd(fd, max_size, path);
}

}  // namespace regd
