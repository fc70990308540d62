#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine (run as root, or with sudo):
#   bash scripts/regd.sh run    install what is missing, build, start regd on 127.0.0.1:50051
#   bash scripts/regd.sh test   install what is missing, build, run every test (ctest)
#   bash scripts/regd.sh build  install what is missing, build
#   bash scripts/regd.sh deps   install what is missing
# Environment: BUILD_DIR (default build), BUILD_TYPE (default RelWithDebInfo),
# REGD_ARGS (extra flags for `run`).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}

BUILD_PKGS=(g++ cmake ninja-build pkg-config libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev
  protobuf-compiler rapidjson-dev libabsl-dev libcurl4-openssl-dev libssl-dev)
TEST_PKGS=(googletest libgtest-dev libgmock-dev docker-registry skopeo apache2-utils curl
  python3 python3-grpcio python3-protobuf python3-cryptography grpc-proto
  golang-go golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev
  protoc-gen-go protoc-gen-go-grpc python3-yaml time openssl ca-certificates)

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

build() {
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DREGD_BUILD_TESTS="${1:-ON}"
  cmake --build "$BUILD_DIR" -j "${JOBS:-2}"
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
    build ON
    cd "$BUILD_DIR"
    ctest --output-on-failure --timeout 900 -j "${JOBS:-2}"
    ;;
  *)
    sed -n '2,9p' "$0"
    exit 2
    ;;
esac
