#!/bin/sh
# Push benchmark: regd vs skopeo vs curl. See bench/bench.py for what is measured.
#   bench/run.sh [--size-mib 1024] [--runs 3] [--warmup 1] [--out FILE] [--skip-shared]
# Env: REGD_BIN (default build/server/regd), BENCH_DIR (layout cache).
set -e
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -x /usr/bin/time ]; then
    echo "bench: /usr/bin/time is missing (apt-get install time)" >&2
    exit 2
fi
# Debian's python3: the one with python3-grpcio and python3-protobuf.
exec /usr/bin/python3 "$here/bench.py" "$@"
