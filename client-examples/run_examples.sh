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
#            Then each example's `upload` (UploadBlob, the client streams the
#            bytes) of a ~5 MiB random file: UPLOADED, then EXISTED, a wrong
#            digest refused, the blob read back (python read-blob; with
#            --self-contained also a HEAD on the registry) and, with
#            --self-contained, an upload --mount-from into a fresh repository.
#            Then the python, node and go examples' `pull` (PullImage) of REF into
#            a fresh OCI layout under DIR: the manifest inspect found, named
#            in index.json, every blob hashing to its name; again: EXISTED;
#            with --self-contained, a layout outside --allowed_paths refused.
# --self-contained
#            starts everything itself on loopback: a docker-registry with temp
#            storage, seeded by seed_demo_image.sh, and $REGD_BIN (default
#            build/server/regd in this repository) with --insecure_registries,
#            --allowed_paths and --ready_file, then runs all of the above with
#            an upload dir. Then the same through a TLS gateway: a second
#            regd with mTLS (--tls_cert/--tls_key/--tls_client_ca, certificates
#            made with openssl) and a --policy of two tenants (team-a by client
#            certificate CN, ci by bearer token), in front of a second
#            docker-registry that wants basic auth (htpasswd), which only the
#            calls' x-registry-auth satisfies: gateway_checks (uploads with
#            mTLS, token and registry credentials; refused without a client
#            certificate) and gateway_policy_checks (UNAUTHENTICATED with no
#            tenant, PERMISSION_DENIED outside a tenant's prefixes or without
#            push, the registry's own refusal of wrong or missing credentials).
#            Everything is torn down on exit.
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
# --self-contained, plus openssl and htpasswd (apache2-utils) for its gateway.
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
not() { ! "$@"; }  # for check: passes when COMMAND fails
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
# Connection options (TLS, --token, --registry-*) given to every client call
# after --addr; gateway_checks sets them (and addr) as locals.
conn_args=()
client() {  # client LANG ARGS...
  local lang=$1; shift
  case $lang in
    python) timeout "$cmd_timeout" "$PYTHON" "$here/python/regd_client.py" --addr "$addr" "${conn_args[@]}" "$@" ;;
    go) timeout "$cmd_timeout" "$here/go/regd-example" --addr "$addr" "${conn_args[@]}" "$@" ;;
    node) timeout "$cmd_timeout" "$NODE" "$here/node/index.js" --addr "$addr" "${conn_args[@]}" "$@" ;;
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

# run_fails NAME LANG ARGS...: like run, but passes when the client fails
# with a gRPC status (any exit status but 0, 2 for a usage error and 124 for
# the timeout).
run_fails() {
  local name=$1 lang=$2; shift 2
  local out="$work/$lang.$name"
  client "$lang" "$@" >"$out.out" 2>"$out.err"
  local rc=$?
  if [[ $rc != 0 && $rc != 2 && $rc != 124 ]]; then
    ok "$lang $name fails (exit $rc: $(grep -m1 '^error:' "$out.err" | cut -c1-100))"
    return 0
  fi
  not_ok "$lang $name: exit $rc, want a gRPC error"
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

# verify_layout DIR REF_NAME DIGEST: DIR is an OCI image layout whose
# index.json names DIGEST as REF_NAME, every file under blobs/ hashes to its
# name, and the manifest's config and layers are all there.
verify_layout() {
  "$PYTHON" - "$@" <<'EOF'
import hashlib, json, os, sys
layout, name, digest = sys.argv[1:]
def blob(d):
    alg, hex_ = d.split(":", 1)
    return os.path.join(layout, "blobs", alg, hex_)
bad = []
with open(os.path.join(layout, "index.json")) as f:
    entries = json.load(f)["manifests"]
named = {e.get("annotations", {}).get("org.opencontainers.image.ref.name"): e["digest"]
         for e in entries}
if named.get(name) != digest:
    bad.append("index.json names %r as %r, want %s" % (name, named.get(name), digest))
for alg in os.listdir(os.path.join(layout, "blobs")):
    for hex_ in os.listdir(os.path.join(layout, "blobs", alg)):
        with open(os.path.join(layout, "blobs", alg, hex_), "rb") as f:
            if hashlib.new(alg, f.read()).hexdigest() != hex_:
                bad.append("blobs/%s/%s does not hash to its name" % (alg, hex_))
try:
    with open(blob(digest), "rb") as f:
        manifest = json.load(f)
    for d in [manifest["config"]] + manifest["layers"]:
        if not os.path.isfile(blob(d["digest"])):
            bad.append("%s (in the manifest) is missing" % d["digest"])
except (OSError, ValueError, KeyError) as e:
    bad.append("manifest %s: %s" % (digest, e))
for b in bad:
    print("#   " + b)
sys.exit(1 if bad else 0)
EOF
}

# has_outcome FILE OUTCOME: a "done: OUTCOME" blob event line in FILE.
has_outcome() { grep -q "done: $2\$" "$1"; }

# PullImage through each example that has `pull`: REF into a fresh OCI layout
# under the upload dir (the daemon writes it, so the dir is world-writable),
# with the platform of the first index entry when REF is an index. The result
# must be the manifest digest inspect found, index.json must name it, every
# blob must hash to its name and be DOWNLOADED; a second pull into the same
# layout finds every blob there (EXISTED). With --self-contained, a layout
# outside the daemon's --allowed_paths must be refused.
pull_checks() {
  local l dir layout want inspected="" name variant
  local -a platform=()
  for l in "${langs[@]}"; do
    [[ -s $work/$l.inspect.out ]] && { inspected=$work/$l.inspect.out; break; }
  done
  [[ -n $inspected ]] || { not_ok "pull: no inspect result of $ref to compare with"; return; }
  want=$(jget "$inspected" digest)
  if [[ $(jget "$inspected" manifests) != "[]" ]]; then
    platform=(--platform "$(jget "$inspected" manifests 0 os)/$(jget "$inspected" manifests 0 architecture)")
    variant=$(jget "$inspected" manifests 0 variant)
    [[ -n $variant ]] && platform[1]+="/$variant"
    want=$(jget "$inspected" manifests 0 digest)
  fi
  dir=$(mktemp -d "$upload_dir/regd-pull.XXXXXX") || { not_ok "create a dir in $upload_dir"; return; }
  chmod 1777 "$dir"  # the daemon may run as another user
  for l in "${langs[@]}"; do
    case $l in python|node|go) ;; *) continue ;; esac  # the examples with `pull`
    layout=$dir/$l name=regd-examples-$l
    if run pull 0 "$l" pull "$ref" --layout "$layout" --ref-name "$name" "${platform[@]}"; then
      check_eq "$l pull result is the manifest inspect found" \
        "$(jget "$work/$l.pull.out" descriptor digest)" "$want"
      check "$l pull: index.json names $want as $name, every blob hashes to its name" \
        verify_layout "$layout" "$name" "$want"
      check "$l pull into a fresh layout: blobs DOWNLOADED" has_outcome "$work/$l.pull.err" DOWNLOADED
      check "$l pull into a fresh layout: no blob EXISTED" \
        not has_outcome "$work/$l.pull.err" EXISTED
    fi
    if run pull-again 0 "$l" pull "$ref" --layout "$layout" --ref-name "$name" "${platform[@]}"; then
      check "$l pull again: blobs EXISTED" has_outcome "$work/$l.pull-again.err" EXISTED
      check "$l pull again: no blob DOWNLOADED" \
        not has_outcome "$work/$l.pull-again.err" DOWNLOADED
    fi
    if [[ $self_contained == 1 ]]; then
      run pull-outside 7 "$l" pull "$ref" --layout "$work/outside-$l" "${platform[@]}" &&
        check "$l pull outside --allowed_paths is PERMISSION_DENIED and writes nothing" \
          not test -e "$work/outside-$l"
    fi
  done
  rm -rf "$dir" 2>/dev/null
}

# sent_bytes FILE: N from the "sent N bytes in M passes" line of an upload.
sent_bytes() {
  sed -n 's/^sent \([0-9][0-9]*\) bytes in [0-9][0-9]* passes$/\1/p' "$1" | tail -n 1
}

# blob_on_registry REPO DIGEST SIZE: a HEAD on the (plain HTTP, self-contained)
# registry finds the blob with that digest and size.
blob_on_registry() {
  local path=${1#"$registry"/} headers
  headers=$(curl -fsS -I "http://$registry/v2/$path/blobs/$2" 2>&1 | tr -d '\r') || {
    echo "#   HEAD /v2/$path/blobs/$2: $headers"; return 1; }
  if grep -qix "docker-content-digest: $2" <<<"$headers" &&
    grep -qix "content-length: $3" <<<"$headers"; then
    return 0
  fi
  echo "#   unexpected headers:"
  printf '%s\n' "$headers" | sed 's/^/#     /'
  return 1
}

# UploadBlob through each example: the client streams the bytes itself, so
# the files stay in $work (no --allowed_paths needed).
upload_blob_checks() {
  local l repo file digest size sent other
  repo=$(repo_of "$ref")
  for l in "${langs[@]}"; do
    # Random content over 5 MiB, so the first upload must send several chunks.
    file="$work/$l.upload.blob"
    head -c $((5 * 1024 * 1024 + RANDOM)) /dev/urandom >"$file"
    digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
    size=$(stat -c %s "$file")
    if run upload 0 "$l" upload "$repo" "$file"; then
      check_eq "$l upload outcome is UPLOADED" "$(jget "$work/$l.upload.out" outcome)" UPLOADED
      check_eq "$l upload digest matches the file" \
        "$(jget "$work/$l.upload.out" descriptor digest)" "$digest"
      check_eq "$l upload size matches the file" \
        "$(jget "$work/$l.upload.out" descriptor size)" "$size"
      sent=$(sent_bytes "$work/$l.upload.err")
      check "$l upload sent every byte (sent ${sent:-?} of $size)" \
        test "${sent:-0}" -ge "$size"
    fi
    if run upload-again 0 "$l" upload --chunk-bytes 262144 "$repo" "$file"; then
      check_eq "$l upload of the same bytes is EXISTED" \
        "$(jget "$work/$l.upload-again.out" outcome)" EXISTED
      check_eq "$l upload of an existing blob sends nothing" \
        "$(sent_bytes "$work/$l.upload-again.err")" 0
    fi
    if [[ $self_contained == 1 ]]; then
      check "$l upload: the registry holds $digest ($size bytes)" \
        blob_on_registry "$repo" "$digest" "$size"
    fi
    if [[ " ${langs[*]} " == *" python "* ]] &&
      run "read-upload-$l" 0 python read-blob "$repo" "$digest" --out "$work/$l.upload.back"; then
      check "python read-blob returns the bytes $l uploaded" cmp -s "$work/$l.upload.back" "$file"
    fi
    # A digest that is not the file's: INVALID_ARGUMENT, nothing committed.
    other="sha256:$(head -c 64 /dev/urandom | sha256sum | cut -d' ' -f1)"
    head -c $((64 * 1024 + RANDOM)) /dev/urandom >"$work/$l.upload-small.blob"
    run upload-wrong-digest 3 "$l" upload --digest "$other" "$repo" "$work/$l.upload-small.blob" &&
      check "$l upload with a wrong digest reports INVALID_ARGUMENT" \
        grep -q INVALID_ARGUMENT "$work/$l.upload-wrong-digest.err"
    if [[ $self_contained == 1 ]]; then
      # A fresh repository on the same registry: mounted, no bytes sent.
      if run upload-mount 0 "$l" upload --mount-from "$repo" "${repo%/*}/upload-mount-$$-$l" "$file"; then
        check_eq "$l upload --mount-from is MOUNTED" \
          "$(jget "$work/$l.upload-mount.out" outcome)" MOUNTED
      fi
    fi
    rm -f "$work/$l.upload.back"
  done
}

# gateway_checks GW_ADDR CA CERT KEY TOKEN [SERVER_NAME [REG_USER REG_PASS [REPO]]]
#   GW_ADDR is a regd (or gateway) serving TLS that requires client
#   certificates, with a tenant that CERT/KEY (or TOKEN) names allowed to push
#   to REPO (default: REF's repository). CA verifies the server; SERVER_NAME
#   is the name to check in its certificate (for certificates not issued to
#   the host in GW_ADDR, e.g. 127.0.0.1). REG_USER/REG_PASS are sent as
#   per-call registry credentials (x-registry-auth; default a dummy pair,
#   which a registry that asks for none ignores).
#   Each example uploads a fresh ~5 MiB file with mTLS, --token and
#   --registry-user/--registry-password (must be UPLOADED with the right
#   digest), python reads it back through the gateway, and each example must
#   be refused without a client certificate (token alone): the TLS handshake
#   fails, so the call is UNAVAILABLE (exit 14) and never reaches regd's
#   policy (which would say PERMISSION_DENIED or UNAUTHENTICATED).
#   --self-contained calls it against its own gateway (see start_gateway),
#   with CERT the team-a tenant's, TOKEN the ci tenant's (a certificate that
#   names a tenant wins over the token) and REG_USER/REG_PASS the only
#   credentials its htpasswd registry takes.
gateway_checks() {
  local gw=$1 ca=$2 cert=$3 key=$4 token=$5 server_name=${6:-}
  local reg_user=${7:-regd-examples} reg_pass=${8:-regd-examples-password}
  local repo=${9:-$(repo_of "$ref")}
  # client() reads these through bash's dynamic scoping.
  local addr=$gw
  local -a conn_args tls=(--tls-ca "$ca")
  [[ -n $server_name ]] && tls+=(--tls-server-name "$server_name")
  local l file digest
  for l in "${langs[@]}"; do
    file="$work/$l.gw.blob"
    head -c $((5 * 1024 * 1024 + RANDOM)) /dev/urandom >"$file"
    digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
    conn_args=("${tls[@]}" --tls-cert "$cert" --tls-key "$key" --token "$token"
               --registry-user "$reg_user" --registry-password "$reg_pass")
    if run gw-upload 0 "$l" upload "$repo" "$file"; then
      check_eq "$l upload through the gateway (mTLS, token, registry credentials) is UPLOADED" \
        "$(jget "$work/$l.gw-upload.out" outcome)" UPLOADED
      check_eq "$l upload through the gateway: digest matches the file" \
        "$(jget "$work/$l.gw-upload.out" descriptor digest)" "$digest"
    fi
    if [[ $l == python ]] &&
      run gw-read-blob 0 python read-blob "$repo" "$digest" --out "$work/python.gw.back"; then
      check "python read-blob through the gateway returns the uploaded bytes" \
        cmp -s "$work/python.gw.back" "$file"
    fi
    # No client certificate: the handshake is refused (the token alone does not do).
    conn_args=("${tls[@]}" --token "$token")
    run gw-upload-no-cert 14 "$l" upload "$repo" "$file" &&
      check "$l upload without a client certificate is refused (UNAVAILABLE)" \
        grep -q UNAVAILABLE "$work/$l.gw-upload-no-cert.err"
  done
}

# Set by start_gateway (authreg through start_registry's printf -v).
authreg="" gw_addr="" gw_pid="" gw_tls="" gw_token="" reg_user="" reg_pass=""

# authreg_head REPO DIGEST: the HTTP status of a HEAD for the blob on the
# gateway's htpasswd registry (with its credentials).
authreg_head() {
  curl -sS -o /dev/null -w '%{http_code}' -u "$reg_user:$reg_pass" -I \
    "http://$authreg/v2/${1#"$authreg"/}/blobs/$2" 2>/dev/null
}

# gateway_policy_checks: --self-contained only; the tenants, identities and
# registry of start_gateway. Per example, uploads (UploadBlob) through the
# gateway:
#   - as ci (a client certificate that names no tenant, plus ci's token): a
#     push to team-a's repository is PERMISSION_DENIED and leaves nothing on
#     the registry; a push to its own is UPLOADED and lands on the registry;
#   - the same certificate without a token, or with an unknown token:
#     UNAUTHENTICATED (no tenant);
#   - as team-a (its certificate): a push to ci's repository, or to one where
#     its rule has only pull, is PERMISSION_DENIED;
#   - as team-a in its own repository with a wrong registry password, or with
#     no registry credentials: the registry refuses, UNAUTHENTICATED (the
#     gateway has no credentials of its own to fall back on).
gateway_policy_checks() {
  local addr=$gw_addr
  local -a conn_args tls=(--tls-ca "$gw_tls/ca.pem")
  local -a creds=(--registry-user "$reg_user" --registry-password "$reg_pass")
  local -a team_a=(--tls-cert "$gw_tls/team-a.pem" --tls-key "$gw_tls/team-a.key")
  local -a stranger=(--tls-cert "$gw_tls/stranger.pem" --tls-key "$gw_tls/stranger.key")
  local l file small digest ci_repo team_repo
  for l in "${langs[@]}"; do
    ci_repo=$authreg/ci/examples-$l team_repo=$authreg/team-a/policy-$l
    file="$work/$l.gwp.blob" small="$work/$l.gwp-small.blob"
    head -c $((1024 * 1024 + RANDOM)) /dev/urandom >"$file"
    head -c $((16 * 1024 + RANDOM)) /dev/urandom >"$small"
    digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"

    conn_args=("${tls[@]}" "${stranger[@]}" --token "$gw_token" "${creds[@]}")
    if run gw-ci-to-team-a 7 "$l" upload "$team_repo" "$file"; then
      check "$l upload as ci to team-a's repository is PERMISSION_DENIED for tenant ci" \
        grep -q 'PERMISSION_DENIED.*"ci"' "$work/$l.gw-ci-to-team-a.err"
      check_eq "$l upload as ci to team-a's repository: nothing on the registry" \
        "$(authreg_head "$team_repo" "$digest")" 404
    fi
    if run gw-ci-upload 0 "$l" upload "$ci_repo" "$file"; then
      check_eq "$l upload as ci (unknown certificate CN + token) is UPLOADED" \
        "$(jget "$work/$l.gw-ci-upload.out" outcome)" UPLOADED
      check_eq "$l upload as ci: the registry holds the blob" \
        "$(authreg_head "$ci_repo" "$digest")" 200
    fi

    conn_args=("${tls[@]}" "${stranger[@]}" "${creds[@]}")
    run gw-unknown-cn 16 "$l" upload "$ci_repo" "$small" &&
      check "$l upload with a certificate of no tenant and no token is UNAUTHENTICATED" \
        grep -q 'UNAUTHENTICATED:.*no tenant' "$work/$l.gw-unknown-cn.err"
    conn_args=("${tls[@]}" "${stranger[@]}" --token "not-$gw_token" "${creds[@]}")
    run gw-unknown-token 16 "$l" upload "$ci_repo" "$small" &&
      check "$l upload with a certificate of no tenant and an unknown token is UNAUTHENTICATED" \
        grep -q 'UNAUTHENTICATED:.*no tenant' "$work/$l.gw-unknown-token.err"

    conn_args=("${tls[@]}" "${team_a[@]}" "${creds[@]}")
    run gw-team-a-to-ci 7 "$l" upload "$ci_repo" "$small" &&
      check "$l upload as team-a to ci's repository is PERMISSION_DENIED for tenant team-a" \
        grep -q 'PERMISSION_DENIED.*"team-a"' "$work/$l.gw-team-a-to-ci.err"
    run gw-team-a-pull-only 7 "$l" upload "$authreg/shared/examples-$l" "$small" &&
      check "$l upload as team-a where its rule has only pull is PERMISSION_DENIED" \
        grep -q 'PERMISSION_DENIED.*"team-a"' "$work/$l.gw-team-a-pull-only.err"

    conn_args=("${tls[@]}" "${team_a[@]}" --registry-user "$reg_user" --registry-password "wrong-$reg_pass")
    run gw-wrong-registry-password 16 "$l" upload "$team_repo" "$small" &&
      check "$l upload with a wrong registry password: the registry refuses (UNAUTHENTICATED)" \
        grep -q 'UNAUTHENTICATED:.*registry answered 401' "$work/$l.gw-wrong-registry-password.err"
    conn_args=("${tls[@]}" "${team_a[@]}")
    run gw-no-registry-credentials 16 "$l" upload "$team_repo" "$small" &&
      check "$l upload without registry credentials: the registry refuses (UNAUTHENTICATED)" \
        grep -q 'UNAUTHENTICATED:.*registry answered 401' "$work/$l.gw-no-registry-credentials.err"
  done
}

# --- self-contained setup ----------------------------------------------------
free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_registry VAR [HTPASSWD]: a docker-registry on a free loopback port with
# temp storage (in $work/VAR), with basic auth from HTPASSWD if given; sets
# VAR=127.0.0.1:PORT.
start_registry() {
  local var=$1 htpasswd=${2:-} port attempt pid dir=$work/$1 code auth=""
  command -v docker-registry >/dev/null || bail "docker-registry is not installed"
  if [[ -n $htpasswd ]]; then
    auth="auth:
  htpasswd:
    realm: regd-examples
    path: $htpasswd"
  fi
  for attempt in 1 2 3; do
    port=$(free_port)
    mkdir -p "$dir"
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
$auth
EOF
    docker-registry serve "$dir/config.yml" >"$work/$var.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do
      # With auth, /v2/ answers 401: the registry is up.
      code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" 2>/dev/null)
      if [[ $code == 200 || ( -n $htpasswd && $code == 401 ) ]]; then
        printf -v "$var" '%s' "127.0.0.1:$port"
        ok "docker-registry${htpasswd:+ (htpasswd auth)} serving on 127.0.0.1:$port"
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break  # it died, e.g. the port was taken
      sleep 0.1
    done
    kill "$pid" 2>/dev/null
  done
  show "$work/$var.log"
  bail "docker-registry did not start"
}

# start_daemon NAME ARGS...: starts $REGD_BIN with ARGS and
# --ready_file=$work/NAME.ready, its output in $work/NAME.log; sets
# daemon_addr (from the ready file) and daemon_pid.
start_daemon() {
  local name=$1 bin=${REGD_BIN:-$repo_root/build/server/regd} pid
  shift
  [[ -x $bin ]] || bail "no regd binary at $bin (build it, or set REGD_BIN)"
  "$bin" "$@" --drain_delay=0s --ready_file="$work/$name.ready" >"$work/$name.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 300); do
    if [[ -s $work/$name.ready ]]; then
      daemon_addr=$(tr -d '[:space:]' <"$work/$name.ready")
      daemon_pid=$pid
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  show "$work/$name.log"
  bail "$name did not become ready (no $work/$name.ready)"
}

start_regd() {  # sets addr and regd_pid
  local listen
  if [[ $unix == 1 ]]; then listen="unix:$work/regd.sock"; else listen=127.0.0.1:0; fi
  start_daemon regd --listen="$listen" --insecure_registries="$registry" \
    --allowed_paths="$work/files"
  addr=$daemon_addr regd_pid=$daemon_pid
  ok "regd serving on $addr"
}

# --- the TLS gateway (self-contained) ----------------------------------------
# A second regd as a shared gateway: TLS with a server certificate for
# 127.0.0.1 and localhost, client certificates required (mTLS), and a
# --policy with two tenants, in front of its own registry that wants basic
# auth (htpasswd). The gateway has no registry credentials of its own (an
# empty DOCKER_CONFIG), so only a call's x-registry-auth gets past that
# registry.
#   team-a  client_cert_cn "team-a": pull+push on $authreg/team-a,
#           pull only on $authreg/shared
#   ci      token_sha256 of $gw_token: pull+push on $authreg/ci
# Client certificates (one CA): team-a.pem (CN team-a) and stranger.pem
# (CN stranger, no tenant).

# openssl_leaf NAME CN SAN EKU: $gw_tls/NAME.{key,pem}, signed by the test CA.
openssl_leaf() {
  local d=$gw_tls name=$1
  openssl req -newkey rsa:2048 -nodes -keyout "$d/$name.key" -out "$d/$name.csr" \
    -subj "/CN=$2" 2>/dev/null &&
    printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$3" "$4" >"$d/$name.ext" &&
    openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
      -CAcreateserial -days 2 -out "$d/$name.pem" -extfile "$d/$name.ext" 2>/dev/null
}

make_gateway_certs() {  # sets gw_tls
  command -v openssl >/dev/null || bail "openssl is not installed"
  gw_tls=$work/tls
  mkdir -p "$gw_tls"
  if openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout "$gw_tls/ca.key" \
       -out "$gw_tls/ca.pem" -subj "/CN=regd-examples test CA" 2>/dev/null &&
     openssl_leaf server regd-gateway.test "DNS:localhost,IP:127.0.0.1" serverAuth &&
     openssl_leaf team-a team-a "DNS:team-a.clients.test" clientAuth &&
     openssl_leaf stranger stranger "DNS:stranger.clients.test" clientAuth; then
    ok "openssl made a CA, a server certificate (localhost, 127.0.0.1) and client certificates (CN team-a, CN stranger)"
  else
    bail "openssl failed to make the test certificates"
  fi
}

start_gateway() {  # sets authreg, gw_addr, gw_pid, gw_token, reg_user, reg_pass
  command -v htpasswd >/dev/null || bail "htpasswd is not installed (apache2-utils)"
  make_gateway_certs
  reg_user=regd-examples reg_pass=$(openssl rand -hex 16)
  htpasswd -Bbc "$work/htpasswd" "$reg_user" "$reg_pass" >/dev/null 2>&1 \
    || bail "htpasswd failed"
  start_registry authreg "$work/htpasswd"
  gw_token=$(openssl rand -hex 32)
  cat >"$work/policy.json" <<EOF
{
  "tenants": [
    {
      "name": "team-a",
      "client_cert_cn": "team-a",
      "allow": [
        {"prefix": "$authreg/team-a", "actions": ["pull", "push"]},
        {"prefix": "$authreg/shared", "actions": ["pull"]}
      ]
    },
    {
      "name": "ci",
      "token_sha256": "$(printf %s "$gw_token" | sha256sum | cut -d' ' -f1)",
      "allow": [
        {"prefix": "$authreg/ci", "actions": ["pull", "push"]}
      ]
    }
  ]
}
EOF
  mkdir -p "$work/gw-docker-config"
  DOCKER_CONFIG=$work/gw-docker-config start_daemon gateway --listen=127.0.0.1:0 \
    --tls_cert="$gw_tls/server.pem" --tls_key="$gw_tls/server.key" \
    --tls_client_ca="$gw_tls/ca.pem" --policy="$work/policy.json" \
    --insecure_registries="$authreg"
  gw_addr=$daemon_addr gw_pid=$daemon_pid
  ok "regd gateway (mTLS, --policy) serving on $gw_addr"
}

# --- main ---------------------------------------------------------------------
echo "# languages: ${langs[*]}"
prepare_clients
if [[ $self_contained == 1 ]]; then
  start_registry registry
  ref=$("$here/seed_demo_image.sh" "$registry" demo/hello:latest 2>"$work/seed.log") \
    || { show "$work/seed.log"; bail "seeding the demo image failed"; }
  ok "seeded $ref"
  mkdir -p "$work/files"
  upload_dir=$work/files
  start_regd
  start_gateway
fi
echo "# daemon $addr, image $ref"
read_checks
if [[ -n $upload_dir ]]; then
  upload_checks
  upload_blob_checks
  pull_checks
fi
if [[ $self_contained == 1 ]]; then
  echo "# gateway $gw_addr (mTLS, --policy), registry $authreg (htpasswd)"
  # team-a's certificate and ci's token together: the certificate names the
  # tenant, so REPO is team-a's; without the certificate the handshake fails.
  gateway_checks "$gw_addr" "$gw_tls/ca.pem" "$gw_tls/team-a.pem" "$gw_tls/team-a.key" \
    "$gw_token" localhost "$reg_user" "$reg_pass" "$authreg/team-a/examples"
  gateway_policy_checks
  kill -0 "$regd_pid" 2>/dev/null || not_ok "regd still running after the examples"
  kill -0 "$gw_pid" 2>/dev/null || not_ok "the regd gateway still running after the examples"
fi
echo "1..$n"
if [[ $failed -gt 0 ]]; then
  echo "# $failed of $n checks failed"
  if [[ $self_contained == 1 ]]; then
    echo "# regd log (tail):"; tail -n 30 "$work/regd.log" | sed 's/^/#   /'
    echo "# gateway log (tail):"; tail -n 30 "$work/gateway.log" | sed 's/^/#   /'
  fi
  exit 1
fi
echo "# all $n checks passed"
