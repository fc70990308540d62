#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine (run as root, or with sudo):
#   bash scripts/regd.sh run    install what is missing, build, start regd on 127.0.0.1:50051
#   bash scripts/regd.sh test   install what is missing, build, run every test (ctest), then
#                               the checked builds below; a summary gives each phase's time
#   bash scripts/regd.sh build  install what is missing, build
#   bash scripts/regd.sh deps   install what is missing
# Checked builds (clang-14), each in its own build directory, also run by `test`:
#   bash scripts/regd.sh tsa       build-tsa: regd_core, regd_server, regd and regdctl with -Wthread-safety
#                                  as errors (checks the ABSL_GUARDED_BY annotations)
#   bash scripts/regd.sh fuzz      build-fuzz: every libFuzzer target of tests/fuzz for
#                                  FUZZ_SECONDS (default 20) from its seeds (scripts/fuzz.sh smoke)
#   bash scripts/regd.sh sanitize  build-asan: everything with ASan+UBSan, then the whole ctest
#                                  suite; any sanitizer report from any process fails it
# The container image (Dockerfile; deploy/README.md, "Image"):
#   bash scripts/regd.sh image     build it as IMAGE (default localhost/regd:latest) with podman
#                                  (--isolation chroot; installed if neither podman nor docker is
#                                  here), else docker; labels carry the version and git revision.
#                                  If debian:12 cannot be pulled, the base is made once with
#                                  debootstrap from apt's mirror: localhost/regd-debian:12
#                                  (podman rmi it to refresh)
# Environment: BUILD_DIR (default build), BUILD_TYPE (default RelWithDebInfo),
# REGD_ARGS (extra flags for `run`), JOBS (default 2); TSA_BUILD_DIR, ASAN_BUILD_DIR and
# FUZZ_BUILD_DIR move the checked builds. `image`: IMAGE; IMAGE_FORMAT (podman: docker, the
# default, keeps HEALTHCHECK; oci drops it); IMAGE_BASE: auto (debian:12 and debian:12-slim if
# here, else localhost/regd-debian:12 if here, else pull, else debootstrap), registry, or
# debootstrap; BUILD_BASE and RUNTIME_BASE name other bases; DEBIAN_MIRROR and
# DEBIAN_SECURITY_MIRROR override the mirrors read from /etc/apt.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}

BUILD_PKGS=(g++ cmake ninja-build pkg-config libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev
  protobuf-compiler rapidjson-dev libabsl-dev libcurl4-openssl-dev libssl-dev prometheus-cpp-dev)
TEST_PKGS=(googletest libgtest-dev libgmock-dev docker-registry skopeo apache2-utils curl
  python3 python3-grpcio python3-protobuf python3-cryptography grpc-proto
  golang-go golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev
  protoc-gen-go protoc-gen-go-grpc python3-yaml time openssl ca-certificates prometheus
  clang-14 libclang-rt-14-dev libfuzzer-14-dev llvm-14)
# `image` (and the container_image test): podman builds, debootstrap makes the base.
IMAGE_PKGS=(podman buildah debootstrap)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_pkgs() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "regd.sh: installing ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

deps_build() { install_pkgs "${BUILD_PKGS[@]}"; }
deps_test() {
  # IMAGE_PKGS: the container_image test builds the image (about 2 minutes cold).
  install_pkgs "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}" "${IMAGE_PKGS[@]}"
  # Node.js runs the Node client example; use the machine's if it has one.
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then install_pkgs nodejs npm; fi
}

# On a shared machine, one build at a time.
with_lock() { if command -v flock >/dev/null; then flock /tmp/regd-build.lock "$@"; else "$@"; fi; }

build() {
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DREGD_BUILD_TESTS="${1:-ON}"
  with_lock cmake --build "$BUILD_DIR" -j "${JOBS:-2}"
}

run_ctest() { (cd "$1" && ctest --output-on-failure --timeout 900 -j "${JOBS:-2}"); }

TSA_BUILD_DIR=${TSA_BUILD_DIR:-build-tsa}
ASAN_BUILD_DIR=${ASAN_BUILD_DIR:-build-asan}

tsa() {
  cmake -S . -B "$TSA_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++-14 \
    -DREGD_THREAD_SAFETY=ON -DREGD_BUILD_TESTS=OFF
  with_lock cmake --build "$TSA_BUILD_DIR" -j "${JOBS:-2}" --target regd_core regd_server regd regdctl
}

asan_build() {
  cmake -S . -B "$ASAN_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++-14 -DREGD_SANITIZE=ON -DREGD_BUILD_TESTS=ON
  with_lock cmake --build "$ASAN_BUILD_DIR" -j "${JOBS:-2}"
}

# The checked builds as phases (each timed on its own).
checked_phases() {
  phase tsa tsa
  phase fuzz-build bash scripts/fuzz.sh build
  phase fuzz-run bash scripts/fuzz.sh run "${FUZZ_SECONDS:-20}"
  phase asan-build asan_build
  phase asan-ctest run_ctest "$ASAN_BUILD_DIR"
}

# phase NAME COMMAND...: runs COMMAND (stopping at its first failing step),
# records its wall time and whether it passed, and goes on either way.
PHASES=()
FAILED=0
phase() {
  local name=$1 start rc
  shift
  echo "regd.sh: ---- $name"
  start=$(date +%s)
  set +e
  (set -e; "$@")
  rc=$?
  set -e
  local took=$(($(date +%s) - start)) result=ok
  if [ "$rc" != 0 ]; then result="FAILED ($rc)"; FAILED=1; fi
  PHASES+=("$(printf '%-11s %5ss  %s' "$name" "$took" "$result")")
  echo "regd.sh: ---- $name: $result in ${took}s"
}

summary() {
  echo "regd.sh: phase        time  result"
  for p in "${PHASES[@]}"; do echo "regd.sh: $p"; done
  return "$FAILED"
}

# ---- the container image ----
DEFAULT_BUILD_BASE=docker.io/library/debian:12       # the Dockerfile's defaults
DEFAULT_RUNTIME_BASE=docker.io/library/debian:12-slim
DEBOOTSTRAP_IMAGE=localhost/regd-debian:12

# apt_uri NAME: the first URI of this machine's apt sources whose path ends in
# /NAME ("debian" or "debian-security"), one-line and deb822 formats alike.
apt_uri() {
  local files=() f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    if [ -f "$f" ]; then files+=("$f"); fi
  done
  [ ${#files[@]} -gt 0 ] || return 0
  awk -v want="$1" '
    function pick(uri) { sub(/\/+$/, "", uri); if (uri ~ ("/" want "$")) { print uri; exit } }
    /^[ \t]*deb[ \t]/ { line = $0; sub(/\[[^]]*\]/, "", line); n = split(line, w, /[ \t]+/)
                        for (i = 1; i <= n; i++) if (w[i] ~ /:\/\//) { pick(w[i]); break } }
    /^URIs:/ { for (i = 2; i <= NF; i++) pick($i) }' "${files[@]}"
}

# A Debian 12 image made with debootstrap from apt's mirror, for machines that
# cannot pull debian:12: minbase, slimmed like debian:12-slim (no docs but the
# copyright files, no man pages or translations), with bookworm,
# bookworm-updates and bookworm-security in its apt sources. Made once: an
# existing DEBOOTSTRAP_IMAGE is reused (remove it to refresh the base).
debootstrap_base() {
  local engine=$1
  if has_image "$engine" "$DEBOOTSTRAP_IMAGE"; then
    echo "regd.sh: base image $DEBOOTSTRAP_IMAGE (made earlier with debootstrap)"
    return
  fi
  install_pkgs debootstrap
  local mirror security root start
  mirror=${DEBIAN_MIRROR:-$(apt_uri debian)}
  mirror=${mirror:-http://deb.debian.org/debian}
  security=${DEBIAN_SECURITY_MIRROR:-$(apt_uri debian-security)}
  security=${security:-http://deb.debian.org/debian-security}
  root=$(mktemp -d /var/tmp/regd-rootfs.XXXXXX)
  start=$(date +%s)
  echo "regd.sh: debootstrap bookworm from $mirror into $root"
  if ! as_root debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1; then
    tail -n 30 "$root.log" >&2
    as_root rm -rf "$root"
    return 1
  fi
  # shellcheck disable=SC2016  # the script's own variables
  as_root sh -eu -c '
    root=$1 mirror=$2 security=$3
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    echo "Acquire::Languages \"none\";" >"$root/etc/apt/apt.conf.d/docker-no-languages"
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<EXCLUDES
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EXCLUDES
  ' sh "$root" "$mirror" "$security"
  # debootstrap installs bookworm as released: bring in bookworm-updates and the
  # security fixes (in a mount namespace of its own, with /proc as dpkg expects).
  # shellcheck disable=SC2016
  if ! as_root unshare --mount --propagation private sh -eu -c '
    mount -t proc proc "$1/proc"
    chroot "$1" apt-get update -q
    DEBIAN_FRONTEND=noninteractive chroot "$1" apt-get upgrade -y -q
    chroot "$1" apt-get clean
  ' sh "$root" >>"$root.log" 2>&1; then
    tail -n 30 "$root.log" >&2
    as_root rm -rf "$root"
    return 1
  fi
  # shellcheck disable=SC2016
  as_root sh -eu -c '
    root=$1
    find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/info/* "$root"/usr/share/man/* "$root"/usr/share/groff/* \
      "$root"/usr/share/lintian/* "$root"/usr/share/locale/*
    # No devices, host names, logs or caches in an image: the runtime brings its own.
    rm -rf "$root"/dev/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
      "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/* "$root"/debootstrap
    rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
  ' sh "$root"
  local mounts
  mounts=$(findmnt -rn -o TARGET)
  if grep -q "^$root/" <<<"$mounts"; then
    echo "regd.sh: something is still mounted under $root" >&2
    return 1
  fi
  as_root tar --numeric-owner -C "$root" -c . |
    "$engine" import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["bash"]' - "$DEBOOTSTRAP_IMAGE" >/dev/null
  as_root rm -rf "$root" "$root.log"
  echo "regd.sh: made $DEBOOTSTRAP_IMAGE with debootstrap in $(($(date +%s) - start))s"
}

has_image() { "$1" image inspect "$2" >/dev/null 2>&1; }

# pull_image ENGINE REF: pulls REF (giving up after 2 minutes).
pull_image() {
  echo "regd.sh: pulling $2"
  if timeout 120 "$1" pull "$2" >/dev/null; then return 0; fi
  echo "regd.sh: cannot pull $2; making a Debian 12 base with debootstrap"
  return 1
}

image() {
  local engine
  if command -v podman >/dev/null; then
    engine=podman
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=docker
  else
    install_pkgs "${IMAGE_PKGS[@]}"
    engine=podman
  fi
  IMAGE=${IMAGE:-localhost/regd:latest}
  local build_base=${BUILD_BASE:-$DEFAULT_BUILD_BASE} runtime_base=${RUNTIME_BASE:-$DEFAULT_RUNTIME_BASE}
  case "${IMAGE_BASE:-auto}" in
    registry) ;;  # docker or podman pulls them if need be
    debootstrap)
      debootstrap_base "$engine"
      build_base=$DEBOOTSTRAP_IMAGE runtime_base=$DEBOOTSTRAP_IMAGE
      ;;
    auto)
      # The bases if they are here; else a debootstrap base made earlier; else
      # pull the bases; else make one with debootstrap.
      if has_image "$engine" "$build_base" && has_image "$engine" "$runtime_base"; then
        :
      elif has_image "$engine" "$DEBOOTSTRAP_IMAGE" ||
        ! { pull_image "$engine" "$build_base" && pull_image "$engine" "$runtime_base"; }; then
        debootstrap_base "$engine"
        build_base=$DEBOOTSTRAP_IMAGE runtime_base=$DEBOOTSTRAP_IMAGE
      fi
      ;;
    *) echo "regd.sh: IMAGE_BASE must be auto, registry or debootstrap" >&2; return 2 ;;
  esac
  # The labels: version from CMakeLists.txt, revision (the commit; -dirty
  # with uncommitted changes) and source (the origin remote, without any
  # credentials in its URL) from git.
  local version revision="" source="" args
  version=$(sed -n 's/^project(regd VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
  if git rev-parse --git-dir >/dev/null 2>&1; then
    revision=$(git rev-parse HEAD)
    if ! git diff --quiet HEAD -- 2>/dev/null; then revision+=-dirty; fi
    source=$(git remote get-url origin 2>/dev/null | sed 's#//[^/@]*@#//#') || source=""
  fi
  # They go in as --label, not as the Dockerfile's VERSION/REVISION/SOURCE
  # build args: podman 4.3's layer cache (buildah 1.28) reuses the LABEL step
  # whatever those args' values, so a new commit would keep the old labels.
  local oci=org.opencontainers.image
  args=(build -f Dockerfile -t "$IMAGE"
    --build-arg "BUILD_BASE=$build_base" --build-arg "RUNTIME_BASE=$runtime_base"
    --build-arg "JOBS=${JOBS:-2}" --label "$oci.version=${version:-unknown}"
    --label "$oci.revision=${revision:-unknown}")
  if [ -n "$source" ]; then args+=(--label "$oci.source=$source"); fi
  if [ "$engine" = podman ]; then args+=(--isolation chroot --format "${IMAGE_FORMAT:-docker}"); fi
  local start
  start=$(date +%s)
  echo "regd.sh: $engine ${args[*]} ."
  with_lock "$engine" "${args[@]}" .
  local size
  size=$("$engine" image inspect --format '{{.Size}}' "$IMAGE")
  echo "regd.sh: $IMAGE: $((size / 1000000)) MB ($size bytes), built in $(($(date +%s) - start))s"
}

case "${1:-}" in
  deps) deps_test ;;
  build) deps_build; build OFF ;;
  run)
    deps_build
    build OFF
    # shellcheck disable=SC2086
    exec "$BUILD_DIR/server/regd" --listen=127.0.0.1:50051 ${REGD_ARGS:-}
    ;;
  test)
    deps_test
    phase build build ON
    phase ctest run_ctest "$BUILD_DIR"
    checked_phases
    summary
    ;;
  tsa) deps_test; phase tsa tsa; summary ;;
  fuzz)
    deps_test
    phase fuzz-build bash scripts/fuzz.sh build
    phase fuzz-run bash scripts/fuzz.sh run "${FUZZ_SECONDS:-20}"
    summary
    ;;
  image) image ;;
  sanitize)
    deps_test
    phase asan-build asan_build
    phase asan-ctest run_ctest "$ASAN_BUILD_DIR"
    summary
    ;;
  *)
    sed -n '2,30p' "$0"
    exit 2
    ;;
esac
