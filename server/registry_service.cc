#include "server/registry_service.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/log.h"
#include "core/read/blob_reader.h"
#include "core/reference/reference.h"
#include "core/status_macros.h"
#include "core/upload/blob_stream.h"
#include "server/convert.h"
#include "server/status_util.h"
#include "server/stream_reactor.h"

namespace regd {
namespace {

using WriteLayerReactor = StreamReactor<v1::WriteLayerEvent>;
using PushReactor = StreamReactor<v1::PushEvent>;
using PullReactor = StreamReactor<v1::PullEvent>;
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

// What a call is, for logs and metrics.
struct Rpc {
  const char* method;
  const char* type;  // unary, server_stream, bidi_stream
  Metrics* metrics;  // may be null
};

// One call, from its start: what it is and what it is about.
struct CallRecord {
  Rpc rpc;
  std::string request_id;
  std::string subject;  // an image reference or repository, from the caller
  absl::Time start = absl::Now();
};

// Records a call's start for metrics (and, for streams, the in-flight gauge).
void Started(const CallRecord& c, absl::string_view caller) {
  if (c.rpc.metrics == nullptr) return;
  c.rpc.metrics->CallStarted(c.rpc.method, c.rpc.type, caller);
  if (std::string_view(c.rpc.type) != "unary") c.rpc.metrics->StreamsInFlight(+1);
}

// The call's end: metrics, and its access line (method, tenant, registry,
// repository, outcome, bytes, duration). Subjects are image references and
// repository names, never credentials; they are escaped like all text from
// outside. `ctx` is null when the caller was refused before it had one.
absl::Status Logged(const CallRecord& c, const CallContext* ctx, absl::Status st) {
  const absl::Duration took = absl::Now() - c.start;
  const std::string caller = ctx != nullptr ? ctx->caller : "";
  if (c.rpc.metrics != nullptr) {
    c.rpc.metrics->CallHandled(c.rpc.method, c.rpc.type, caller, st.code(), took);
    if (std::string_view(c.rpc.type) != "unary") c.rpc.metrics->StreamsInFlight(-1);
  }
  ScopedLogContext scope({c.request_id, caller});
  const absl::string_view subject = absl::string_view(c.subject).substr(0, 512);
  std::string registry, repository;
  if (absl::StatusOr<Reference> ref = ParseReference(subject); ref.ok()) {
    registry = ref->repo.registry;
    repository = ref->repo.path;
  } else if (absl::StatusOr<Repository> repo =
                 ParseRepository(subject.substr(0, subject.find('@')));
             repo.ok()) {
    registry = repo->registry;
    repository = repo->path;
  }
  const int64_t bytes = ctx != nullptr ? ctx->bytes->load() : 0;
  const std::string took_text = absl::FormatDuration(absl::Trunc(took, absl::Milliseconds(1)));
  const std::string who = caller.empty() ? "" : absl::StrCat(" [", caller, "]");
  const std::string outcome(absl::StatusCodeToString(st.code()));
  std::string msg =
      absl::StrCat(c.rpc.method, who, " ", absl::CEscape(subject), " ", outcome, " in ", took_text);
  if (!st.ok()) absl::StrAppend(&msg, ": ", absl::CEscape(st.message().substr(0, 1024)));
  LogAccess(msg, {Field("method", c.rpc.method), Field("registry", registry),
                  Field("repository", repository), Field("outcome", outcome), Field("bytes", bytes),
                  Field("duration_ms", static_cast<int64_t>(absl::ToInt64Milliseconds(took)))});
  return st;
}

using StreamWork = std::function<absl::Status(CallContext&)>;

// Starts `work` for an admitted streaming call. False when no worker can take
// it: the stream has then ended with that status (Complete was called).
template <typename Reactor>
bool LaunchAdmitted(Executor* executor, Reactor* reactor, CallRecord record,
                    Callers::Admission admitted, StreamWork work) {
  auto call = std::make_shared<Callers::Admission>(std::move(admitted));
  call->ctx.request_id = record.request_id;
  call->ctx.cancelled = reactor->cancelled();
  Started(record, call->ctx.caller);
  auto status = std::make_shared<absl::Status>();
  absl::Status submitted = executor->Submit(
      [status, call, record, work = std::move(work)] {
        {
          ScopedLogContext scope({call->ctx.request_id, call->ctx.caller});
          *status = work(call->ctx);
        }
        *status = Logged(record, &call->ctx, *status);
        call->slot.reset();  // the tenant's slot is free before the reply goes
      },
      [reactor, status] { reactor->Complete(*status); });
  if (!submitted.ok()) {
    reactor->Complete(Logged(record, &call->ctx, submitted));
    return false;
  }
  return true;
}

// Admits the caller and starts `work`; false when refused (the stream ended).
template <typename Reactor>
bool LaunchStream(Callers* callers, Executor* executor, grpc::CallbackServerContext* sctx,
                  Reactor* reactor, CallRecord record, StreamWork work) {
  absl::StatusOr<Callers::Admission> admitted = callers->Admit(sctx);
  if (!admitted.ok()) {
    Started(record, "");
    reactor->Complete(Logged(record, nullptr, admitted.status()));
    return false;
  }
  return LaunchAdmitted(executor, reactor, std::move(record), *std::move(admitted),
                        std::move(work));
}

template <typename Reactor>
Reactor* StartStream(Callers* callers, Executor* executor, grpc::CallbackServerContext* sctx,
                     Reactor* reactor, Rpc rpc, std::string subject, StreamWork work) {
  CallRecord record{rpc, RequestIdOf(sctx), std::move(subject)};
  LaunchStream(callers, executor, sctx, reactor, std::move(record), std::move(work));
  return reactor;
}

v1::UploadBlobEvent ProgressEvent(int64_t complete, int64_t total) {
  v1::UploadBlobEvent e;
  e.mutable_progress()->set_complete(complete);
  e.mutable_progress()->set_total(total);
  return e;
}

// UploadBlob: a bidirectional stream. Writes (progress, retry, send_from,
// result) go through StreamReactor's queue; reads feed the call's BlobStream,
// one read in flight, paused while the stream's buffer is full.
class UploadBlobReactor
    : public StreamReactor<v1::UploadBlobEvent,
                           grpc::ServerBidiReactor<v1::UploadBlobRequest, v1::UploadBlobEvent>> {
 public:
  UploadBlobReactor(Engine* engine, Executor* executor, Callers* callers, Metrics* metrics,
                    grpc::CallbackServerContext* sctx)
      : StreamReactor([](const v1::UploadBlobEvent& e) {
          return Class{"", e.has_progress()};
        }),
        record_{Rpc{"UploadBlob", "bidi_stream", metrics}, RequestIdOf(sctx), ""},
        engine_(engine),
        executor_(executor),
        callers_(callers),
        sctx_(sctx) {
    // A stranger is refused before anything it sends is read; a tenant takes
    // its slot with its start message (a stream that never starts holds none).
    if (absl::Status known = callers->Recognise(sctx); !known.ok()) {
      Started(record_, "");
      Complete(Logged(record_, nullptr, known));
      return;
    }
    absl::MutexLock lock(&read_mu_);
    reading_ = true;
    StartRead(&req_);
  }

  // grpc::ServerBidiReactor:
  void OnReadDone(bool ok) override {
    absl::MutexLock lock(&read_mu_);
    reading_ = false;
    if (!ok) {  // half-closed, or gone
      ended_ = true;
      if (stream_ != nullptr && sctx_->IsCancelled()) {
        // Gone (or reset by gRPC), not done: the upload is cancelled, not
        // blamed on a caller that "closed early".
        cancelled()->store(true);
      } else if (stream_ != nullptr) {
        stream_->CallerDone();
      } else {
        Started(record_, "");
        Complete(Logged(record_, nullptr,
                        absl::InvalidArgumentError("the stream ended before its start message")));
      }
      return;
    }
    if (stream_ == nullptr) {
      if (!req_.has_start()) {
        ended_ = true;
        Started(record_, "");
        Complete(Logged(record_, nullptr,
                        absl::InvalidArgumentError("the first UploadBlob message must be start")));
        return;
      }
      if (!Begin()) {
        ended_ = true;
        return;
      }
    } else if (req_.has_start()) {
      ended_ = true;
      stream_->CallerError(absl::InvalidArgumentError("a second start message"));
      return;
    } else if (req_.has_chunk()) {
      const int64_t offset = req_.chunk().offset();
      if (!stream_->Offer(offset, std::move(*req_.mutable_chunk()->mutable_data()))) {
        paused_ = true;  // ResumeReading() goes on once the uploader has room
        return;
      }
    }
    if (ended_) return;  // the call has its outcome: read no more
    reading_ = true;
    StartRead(&req_);
  }

 private:
  // Called with read_mu_ held, on the start message. False: the call ended.
  bool Begin() ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu_) {
    const v1::UploadBlobStart& start = req_.start();
    spec_.digest = start.digest();
    spec_.size = start.size();
    spec_.media_type = start.media_type();
    spec_.mount_from = start.mount_from();
    repo_ = start.repo();
    retry_ = FromProto(start.retry());
    BlobStream::Options o;
    o.size = spec_.size;
    o.digest = spec_.digest;
    absl::StatusOr<std::unique_ptr<BlobStream>> stream = BlobStream::Create(
        o,
        [this](int64_t offset) {
          v1::UploadBlobEvent e;
          e.mutable_send_from()->set_offset(offset);
          Push(std::move(e));
        },
        [this] { ResumeReading(); }, cancelled());
    if (!stream.ok()) {
      record_.subject = repo_;
      Started(record_, "");
      Complete(Logged(record_, nullptr, stream.status()));
      return false;
    }
    stream_ = *std::move(stream);
    record_.subject = absl::StrCat(repo_, "@", spec_.digest);
    return LaunchStream(callers_, executor_, sctx_, this, record_,
                        [this](CallContext& ctx) -> absl::Status {
                          ctx.retry = retry_;
                          ctx.events.on_progress = [this](const std::string&, int64_t c,
                                                          int64_t t) { Push(ProgressEvent(c, t)); };
                          ctx.events.on_retry = [this](const std::string&, const RetryNotice& n) {
                            v1::UploadBlobEvent e;
                            ToProto(n, e.mutable_retry());
                            Push(std::move(e));
                          };
                          absl::StatusOr<LayerOutcome> out =
                              engine_->UploadStream(ctx, repo_, spec_, stream_.get());
                          {
                            // No read starts after this: the call is about to end.
                            absl::MutexLock lock(&read_mu_);
                            ended_ = true;
                          }
                          if (!out.ok()) return out.status();
                          v1::UploadBlobEvent e;
                          ToProto(*out, e.mutable_result());
                          Push(std::move(e));
                          return absl::OkStatus();
                        });
  }

  // From the uploader's thread: there is room in the stream again.
  void ResumeReading() {
    absl::MutexLock lock(&read_mu_);
    if (!paused_ || ended_ || reading_) return;
    paused_ = false;
    reading_ = true;
    StartRead(&req_);
  }

  CallRecord record_;
  Engine* const engine_;
  Executor* const executor_;
  Callers* const callers_;
  grpc::CallbackServerContext* const sctx_;
  absl::Mutex read_mu_;
  v1::UploadBlobRequest req_;  // the read in flight's target
  bool reading_ ABSL_GUARDED_BY(read_mu_) = false;
  bool paused_ ABSL_GUARDED_BY(read_mu_) = false;
  bool ended_ ABSL_GUARDED_BY(read_mu_) = false;
  // Set once, under read_mu_, before the engine call starts; read by it after.
  std::unique_ptr<BlobStream> stream_;
  std::string repo_;
  BlobSpec spec_;
  RetryPolicy retry_;
};

}  // namespace

grpc::ServerUnaryReactor* RegistryService::RunUnary(grpc::CallbackServerContext* sctx,
                                                    const char* method, std::string subject,
                                                    StreamWork work) {
  auto* reactor = new UnaryReactor();
  CallRecord record{Rpc{method, "unary", metrics_}, RequestIdOf(sctx), std::move(subject)};
  absl::StatusOr<Callers::Admission> admitted = callers_->Admit(sctx);
  if (!admitted.ok()) {
    Started(record, "");
    reactor->Finish(ToGrpcStatus(Logged(record, nullptr, admitted.status())));
    return reactor;
  }
  auto call = std::make_shared<Callers::Admission>(*std::move(admitted));
  call->ctx.request_id = record.request_id;
  call->ctx.cancelled = reactor->cancelled();
  Started(record, call->ctx.caller);
  auto status = std::make_shared<absl::Status>();
  absl::Status submitted = executor_->Submit(
      [status, call, record, work = std::move(work)] {
        {
          ScopedLogContext scope({call->ctx.request_id, call->ctx.caller});
          *status = work(call->ctx);
        }
        *status = Logged(record, &call->ctx, *status);
        call->slot.reset();  // the tenant's slot is free before the reply goes
      },
      [reactor, status] { reactor->Finish(ToGrpcStatus(*status)); });
  if (!submitted.ok()) {
    reactor->Finish(ToGrpcStatus(Logged(record, &call->ctx, submitted)));
  }
  return reactor;
}

grpc::ServerUnaryReactor* RegistryService::Inspect(grpc::CallbackServerContext* ctx,
                                                   const v1::InspectRequest* req,
                                                   v1::ManifestResult* resp) {
  return RunUnary(
      ctx, "Inspect", req->image_ref(), [this, req, resp](CallContext& call) -> absl::Status {
        ASSIGN_OR_RETURN(std::optional<Platform> platform, FromProto(req->platform()));
        ASSIGN_OR_RETURN(InspectResult r, engine_->Inspect(call, req->image_ref(), platform));
        ToProto(r, resp);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* RegistryService::GetImage(grpc::CallbackServerContext* ctx,
                                                    const v1::GetImageRequest* req,
                                                    v1::Image* resp) {
  return RunUnary(
      ctx, "GetImage", req->image_ref(), [this, req, resp](CallContext& call) -> absl::Status {
        ASSIGN_OR_RETURN(std::optional<Platform> platform, FromProto(req->platform()));
        ASSIGN_OR_RETURN(ImageResult r, engine_->GetImage(call, req->image_ref(), platform));
        ToProto(r, resp);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* RegistryService::Exists(grpc::CallbackServerContext* ctx,
                                                  const v1::ExistsRequest* req,
                                                  v1::ExistsResponse* resp) {
  return RunUnary(ctx, "Exists", req->image_ref(),
                  [this, req, resp](CallContext& call) -> absl::Status {
                    ASSIGN_OR_RETURN(bool exists, engine_->Exists(call, req->image_ref()));
                    resp->set_exists(exists);
                    return absl::OkStatus();
                  });
}

grpc::ServerUnaryReactor* RegistryService::GetDescriptor(grpc::CallbackServerContext* ctx,
                                                         const v1::GetDescriptorRequest* req,
                                                         v1::Descriptor* resp) {
  return RunUnary(ctx, "GetDescriptor", req->image_ref(),
                  [this, req, resp](CallContext& call) -> absl::Status {
                    ASSIGN_OR_RETURN(Descriptor d, engine_->GetDescriptor(call, req->image_ref()));
                    ToProto(d, resp);
                    return absl::OkStatus();
                  });
}

grpc::ServerUnaryReactor* RegistryService::PushIndex(grpc::CallbackServerContext* ctx,
                                                     const v1::PushIndexRequest* req,
                                                     v1::Descriptor* resp) {
  return RunUnary(ctx, "PushIndex", req->ref(),
                  [this, req, resp](CallContext& call) -> absl::Status {
                    ASSIGN_OR_RETURN(PushIndexSpec spec, FromProto(*req));
                    ASSIGN_OR_RETURN(Descriptor d, engine_->PushIndex(call, spec));
                    ToProto(d, resp);
                    return absl::OkStatus();
                  });
}

grpc::ServerWriteReactor<v1::BlobChunk>* RegistryService::ReadBlob(grpc::CallbackServerContext* ctx,
                                                                   const v1::ReadBlobRequest* req) {
  // Up to 2 chunks (2 MiB) queued ahead of the client.
  auto* reactor = new BlobReactor(nullptr, 2);
  return StartStream(callers_, executor_, ctx, reactor, Rpc{"ReadBlob", "server_stream", metrics_},
                     absl::StrCat(req->repo(), "@", req->digest()),
                     [this, req, reactor](CallContext& call) -> absl::Status {
                       call.retry = FromProto(req->retry(), DefaultBlobReadRetry());
                       call.events.on_retry = [reactor](const std::string&, const RetryNotice& n) {
                         v1::BlobChunk chunk;
                         ToProto(n, chunk.mutable_retry());
                         reactor->Push(std::move(chunk));
                       };
                       auto sink = [reactor](std::string&& data) {
                         v1::BlobChunk chunk;
                         chunk.set_data(std::move(data));  // no copy
                         return reactor->PushBlocking(std::move(chunk));
                       };
                       return engine_->ReadBlob(call, req->repo(), req->digest(), req->offset(),
                                                sink, [reactor] { return reactor->WaitDrained(); });
                     });
}

grpc::ServerWriteReactor<v1::WriteLayerEvent>* RegistryService::WriteLayer(
    grpc::CallbackServerContext* ctx, const v1::WriteLayerRequest* req) {
  auto* reactor = new WriteLayerReactor([](const v1::WriteLayerEvent& e) {
    return WriteLayerReactor::Class{"", e.has_progress()};
  });
  return StartStream(
      callers_, executor_, ctx, reactor, Rpc{"WriteLayer", "server_stream", metrics_}, req->repo(),
      [this, req, reactor](CallContext& call) -> absl::Status {
        if (!req->has_layer()) return absl::InvalidArgumentError("layer is required");
        ASSIGN_OR_RETURN(BlobSpec blob, FromProto(req->layer()));
        call.retry = FromProto(req->retry());
        call.events.on_progress = [reactor](const std::string&, int64_t complete, int64_t total) {
          v1::WriteLayerEvent e;
          e.mutable_progress()->set_complete(complete);
          e.mutable_progress()->set_total(total);
          reactor->Push(std::move(e));
        };
        call.events.on_retry = [reactor](const std::string&, const RetryNotice& n) {
          v1::WriteLayerEvent e;
          ToProto(n, e.mutable_retry());
          reactor->Push(std::move(e));
        };
        ASSIGN_OR_RETURN(LayerOutcome out, engine_->WriteLayer(call, req->repo(), std::move(blob)));
        v1::WriteLayerEvent e;
        ToProto(out, e.mutable_result());
        reactor->Push(std::move(e));
        return absl::OkStatus();
      });
}

namespace {

// PushImage's and PullImage's per-blob events (PushEvent and PullEvent have
// the same shape): progress, retries and outcomes, each naming its blob.
template <typename Event>
void SendBlobEvents(StreamReactor<Event>* reactor, PushEvents* events) {
  events->on_progress = [reactor](const std::string& digest, int64_t complete, int64_t total) {
    Event e;
    e.set_blob_digest(digest);
    e.mutable_progress()->set_complete(complete);
    e.mutable_progress()->set_total(total);
    reactor->Push(std::move(e));
  };
  events->on_retry = [reactor](const std::string& digest, const RetryNotice& n) {
    Event e;
    e.set_blob_digest(digest);
    ToProto(n, e.mutable_retry());
    reactor->Push(std::move(e));
  };
  events->on_layer = [reactor](const std::string& digest, const LayerOutcome& out) {
    Event e;
    e.set_blob_digest(digest);
    ToProto(out, e.mutable_layer());
    reactor->Push(std::move(e));
  };
}

}  // namespace

grpc::ServerWriteReactor<v1::PushEvent>* RegistryService::PushImage(
    grpc::CallbackServerContext* ctx, const v1::PushImageRequest* req) {
  auto* reactor = new PushReactor([](const v1::PushEvent& e) {
    return PushReactor::Class{e.blob_digest(), e.has_progress()};
  });
  return StartStream(callers_, executor_, ctx, reactor, Rpc{"PushImage", "server_stream", metrics_},
                     req->ref(), [this, req, reactor](CallContext& call) -> absl::Status {
                       ASSIGN_OR_RETURN(PushImageSpec spec, FromProto(*req));
                       call.retry = FromProto(req->retry());
                       SendBlobEvents(reactor, &call.events);
                       ASSIGN_OR_RETURN(Descriptor d, engine_->PushImage(call, spec));
                       v1::PushEvent e;
                       ToProto(d, e.mutable_result()->mutable_descriptor_());
                       reactor->Push(std::move(e));
                       return absl::OkStatus();
                     });
}

grpc::ServerWriteReactor<v1::PullEvent>* RegistryService::PullImage(
    grpc::CallbackServerContext* ctx, const v1::PullImageRequest* req) {
  auto* reactor = new PullReactor([](const v1::PullEvent& e) {
    return PullReactor::Class{e.blob_digest(), e.has_progress()};
  });
  return StartStream(callers_, executor_, ctx, reactor, Rpc{"PullImage", "server_stream", metrics_},
                     req->ref(), [this, req, reactor](CallContext& call) -> absl::Status {
                       PullSpec spec;
                       spec.ref = req->ref();
                       if (req->has_platform()) {
                         ASSIGN_OR_RETURN(spec.platform, FromProto(req->platform()));
                       }
                       spec.all_platforms = req->all_platforms();
                       spec.layout_path = req->layout().path();
                       spec.ref_name = req->layout().ref_name();
                       spec.concurrency = req->concurrency();
                       call.retry = FromProto(req->retry(), DefaultBlobReadRetry());
                       SendBlobEvents(reactor, &call.events);
                       ASSIGN_OR_RETURN(Descriptor d, engine_->PullImage(call, spec));
                       v1::PullEvent e;
                       ToProto(d, e.mutable_result()->mutable_descriptor_());
                       reactor->Push(std::move(e));
                       return absl::OkStatus();
                     });
}

grpc::ServerBidiReactor<v1::UploadBlobRequest, v1::UploadBlobEvent>* RegistryService::UploadBlob(
    grpc::CallbackServerContext* ctx) {
  return new UploadBlobReactor(engine_, executor_, callers_, metrics_, ctx);
}

}  // namespace regd
