#!/usr/bin/python3
"""A small command-line client for the regd gRPC daemon.

Stubs are generated from ../../proto with protoc and grpc_python_plugin the
first time the script runs and cached under $XDG_CACHE_HOME (or
$REGD_PY_STUB_DIR), keyed by a hash of the proto, so no generated code is
committed.

Results are printed as JSON on stdout, progress on stderr. On a gRPC error the
status code name and message go to stderr and the exit status is the numeric
gRPC code (NOT_FOUND exits 5, UNAVAILABLE 14, ...).
"""

import argparse
import base64
import collections
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.environ.get("REGD_PROTO_DIR",
                           os.path.join(HERE, "..", "..", "proto"))
PROTO_FILE = "regd/v1/registry.proto"


def _stub_cache_root():
    explicit = os.environ.get("REGD_PY_STUB_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return os.path.join(base, "regd-client-examples", "python")


def _generate_stubs(out_dir):
    """Runs protoc into a fresh directory and moves it to out_dir atomically."""
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".gen-", dir=parent)
    plugin = shutil.which("grpc_python_plugin") or "/usr/bin/grpc_python_plugin"
    cmd = ["protoc", "-I", PROTO_DIR, "--python_out=" + tmp,
           "--grpc_out=" + tmp, "--plugin=protoc-gen-grpc=" + plugin,
           os.path.join(PROTO_DIR, PROTO_FILE)]
    try:
        subprocess.run(cmd, check=True)
        os.rename(tmp, out_dir)
    except OSError:
        # Another process won the race (out_dir exists) or the rename failed.
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isdir(out_dir):
            raise
    except subprocess.CalledProcessError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_stubs():
    """Returns (registry_pb2, registry_pb2_grpc), generating them if needed."""
    with open(os.path.join(PROTO_DIR, PROTO_FILE), "rb") as f:
        key = hashlib.sha256(f.read()).hexdigest()[:16]
    out_dir = os.path.join(_stub_cache_root(), key)
    if not os.path.isdir(out_dir):
        try:
            _generate_stubs(out_dir)
        except PermissionError:
            out_dir = os.path.join(tempfile.mkdtemp(prefix="regd-py-"), key)
            _generate_stubs(out_dir)
    sys.path.insert(0, out_dir)
    from regd.v1 import registry_pb2, registry_pb2_grpc  # noqa: E402
    return registry_pb2, registry_pb2_grpc


import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402

pb, pb_grpc = load_stubs()


def to_dict(msg):
    """Proto3 JSON mapping with proto field names and default values shown."""
    try:
        return json_format.MessageToDict(
            msg, preserving_proto_field_name=True,
            including_default_value_fields=True)
    except TypeError:  # protobuf >= 26 renamed the option
        return json_format.MessageToDict(
            msg, preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True)


def print_json(obj):
    json.dump(obj, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def parse_platform(text):
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise argparse.ArgumentTypeError(
            "platform must be os/arch or os/arch/variant, got %r" % text)
    return pb.Platform(os=parts[0], architecture=parts[1],
                       variant=parts[2] if len(parts) == 3 else "")


def retry_config(args):
    return pb.RetryConfig(max_attempts=args.max_attempts)


def describe_retry(ev):
    delay = ev.next_retry_in.seconds + ev.next_retry_in.nanos / 1e9
    return "retry: attempt %d/%d failed: %s; next in %.1fs" % (
        ev.attempt, ev.max_attempts, ev.error, delay)


def describe_progress(p):
    if p.total > 0:
        return "progress: %d/%d bytes (%d%%)" % (p.complete, p.total,
                                                 100 * p.complete // p.total)
    return "progress: %d bytes" % p.complete


def log(line):
    print(line, file=sys.stderr, flush=True)


# --- subcommands -----------------------------------------------------------

def cmd_inspect(stub, args):
    req = pb.InspectRequest(image_ref=args.ref)
    if args.platform is not None:
        req.platform.CopyFrom(args.platform)
    print_json(to_dict(stub.Inspect(req, timeout=args.timeout)))


def cmd_exists(stub, args):
    resp = stub.Exists(pb.ExistsRequest(image_ref=args.ref),
                       timeout=args.timeout)
    print_json(to_dict(resp))


def cmd_read_blob(stub, args):
    req = pb.ReadBlobRequest(repo=args.repo, digest=args.digest,
                             offset=args.offset)
    mode = "ab" if args.offset > 0 else "wb"
    written = 0
    sha = hashlib.sha256()
    try:
        with open(args.out, mode) as out:
            for chunk in stub.ReadBlob(req):
                if chunk.HasField("retry"):  # regd resumes after this wait
                    log(describe_retry(chunk.retry))
                out.write(chunk.data)
                sha.update(chunk.data)
                written += len(chunk.data)
    except grpc.RpcError:
        if args.offset == 0 and os.path.exists(args.out):
            os.unlink(args.out)  # do not leave a partial, unverified blob
        raise
    result = {"repo": args.repo, "digest": args.digest, "out": args.out,
              "bytes_written": written}
    if args.offset == 0:
        result["sha256"] = "sha256:" + sha.hexdigest()
    print_json(result)


def blob_source(args):
    src = pb.BlobSource(digest=args.digest or "", media_type=args.media_type,
                        mount_from=args.mount_from)
    if args.inline:
        with open(args.file, "rb") as f:
            src.data = f.read()
    else:
        # The daemon opens the file itself, so it must lie in --allowed_paths.
        src.path = os.path.abspath(args.file)
    return src


def cmd_write_layer(stub, args):
    req = pb.WriteLayerRequest(repo=args.repo, layer=blob_source(args),
                               retry=retry_config(args))
    result = None
    for ev in stub.WriteLayer(req):
        kind = ev.WhichOneof("event")
        if kind == "progress":
            log(describe_progress(ev.progress))
        elif kind == "retry":
            log(describe_retry(ev.retry))
        elif kind == "result":
            result = ev.result
    if result is None:
        log("error: stream ended without a LayerResult")
        return 1
    print_json(to_dict(result))
    return 0


# --- upload: UploadBlob, the caller streams the bytes -----------------------

MiB = 1 << 20


def file_digest(path):
    """sha256 digest and size of a file, read in 1 MiB pieces."""
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while True:
            data = f.read(MiB)
            if not data:
                break
            sha.update(data)
            size += len(data)
    return "sha256:" + sha.hexdigest(), size


class _Sender:
    """Feeds UploadBlob's request stream from FILE at the offsets regd asks for.

    gRPC's own thread pulls requests() and waits for each message to be
    written before it pulls the next, which is the back-pressure. The thread
    reading the events calls send_from() and finish(). The generator never
    ends on its own: the stream stays open (not half-closed) until finish().
    """

    def __init__(self, f, start, chunk_bytes):
        self._f = f
        self._start = start
        self._chunk = chunk_bytes
        self._cond = threading.Condition()
        self._offset = None  # the latest send_from not yet acted on
        self._done = False
        self.error = None  # an OSError reading the file
        self.call = None  # set once the call exists, to cancel it on errors
        self.sent = 0  # bytes in chunks handed to gRPC
        self.passes = 0

    def send_from(self, offset):
        with self._cond:
            self._offset = offset
            self._cond.notify_all()

    def finish(self):
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def requests(self):
        yield pb.UploadBlobRequest(start=self._start)
        while True:
            with self._cond:
                while self._offset is None and not self._done:
                    self._cond.wait()
                if self._done:
                    return  # half-closes, only once the result is in
                offset, self._offset = self._offset, None
                self.passes += 1
            try:
                self._f.seek(offset)
                while True:
                    with self._cond:
                        if self._done or self._offset is not None:
                            break  # finished, or regd asked for another offset
                    data = self._f.read(self._chunk)
                    if not data:
                        break  # EOF: wait for the result or a new send_from
                    # Counted when handed over, so the total is complete
                    # whenever the result arrives.
                    self.sent += len(data)
                    yield pb.UploadBlobRequest(
                        chunk=pb.UploadChunk(offset=offset, data=data))
                    offset += len(data)
            except OSError as e:
                self.error = e
                if self.call is not None:
                    self.call.cancel()
                return


def cmd_upload(stub, args):
    if args.digest:
        digest, size = args.digest, os.stat(args.file).st_size
    else:
        digest, size = file_digest(args.file)
    start = pb.UploadBlobStart(repo=args.repo, digest=digest, size=size,
                               media_type=args.media_type,
                               mount_from=args.mount_from,
                               retry=retry_config(args))
    result = None
    last_progress = 0.0
    with open(args.file, "rb") as f:
        sender = _Sender(f, start, args.chunk_bytes)
        # No deadline: a large upload may legitimately take a long time.
        call = stub.UploadBlob(sender.requests())
        sender.call = call
        try:
            for ev in call:
                kind = ev.WhichOneof("event")
                if kind == "send_from":
                    log("send_from: offset %d" % ev.send_from.offset)
                    sender.send_from(ev.send_from.offset)
                elif kind == "retry":
                    log(describe_retry(ev.retry))
                elif kind == "progress":
                    now = time.monotonic()
                    p = ev.progress
                    if now - last_progress >= 1.0 or (
                            p.total > 0 and p.complete >= p.total):
                        last_progress = now
                        log(describe_progress(p))
                elif kind == "result":
                    result = ev.result
                    # Committed: stop sending and half-close; the loop then
                    # drains the stream to its (OK) status.
                    sender.finish()
        except grpc.RpcError as e:
            if sender.error is not None:
                raise sender.error
            if result is None:
                raise
            log("note: stream ended with %s after the result" % e.code().name)
        finally:
            sender.finish()
            log("sent %d bytes in %d passes" % (sender.sent, sender.passes))
    if result is None:
        log("error: stream ended without a LayerResult")
        return 1
    print_json(to_dict(result))
    return 0


def print_image_events(events, result_name):
    """PushImage's or PullImage's events: one line per blob event on stderr,
    then the result as JSON on stdout."""
    result = None
    for ev in events:
        kind = ev.WhichOneof("event")
        blob = ev.blob_digest[:19]
        if kind == "progress":
            log("%s %s" % (blob, describe_progress(ev.progress)))
        elif kind == "retry":
            log("%s %s" % (blob, describe_retry(ev.retry)))
        elif kind == "layer":
            log("%s done: %s" % (blob, pb.LayerResult.Outcome.Name(
                ev.layer.outcome)))
        elif kind == "result":
            result = ev.result
    if result is None:
        log("error: stream ended without a %s" % result_name)
        return 1
    print_json(to_dict(result))
    return 0


def cmd_push_image(stub, args):
    req = pb.PushImageRequest(
        ref=args.ref,
        layout=pb.OciLayout(path=os.path.abspath(args.layout),
                            ref_name=args.ref_name),
        retry=retry_config(args), concurrency=args.concurrency)
    return print_image_events(stub.PushImage(req), "PushResult")


def cmd_pull(stub, args):
    req = pb.PullImageRequest(
        ref=args.ref,
        # The daemon writes the layout itself: the path is on its side, inside
        # its --allowed_paths, and must be absolute.
        layout=pb.OciLayout(path=os.path.abspath(args.layout),
                            ref_name=args.ref_name),
        all_platforms=args.all_platforms, concurrency=args.concurrency)
    if args.platform is not None:
        req.platform.CopyFrom(args.platform)
    if args.max_attempts:
        # Unset, regd uses its read policy (short delays between attempts).
        req.retry.CopyFrom(retry_config(args))
    return print_image_events(stub.PullImage(req), "PullResult")


def chunk_bytes(text):
    n = int(text)
    if not 0 < n <= 8 * MiB:
        raise argparse.ArgumentTypeError("must be 1..%d, got %d" % (8 * MiB, n))
    return n


# --- connection: TLS and call metadata ------------------------------------

class _CallDetails(
        collections.namedtuple("_CallDetails", (
            "method", "timeout", "metadata", "credentials", "wait_for_ready",
            "compression")), grpc.ClientCallDetails):
    pass


class _MetadataInterceptor(grpc.UnaryUnaryClientInterceptor,
                           grpc.UnaryStreamClientInterceptor,
                           grpc.StreamUnaryClientInterceptor,
                           grpc.StreamStreamClientInterceptor):
    """Adds the same metadata pairs to every call."""

    def __init__(self, pairs):
        self._pairs = list(pairs)

    def _details(self, d):
        return _CallDetails(d.method, d.timeout,
                            list(d.metadata or ()) + self._pairs,
                            d.credentials, getattr(d, "wait_for_ready", None),
                            getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._details(details), requests)


class UsageError(Exception):
    pass


def read_file(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError("%s: %s" % (what, e))


def registry_auth(args):
    """x-registry-auth: base64url (unpadded) of a Docker AuthConfig JSON."""
    if args.registry_auth_file and (args.registry_user is not None or
                                    args.registry_password is not None):
        raise UsageError("--registry-auth-file and --registry-user/"
                         "--registry-password exclude each other")
    if args.registry_auth_file:
        raw = read_file(args.registry_auth_file, "--registry-auth-file")
        try:
            config = json.loads(raw)
        except ValueError as e:
            raise UsageError("--registry-auth-file: not JSON: %s" % e)
        if not isinstance(config, dict):
            raise UsageError("--registry-auth-file must hold a JSON object")
    elif args.registry_user is not None or args.registry_password is not None:
        if args.registry_user is None or args.registry_password is None:
            raise UsageError("--registry-user and --registry-password go together")
        config = {"username": args.registry_user,
                  "password": args.registry_password}
    else:
        return None
    text = json.dumps(config, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")
    return base64.urlsafe_b64encode(text).rstrip(b"=").decode("ascii")


def open_channel(args):
    """The channel for --addr: TLS when any --tls-* option is given, and an
    interceptor that adds --token / --registry-* metadata to every call."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    metadata = []
    if args.token is not None:
        metadata.append(("authorization", "Bearer " + args.token))
    auth = registry_auth(args)
    if auth is not None:
        metadata.append(("x-registry-auth", auth))
    if args.tls_ca or args.tls_cert or args.tls_server_name:
        creds = grpc.ssl_channel_credentials(
            root_certificates=(read_file(args.tls_ca, "--tls-ca")
                               if args.tls_ca else None),
            private_key=(read_file(args.tls_key, "--tls-key")
                         if args.tls_key else None),
            certificate_chain=(read_file(args.tls_cert, "--tls-cert")
                               if args.tls_cert else None))
        options = []
        if args.tls_server_name:
            options.append(("grpc.ssl_target_name_override",
                            args.tls_server_name))
        channel = grpc.secure_channel(args.addr, creds, options=options)
    else:
        channel = grpc.insecure_channel(args.addr)
    if metadata:
        return channel, grpc.intercept_channel(
            channel, _MetadataInterceptor(metadata))
    return channel, channel


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--addr", default=os.environ.get("REGD_ADDR",
                                                    "127.0.0.1:50051"),
                   help="daemon address: host:port or unix:/path.sock "
                        "(default %(default)s, or $REGD_ADDR)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="deadline in seconds for unary calls")
    g = p.add_argument_group(
        "connection", "TLS is used when any --tls-* option is given (without "
        "--tls-ca the system's CAs verify the server).")
    g.add_argument("--tls-ca", metavar="PEM",
                   help="CA certificates that verify the daemon")
    g.add_argument("--tls-cert", metavar="PEM",
                   help="client certificate chain (mTLS; with --tls-key)")
    g.add_argument("--tls-key", metavar="PEM",
                   help="private key of --tls-cert")
    g.add_argument("--tls-server-name", metavar="NAME",
                   help="name to check in the daemon's certificate "
                        "(default: the host in --addr)")
    g.add_argument("--token",
                   help="sends 'authorization: Bearer TOKEN' on every call")
    g.add_argument("--registry-auth-file", metavar="JSON",
                   help="Docker AuthConfig JSON object sent as "
                        "x-registry-auth on every call")
    g.add_argument("--registry-user", metavar="USER",
                   help="with --registry-password: sends x-registry-auth "
                        "{username, password} on every call")
    g.add_argument("--registry-password", metavar="PASS")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("inspect", help="read the manifest a reference names")
    s.add_argument("ref")
    s.add_argument("--platform", type=parse_platform,
                   help="os/arch[/variant], to pick an index child")
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("exists", help="does the reference exist?")
    s.add_argument("ref")
    s.set_defaults(func=cmd_exists)

    s = sub.add_parser("read-blob", help="download a blob to a file")
    s.add_argument("repo")
    s.add_argument("digest")
    s.add_argument("--out", required=True)
    s.add_argument("--offset", type=int, default=0,
                   help="resume at this byte offset (appends to --out)")
    s.set_defaults(func=cmd_read_blob)

    s = sub.add_parser("write-layer", help="upload one blob")
    s.add_argument("repo")
    s.add_argument("file")
    s.add_argument("--inline", action="store_true",
                   help="send the bytes (<= 4 MiB) instead of the path")
    s.add_argument("--digest", help="expected digest (verified by regd)")
    s.add_argument("--media-type", default="")
    s.add_argument("--mount-from", default="",
                   help="repository on the same registry to mount from")
    s.add_argument("--max-attempts", type=int, default=0)
    s.set_defaults(func=cmd_write_layer)

    s = sub.add_parser("upload",
                       help="upload one blob, streaming its bytes (UploadBlob)")
    s.add_argument("repo")
    s.add_argument("file")
    s.add_argument("--digest",
                   help="the blob's digest (default: computed from FILE)")
    s.add_argument("--media-type", default="")
    s.add_argument("--mount-from", default="",
                   help="repository on the same registry to mount from")
    s.add_argument("--chunk-bytes", type=chunk_bytes, default=MiB,
                   help="bytes per UploadChunk (default %(default)s)")
    s.add_argument("--max-attempts", type=int, default=0)
    s.set_defaults(func=cmd_upload)

    s = sub.add_parser("push-image", help="push an OCI image layout")
    s.add_argument("ref")
    s.add_argument("--layout", required=True,
                   help="OCI layout directory inside regd's --allowed_paths")
    s.add_argument("--ref-name", default="",
                   help="which index.json entry (empty: the only one)")
    s.add_argument("--concurrency", type=int, default=0)
    s.add_argument("--max-attempts", type=int, default=0)
    s.set_defaults(func=cmd_push_image)

    s = sub.add_parser("pull",
                       help="pull an image into an OCI layout (PullImage)")
    s.add_argument("ref")
    s.add_argument("--layout", required=True,
                   help="OCI layout directory on the daemon's side, inside "
                        "its --allowed_paths (created or added to)")
    s.add_argument("--ref-name", default="",
                   help="index.json entry name (default: the tag, else "
                        "the digest)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--platform", type=parse_platform,
                   help="os/arch[/variant]: from an index, pull this child")
    g.add_argument("--all-platforms", action="store_true",
                   help="from an index, pull it whole")
    s.add_argument("--concurrency", type=int, default=0)
    s.add_argument("--max-attempts", type=int, default=0)
    s.set_defaults(func=cmd_pull)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        channel, intercepted = open_channel(args)
    except UsageError as e:
        parser.error(str(e))  # exits 2
    with channel:
        stub = pb_grpc.RegistryStub(intercepted)
        try:
            return args.func(stub, args) or 0
        except grpc.RpcError as e:
            code = e.code()
            log("error: %s: %s" % (code.name, e.details()))
            return code.value[0] or 1
        except OSError as e:  # a local file could not be read or written
            log("error: %s" % e)
            return 1
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    sys.exit(main())
