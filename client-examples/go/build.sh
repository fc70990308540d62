#!/bin/sh
# Builds ./regd-example offline against Debian 12's packaged Go libraries.
#
# Debian ships Go libraries as source under /usr/share/gocode/src. This script
# points a vendor/ tree of symlinks at them and writes vendor/modules.txt to
# match go.mod, so `go build -mod=vendor` runs in module mode with no network.
#
# Needs: golang-go (1.19) golang-google-grpc-dev golang-google-protobuf-dev
#        golang-github-golang-protobuf-1-5-dev protobuf-compiler
#        protoc-gen-go protoc-gen-go-grpc
#        gcc libssl-dev (cgo: `upload` hashes files with OpenSSL's libcrypto,
#        sha256_openssl.go; without them, or with CGO_ENABLED=0, the build
#        falls back to Go's slower crypto/sha256, sha256_std.go)
set -eu
cd "$(dirname "$0")"
gocode=${GOCODE:-/usr/share/gocode/src}

# grpc-go 1.33 marshals through github.com/golang/protobuf. Debian's 1.3 branch
# of that package predates the APIv2 bridge and crashes on messages generated
# by protoc-gen-go 1.28 (a nil dereference in makeOneOfMarshaler).
if ! grep -qs 'func MessageV2' "$gocode"/github.com/golang/protobuf/proto/*.go; then
  echo "build.sh: $gocode/github.com/golang/protobuf is older than 1.4;" >&2
  echo "          apt-get install golang-github-golang-protobuf-1-5-dev" >&2
  exit 1
fi

./gen.sh

rm -rf vendor
for mod in google.golang.org/grpc google.golang.org/protobuf \
           google.golang.org/genproto github.com/golang/protobuf \
           golang.org/x/net golang.org/x/sys golang.org/x/text; do
  if [ ! -d "$gocode/$mod" ]; then
    echo "build.sh: missing $gocode/$mod (Debian golang-*-dev package)" >&2
    exit 1
  fi
  mkdir -p "vendor/$(dirname "$mod")"
  ln -s "$gocode/$mod" "vendor/$mod"
done
# Every requirement in go.mod must appear, with the same version, as an
# explicit module in vendor/modules.txt.
awk '/^require \($/ {inreq=1; next}
     inreq && /^\)/ {inreq=0}
     inreq && NF >= 2 {print "# " $1 " " $2; print "## explicit"}
     /^require [^(]/ {print "# " $2 " " $3; print "## explicit"}' go.mod \
  > vendor/modules.txt

export GO111MODULE=on GOFLAGS=-mod=vendor GOPROXY=off
if [ -z "${GOCACHE:-}" ] && [ -z "${HOME:-}" ] && [ -z "${XDG_CACHE_HOME:-}" ]; then
  export GOCACHE="${TMPDIR:-/tmp}/regd-go-build-cache"
fi
# cgo with libcrypto when a C compiler and the OpenSSL headers are there (the
# caller's CGO_ENABLED, if set, is kept); otherwise build without cgo.
if [ -z "${CGO_ENABLED:-}" ]; then
  cc=$(go env CC)
  if [ "$(go env CGO_ENABLED)" = 1 ] &&
     printf '#include <openssl/evp.h>\nint main(void){return EVP_sha256()==0;}\n' |
       $cc -x c - -o /dev/null -lcrypto >/dev/null 2>&1; then
    export CGO_ENABLED=1
  else
    echo "build.sh: no C compiler or OpenSSL (gcc libssl-dev): building without cgo;" >&2
    echo "          upload hashes with Go's crypto/sha256 (no SHA-NI in Go 1.19, ~3x slower)" >&2
    export CGO_ENABLED=0
  fi
fi
go vet ./...
go build -o regd-example .
if [ "$CGO_ENABLED" = 1 ]; then sha=OpenSSL; else sha=crypto/sha256; fi
echo "built $(pwd)/regd-example (sha256: $sha)"
