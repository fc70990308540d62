module example.com/regd/client-examples/go

go 1.19

// These are the versions Debian 12 packages (golang-google-grpc-dev,
// golang-google-protobuf-dev); build.sh builds offline against them through a
// vendor/ tree of symlinks into /usr/share/gocode. With a module proxy you can
// instead run: ./gen.sh && go mod tidy && go build -o regd-example .
require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
