// File access for paths that callers name: opened beneath an allowed root
// with no gap between the check and the use, never blocking, regular files
// only. Plus small helpers with Status results.
//
// UniqueFd owns one file descriptor. The free functions are thread-compatible.
#ifndef REGD_CORE_FILES_H_
#define REGD_CORE_FILES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace regd {

// Owns a file descriptor; closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.Release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = o.Release();
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset();

 private:
  int fd_ = -1;
};

enum class FileKind {
  kRegular,    // a regular file (anything else: INVALID_ARGUMENT)
  kDirectory,  // a directory
};

// Opens the absolute `path` for reading, held beneath whichever of `roots`
// it names (a root as written, or as it resolves). Resolution happens in the
// kernel in the same step as the open (openat2 RESOLVE_BENEATH |
// RESOLVE_NO_MAGICLINKS; where openat2 is missing, a walk that opens every
// component with O_NOFOLLOW): a symlink or `..` that leads out of the root,
// even one swapped in mid-call, fails. The open never blocks (O_NONBLOCK), and
// a FIFO, socket or device is INVALID_ARGUMENT.
// Errors: INVALID_ARGUMENT (relative or bad path, wrong kind), PERMISSION_DENIED
// (outside the roots, no roots, or no access), NOT_FOUND, RESOURCE_EXHAUSTED
// (out of file descriptors).
[[nodiscard]] absl::StatusOr<UniqueFd> OpenBeneathRoots(const std::string& path,
                                                        const std::vector<std::string>& roots,
                                                        FileKind kind = FileKind::kRegular);

// How OpenBeneath resolves: openat2 where the kernel has it, or (for tests of
// the fallback) always the O_NOFOLLOW walk.
enum class Resolver { kAuto, kWalk };

// Opens `relative` beneath the directory `dir_fd` in the same way. `shown`
// names the file in messages.
[[nodiscard]] absl::StatusOr<UniqueFd> OpenBeneath(int dir_fd, const std::string& relative,
                                                   FileKind kind, absl::string_view shown,
                                                   Resolver resolver = Resolver::kAuto);

// Reads all of `fd` (from its current offset); RESOURCE_EXHAUSTED past `max_size`.
[[nodiscard]] absl::StatusOr<std::string> ReadSmallFd(int fd, size_t max_size,
                                                      absl::string_view shown);

// Reads a whole (small) file that the operator named (config, docker
// config); RESOURCE_EXHAUSTED beyond `max_size`, NOT_FOUND when absent.
[[nodiscard]] absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                                        size_t max_size = 4 << 20);

}  // namespace regd

#endif  // REGD_CORE_FILES_H_
