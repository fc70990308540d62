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
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

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


def cmd_push_image(stub, args):
    req = pb.PushImageRequest(
        ref=args.ref,
        layout=pb.OciLayout(path=os.path.abspath(args.layout),
                            ref_name=args.ref_name),
        retry=retry_config(args), concurrency=args.concurrency)
    result = None
    for ev in stub.PushImage(req):
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
        log("error: stream ended without a PushResult")
        return 1
    print_json(to_dict(result))
    return 0


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--addr", default=os.environ.get("REGD_ADDR",
                                                    "127.0.0.1:50051"),
                   help="daemon address: host:port or unix:/path.sock "
                        "(default %(default)s, or $REGD_ADDR)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="deadline in seconds for unary calls")
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

    s = sub.add_parser("push-image", help="push an OCI image layout")
    s.add_argument("ref")
    s.add_argument("--layout", required=True,
                   help="OCI layout directory inside regd's --allowed_paths")
    s.add_argument("--ref-name", default="",
                   help="which index.json entry (empty: the only one)")
    s.add_argument("--concurrency", type=int, default=0)
    s.add_argument("--max-attempts", type=int, default=0)
    s.set_defaults(func=cmd_push_image)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    with grpc.insecure_channel(args.addr) as channel:
        stub = pb_grpc.RegistryStub(channel)
        try:
            return args.func(stub, args) or 0
        except grpc.RpcError as e:
            code = e.code()
            log("error: %s: %s" % (code.name, e.details()))
            return code.value[0] or 1
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    sys.exit(main())
