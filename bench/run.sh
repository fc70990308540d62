#!/bin/sh
# Push benchmark: regd vs skopeo vs curl. See bench/bench.py for what is measured.
#   bench/run.sh [--size-mib 1024] [--runs 3] [--warmup 1] [--out FILE] [--skip-shared]
# UploadBlob benchmark (streamed uploads vs WriteLayer, memory with 16 streams),
# with the Go client example; see bench/upload_blob.py:
#   bench/run.sh --upload-blob [--size-mib 1024] [--runs 3] [--streams 16]
#                [--stream-mib 256] [--memory-runs 3] [--out FILE] [--keep-files]
# Read benchmark (issue 9): ReadBlob vs curl [| openssl], Exists/GetDescriptor/
# Inspect rates vs direct HEAD/GET, PullImage vs skopeo vs a crane-like peer
# (bench/peer, stdlib Go); see bench/read.py:
#   bench/run.sh --read [--parts a,b,c] [--runs 3] [--size-mib 1024]
#                [--pull-size-mib 1024] [--unary-seconds 10] [--concurrency 16]
#                [--to-file] [--window BYTES] [--no-build] [--out FILE]
#                [--regd-flag=--FLAG=VALUE ...]
# Push at the physical limit (issue 10): regd vs the floors (a Python os.sendfile
# client and parallel `curl -T` over plain HTTP; parallel `curl -T --cacert`
# over TLS, against a docker-registry with an openssl-made CA and leaf, with a
# Python ssl client as a reference row), and
# N concurrent PushImage calls vs N concurrent sendfile pushes; see
# bench/push_limit.py:
#   bench/run.sh --push-limit [--parts plain,tls,many] [--size-mib 1024] [--runs 3]
#                [--warmup 1] [--concurrency 4] [--concurrent 16]
#                [--concurrent-mib 256] [--concurrent-layers 1] [--concurrent-runs 2]
#                [--regd-flag=--FLAG=VALUE ...] [--perf] [--perf-dir DIR]
#                [--perf-lines 40] [--out FILE]
#   --perf adds one untimed regd push per part under `perf record -g -p PID`
#   and writes the head of `perf report --no-children --sort dso,sym -g none`
#   to DIR/push-limit-perf-PART.txt. Quick trial:
#   bench/run.sh --push-limit --size-mib 64 --runs 1 --concurrent-mib 16
# Env: REGD_BIN (default build/server/regd), BENCH_DIR (layout cache).
set -e
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -x /usr/bin/time ]; then
    echo "bench: /usr/bin/time is missing (apt-get install time)" >&2
    exit 2
fi
# Debian's python3: the one with python3-grpcio and python3-protobuf.
if [ "${1:-}" = --upload-blob ]; then
    shift
    exec /usr/bin/python3 "$here/upload_blob.py" "$@"
fi
if [ "${1:-}" = --push-limit ]; then
    shift
    exec /usr/bin/python3 "$here/push_limit.py" "$@"
fi
if [ "${1:-}" = --read ]; then
    shift
    exec /usr/bin/python3 "$here/read.py" "$@"
fi
exec /usr/bin/python3 "$here/bench.py" "$@"
