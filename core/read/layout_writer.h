// LayoutWriter: adds blobs and index entries to an OCI image layout on disk,
// so that a crash or a kill at any moment leaves it consistent.
//
//   - Every path is opened beneath the layout directory, which is itself
//     opened (or created) beneath an allowed root (core/files.h): no symlink or
//     `..` leads out, even one swapped in mid-call.
//   - A blob is written to `.regd-partial/<alg>-<hex>`, synced, checked
//     against its digest and renamed to `blobs/<alg>/<hex>` (the directory is
//     synced after). So a file under a digest's name always hashes to it.
//     A partial file survives a crash or a failed call; the next download of
//     that blob goes on from its bytes. flock(2) on it keeps two downloads of
//     one blob (two calls, two daemons) from writing it at once.
//   - index.json is replaced whole (temporary file, sync, rename, directory
//     sync) under flock(2) on the layout directory, so concurrent pulls into
//     one layout do not lose each other's entries and no reader sees it torn.
//
// Thread-safe after Open: each method opens what it needs.
#ifndef REGD_CORE_READ_LAYOUT_WRITER_H_
#define REGD_CORE_READ_LAYOUT_WRITER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/cancel.h"
#include "core/digest.h"
#include "core/files.h"
#include "core/manifest/manifest.h"

namespace regd {

// A download in progress: the locked partial file and what it holds already.
class PartialBlob {
 public:
  PartialBlob(UniqueFd fd, std::string digest, int64_t have)
      : fd_(std::move(fd)), digest_(std::move(digest)), have_(have), started_(have) {}
  int fd() const { return fd_.get(); }
  const std::string& digest() const { return digest_; }
  // Bytes already in the file (a previous attempt's), from where to go on.
  int64_t have() const { return have_; }
  // Appends `data` (the file offset is at its end).
  [[nodiscard]] absl::Status Append(absl::string_view data);
  // Empties the file (its content turned out wrong).
  [[nodiscard]] absl::Status Truncate();
  // Hashes what the file holds into `d` (the resume's prefix).
  [[nodiscard]] absl::Status HashInto(Digester* d, const CancelFlag& cancelled);

 private:
  static constexpr int64_t kWritebackStep = 8 << 20;
  UniqueFd fd_;
  std::string digest_;
  int64_t have_ = 0;
  int64_t started_ = 0;  // bytes whose writeback was started
};

class LayoutWriter {
 public:
  // Opens the layout at the absolute `path` beneath `roots`, creating it (and
  // missing parent directories beneath the root) when absent, and writing
  // its `oci-layout` file when missing.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<LayoutWriter>> Open(
      const std::string& path, const std::vector<std::string>& roots);

  // True when blobs/<alg>/<hex> is a regular file of `d.size` bytes that
  // hashes to `d.digest` (read whole: O(1) memory).
  [[nodiscard]] absl::StatusOr<bool> HasBlob(const Descriptor& d, const CancelFlag& cancelled);

  // Writes a small blob (a manifest) whole, atomically.
  [[nodiscard]] absl::Status PutSmallBlob(const std::string& digest, absl::string_view bytes);

  // The partial file of `digest`, locked for this call (waits while another
  // download holds it; CANCELLED when `cancelled` is set meanwhile).
  [[nodiscard]] absl::StatusOr<PartialBlob> OpenPartial(const std::string& digest, int64_t size,
                                                        const CancelFlag& cancelled);
  // Syncs the partial file and renames it to its digest's name.
  [[nodiscard]] absl::Status Commit(PartialBlob blob);
  // Removes the partial file (the blob turned out to be in place already).
  [[nodiscard]] absl::Status Discard(PartialBlob blob);

  // Names `entry` `ref_name` in index.json (replacing an entry of that name;
  // an empty name replaces an unnamed entry of the same digest).
  // Waits for the layout's lock while `cancelled` is unset (CANCELLED).
  [[nodiscard]] absl::Status AddToIndex(const Descriptor& entry, const std::string& ref_name,
                                        const CancelFlag& cancelled);

  const std::string& shown() const { return shown_; }

 private:
  LayoutWriter(UniqueFd dir, std::string shown) : dir_(std::move(dir)), shown_(std::move(shown)) {}
  [[nodiscard]] absl::StatusOr<UniqueFd> Subdir(const std::string& rel);
  [[nodiscard]] absl::Status WriteAtomically(int dir_fd, const std::string& name,
                                             absl::string_view bytes);

  UniqueFd dir_;
  std::string shown_;
};

}  // namespace regd

#endif  // REGD_CORE_READ_LAYOUT_WRITER_H_
