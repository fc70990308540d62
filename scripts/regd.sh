#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine (run as root, or with sudo):
#   bash scripts/regd.sh run    install what is missing, build, start regd on 127.0.0.1:50051
#   bash scripts/regd.sh test   install what is missing, build, run every test (ctest), then
#                               the checked builds below; a summary gives each phase's time
#   bash scripts/regd.sh build  install what is missing, build
#   bash scripts/regd.sh deps   install what is missing
# Checked builds (clang-14), each in its own build directory, also run by `test`:
#   bash scripts/regd.sh tsa       build-tsa: regd_core, regd_server and regd with -Wthread-safety
#                                  as errors (checks the ABSL_GUARDED_BY annotations)
#   bash scripts/regd.sh fuzz      build-fuzz: every libFuzzer target of tests/fuzz for
#                                  FUZZ_SECONDS (default 20) from its seeds (scripts/fuzz.sh smoke)
#   bash scripts/regd.sh sanitize  build-asan: everything with ASan+UBSan, then the whole ctest
#                                  suite; any sanitizer report from any process fails it
# Environment: BUILD_DIR (default build), BUILD_TYPE (default RelWithDebInfo),
# REGD_ARGS (extra flags for `run`), JOBS (default 2); TSA_BUILD_DIR, ASAN_BUILD_DIR and
# FUZZ_BUILD_DIR move the checked builds.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}

BUILD_PKGS=(g++ cmake ninja-build pkg-config libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev
  protobuf-compiler rapidjson-dev libabsl-dev libcurl4-openssl-dev libssl-dev prometheus-cpp-dev)
TEST_PKGS=(googletest libgtest-dev libgmock-dev docker-registry skopeo apache2-utils curl
  python3 python3-grpcio python3-protobuf python3-cryptography grpc-proto
  golang-go golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev
  protoc-gen-go protoc-gen-go-grpc python3-yaml time openssl ca-certificates
  clang-14 libclang-rt-14-dev libfuzzer-14-dev llvm-14)

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
  install_pkgs "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"
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
  with_lock cmake --build "$TSA_BUILD_DIR" -j "${JOBS:-2}" --target regd_core regd_server regd
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
  sanitize)
    deps_test
    phase asan-build asan_build
    phase asan-ctest run_ctest "$ASAN_BUILD_DIR"
    summary
    ;;
  *)
    sed -n '2,17p' "$0"
    exit 2
    ;;
esac
