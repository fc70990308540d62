#!/bin/sh
# Generates the Go stubs for regd.v1 into regdpb/ (not committed).
# Needs protoc, protoc-gen-go and protoc-gen-go-grpc on PATH
# (Debian: protobuf-compiler protoc-gen-go protoc-gen-go-grpc).
set -eu
cd "$(dirname "$0")"
proto_dir=${REGD_PROTO_DIR:-../../proto}
module=$(sed -n 's/^module[[:space:]]*//p' go.mod)
rm -rf regdpb
protoc -I "$proto_dir" \
  --go_out=. --go_opt=module="$module" \
  --go-grpc_out=. --go-grpc_opt=module="$module" \
  "$proto_dir/regd/v1/registry.proto"
test -f regdpb/registry.pb.go && test -f regdpb/registry_grpc.pb.go
