#!/bin/bash
# Runs the python, go and node examples against a live regd and checks that
# they agree.
#
#   run_examples.sh [--upload-dir DIR] [--only LANGS] ADDR REF
#   run_examples.sh --self-contained [--unix] [--only LANGS]
#
# ADDR REF   a running daemon (host:port or unix:/path.sock) and an image
#            reference it can read. Each example runs `inspect REF`,
#            `exists REF`, `exists`/`inspect` of an absent tag, and
#            `inspect --platform`; the results must agree across languages
#            (same digest, media type, layers, config and labels).
# --upload-dir DIR
#            a directory inside the daemon's --allowed_paths. Adds uploads to
#            REF's repository: each example's write-layer (by path, then the
#            same bytes inline), and the python example's read-blob and
#            push-image (of a demo OCI layout, to the tag regd-examples-push;
#            with --self-contained to a fresh repository, plus a mount).
# --self-contained
#            starts everything itself on loopback: a docker-registry with temp
#            storage, seeded by seed_demo_image.sh, and $REGD_BIN (default
#            build/server/regd in this repository) with --insecure_registries,
#            --allowed_paths and --ready_file, then runs all of the above with
#            an upload dir. Everything is torn down on exit.
# --unix     (with --self-contained) regd listens on a unix socket.
# --only LANGS
#            comma-separated subset of python,go,node (also $REGD_EXAMPLES).
#
# Environment: REGD_BIN, PYTHON (default /usr/bin/python3), NODE, NPM,
# REGD_EXAMPLES_TIMEOUT (seconds per command, default 120), KEEP_WORK=1 to
# keep the temp directory. Output is TAP-like; the exit status is 0 only if
# every check passed (2 for a usage error).
#
# Needs: bash, coreutils, curl; python3-grpcio python3-protobuf
# protobuf-compiler protobuf-compiler-grpc; the go example's build
# dependencies (see go/build.sh); nodejs + npm (npm ci runs once if
# node/node_modules is missing); docker-registry and skopeo for
# --self-contained.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$here/.." && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
NODE=${NODE:-node}
NPM=${NPM:-npm}
cmd_timeout=${REGD_EXAMPLES_TIMEOUT:-120}

usage() {
  sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

self_contained=0 unix=0 upload_dir="" langs=${REGD_EXAMPLES:-python,go,node}
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in
    --self-contained) self_contained=1; shift ;;
    --unix) unix=1; shift ;;
    --upload-dir) upload_dir=${2:?}; shift 2 ;;
    --upload-dir=*) upload_dir=${1#*=}; shift ;;
    --only) langs=${2:?}; shift 2 ;;
    --only=*) langs=${1#*=}; shift ;;
    -h|--help) usage ;;
    *) echo "run_examples.sh: unknown option $1" >&2; usage ;;
  esac
done
if [[ $self_contained == 1 ]]; then
  [[ $# -eq 0 ]] || usage
else
  [[ $# -eq 2 ]] || usage
  addr=$1 ref=$2
fi
IFS=, read -r -a langs <<<"$langs"
for l in "${langs[@]}"; do
  [[ $l == python || $l == go || $l == node ]] || {
    echo "run_examples.sh: unknown language '$l'" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/regd-examples.XXXXXX")
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  if [[ ${KEEP_WORK:-0} == 1 ]]; then
    echo "# kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Python stubs go to a private cache, so parallel runs cannot race on ~/.cache.
export REGD_PY_STUB_DIR=${REGD_PY_STUB_DIR:-$work/py-stubs}

# --- TAP-ish reporting ------------------------------------------------------
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
check() {  # check DESCRIPTION COMMAND...: passes when COMMAND succeeds
  local desc=$1; shift
  if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}
check_eq() {  # check_eq DESCRIPTION GOT WANT
  if [[ $2 == "$3" ]]; then ok "$1"; else not_ok "$1"; echo "#   got '$2', want '$3'"; fi
}
show() {  # indents a file into the log as TAP diagnostics
  [[ -s $1 ]] && sed 's/^/#   /' "$1" | head -n 40
  return 0
}
bail() { echo "Bail out! $*"; exit 1; }

# Prints one field of a JSON file: jget FILE KEY [KEY...] (list index allowed).
jget() {
  "$PYTHON" - "$@" <<'EOF'
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    v = v[int(k)] if isinstance(v, list) else v.get(k, "")
print(v if isinstance(v, str) else json.dumps(v))
EOF
}

# --- the three clients ------------------------------------------------------
client() {  # client LANG ARGS...
  local lang=$1; shift
  case $lang in
    python) timeout "$cmd_timeout" "$PYTHON" "$here/python/regd_client.py" --addr "$addr" "$@" ;;
    go) timeout "$cmd_timeout" "$here/go/regd-example" --addr "$addr" "$@" ;;
    node) timeout "$cmd_timeout" "$NODE" "$here/node/index.js" --addr "$addr" "$@" ;;
  esac
}

# run NAME WANT_RC LANG ARGS...: runs a client, keeps stdout/stderr in $work,
# reports, and returns 0 when the exit status was WANT_RC.
run() {
  local name=$1 want=$2 lang=$3; shift 3
  local out="$work/$lang.$name"
  client "$lang" "$@" >"$out.out" 2>"$out.err"
  local rc=$?
  if [[ $rc == "$want" ]]; then
    ok "$lang $name (exit $rc)"
    return 0
  fi
  not_ok "$lang $name: exit $rc, want $want"
  echo "#   command: $lang $*"
  show "$out.out"; show "$out.err"
  return 1
}

prepare_clients() {
  local l
  for l in "${langs[@]}"; do
    case $l in
      python)
        check "python stubs generate" \
          "$PYTHON" -c "import sys; sys.argv=['x']; sys.path.insert(0, '$here/python'); import regd_client" \
          || bail "python client unusable"
        ;;
      go)
        if "$here/go/build.sh" >"$work/go-build.log" 2>&1; then
          ok "go example builds"
        else
          not_ok "go example builds"; show "$work/go-build.log"; bail "go client unusable"
        fi
        ;;
      node)
        if [[ ! -d $here/node/node_modules/@grpc/grpc-js ]]; then
          (cd "$here/node" && "$NPM" ci --no-audit --no-fund) >"$work/npm.log" 2>&1 \
            || { show "$work/npm.log"; bail "npm ci failed"; }
        fi
        if "$NODE" "$here/node/index.js" --check-proto >"$work/node-check.log" 2>&1; then
          ok "node example loads the proto"
        else
          not_ok "node example loads the proto"; show "$work/node-check.log"; bail "node client unusable"
        fi
        ;;
    esac
  done
}

# repo_of REF: the reference without its tag or digest.
repo_of() {
  local r=${1%%@*}
  if [[ ${r##*/} == *:* ]]; then r=${r%:*}; fi
  echo "$r"
}

# --- checks -----------------------------------------------------------------
compare_inspects() {  # every language's inspect result must match the first
  "$PYTHON" - "$@" <<'EOF'
import json, sys
def norm(path):
    d = json.load(open(path))
    return {
        "digest": d.get("digest", ""),
        "media_type": d.get("media_type", ""),
        "schema_version": str(d.get("schema_version", "")),
        "config": d.get("config", ""),
        "layers": d.get("layers", []),
        "labels": d.get("labels", {}),
        "manifests": sorted(m.get("digest", "") for m in d.get("manifests", [])),
    }
first, base = sys.argv[1], norm(sys.argv[1])
if not base["digest"].startswith("sha256:"):
    print("#   %s: no sha256 digest: %r" % (first, base["digest"]))
    sys.exit(1)
bad = 0
for p in sys.argv[2:]:
    other = norm(p)
    for k in base:
        if base[k] != other[k]:
            print("#   %s differs from %s in %s: %r vs %r" % (p, first, k, other[k], base[k]))
            bad = 1
sys.exit(bad)
EOF
}

read_checks() {
  local l absent files=() platform="" child=""
  absent="$(repo_of "$ref"):regd-absent-$$-$RANDOM"
  for l in "${langs[@]}"; do
    if run inspect 0 "$l" inspect "$ref"; then files+=("$work/$l.inspect.out"); fi
    run exists 0 "$l" exists "$ref" &&
      check_eq "$l exists REF is true" "$(jget "$work/$l.exists.out" exists)" true
    run exists-absent 0 "$l" exists "$absent" &&
      check_eq "$l exists of an absent tag is false" "$(jget "$work/$l.exists-absent.out" exists)" false
    run inspect-absent 5 "$l" inspect "$absent" &&
      check "$l inspect of an absent tag reports NOT_FOUND" grep -q NOT_FOUND "$work/$l.inspect-absent.err"
  done
  if [[ ${#files[@]} -eq ${#langs[@]} ]]; then
    check "inspect results agree across ${langs[*]} (digest $(jget "${files[0]}" digest))" \
      compare_inspects "${files[@]}"
  else
    not_ok "inspect results agree (some inspect calls failed)"
    return
  fi

  # A platform on a single manifest is FAILED_PRECONDITION; on an index it
  # selects the matching child.
  if [[ $(jget "${files[0]}" manifests) == "[]" ]]; then
    for l in "${langs[@]}"; do
      run inspect-platform 9 "$l" inspect "$ref" --platform linux/amd64
    done
  else
    platform="$(jget "${files[0]}" manifests 0 os)/$(jget "${files[0]}" manifests 0 architecture)"
    local variant; variant=$(jget "${files[0]}" manifests 0 variant)
    [[ -n $variant ]] && platform+="/$variant"
    child=$(jget "${files[0]}" manifests 0 digest)
    for l in "${langs[@]}"; do
      run inspect-platform 0 "$l" inspect "$ref" --platform "$platform" &&
        check_eq "$l inspect --platform $platform selects $child" \
          "$(jget "$work/$l.inspect-platform.out" digest)" "$child"
    done
  fi
}

upload_checks() {
  local dir l repo digest
  repo=$(repo_of "$ref")
  dir=$(mktemp -d "$upload_dir/regd-examples.XXXXXX") || { not_ok "create a dir in $upload_dir"; return; }
  chmod 755 "$dir"  # the daemon may run as another user
  for l in "${langs[@]}"; do
    # Random content, so the first upload must really send the bytes.
    head -c $((256 * 1024 + RANDOM)) /dev/urandom >"$dir/$l.blob"
    chmod 644 "$dir/$l.blob"
    digest="sha256:$(sha256sum "$dir/$l.blob" | cut -d' ' -f1)"
    if run write-layer 0 "$l" write-layer "$repo" "$dir/$l.blob"; then
      check_eq "$l write-layer digest matches the file" \
        "$(jget "$work/$l.write-layer.out" descriptor digest)" "$digest"
      check_eq "$l write-layer outcome is UPLOADED" \
        "$(jget "$work/$l.write-layer.out" outcome)" UPLOADED
    fi
    if run write-layer-inline 0 "$l" write-layer --inline "$repo" "$dir/$l.blob"; then
      check_eq "$l write-layer --inline of the same bytes is EXISTED" \
        "$(jget "$work/$l.write-layer-inline.out" outcome)" EXISTED
    fi
  done

  [[ " ${langs[*]} " == *" python "* ]] || { rm -rf "$dir"; return; }
  digest="sha256:$(sha256sum "$dir/python.blob" | cut -d' ' -f1)"
  if run read-blob 0 python read-blob "$repo" "$digest" --out "$work/python.read-back"; then
    check "python read-blob returns the uploaded bytes" cmp -s "$work/python.read-back" "$dir/python.blob"
  fi
  # A fresh repository (self-contained) makes push-image really upload, and
  # lets a mount from REF's repository be tried; an existing one (a registry
  # we do not own) only gets a tag.
  local want pushed="$repo:regd-examples-push" fresh=0
  if [[ $self_contained == 1 ]]; then pushed="${repo%/*}/pushed-$$:latest" fresh=1; fi
  want=$("$here/seed_demo_image.sh" --layout-dir "$dir/layout" --no-push 2>"$work/layout.err") \
    || { not_ok "build a demo OCI layout"; show "$work/layout.err"; return; }
  chmod -R a+rX "$dir/layout"
  if run push-image 0 python push-image "$pushed" --layout "$dir/layout"; then
    check_eq "python push-image pushed manifest $want" \
      "$(jget "$work/python.push-image.out" descriptor digest)" "$want"
    if [[ $fresh == 1 ]]; then
      check_eq "python push-image uploaded both blobs to a fresh repository" \
        "$(grep -c 'done: UPLOADED' "$work/python.push-image.err")" 2
    else
      check "python push-image printed per-blob events" grep -q 'done:' "$work/python.push-image.err"
    fi
    run inspect-pushed 0 python inspect "$pushed" &&
      check_eq "python inspect of the pushed image shows its labels" \
        "$(jget "$work/python.inspect-pushed.out" labels io.regd.demo)" hello
  fi
  if [[ $fresh == 1 ]]; then
    run write-layer-mount 0 python write-layer --mount-from "$repo" "$(repo_of "$pushed")" "$dir/python.blob" &&
      check_eq "python write-layer --mount-from is MOUNTED" \
        "$(jget "$work/python.write-layer-mount.out" outcome)" MOUNTED
  fi
  rm -rf "$dir"
}

# --- self-contained setup ----------------------------------------------------
free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_registry() {  # sets registry=127.0.0.1:PORT
  local port attempt pid
  command -v docker-registry >/dev/null || bail "docker-registry is not installed"
  for attempt in 1 2 3; do
    port=$(free_port)
    mkdir -p "$work/registry"
    cat >"$work/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
    docker-registry serve "$work/registry/config.yml" >"$work/registry.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do
      if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then
        registry=127.0.0.1:$port
        ok "docker-registry serving on $registry"
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break  # it died, e.g. the port was taken
      sleep 0.1
    done
    kill "$pid" 2>/dev/null
  done
  show "$work/registry.log"
  bail "docker-registry did not start"
}

start_regd() {  # sets addr from regd's --ready_file
  local bin=${REGD_BIN:-$repo_root/build/server/regd} listen pid
  [[ -x $bin ]] || bail "no regd binary at $bin (build it, or set REGD_BIN)"
  if [[ $unix == 1 ]]; then listen="unix:$work/regd.sock"; else listen=127.0.0.1:0; fi
  "$bin" --listen="$listen" --insecure_registries="$registry" \
    --allowed_paths="$work/files" --ready_file="$work/regd.ready" \
    >"$work/regd.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 300); do
    if [[ -s $work/regd.ready ]]; then
      addr=$(tr -d '[:space:]' <"$work/regd.ready")
      ok "regd serving on $addr"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  show "$work/regd.log"
  bail "regd did not become ready (no $work/regd.ready)"
}

# --- main ---------------------------------------------------------------------
echo "# languages: ${langs[*]}"
prepare_clients
if [[ $self_contained == 1 ]]; then
  start_registry
  ref=$("$here/seed_demo_image.sh" "$registry" demo/hello:latest 2>"$work/seed.log") \
    || { show "$work/seed.log"; bail "seeding the demo image failed"; }
  ok "seeded $ref"
  mkdir -p "$work/files"
  upload_dir=$work/files
  start_regd
fi
echo "# daemon $addr, image $ref"
read_checks
if [[ -n $upload_dir ]]; then
  upload_checks
fi
if [[ $self_contained == 1 ]] && ! kill -0 "${pids[-1]}" 2>/dev/null; then
  not_ok "regd still running after the examples"
fi
echo "1..$n"
if [[ $failed -gt 0 ]]; then
  echo "# $failed of $n checks failed"
  if [[ $self_contained == 1 ]]; then
    echo "# regd log (tail):"; tail -n 30 "$work/regd.log" | sed 's/^/#   /'
  fi
  exit 1
fi
echo "# all $n checks passed"
