#include "core/files.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
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

int OpenFlags(FileKind kind) {
  int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  if (kind == FileKind::kDirectory) flags |= O_DIRECTORY;
  return flags;
}

// openat2 with RESOLVE_BENEATH; -1 with errno set. ENOSYS (or EPERM from a
// seccomp filter that does not know the call) means "not available".
int OpenAt2(int dir_fd, const std::string& rel, FileKind kind) {
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = static_cast<uint64_t>(OpenFlags(kind));
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  long fd = -1;
  // EAGAIN: a rename raced with the lookup; the kernel asks for another try.
  for (int tries = 0; tries < 64; ++tries) {
    fd = ::syscall(SYS_openat2, dir_fd, rel.c_str(), &how, sizeof how);
    if (fd >= 0 || (errno != EINTR && errno != EAGAIN)) break;
  }
  return static_cast<int>(fd);
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
    int flags = last ? OpenFlags(kind) : (O_RDONLY | O_CLOEXEC | O_DIRECTORY);
    int fd = ::openat(current(), part.c_str(), flags | O_NOFOLLOW);
    if (fd < 0) {
      // O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR: call it what it is.
      struct stat st;
      if (errno == ENOTDIR && ::fstatat(current(), part.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISLNK(st.st_mode)) {
        errno = ELOOP;
      }
      return -1;
    }
    if (last) return fd;
    stack.emplace_back(fd);
  }
  // "" or "." or "a/..": the start directory itself.
  return ::openat(current(), ".", OpenFlags(kind));
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
  static std::atomic<bool> have_openat2{true};
  int fd = -1;
  bool walk = resolver == Resolver::kWalk || !have_openat2.load(std::memory_order_relaxed);
  if (!walk) {
    fd = OpenAt2(dir_fd, rel, kind);
    if (fd < 0 && (errno == ENOSYS || errno == EPERM)) {
      // No openat2 here (an old kernel, or a seccomp filter that refuses it).
      have_openat2.store(false, std::memory_order_relaxed);
      walk = true;
    }
  }
  if (walk) fd = WalkBeneath(dir_fd, rel, kind);
  if (fd < 0) return OpenError(errno, shown);
  UniqueFd out(fd);
  struct stat st;
  if (::fstat(out.get(), &st) != 0) return OpenError(errno, shown);
  const bool right_kind = kind == FileKind::kRegular ? S_ISREG(st.st_mode) : S_ISDIR(st.st_mode);
  if (!right_kind) {
    return absl::InvalidArgumentError(absl::StrCat(
        ForMessage(shown), kind == FileKind::kRegular ? " is not a regular file (a FIFO, socket, "
                                                        "device or directory)"
                                                      : " is not a directory"));
  }
  // Regular files and directories never block; reads need no O_NONBLOCK.
  int fl = ::fcntl(out.get(), F_GETFL);
  if (fl >= 0) (void)::fcntl(out.get(), F_SETFL, fl & ~O_NONBLOCK);
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
