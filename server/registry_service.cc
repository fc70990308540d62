#include "server/registry_service.h"

#include "core/status_macros.h"
#include "server/convert.h"
#include "server/status_util.h"
#include "server/stream_reactor.h"

namespace regd {
namespace {

using WriteLayerReactor = StreamReactor<v1::WriteLayerEvent>;
using PushReactor = StreamReactor<v1::PushEvent>;
using BlobReactor = StreamReactor<v1::BlobChunk>;

// Starts `work` for a streaming reactor; if no worker can take it, the stream
// ends at once with that status.
template <typename Reactor>
Reactor* StartStream(Executor* executor, Reactor* reactor, std::function<absl::Status()> work) {
  absl::Status submitted = executor->Submit([reactor, work = std::move(work)] {
    reactor->Complete(work());
  });
  if (!submitted.ok()) reactor->Complete(submitted);
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* RegistryService::RunUnary(grpc::CallbackServerContext* ctx,
                                                    std::function<absl::Status()> work) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Status submitted = executor_->Submit([reactor, work = std::move(work)] {
    reactor->Finish(ToGrpcStatus(work()));
  });
  if (!submitted.ok()) reactor->Finish(ToGrpcStatus(submitted));
  return reactor;
}

grpc::ServerUnaryReactor* RegistryService::Inspect(grpc::CallbackServerContext* ctx,
                                                   const v1::InspectRequest* req,
                                                   v1::ManifestResult* resp) {
  return RunUnary(ctx, [this, req, resp]() -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<Platform> platform, FromProto(req->platform()));
    ASSIGN_OR_RETURN(InspectResult r, engine_->Inspect(req->image_ref(), platform));
    ToProto(r, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* RegistryService::GetImage(grpc::CallbackServerContext* ctx,
                                                    const v1::GetImageRequest* req,
                                                    v1::Image* resp) {
  return RunUnary(ctx, [this, req, resp]() -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<Platform> platform, FromProto(req->platform()));
    ASSIGN_OR_RETURN(ImageResult r, engine_->GetImage(req->image_ref(), platform));
    ToProto(r, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* RegistryService::Exists(grpc::CallbackServerContext* ctx,
                                                  const v1::ExistsRequest* req,
                                                  v1::ExistsResponse* resp) {
  return RunUnary(ctx, [this, req, resp]() -> absl::Status {
    ASSIGN_OR_RETURN(bool exists, engine_->Exists(req->image_ref()));
    resp->set_exists(exists);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* RegistryService::GetDescriptor(grpc::CallbackServerContext* ctx,
                                                         const v1::GetDescriptorRequest* req,
                                                         v1::Descriptor* resp) {
  return RunUnary(ctx, [this, req, resp]() -> absl::Status {
    ASSIGN_OR_RETURN(Descriptor d, engine_->GetDescriptor(req->image_ref()));
    ToProto(d, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* RegistryService::PushIndex(grpc::CallbackServerContext* ctx,
                                                     const v1::PushIndexRequest* req,
                                                     v1::Descriptor* resp) {
  return RunUnary(ctx, [this, req, resp]() -> absl::Status {
    ASSIGN_OR_RETURN(PushIndexSpec spec, FromProto(*req));
    ASSIGN_OR_RETURN(Descriptor d, engine_->PushIndex(spec));
    ToProto(d, resp);
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::BlobChunk>* RegistryService::ReadBlob(
    grpc::CallbackServerContext*, const v1::ReadBlobRequest* req) {
  auto* reactor = new BlobReactor();
  return StartStream(executor_, reactor, [this, req, reactor]() -> absl::Status {
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
  return StartStream(executor_, reactor, [this, req, reactor]() -> absl::Status {
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
    ASSIGN_OR_RETURN(LayerOutcome out, engine_->WriteLayer(req->repo(), blob, FromProto(req->retry()),
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
  return StartStream(executor_, reactor, [this, req, reactor]() -> absl::Status {
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
