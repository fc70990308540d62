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
#include "core/text.h"

namespace regd {
namespace {

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

absl::StatusOr<std::unique_ptr<OpenedBlob>> OpenedBlob::FromFd(UniqueFd fd, std::string shown) {
  struct stat st;
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(ForMessage(shown), " is not a regular file"));
  }
  std::unique_ptr<OpenedBlob> b(new OpenedBlob());
  b->size_ = st.st_size;
  b->path_ = ForMessage(shown);
  b->identity_ = absl::StrCat(st.st_dev, ":", st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec,
                              ".", st.st_mtim.tv_nsec);
  // A file modified within the last two seconds may change again without its
  // mtime moving (timestamp granularity).
  b->recently_modified_ = ::time(nullptr) - st.st_mtim.tv_sec <= 2;
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  b->fd_ = std::move(fd);
  return b;
}

std::unique_ptr<OpenedBlob> OpenedBlob::FromData(std::string data) {
  std::unique_ptr<OpenedBlob> b(new OpenedBlob());
  b->size_ = static_cast<int64_t>(data.size());
  b->owned_ = std::move(data);
  b->data_ = b->owned_;
  return b;
}

std::unique_ptr<OpenedBlob> OpenedBlob::FromView(absl::string_view data) {
  std::unique_ptr<OpenedBlob> b(new OpenedBlob());
  b->size_ = static_cast<int64_t>(data.size());
  b->data_ = data;
  return b;
}

OpenedBlob::~OpenedBlob() = default;

std::unique_ptr<BodySource> OpenedBlob::Range(int64_t start, int64_t len) const {
  return std::make_unique<RangeBody>(this, start, len);
}

absl::StatusOr<size_t> OpenedBlob::ReadAt(int64_t offset, char* buf, size_t len) const {
  if (!fd_.valid()) {
    if (offset >= size_) return 0;
    size_t n = std::min(len, static_cast<size_t>(size_ - offset));
    std::memcpy(buf, data_.data() + offset, n);
    return n;
  }
  while (true) {
    ssize_t n = ::pread(fd_.get(), buf, len, offset);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) {
      return absl::DataLossError(absl::StrCat("cannot read ", path_, ": ", std::strerror(errno)));
    }
  }
}

absl::StatusOr<std::string> OpenedBlob::ComputeDigest(const std::string& algorithm,
                                                      const std::atomic<bool>* cancelled) const {
  ASSIGN_OR_RETURN(Digester d, Digester::Create(algorithm));
  if (!fd_.valid()) {
    d.Update(data_);
    return d.Finish();
  }
  std::string buf(1 << 20, '\0');
  int64_t off = 0;
  while (off < size_) {
    if (cancelled != nullptr && cancelled->load(std::memory_order_relaxed)) {
      return absl::CancelledError("hashing cancelled");
    }
    size_t want = static_cast<size_t>(std::min<int64_t>(size_ - off, buf.size()));
    ASSIGN_OR_RETURN(size_t n, ReadAt(off, buf.data(), want));
    if (n == 0) return absl::DataLossError("file shrank while it was being hashed");
    d.Update(buf.data(), n);
    off += static_cast<int64_t>(n);
  }
  return d.Finish();
}

}  // namespace regd
