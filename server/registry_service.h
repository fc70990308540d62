// RegistryService: the regd.v1.Registry gRPC service as thin adapters.
//
// Each handler admits the caller (Callers: tenant, policy, per-call
// credentials → a CallContext), converts the request to core types, runs the
// Engine call on an Executor worker thread (never on a gRPC callback thread),
// and converts the result back. Streaming RPCs use StreamReactor; UploadBlob
// adds the reads of a bidirectional stream to it.
//
// Borrows the Engine, Executor and Callers, which must outlive the gRPC server.
// Thread-safe (stateless beyond those pointers).
#ifndef REGD_SERVER_REGISTRY_SERVICE_H_
#define REGD_SERVER_REGISTRY_SERVICE_H_

#include "core/engine.h"
#include "core/executor.h"
#include "regd/v1/registry.grpc.pb.h"
#include "server/callers.h"
#include "server/metrics.h"

namespace regd {

class RegistryService final : public v1::Registry::CallbackService {
 public:
  // `metrics` may be null.
  RegistryService(Engine* engine, Executor* executor, Callers* callers, Metrics* metrics)
      : engine_(engine), executor_(executor), callers_(callers), metrics_(metrics) {}

  // v1::Registry::CallbackService:
  grpc::ServerUnaryReactor* Inspect(grpc::CallbackServerContext* ctx, const v1::InspectRequest* req,
                                    v1::ManifestResult* resp) override;
  grpc::ServerUnaryReactor* GetImage(grpc::CallbackServerContext* ctx,
                                     const v1::GetImageRequest* req, v1::Image* resp) override;
  grpc::ServerUnaryReactor* Exists(grpc::CallbackServerContext* ctx, const v1::ExistsRequest* req,
                                   v1::ExistsResponse* resp) override;
  grpc::ServerUnaryReactor* GetDescriptor(grpc::CallbackServerContext* ctx,
                                          const v1::GetDescriptorRequest* req,
                                          v1::Descriptor* resp) override;
  grpc::ServerWriteReactor<v1::BlobChunk>* ReadBlob(grpc::CallbackServerContext* ctx,
                                                    const v1::ReadBlobRequest* req) override;
  grpc::ServerWriteReactor<v1::WriteLayerEvent>* WriteLayer(
      grpc::CallbackServerContext* ctx, const v1::WriteLayerRequest* req) override;
  grpc::ServerWriteReactor<v1::PushEvent>* PushImage(grpc::CallbackServerContext* ctx,
                                                     const v1::PushImageRequest* req) override;
  grpc::ServerWriteReactor<v1::PullEvent>* PullImage(grpc::CallbackServerContext* ctx,
                                                     const v1::PullImageRequest* req) override;
  grpc::ServerUnaryReactor* PushIndex(grpc::CallbackServerContext* ctx,
                                      const v1::PushIndexRequest* req,
                                      v1::Descriptor* resp) override;
  grpc::ServerBidiReactor<v1::UploadBlobRequest, v1::UploadBlobEvent>* UploadBlob(
      grpc::CallbackServerContext* ctx) override;

 private:
  // Admits the caller, runs `work` on a worker and finishes the unary call
  // with its status (logged with `method`, the caller and `subject`).
  grpc::ServerUnaryReactor* RunUnary(grpc::CallbackServerContext* ctx, const char* method,
                                     std::string subject,
                                     std::function<absl::Status(CallContext&)> work);

  Engine* const engine_;
  Executor* const executor_;
  Callers* const callers_;
  Metrics* const metrics_;
};

}  // namespace regd

#endif  // REGD_SERVER_REGISTRY_SERVICE_H_
