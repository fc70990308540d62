// Where upload bytes come from: a file inside the allowed roots, or inline
// bytes. An OpenedBlob hands out BodySource ranges that read on demand (pread
// straight into curl's buffer), so memory stays O(1) in the blob size and a
// retry re-reads its range from the file instead of holding it.
//
// OpenedBlob owns its file descriptor (closed on destruction). Ranges borrow
// the OpenedBlob, which must outlive them. An OpenedBlob is safe to share
// between threads (pread has no shared offset); each range is single-threaded.
#ifndef REGD_CORE_UPLOAD_BLOB_SOURCE_H_
#define REGD_CORE_UPLOAD_BLOB_SOURCE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/files.h"
#include "core/http/http.h"

namespace regd {

// The bytes of a blob being uploaded, as request bodies: a file or inline
// data (OpenedBlob), or bytes a caller streams in (BlobStream).
class BlobBytes {
 public:
  virtual ~BlobBytes() = default;
  // A body of bytes [start, start+len). Each range is used by one thread.
  virtual std::unique_ptr<BodySource> Range(int64_t start, int64_t len) const = 0;
  // Called before a request whose body is [start, end of blob): a source
  // whose bytes may still fail gets them ready and checked first, so that the
  // last request never starts with bytes that cannot be sent (BlobStream).
  [[nodiscard]] virtual absl::Status Prepare(int64_t start) const {
    (void)start;
    return absl::OkStatus();
  }
};

class OpenedBlob : public BlobBytes {
 public:
  // Takes a regular file opened by OpenBeneathRoots/OpenBeneath; `shown`
  // names it in messages.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<OpenedBlob>> FromFd(UniqueFd fd,
                                                                          std::string shown);
  // Wraps inline bytes (copied once into the blob).
  static std::unique_ptr<OpenedBlob> FromData(std::string data);
  // Wraps inline bytes without copying them; they must outlive the blob.
  static std::unique_ptr<OpenedBlob> FromView(absl::string_view data);
  ~OpenedBlob() override;
  OpenedBlob(const OpenedBlob&) = delete;
  OpenedBlob& operator=(const OpenedBlob&) = delete;

  int64_t size() const { return size_; }
  // "dev:inode:size:mtime_ns" for a file (changes when the file does); "" for inline data.
  const std::string& identity() const { return identity_; }
  // True when the file changed so recently that its identity may not yet
  // tell a further change apart (see DigestCache).
  bool recently_modified() const { return recently_modified_; }
  // A body of bytes [start, start+len).
  std::unique_ptr<BodySource> Range(int64_t start, int64_t len) const override;
  // Reads [offset, offset+len) into buf; returns bytes read.
  [[nodiscard]] absl::StatusOr<size_t> ReadAt(int64_t offset, char* buf, size_t len) const;
  // One streaming pass: the digest ("sha256:...") of the whole blob.
  // Stops (CANCELLED) within a megabyte once `cancelled` is set.
  [[nodiscard]] absl::StatusOr<std::string> ComputeDigest(
      const std::string& algorithm = "sha256", const std::atomic<bool>* cancelled = nullptr) const;

 private:
  OpenedBlob() = default;
  UniqueFd fd_;
  std::string owned_;       // FromData's bytes
  absl::string_view data_;  // the inline bytes (owned_ or borrowed)
  int64_t size_ = 0;
  std::string path_;
  std::string identity_;
  bool recently_modified_ = false;
};

}  // namespace regd

#endif  // REGD_CORE_UPLOAD_BLOB_SOURCE_H_
