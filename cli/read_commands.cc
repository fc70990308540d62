// The read commands: inspect, exists, descriptor, image, read-blob, health.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <optional>

#include "absl/strings/str_cat.h"
#include "cli/calls.h"
#include "cli/command.h"
#include "cli/exit_codes.h"
#include "cli/json_output.h"
#include "cli/local_files.h"
#include "cli/registry_auth.h"
#include "cli/text_output.h"
#include "cli/upload.h"
#include "core/digest.h"

namespace regdctl {
namespace {

constexpr int kExitAbsent = 5;  // `exists` of an absent image: NOT_FOUND's exit status

OptionSpec PlatformOption() {
  return {"platform", 0, "os/arch[/variant]", "pick this platform's manifest from an index"};
}

absl::Status SetPlatform(const ParsedArgs& args, regd::v1::Platform* out) {
  if (!args.Has("platform")) return absl::OkStatus();
  absl::StatusOr<PlatformSpec> p = ParsePlatform(args.Value("platform"));
  if (!p.ok()) return p.status();
  out->set_os(p->os);
  out->set_architecture(p->architecture);
  out->set_variant(p->variant);
  return absl::OkStatus();
}

// Runs one unary call with the connection's metadata, deadline and Ctrl-C.
template <typename Call>
absl::Status Unary(Connection& conn, Call call) {
  grpc::ClientContext ctx;
  conn.PrepareUnary(&ctx);
  ScopedCall scoped(&ctx);
  return FromGrpc(call(&ctx));
}

void PrintResult(const CommandEnv& env, const google::protobuf::Message& msg,
                 const std::string& text) {
  if (env.json()) {
    PrintJsonLine(ProtoToJson(msg));
  } else {
    PrintText(text);
  }
}

absl::StatusOr<int> RunInspect(CommandEnv& env) {
  const std::string& ref = env.args().positionals()[0];
  regd::v1::InspectRequest req;
  req.set_image_ref(ref);
  if (absl::Status s = SetPlatform(env.args(), req.mutable_platform()); !s.ok()) return s;
  if (!env.args().Has("platform")) req.clear_platform();
  absl::StatusOr<Connection*> conn = env.Connect(RegistryOfReference(ref));
  if (!conn.ok()) return conn.status();
  regd::v1::ManifestResult res;
  absl::Status s = Unary(**conn, [&](grpc::ClientContext* ctx) {
    return (*conn)->registry().Inspect(ctx, req, &res);
  });
  if (!s.ok()) return s;
  PrintResult(env, res, ManifestResultText(res));
  return 0;
}

absl::StatusOr<int> RunExists(CommandEnv& env) {
  const std::string& ref = env.args().positionals()[0];
  regd::v1::ExistsRequest req;
  req.set_image_ref(ref);
  absl::StatusOr<Connection*> conn = env.Connect(RegistryOfReference(ref));
  if (!conn.ok()) return conn.status();
  regd::v1::ExistsResponse res;
  absl::Status s = Unary(
      **conn, [&](grpc::ClientContext* ctx) { return (*conn)->registry().Exists(ctx, req, &res); });
  if (!s.ok()) return s;
  PrintResult(env, res, res.exists() ? "true\n" : "false\n");
  return res.exists() ? 0 : kExitAbsent;
}

absl::StatusOr<int> RunDescriptor(CommandEnv& env) {
  const std::string& ref = env.args().positionals()[0];
  regd::v1::GetDescriptorRequest req;
  req.set_image_ref(ref);
  absl::StatusOr<Connection*> conn = env.Connect(RegistryOfReference(ref));
  if (!conn.ok()) return conn.status();
  regd::v1::Descriptor res;
  absl::Status s = Unary(**conn, [&](grpc::ClientContext* ctx) {
    return (*conn)->registry().GetDescriptor(ctx, req, &res);
  });
  if (!s.ok()) return s;
  PrintResult(env, res, DescriptorText(res));
  return 0;
}

absl::StatusOr<int> RunImage(CommandEnv& env) {
  const std::string& ref = env.args().positionals()[0];
  std::string raw = env.args().Value("raw");
  if (!raw.empty() && raw != "manifest" && raw != "config") {
    return UsageError("--raw is manifest or config");
  }
  if (!raw.empty() && env.json())
    return UsageError("--raw prints bytes; it does not go with -o json");
  regd::v1::GetImageRequest req;
  req.set_image_ref(ref);
  if (absl::Status s = SetPlatform(env.args(), req.mutable_platform()); !s.ok()) return s;
  if (!env.args().Has("platform")) req.clear_platform();
  absl::StatusOr<Connection*> conn = env.Connect(RegistryOfReference(ref));
  if (!conn.ok()) return conn.status();
  regd::v1::Image res;
  absl::Status s = Unary(**conn, [&](grpc::ClientContext* ctx) {
    return (*conn)->registry().GetImage(ctx, req, &res);
  });
  if (!s.ok()) return s;
  if (raw == "manifest") {
    PrintText(res.raw_manifest());
  } else if (raw == "config") {
    PrintText(res.raw_config());
  } else {
    PrintResult(env, res, ImageText(res));
  }
  return 0;
}

absl::StatusOr<int> RunHealth(CommandEnv& env) {
  grpc::health::v1::HealthCheckRequest req;
  if (!env.args().positionals().empty()) req.set_service(env.args().positionals()[0]);
  absl::StatusOr<Connection*> conn = env.Connect("");
  if (!conn.ok()) return conn.status();
  grpc::health::v1::HealthCheckResponse res;
  absl::Status s = Unary(
      **conn, [&](grpc::ClientContext* ctx) { return (*conn)->health().Check(ctx, req, &res); });
  if (!s.ok()) return s;
  std::string name = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(res.status());
  if (env.json()) {
    rapidjson::StringBuffer buf;
    JsonWriter w(buf);
    w.StartObject();
    w.Key("service");
    WriteString(req.service(), &w);
    w.Key("status");
    WriteString(name, &w);
    w.EndObject();
    PrintJsonLine(absl::string_view(buf.GetString(), buf.GetSize()));
  } else {
    PrintText(name + "\n");
  }
  if (res.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    return absl::UnavailableError(absl::StrCat("the daemon answers ", name));
  }
  return 0;
}

// ---- read-blob ----

// Where a blob's bytes go: a file (from an offset, checked against the
// digest at the end) or stdout.
class BlobSink {
 public:
  ~BlobSink() {
    if (fd_ > 1) close(fd_);
  }

  // Opens FILE for writing at `offset`: what lies beyond it is dropped, and
  // the bytes before it are hashed, so the whole file can be checked.
  absl::Status OpenFile(const std::string& path, int64_t offset, const std::string& digest) {
    path_ = path;
    fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (offset == 0 ? O_TRUNC : 0), 0644);
    if (fd_ < 0) return ErrnoStatus(errno, path);
    struct stat st;
    if (fstat(fd_, &st) != 0) return ErrnoStatus(errno, path);
    if (st.st_size < offset) {
      return absl::FailedPreconditionError(absl::StrCat(path, " has ", st.st_size,
                                                        " bytes, fewer than --offset ", offset,
                                                        ": nothing to resume"));
    }
    if (S_ISREG(st.st_mode) && ftruncate(fd_, offset) != 0) return ErrnoStatus(errno, path);
    absl::StatusOr<regd::Digester> d = regd::Digester::ForDigest(digest);
    if (d.ok()) digester_.emplace(*std::move(d));
    if (S_ISREG(st.st_mode) && digester_.has_value()) {
      absl::Status s = HashPrefix(offset);
      if (!s.ok()) return s;
    } else {
      digester_.reset();  // a device or FIFO: nothing to read back
    }
    if (lseek(fd_, offset, SEEK_SET) < 0 && S_ISREG(st.st_mode)) return ErrnoStatus(errno, path);
    return absl::OkStatus();
  }

  void OpenStdout() {
    fd_ = STDOUT_FILENO;
    path_ = "stdout";
  }

  absl::Status Write(absl::string_view data) {
    if (digester_.has_value()) digester_->Update(data);
    while (!data.empty()) {
      ssize_t n = write(fd_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoStatus(errno, absl::StrCat("writing ", path_));
      data.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }

  // The file's digest when it was hashed, else "".
  std::string Finish() { return digester_.has_value() ? digester_->Finish() : ""; }

 private:
  absl::Status HashPrefix(int64_t offset) {
    std::string buf(1 << 20, '\0');
    for (int64_t at = 0; at < offset;) {
      ssize_t n = pread(fd_, buf.data(), std::min<int64_t>(buf.size(), offset - at), at);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return ErrnoStatus(n < 0 ? errno : EIO, absl::StrCat("reading ", path_));
      digester_->Update(buf.data(), static_cast<size_t>(n));
      at += n;
    }
    return absl::OkStatus();
  }

  int fd_ = -1;
  std::string path_;
  std::optional<regd::Digester> digester_;
};

struct ReadBlobPlan {
  std::string repo, digest, file;  // file "" or "-": stdout
  int64_t offset = 0;
};

absl::StatusOr<ReadBlobPlan> PlanReadBlob(const CommandEnv& env) {
  const ParsedArgs& a = env.args();
  ReadBlobPlan p{a.positionals()[0], a.positionals()[1], a.Value("output-file")};
  bool to_stdout = p.file.empty() || p.file == "-";
  absl::StatusOr<int64_t> offset = a.Int("offset", 0);
  if (!offset.ok()) return offset.status();
  if (*offset < 0) return UsageError("--offset must not be negative");
  p.offset = *offset;
  if (a.Has("resume")) {
    if (to_stdout) return UsageError("--resume needs -o FILE");
    if (a.Has("offset")) return UsageError("--resume and --offset exclude each other");
    absl::StatusOr<int64_t> size = RegularFileSize(p.file);
    p.offset = size.ok() ? *size : 0;
  }
  if (to_stdout && env.json()) {
    return UsageError("-o json needs -o FILE for the blob (stdout carries the result)");
  }
  if (p.file.empty() && isatty(STDOUT_FILENO)) {
    return UsageError("refusing to write a blob to a terminal: use -o FILE, or -o - to insist");
  }
  return p;
}

void PrintReadBlobResult(const CommandEnv& env, const ReadBlobPlan& p, int64_t bytes,
                         const std::string& verified_by, int retries) {
  bool to_file = !p.file.empty() && p.file != "-";
  if (env.json()) {
    rapidjson::StringBuffer buf;
    JsonWriter w(buf);
    w.StartObject();
    w.Key("repo");
    WriteString(p.repo, &w);
    w.Key("digest");
    WriteString(p.digest, &w);
    w.Key("file");
    WriteString(p.file, &w);
    w.Key("offset");
    w.Int64(p.offset);
    w.Key("bytes");
    w.Int64(bytes);
    w.Key("size");
    w.Int64(p.offset + bytes);
    w.Key("verified");
    w.Bool(!verified_by.empty());
    w.Key("retries");
    w.Int(retries);
    w.EndObject();
    PrintJsonLine(absl::string_view(buf.GetString(), buf.GetSize()));
  } else if (to_file) {
    PrintText(absl::StrCat(
        "wrote ", bytes, " bytes to ", p.file, " at offset ", p.offset, " (", p.offset + bytes,
        " in all)", verified_by.empty() ? "" : absl::StrCat("; digest checked by ", verified_by),
        "\n"));
  }
}

absl::StatusOr<int> RunReadBlob(CommandEnv& env) {
  absl::StatusOr<ReadBlobPlan> plan = PlanReadBlob(env);
  if (!plan.ok()) return plan.status();
  const ReadBlobPlan& p = *plan;
  bool to_file = !p.file.empty() && p.file != "-";
  BlobSink sink;
  if (to_file) {
    if (absl::Status s = sink.OpenFile(p.file, p.offset, p.digest); !s.ok()) return s;
  } else {
    sink.OpenStdout();
  }
  absl::StatusOr<Connection*> conn = env.Connect(RegistryOfRepository(p.repo));
  if (!conn.ok()) return conn.status();

  regd::v1::ReadBlobRequest req;
  req.set_repo(p.repo);
  req.set_digest(p.digest);
  req.set_offset(p.offset);
  // Unset, regd applies its read policy (short delays); set, the fields given.
  if (env.RetryGiven()) {
    absl::StatusOr<regd::v1::RetryConfig> retry = env.Retry();
    if (!retry.ok()) return retry.status();
    *req.mutable_retry() = *retry;
  }
  std::unique_ptr<ProgressDisplay> display = env.NewDisplay();
  grpc::ClientContext ctx;
  (*conn)->PrepareStream(&ctx);
  ScopedCall scoped(&ctx);
  std::unique_ptr<grpc::ClientReader<regd::v1::BlobChunk>> reader =
      (*conn)->registry().ReadBlob(&ctx, req);
  regd::v1::BlobChunk chunk;
  int64_t bytes = 0;
  absl::Status local;
  while (reader->Read(&chunk)) {
    if (chunk.has_retry()) {  // the transfer broke; regd resumes after the wait
      ReportRetry(display.get(), p.digest, chunk.retry());
      if (chunk.data().empty()) continue;
    }
    local = sink.Write(chunk.data());
    if (!local.ok()) {
      ctx.TryCancel();
      break;
    }
    bytes += static_cast<int64_t>(chunk.data().size());
    display->Progress(p.digest, p.offset + bytes, 0);
  }
  if (!local.ok()) {
    while (reader->Read(&chunk)) {
    }
  }
  absl::Status s = FromGrpc(reader->Finish());
  if (!local.ok()) s = local;  // our own cancel: say why
  if (!s.ok()) {
    display->Failed(p.digest, s.message());
    display->Finish();
    if (to_file && bytes + p.offset > 0 && local.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat(s.message(), " (", p.file, " holds ", p.offset + bytes,
                                       " bytes: resume with --offset ", p.offset + bytes, ")"));
    }
    return s;
  }
  std::string verified_by = p.offset == 0 ? "regd" : "";
  std::string local_digest = sink.Finish();
  if (!local_digest.empty()) {
    if (local_digest != p.digest) {
      s = absl::DataLossError(
          absl::StrCat(p.file, " does not match ", p.digest, ": its digest is ", local_digest));
      display->Failed(p.digest, s.message());
      return s;
    }
    verified_by = "regdctl";
  }
  display->Outcome(p.digest, "read", bytes);
  display->Finish();
  PrintReadBlobResult(env, p, bytes, verified_by, display->totals().retries);
  return 0;
}

}  // namespace

std::vector<Command> ReadCommands() {
  return {
      {"inspect",
       "inspect REF [--platform os/arch[/variant]]",
       "the manifest a reference names: digest, media type, layers, config, labels, index entries",
       "Inspect. For an index without --platform: the index and every entry (labels from\n"
       "the default child); with --platform: that child. A platform for a single manifest\n"
       "is FAILED_PRECONDITION.",
       {PlatformOption()},
       1,
       1,
       RunInspect},
      {"exists",
       "exists REF",
       "whether the image exists (one HEAD); exits 5 when it does not",
       "Exists. Prints true or false; exits 0 when the image exists, 5 when it does not.",
       {},
       1,
       1,
       RunExists},
      {"descriptor",
       "descriptor REF",
       "the manifest's descriptor: digest, media type, size (one HEAD)",
       "GetDescriptor.",
       {},
       1,
       1,
       RunDescriptor},
      {"image",
       "image REF [--platform os/arch[/variant]] [--raw manifest|config]",
       "one image: its manifest descriptor, config and layer descriptors",
       "GetImage. An index needs --platform. --raw prints the manifest or config bytes\n"
       "exactly as served (digest verified by regd).",
       {PlatformOption(), {"raw", 0, "WHAT", "print the raw manifest or config instead"}},
       1,
       1,
       RunImage},
      {"read-blob", "read-blob REPO DIGEST [-o FILE|-] [--offset N | --resume] [--max-attempts N]",
       "stream a blob to a file or stdout, resumable",
       "ReadBlob. Without -o (or with -o -) the bytes go to stdout (not to a terminal\n"
       "unless -o - insists). With -o FILE they go to FILE; with --offset N the transfer\n"
       "starts at byte N and FILE keeps its first N bytes (what lies beyond is dropped),\n"
       "so an interrupted read resumes where it stopped (--resume: from FILE's size).\n"
       "At offset 0 regd verifies the digest; for a file, regdctl also checks the whole\n"
       "file against DIGEST at the end (DATA_LOSS on mismatch). When the registry\n"
       "connection breaks, regd resumes from the bytes delivered; each retry is shown\n"
       "on stderr (unless -q). Unless --max-attempts or --retry-delay is given, regd\n"
       "waits 200ms, doubling, at most 3s. The JSON result needs -o FILE:\n"
       "  regdctl read-blob REPO DIGEST -o FILE --output json",
       With({{"output-file", 'o', "FILE", "write the blob to FILE ('-': stdout)"},
             {"offset", 0, "N", "start at byte N (FILE keeps bytes 0..N-1)"},
             {"resume", 0, "", "start at FILE's current size"}},
            RetryOptions("200ms")),
       2, 2, RunReadBlob},
      {"health",
       "health [SERVICE]",
       "the daemon's health (grpc.health.v1 Check)",
       "Prints SERVING, NOT_SERVING, ...; exits 0 only for SERVING (else 14, UNAVAILABLE).\n"
       "SERVICE defaults to \"\" (the whole daemon); regd also answers for regd.v1.Registry.",
       {},
       0,
       1,
       RunHealth},
  };
}

}  // namespace regdctl
