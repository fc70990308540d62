#include "server/registry_service.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/log.h"
#include "core/status_macros.h"
#include "server/convert.h"
#include "server/status_util.h"
#include "server/stream_reactor.h"

namespace regd {
namespace {

using WriteLayerReactor = StreamReactor<v1::WriteLayerEvent>;
using PushReactor = StreamReactor<v1::PushEvent>;
using BlobReactor = StreamReactor<v1::BlobChunk>;

// A unary call's reactor: like the default one, plus a cancel flag the
// engine polls, set when the client cancels, its deadline passes, or the
// server shuts down. gRPC owns it; OnDone deletes it (after Finish).
class UnaryReactor : public grpc::ServerUnaryReactor {
 public:
  const CancelFlag& cancelled() const { return cancelled_; }
  void OnCancel() override { cancelled_->store(true); }
  void OnDone() override { delete this; }

 private:
  const CancelFlag cancelled_ = NewCancelFlag();
};

// One log line per call: method, what it was about, outcome, duration.
// Subjects are image references and repository names, never credentials.
absl::Status Logged(absl::string_view method, absl::string_view subject, absl::Time start,
                    absl::Status st) {
  std::string took = absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(1)));
  // Subjects come from the caller: escape them so they cannot forge log lines.
  std::string what = absl::CEscape(subject.substr(0, 512));
  if (st.ok()) {
    LogInfo(method, " ", what, " OK in ", took);
  } else {
    LogInfo(method, " ", what, " ", absl::StatusCodeToString(st.code()), " in ", took, ": ",
            absl::CEscape(st.message().substr(0, 1024)));
  }
  return st;
}

// Starts `work` for a streaming reactor; if no worker can take it, the stream
// ends at once with that status.
template <typename Reactor>
Reactor* StartStream(Executor* executor, Reactor* reactor, const char* method, std::string subject,
                     std::function<absl::Status()> work) {
  absl::Time start = absl::Now();
  auto status = std::make_shared<absl::Status>();
  absl::Status submitted = executor->Submit(
      [status, method, subject, start, work = std::move(work)] {
        *status = Logged(method, subject, start, work());
      },
      [reactor, status] { reactor->Complete(*status); });
  if (!submitted.ok()) reactor->Complete(Logged(method, subject, start, submitted));
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* RegistryService::RunUnary(
    grpc::CallbackServerContext* ctx, const char* method, std::string subject,
    std::function<absl::Status(const CancelFlag&)> work) {
  auto* reactor = new UnaryReactor();
  absl::Time start = absl::Now();
  auto status = std::make_shared<absl::Status>();
  absl::Status submitted = executor_->Submit(
      [status, reactor, method, subject, start, work = std::move(work)] {
        *status = Logged(method, subject, start, work(reactor->cancelled()));
      },
      [reactor, status] { reactor->Finish(ToGrpcStatus(*status)); });
  if (!submitted.ok()) reactor->Finish(ToGrpcStatus(Logged(method, subject, start, submitted)));
  return reactor;
}

grpc::ServerUnaryReactor* RegistryService::Inspect(grpc::CallbackServerContext* ctx,
                                                   const v1::InspectRequest* req,
                                                   v1::ManifestResult* resp) {
  return RunUnary(ctx, "Inspect", req->image_ref(),
                  [this, req, resp](const CancelFlag& cancelled) -> absl::Status {
                    ASSIGN_OR_RETURN(std::optional<Platform> platform, FromProto(req->platform()));
                    ASSIGN_OR_RETURN(InspectResult r,
                                     engine_->Inspect(req->image_ref(), platform, cancelled));
                    ToProto(r, resp);
                    return absl::OkStatus();
                  });
}

grpc::ServerUnaryReactor* RegistryService::GetImage(grpc::CallbackServerContext* ctx,
                                                    const v1::GetImageRequest* req,
                                                    v1::Image* resp) {
  return RunUnary(ctx, "GetImage", req->image_ref(),
                  [this, req, resp](const CancelFlag& cancelled) -> absl::Status {
                    ASSIGN_OR_RETURN(std::optional<Platform> platform, FromProto(req->platform()));
                    ASSIGN_OR_RETURN(ImageResult r,
                                     engine_->GetImage(req->image_ref(), platform, cancelled));
                    ToProto(r, resp);
                    return absl::OkStatus();
                  });
}

grpc::ServerUnaryReactor* RegistryService::Exists(grpc::CallbackServerContext* ctx,
                                                  const v1::ExistsRequest* req,
                                                  v1::ExistsResponse* resp) {
  return RunUnary(ctx, "Exists", req->image_ref(),
                  [this, req, resp](const CancelFlag& cancelled) -> absl::Status {
                    ASSIGN_OR_RETURN(bool exists, engine_->Exists(req->image_ref(), cancelled));
                    resp->set_exists(exists);
                    return absl::OkStatus();
                  });
}

grpc::ServerUnaryReactor* RegistryService::GetDescriptor(grpc::CallbackServerContext* ctx,
                                                         const v1::GetDescriptorRequest* req,
                                                         v1::Descriptor* resp) {
  return RunUnary(ctx, "GetDescriptor", req->image_ref(),
                  [this, req, resp](const CancelFlag& cancelled) -> absl::Status {
                    ASSIGN_OR_RETURN(Descriptor d,
                                     engine_->GetDescriptor(req->image_ref(), cancelled));
                    ToProto(d, resp);
                    return absl::OkStatus();
                  });
}

grpc::ServerUnaryReactor* RegistryService::PushIndex(grpc::CallbackServerContext* ctx,
                                                     const v1::PushIndexRequest* req,
                                                     v1::Descriptor* resp) {
  return RunUnary(ctx, "PushIndex", req->ref(),
                  [this, req, resp](const CancelFlag& cancelled) -> absl::Status {
                    ASSIGN_OR_RETURN(PushIndexSpec spec, FromProto(*req));
                    ASSIGN_OR_RETURN(Descriptor d, engine_->PushIndex(spec, cancelled));
                    ToProto(d, resp);
                    return absl::OkStatus();
                  });
}

grpc::ServerWriteReactor<v1::BlobChunk>* RegistryService::ReadBlob(grpc::CallbackServerContext*,
                                                                   const v1::ReadBlobRequest* req) {
  auto* reactor = new BlobReactor();
  return StartStream(executor_, reactor, "ReadBlob", absl::StrCat(req->repo(), "@", req->digest()),
                     [this, req, reactor]() -> absl::Status {
                       auto sink = [reactor](absl::string_view data) {
                         v1::BlobChunk chunk;
                         chunk.set_data(std::string(data));
                         return reactor->PushBlocking(std::move(chunk));
                       };
                       return engine_->ReadBlob(req->repo(), req->digest(), req->offset(), sink,
                                                reactor->cancelled());
                     });
}

grpc::ServerWriteReactor<v1::WriteLayerEvent>* RegistryService::WriteLayer(
    grpc::CallbackServerContext*, const v1::WriteLayerRequest* req) {
  auto* reactor = new WriteLayerReactor([](const v1::WriteLayerEvent& e) {
    return WriteLayerReactor::Class{"", e.has_progress()};
  });
  return StartStream(
      executor_, reactor, "WriteLayer", req->repo(), [this, req, reactor]() -> absl::Status {
        if (!req->has_layer()) return absl::InvalidArgumentError("layer is required");
        ASSIGN_OR_RETURN(BlobSpec blob, FromProto(req->layer()));
        UploadEvents events;
        events.on_progress = [reactor](int64_t complete, int64_t total) {
          v1::WriteLayerEvent e;
          e.mutable_progress()->set_complete(complete);
          e.mutable_progress()->set_total(total);
          reactor->Push(std::move(e));
        };
        events.on_retry = [reactor](const RetryNotice& n) {
          v1::WriteLayerEvent e;
          ToProto(n, e.mutable_retry());
          reactor->Push(std::move(e));
        };
        ASSIGN_OR_RETURN(LayerOutcome out,
                         engine_->WriteLayer(req->repo(), std::move(blob), FromProto(req->retry()),
                                             events, reactor->cancelled()));
        v1::WriteLayerEvent e;
        ToProto(out, e.mutable_result());
        reactor->Push(std::move(e));
        return absl::OkStatus();
      });
}

grpc::ServerWriteReactor<v1::PushEvent>* RegistryService::PushImage(
    grpc::CallbackServerContext*, const v1::PushImageRequest* req) {
  auto* reactor = new PushReactor([](const v1::PushEvent& e) {
    return PushReactor::Class{e.blob_digest(), e.has_progress()};
  });
  return StartStream(
      executor_, reactor, "PushImage", req->ref(), [this, req, reactor]() -> absl::Status {
        ASSIGN_OR_RETURN(PushImageSpec spec, FromProto(*req));
        PushEvents events;
        events.on_progress = [reactor](const std::string& digest, int64_t complete, int64_t total) {
          v1::PushEvent e;
          e.set_blob_digest(digest);
          e.mutable_progress()->set_complete(complete);
          e.mutable_progress()->set_total(total);
          reactor->Push(std::move(e));
        };
        events.on_retry = [reactor](const std::string& digest, const RetryNotice& n) {
          v1::PushEvent e;
          e.set_blob_digest(digest);
          ToProto(n, e.mutable_retry());
          reactor->Push(std::move(e));
        };
        events.on_layer = [reactor](const std::string& digest, const LayerOutcome& out) {
          v1::PushEvent e;
          e.set_blob_digest(digest);
          ToProto(out, e.mutable_layer());
          reactor->Push(std::move(e));
        };
        ASSIGN_OR_RETURN(Descriptor d, engine_->PushImage(spec, FromProto(req->retry()), events,
                                                          reactor->cancelled()));
        v1::PushEvent e;
        ToProto(d, e.mutable_result()->mutable_descriptor_());
        reactor->Push(std::move(e));
        return absl::OkStatus();
      });
}

}  // namespace regd
