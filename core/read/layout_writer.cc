#include "core/read/layout_writer.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "core/json.h"
#include "core/reference/reference.h"
#include "core/status_macros.h"
#include "core/text.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace regd {
namespace {

constexpr char kPartialDir[] = ".regd-partial";
constexpr char kRefNameAnnotation[] = "org.opencontainers.image.ref.name";
constexpr char kOciLayoutMarker[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
constexpr size_t kIo = 1 << 20;
constexpr int kMaxCreatedDepth = 32;

absl::Status ErrnoStatus(int err, absl::string_view what) {
  std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(msg);
    case ENOENT:
      return absl::NotFoundError(msg);
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE:
      return absl::ResourceExhaustedError(msg);
    case ELOOP:
    case ENOTDIR:
      return absl::InvalidArgumentError(msg);
    default:
      return absl::InternalError(msg);
  }
}

// Opens (creating it when absent) the directory `name` beneath `dir_fd`;
// never follows a symlink.
absl::StatusOr<UniqueFd> MakeDirAt(int dir_fd, const std::string& name, absl::string_view shown) {
  if (::mkdirat(dir_fd, name.c_str(), 0755) == 0) {
    ::fsync(dir_fd);  // the new entry survives a crash (best effort)
  } else if (errno != EEXIST) {
    return ErrnoStatus(errno, absl::StrCat("creating ", shown));
  }
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("opening ", shown));
  return fd;
}

absl::Status WriteAll(int fd, absl::string_view data, absl::string_view shown) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat("writing ", shown));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status SyncDir(int fd, absl::string_view shown) {
  if (::fsync(fd) != 0 && errno != EINVAL) {
    return ErrnoStatus(errno, absl::StrCat("syncing ", shown));
  }
  return absl::OkStatus();
}

// "sha256:<hex>" → {"sha256", "<hex>"} (validated).
absl::StatusOr<std::pair<std::string, std::string>> SplitDigest(const std::string& digest) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  size_t colon = digest.find(':');
  return std::make_pair(digest.substr(0, colon), digest.substr(colon + 1));
}

// Hashes `fd` from offset 0 to its end (or `limit` bytes) into `d`.
absl::Status HashFd(int fd, int64_t limit, Digester* d, const CancelFlag& cancelled,
                    absl::string_view shown) {
  std::unique_ptr<char[]> buf(new char[kIo]);
  int64_t off = 0;
  while (limit < 0 || off < limit) {
    if (cancelled && cancelled->load()) return absl::CancelledError("cancelled");
    size_t want = kIo;
    if (limit >= 0) want = static_cast<size_t>(std::min<int64_t>(kIo, limit - off));
    ssize_t n = ::pread(fd, buf.get(), want, off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat("reading ", shown));
    }
    if (n == 0) break;
    d->Update(buf.get(), static_cast<size_t>(n));
    off += n;
  }
  return absl::OkStatus();
}

// RAII flock(2).
class FileLock {
 public:
  FileLock() = default;
  explicit FileLock(int fd) : fd_(fd) {}
  FileLock(FileLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  FileLock& operator=(FileLock&&) = delete;
  ~FileLock() {
    if (fd_ >= 0) ::flock(fd_, LOCK_UN);
  }

 private:
  int fd_ = -1;
};

// Takes an exclusive flock on `fd`, waiting (and watching `cancelled`).
absl::Status WaitForFlock(int fd, const CancelFlag& cancelled, absl::string_view shown,
                          absl::Duration max_wait = absl::InfiniteDuration()) {
  const absl::Time deadline = absl::Now() + max_wait;
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK) return ErrnoStatus(errno, absl::StrCat("locking ", shown));
    if (cancelled && cancelled->load()) return absl::CancelledError("cancelled");
    if (absl::Now() >= deadline) {
      return absl::UnavailableError(absl::StrCat("another process has held the lock of ", shown,
                                                 " for ", absl::FormatDuration(max_wait)));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status PartialBlob::Append(absl::string_view data) {
  RETURN_IF_ERROR(WriteAll(fd_.get(), data, "a partial blob"));
  have_ += static_cast<int64_t>(data.size());
  // Start the disk writes of what came so far (asynchronously), so that the
  // fdatasync before the rename has little left to wait for: writeback then
  // overlaps the download instead of following it.
  if (have_ - started_ >= kWritebackStep) {
    (void)::sync_file_range(fd_.get(), started_, have_ - started_, SYNC_FILE_RANGE_WRITE);
    started_ = have_;
  }
  return absl::OkStatus();
}

absl::Status PartialBlob::Truncate() {
  if (::ftruncate(fd_.get(), 0) != 0 || ::lseek(fd_.get(), 0, SEEK_SET) != 0) {
    return ErrnoStatus(errno, "truncating a partial blob");
  }
  have_ = 0;
  started_ = 0;
  return absl::OkStatus();
}

absl::Status PartialBlob::HashInto(Digester* d, const CancelFlag& cancelled) {
  return HashFd(fd_.get(), have_, d, cancelled, "a partial blob");
}

absl::StatusOr<std::unique_ptr<LayoutWriter>> LayoutWriter::Open(
    const std::string& path, const std::vector<std::string>& roots) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError("layout.path must be an absolute path");
  }
  std::vector<std::string> parts;
  for (absl::string_view p : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (p == "." || p == "..") {
      return absl::InvalidArgumentError("layout.path must not contain . or .. components");
    }
    parts.emplace_back(p);
  }
  const std::string shown = ForMessage(path);
  // The deepest directory that exists (beneath a root), then the rest made.
  size_t have = parts.size();
  absl::StatusOr<UniqueFd> dir = absl::NotFoundError("");
  for (;; --have) {
    std::string prefix = "/";
    for (size_t i = 0; i < have; ++i) absl::StrAppend(&prefix, i ? "/" : "", parts[i]);
    dir = OpenBeneathRoots(prefix, roots, FileKind::kDirectory);
    if (dir.ok() || !absl::IsNotFound(dir.status()) || have == 0) break;
    if (parts.size() - have >= kMaxCreatedDepth) break;
  }
  if (!dir.ok()) return dir.status();
  for (size_t i = have; i < parts.size(); ++i) {
    ASSIGN_OR_RETURN(dir, MakeDirAt(dir->get(), parts[i], shown));
  }
  std::unique_ptr<LayoutWriter> w(new LayoutWriter(std::move(*dir), shown));
  // The marker, when missing: `oci-layout`.
  struct stat st;
  if (::fstatat(w->dir_.get(), "oci-layout", &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT) return ErrnoStatus(errno, absl::StrCat("reading ", shown, "/oci-layout"));
    RETURN_IF_ERROR(w->WriteAtomically(w->dir_.get(), "oci-layout", kOciLayoutMarker));
  } else if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(shown, "/oci-layout is not a regular file"));
  }
  return w;
}

absl::StatusOr<UniqueFd> LayoutWriter::Subdir(const std::string& rel) {
  absl::StatusOr<UniqueFd> fd =
      OpenBeneath(dir_.get(), rel, FileKind::kDirectory, absl::StrCat(shown_, "/", rel));
  if (fd.ok() || !absl::IsNotFound(fd.status())) return fd;
  // Make each component (never following a symlink).
  UniqueFd cur;
  int at = dir_.get();
  for (absl::string_view p : absl::StrSplit(rel, '/', absl::SkipEmpty())) {
    ASSIGN_OR_RETURN(cur, MakeDirAt(at, std::string(p), absl::StrCat(shown_, "/", rel)));
    at = cur.get();
  }
  return cur;
}

absl::Status LayoutWriter::WriteAtomically(int dir_fd, const std::string& name,
                                           absl::string_view bytes) {
  const std::string tmp =
      absl::StrCat(".", name, ".regd-tmp-", ::getpid(), "-", absl::ToUnixNanos(absl::Now()));
  const std::string shown = absl::StrCat(shown_, "/", name);
  UniqueFd fd(
      ::openat(dir_fd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("creating ", shown));
  absl::Status st = WriteAll(fd.get(), bytes, shown);
  if (st.ok() && ::fsync(fd.get()) != 0) st = ErrnoStatus(errno, absl::StrCat("syncing ", shown));
  if (st.ok() && ::renameat(dir_fd, tmp.c_str(), dir_fd, name.c_str()) != 0) {
    st = ErrnoStatus(errno, absl::StrCat("renaming into ", shown));
  }
  if (!st.ok()) {
    ::unlinkat(dir_fd, tmp.c_str(), 0);
    return st;
  }
  return SyncDir(dir_fd, shown_);
}

absl::StatusOr<bool> LayoutWriter::HasBlob(const Descriptor& d, const CancelFlag& cancelled) {
  ASSIGN_OR_RETURN(auto split, SplitDigest(d.digest));
  const std::string rel = absl::StrCat("blobs/", split.first, "/", split.second);
  absl::StatusOr<UniqueFd> fd =
      OpenBeneath(dir_.get(), rel, FileKind::kRegular, absl::StrCat(shown_, "/", rel));
  if (absl::IsNotFound(fd.status())) return false;
  if (!fd.ok()) return fd.status();
  struct stat st;
  if (::fstat(fd->get(), &st) != 0) return ErrnoStatus(errno, "stat of a layout blob");
  if (st.st_size != d.size) return false;
  ASSIGN_OR_RETURN(Digester h, Digester::ForDigest(d.digest));
  RETURN_IF_ERROR(HashFd(fd->get(), -1, &h, cancelled, rel));
  return h.Finish() == d.digest;
}

absl::Status LayoutWriter::PutSmallBlob(const std::string& digest, absl::string_view bytes) {
  ASSIGN_OR_RETURN(auto split, SplitDigest(digest));
  if (Sha256Digest(bytes) != digest && split.first == "sha256") {
    return absl::DataLossError(absl::StrCat("content does not hash to ", digest));
  }
  ASSIGN_OR_RETURN(UniqueFd blobs, Subdir(absl::StrCat("blobs/", split.first)));
  return WriteAtomically(blobs.get(), split.second, bytes);
}

absl::StatusOr<PartialBlob> LayoutWriter::OpenPartial(const std::string& digest, int64_t size,
                                                      const CancelFlag& cancelled) {
  ASSIGN_OR_RETURN(auto split, SplitDigest(digest));
  ASSIGN_OR_RETURN(UniqueFd partial_dir, Subdir(kPartialDir));
  const std::string name = absl::StrCat(split.first, "-", split.second);
  const std::string shown = absl::StrCat(shown_, "/", kPartialDir, "/", name);
  for (int tries = 0;; ++tries) {
    if (tries >= 100) return absl::UnavailableError(absl::StrCat(shown, " keeps changing"));
    UniqueFd fd(::openat(partial_dir.get(), name.c_str(),
                         O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0644));
    if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("opening ", shown));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("stat of ", shown));
    if (!S_ISREG(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat(shown, " is not a regular file"));
    }
    // Held until the fd closes (PartialBlob owns it): flock belongs to the
    // open file description.
    RETURN_IF_ERROR(WaitForFlock(fd.get(), cancelled, shown));
    // While we waited, the holder before us may have committed this very
    // file (renamed it to the blob's name): then the name is gone or names
    // another file, and writing to ours would write to the committed blob.
    // A second link (planted: a hard link to a file elsewhere) is refused the
    // same way: the name is dropped and made anew.
    struct stat by_name;
    if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("stat of ", shown));
    if (::fstatat(partial_dir.get(), name.c_str(), &by_name, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      return ErrnoStatus(errno, absl::StrCat("stat of ", shown));
    }
    if (by_name.st_dev != st.st_dev || by_name.st_ino != st.st_ino) continue;
    if (st.st_nlink != 1) {
      if (::unlinkat(partial_dir.get(), name.c_str(), 0) != 0 && errno != ENOENT) {
        return ErrnoStatus(errno, absl::StrCat("removing ", shown));
      }
      continue;
    }
    int64_t have = st.st_size;
    if (have > size) {
      if (::ftruncate(fd.get(), 0) != 0) {
        return ErrnoStatus(errno, absl::StrCat("truncating ", shown));
      }
      have = 0;
    }
    if (::lseek(fd.get(), have, SEEK_SET) != have) {
      return ErrnoStatus(errno, absl::StrCat("seeking in ", shown));
    }
    return PartialBlob(std::move(fd), digest, have);
  }
}

absl::Status LayoutWriter::Discard(PartialBlob blob) {
  ASSIGN_OR_RETURN(auto split, SplitDigest(blob.digest()));
  ASSIGN_OR_RETURN(UniqueFd partial_dir, Subdir(kPartialDir));
  const std::string name = absl::StrCat(split.first, "-", split.second);
  // Ours (we hold its lock, and the name was checked to be this file).
  if (::unlinkat(partial_dir.get(), name.c_str(), 0) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, absl::StrCat("removing ", shown_, "/", kPartialDir, "/", name));
  }
  return absl::OkStatus();
}

absl::Status LayoutWriter::Commit(PartialBlob blob) {
  ASSIGN_OR_RETURN(auto split, SplitDigest(blob.digest()));
  if (::fdatasync(blob.fd()) != 0) return ErrnoStatus(errno, "syncing a downloaded blob");
  ASSIGN_OR_RETURN(UniqueFd partial_dir, Subdir(kPartialDir));
  ASSIGN_OR_RETURN(UniqueFd blobs, Subdir(absl::StrCat("blobs/", split.first)));
  const std::string from = absl::StrCat(split.first, "-", split.second);
  if (::renameat(partial_dir.get(), from.c_str(), blobs.get(), split.second.c_str()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("renaming ", blob.digest(), " into place"));
  }
  return SyncDir(blobs.get(), shown_);
}

absl::Status LayoutWriter::AddToIndex(const Descriptor& entry, const std::string& ref_name,
                                      const CancelFlag& cancelled) {
  // index.json is rewritten in a moment: a lock held for a minute is a stuck
  // process, not a pull.
  RETURN_IF_ERROR(WaitForFlock(dir_.get(), cancelled, shown_, absl::Minutes(1)));
  FileLock lock(dir_.get());
  // The entry as JSON, in the shape SerializeIndex writes descriptors.
  Index one;
  one.media_type = std::string(media::kOciIndex);
  Descriptor d = entry;
  if (!ref_name.empty()) d.annotations[kRefNameAnnotation] = ref_name;
  one.manifests.push_back(d);
  rapidjson::Document entry_doc;
  RETURN_IF_ERROR(ParseUntrustedJson(SerializeIndex(one), "index entry", &entry_doc));

  rapidjson::Document doc;
  absl::StatusOr<UniqueFd> fd = OpenBeneath(dir_.get(), "index.json", FileKind::kRegular,
                                            absl::StrCat(shown_, "/index.json"));
  if (fd.ok()) {
    ASSIGN_OR_RETURN(std::string raw, ReadSmallFd(fd->get(), kMaxManifestBytes, "index.json"));
    absl::Status parsed = ParseUntrustedJson(raw, "index.json", &doc);
    if (!parsed.ok() || !doc.IsObject()) {
      return absl::FailedPreconditionError(
          absl::StrCat(shown_, "/index.json is not a valid OCI index; not replacing it"));
    }
  } else if (absl::IsNotFound(fd.status())) {
    doc.SetObject();
  } else {
    return fd.status();
  }
  auto& alloc = doc.GetAllocator();
  if (!doc.HasMember("schemaVersion")) doc.AddMember("schemaVersion", 2, alloc);
  if (!doc.HasMember("mediaType")) {
    doc.AddMember(
        "mediaType",
        rapidjson::Value(media::kOciIndex.data(),
                         static_cast<rapidjson::SizeType>(media::kOciIndex.size()), alloc),
        alloc);
  }
  if (!doc.HasMember("manifests") || !doc["manifests"].IsArray()) {
    doc.RemoveMember("manifests");
    doc.AddMember("manifests", rapidjson::Value(rapidjson::kArrayType), alloc);
  }
  rapidjson::Value& list = doc["manifests"];
  for (auto it = list.Begin(); it != list.End();) {
    bool same = false;
    if (it->IsObject()) {
      auto ann = it->FindMember("annotations");
      const rapidjson::Value* name = nullptr;
      if (ann != it->MemberEnd() && ann->value.IsObject()) {
        auto n = ann->value.FindMember(kRefNameAnnotation);
        if (n != ann->value.MemberEnd() && n->value.IsString()) name = &n->value;
      }
      if (!ref_name.empty()) {
        same = name != nullptr && ref_name == name->GetString();
      } else {
        auto dg = it->FindMember("digest");
        same = name == nullptr && dg != it->MemberEnd() && dg->value.IsString() &&
               entry.digest == dg->value.GetString();
      }
    }
    it = same ? list.Erase(it) : it + 1;
  }
  rapidjson::Value copy(entry_doc["manifests"][0], alloc);
  list.PushBack(copy, alloc);
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> w(out);
  doc.Accept(w);
  if (out.GetSize() > kMaxManifestBytes) {
    return absl::ResourceExhaustedError("index.json would grow past 4 MiB");
  }
  return WriteAtomically(dir_.get(), "index.json",
                         absl::string_view(out.GetString(), out.GetSize()));
}

}  // namespace regd
