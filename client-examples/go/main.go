// Command regd-example is a small Go client for the regd gRPC daemon.
//
//	regd-example [-addr host:port|unix:/path.sock] [-timeout 60s] COMMAND ...
//	  inspect REF [-platform os/arch[/variant]]
//	  exists REF
//	  write-layer REPO FILE [-inline] [-media-type T] [-mount-from REPO] [-max-attempts N]
//
// Command flags may come before or after the positional arguments; global
// flags (-addr, -timeout) come before the command.
// Results are printed as JSON on stdout and progress on stderr. On a gRPC
// error the status code name and message go to stderr and the exit status is
// the numeric gRPC code (NOT_FOUND exits 5, UNAVAILABLE 14, ...).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "example.com/regd/client-examples/go/regdpb"
)

// codeNames are the canonical (proto) spellings, which codes.Code.String()
// does not produce ("NotFound" there, "NOT_FOUND" here).
var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
	"INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

func codeName(c codes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return c.String()
}

// usageError marks bad command-line input (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	addr := flag.String("addr", envOr("REGD_ADDR", "127.0.0.1:50051"),
		"daemon address: host:port or unix:/path.sock")
	timeout := flag.Duration("timeout", 60*time.Second, "deadline for unary calls")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [flags] inspect|exists|write-layer ARGS...\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 1 {
		flag.Usage()
		os.Exit(2)
	}

	conn, err := dial(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	defer conn.Close()
	client := pb.NewRegistryClient(conn)

	cmd, args := flag.Arg(0), flag.Args()[1:]
	switch cmd {
	case "inspect":
		err = runInspect(client, *timeout, args)
	case "exists":
		err = runExists(client, *timeout, args)
	case "write-layer":
		err = runWriteLayer(client, args)
	default:
		err = usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
	os.Exit(exitStatus(err))
}

func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(os.Stderr, "usage error:", ue.msg)
		return 2
	}
	if st, ok := status.FromError(err); ok {
		fmt.Fprintf(os.Stderr, "error: %s: %s\n", codeName(st.Code()), st.Message())
		return int(st.Code())
	}
	fmt.Fprintln(os.Stderr, "error:", err)
	return 1
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// dial connects without TLS. grpc-go 1.33 (Debian 12) has no "unix:" resolver,
// so unix sockets go through a custom dialer.
func dial(addr string) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{grpc.WithInsecure()}
	if strings.HasPrefix(addr, "unix:") {
		path := strings.TrimPrefix(strings.TrimPrefix(addr, "unix:"), "//")
		opts = append(opts,
			grpc.WithAuthority("localhost"),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			}))
		addr = "passthrough:///" + path
	}
	return grpc.Dial(addr, opts...)
}

func printJSON(m proto.Message) error {
	b, err := protojson.MarshalOptions{
		Multiline: true, UseProtoNames: true, EmitUnpopulated: true,
	}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Printf("%s\n", b)
	return err
}

func parsePlatform(s string) (*pb.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return nil, usageError{fmt.Sprintf("platform must be os/arch[/variant], got %q", s)}
	}
	for _, p := range parts {
		if p == "" {
			return nil, usageError{fmt.Sprintf("platform must be os/arch[/variant], got %q", s)}
		}
	}
	p := &pb.Platform{Os: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// parseInterspersed parses fs's flags wherever they appear among the
// positional arguments (the flag package stops at the first positional one)
// and returns the positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard) // errors are reported once, by the caller
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func runInspect(c pb.RegistryClient, timeout time.Duration, args []string) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	platform := fs.String("platform", "", "os/arch[/variant], to pick an index child")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"inspect takes one image reference"}
	}
	req := &pb.InspectRequest{ImageRef: pos[0]}
	if *platform != "" {
		p, err := parsePlatform(*platform)
		if err != nil {
			return err
		}
		req.Platform = p
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res, err := c.Inspect(ctx, req)
	if err != nil {
		return err
	}
	return printJSON(res)
}

func runExists(c pb.RegistryClient, timeout time.Duration, args []string) error {
	if len(args) != 1 {
		return usageError{"exists takes one image reference"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res, err := c.Exists(ctx, &pb.ExistsRequest{ImageRef: args[0]})
	if err != nil {
		return err
	}
	return printJSON(res)
}

func runWriteLayer(c pb.RegistryClient, args []string) error {
	fs := flag.NewFlagSet("write-layer", flag.ContinueOnError)
	inline := fs.Bool("inline", false, "send the bytes (<= 4 MiB) instead of the path")
	mediaType := fs.String("media-type", "", "blob media type (default: OCI gzip layer)")
	mountFrom := fs.String("mount-from", "", "repository on the same registry to mount from")
	maxAttempts := fs.Int("max-attempts", 0, "retry attempts (0: daemon default)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError{"write-layer takes REPO FILE"}
	}
	repo, file := pos[0], pos[1]

	src := &pb.BlobSource{MediaType: *mediaType, MountFrom: *mountFrom}
	if *inline {
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		src.Source = &pb.BlobSource_Data{Data: data}
	} else {
		// The daemon opens the file itself: it must lie inside --allowed_paths.
		abs, err := filepath.Abs(file)
		if err != nil {
			return err
		}
		src.Source = &pb.BlobSource_Path{Path: abs}
	}
	req := &pb.WriteLayerRequest{
		Repo:  repo,
		Layer: src,
		Retry: &pb.RetryConfig{MaxAttempts: int32(*maxAttempts)},
	}

	// No deadline: a large upload may legitimately take a long time.
	stream, err := c.WriteLayer(context.Background(), req)
	if err != nil {
		return err
	}
	var result *pb.LayerResult
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch e := ev.Event.(type) {
		case *pb.WriteLayerEvent_Progress:
			logProgress(e.Progress)
		case *pb.WriteLayerEvent_Retry:
			r := e.Retry
			fmt.Fprintf(os.Stderr, "retry: attempt %d/%d failed: %s; next in %s\n",
				r.Attempt, r.MaxAttempts, r.Error, r.NextRetryIn.AsDuration())
		case *pb.WriteLayerEvent_Result:
			result = e.Result
		}
	}
	if result == nil {
		return errors.New("stream ended without a LayerResult")
	}
	return printJSON(result)
}

func logProgress(p *pb.Progress) {
	if p.Total > 0 {
		fmt.Fprintf(os.Stderr, "progress: %d/%d bytes (%d%%)\n",
			p.Complete, p.Total, 100*p.Complete/p.Total)
	} else {
		fmt.Fprintf(os.Stderr, "progress: %d bytes\n", p.Complete)
	}
}
