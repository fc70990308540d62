// Command regd-example is a small Go client for the regd gRPC daemon.
//
//	regd-example [-addr host:port|unix:/path.sock] [-timeout 60s] [CONNECTION FLAGS] COMMAND ...
//	  inspect REF [-platform os/arch[/variant]]
//	  exists REF
//	  write-layer REPO FILE [-inline] [-media-type T] [-mount-from REPO] [-max-attempts N]
//	  upload REPO FILE [-digest D] [-media-type T] [-mount-from REPO] [-chunk-bytes N] [-max-attempts N]
//	  read-blob REPO DIGEST [-o FILE|-] [-offset N] [-max-attempts N]
//	  pull REF -layout DIR [-ref-name N] [-platform os/arch[/variant]] [-all-platforms] [-concurrency N] [-max-attempts N]
//	  hammer -rpc exists|descriptor|inspect -ref REF [-concurrency 16] [-duration 10s] [-warmup D] [-conns N]
//	         (a load generator for bench/read.py, not an example)
//
// Connection flags: -tls-ca PEM, -tls-cert PEM -tls-key PEM, -tls-server-name
// NAME (TLS is used when any -tls-* flag is given), -token TOKEN (metadata
// "authorization: Bearer TOKEN"), -registry-auth-file JSON or -registry-user
// USER -registry-password PASS (metadata "x-registry-auth": base64url of a
// Docker AuthConfig JSON). The metadata goes with every call. -window BYTES
// sets a fixed HTTP/2 receive window (stream and connection) instead of
// grpc-go's default, 64 KiB grown by its bandwidth estimator.
//
// Command flags may come before or after the positional arguments; global
// flags (-addr, -timeout and the connection flags) come before the command.
// Flags may be spelled with one dash or two.
// Results are printed as JSON on stdout and progress on stderr. On a gRPC
// error the status code name and message go to stderr and the exit status is
// the numeric gRPC code (NOT_FOUND exits 5, UNAVAILABLE 14, ...).
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
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
	co := connOptions{set: map[string]bool{}}
	flag.StringVar(&co.tlsCA, "tls-ca", "", "PEM CA certificates that verify the daemon (TLS)")
	flag.StringVar(&co.tlsCert, "tls-cert", "", "PEM client certificate chain, for mTLS (with -tls-key)")
	flag.StringVar(&co.tlsKey, "tls-key", "", "PEM private key of -tls-cert")
	flag.StringVar(&co.tlsServerName, "tls-server-name", "",
		"name to check in the daemon's certificate (default: the host in -addr)")
	flag.StringVar(&co.token, "token", "", "send 'authorization: Bearer TOKEN' on every call")
	flag.StringVar(&co.registryAuthFile, "registry-auth-file", "",
		"Docker AuthConfig JSON object sent as x-registry-auth on every call")
	flag.StringVar(&co.registryUser, "registry-user", "",
		"with -registry-password: send x-registry-auth {username, password} on every call")
	flag.StringVar(&co.registryPassword, "registry-password", "", "see -registry-user")
	flag.IntVar(&co.window, "window", 0,
		"fixed HTTP/2 receive window in bytes (0: grpc-go's default, which grows with the bandwidth)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [flags] inspect|exists|write-layer|upload|read-blob|pull|hammer ARGS...\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 1 {
		flag.Usage()
		os.Exit(2)
	}
	flag.Visit(func(f *flag.Flag) { co.set[f.Name] = true })

	dialOpts, err := co.dialOptions()
	if err != nil {
		os.Exit(exitStatus(err))
	}
	conn, err := dial(*addr, dialOpts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	client := pb.NewRegistryClient(conn)

	cmd, args := flag.Arg(0), flag.Args()[1:]
	switch cmd {
	case "inspect":
		err = runInspect(client, *timeout, args)
	case "exists":
		err = runExists(client, *timeout, args)
	case "write-layer":
		err = runWriteLayer(client, args)
	case "upload":
		err = runUpload(client, args)
	case "read-blob":
		err = runReadBlob(client, args)
	case "pull":
		err = runPull(client, args)
	case "hammer":
		err = runHammer(func() (*grpc.ClientConn, error) { return dial(*addr, dialOpts...) },
			*timeout, args)
	default:
		err = usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
	conn.Close() // os.Exit skips deferred calls
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

// connOptions are the global flags for TLS and call metadata.
type connOptions struct {
	tlsCA, tlsCert, tlsKey, tlsServerName string
	token                                 string
	registryAuthFile                      string
	registryUser, registryPassword        string
	window                                int             // HTTP/2 receive window; 0: default
	set                                   map[string]bool // flags given, even as ""
}

// dialOptions turns the flags into transport credentials (TLS when any
// -tls-* flag is given, else none) and interceptors that add the metadata.
func (co *connOptions) dialOptions() ([]grpc.DialOption, error) {
	if co.set == nil {
		co.set = map[string]bool{}
	}
	var md []string // key, value, ...
	if co.set["token"] {
		md = append(md, "authorization", "Bearer "+co.token)
	}
	auth, err := co.registryAuth()
	if err != nil {
		return nil, err
	}
	if auth != "" {
		md = append(md, "x-registry-auth", auth)
	}

	var opts []grpc.DialOption
	if co.tlsCA != "" || co.tlsCert != "" || co.tlsKey != "" || co.tlsServerName != "" {
		cfg := &tls.Config{ServerName: co.tlsServerName, MinVersion: tls.VersionTLS12}
		if co.tlsCA != "" {
			pem, err := os.ReadFile(co.tlsCA)
			if err != nil {
				return nil, usageError{fmt.Sprintf("-tls-ca: %v", err)}
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, usageError{fmt.Sprintf("-tls-ca: no PEM certificate in %s", co.tlsCA)}
			}
		}
		if (co.tlsCert == "") != (co.tlsKey == "") {
			return nil, usageError{"-tls-cert and -tls-key go together"}
		}
		if co.tlsCert != "" {
			pair, err := tls.LoadX509KeyPair(co.tlsCert, co.tlsKey)
			if err != nil {
				return nil, usageError{fmt.Sprintf("-tls-cert/-tls-key: %v", err)}
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		opts = append(opts, grpc.WithInsecure())
	}
	if co.window != 0 {
		// grpc-go takes a fixed window only from 64 KiB up; it then stops
		// growing the window by its bandwidth estimate.
		if co.window < 64<<10 || co.window > 1<<30 {
			return nil, usageError{"-window must be 65536..1073741824 bytes"}
		}
		opts = append(opts, grpc.WithInitialWindowSize(int32(co.window)),
			grpc.WithInitialConnWindowSize(int32(co.window)))
	}
	if len(md) > 0 {
		opts = append(opts,
			grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply interface{},
				cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
				return invoker(metadata.AppendToOutgoingContext(ctx, md...), method, req, reply, cc, callOpts...)
			}),
			grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn,
				method string, streamer grpc.Streamer, callOpts ...grpc.CallOption) (grpc.ClientStream, error) {
				return streamer(metadata.AppendToOutgoingContext(ctx, md...), desc, cc, method, callOpts...)
			}))
	}
	return opts, nil
}

// registryAuth is the x-registry-auth value: base64url (RFC 4648 section 5,
// unpadded) of a Docker AuthConfig JSON object, or "" for none.
func (co *connOptions) registryAuth() (string, error) {
	userPass := co.set["registry-user"] || co.set["registry-password"]
	var raw []byte
	switch {
	case co.set["registry-auth-file"] && userPass:
		return "", usageError{"-registry-auth-file and -registry-user/-registry-password exclude each other"}
	case co.set["registry-auth-file"]:
		b, err := os.ReadFile(co.registryAuthFile)
		if err != nil {
			return "", usageError{fmt.Sprintf("-registry-auth-file: %v", err)}
		}
		var obj map[string]interface{}
		if err := json.Unmarshal(b, &obj); err != nil || obj == nil {
			return "", usageError{fmt.Sprintf("-registry-auth-file: %s must hold a JSON object", co.registryAuthFile)}
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			return "", usageError{fmt.Sprintf("-registry-auth-file: %v", err)}
		}
		raw = buf.Bytes()
	case userPass:
		if !co.set["registry-user"] || !co.set["registry-password"] {
			return "", usageError{"-registry-user and -registry-password go together"}
		}
		var err error
		raw, err = json.Marshal(struct {
			Username string `json:"username"`
			Password string `json:"password"`
		}{co.registryUser, co.registryPassword})
		if err != nil {
			return "", err
		}
	default:
		return "", nil
	}
	return base64.RawURLEncoding.EncodeToString(raw), nil
}

// dial connects with opts (transport credentials among them). grpc-go 1.33
// (Debian 12) has no "unix:" resolver, so unix sockets go through a custom
// dialer.
func dial(addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
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

const (
	mib           = 1 << 20
	maxChunkBytes = 8 * mib // UploadChunk's cap
)

// fileDigest returns the sha256 digest and size of a file, streaming it in
// 1 MiB pieces. With cgo the hash is OpenSSL's (sha256_openssl.go, SHA-NI
// where the CPU has it), else crypto/sha256 (sha256_std.go). A goroutine reads
// the next piece while the current one is hashed (two buffers), which hides
// the copy out of the page cache: about 0.6 s per GiB instead of 0.75 here.
func fileDigest(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := newSHA256()
	if c, ok := h.(io.Closer); ok {
		defer c.Close()
	}
	type piece struct {
		data []byte
		err  error // io.EOF after the last piece
	}
	const nbuf = 2
	free := make(chan []byte, nbuf)
	full := make(chan piece, nbuf) // never blocks: at most nbuf pieces exist
	defer close(free)              // ends the reader if we return early
	for i := 0; i < nbuf; i++ {
		free <- make([]byte, mib)
	}
	go func() {
		// ReadFull, not io.Copy: large writes keep the cgo overhead negligible.
		for buf := range free {
			m, err := io.ReadFull(f, buf)
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			full <- piece{buf[:m], err}
			if err != nil {
				return
			}
		}
	}()
	var n int64
	for p := range full {
		if len(p.data) > 0 {
			if _, err := h.Write(p.data); err != nil {
				return "", 0, err
			}
			n += int64(len(p.data))
		}
		if p.err == io.EOF {
			break
		}
		if p.err != nil {
			return "", 0, p.err
		}
		free <- p.data[:cap(p.data)]
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), n, nil
}

// uploadSender streams a file's chunks on an UploadBlob stream from the
// offsets regd asks for. It is the only goroutine that calls Send; Send
// blocks while the stream's flow-control window is full (back-pressure).
type uploadSender struct {
	stream pb.Registry_UploadBlobClient
	file   *os.File
	chunk  int

	offsets chan int64    // the latest send_from not yet acted on (capacity 1)
	stop    chan struct{} // closed once the result is in
	done    chan struct{} // closed when run returns
	err     error         // reading the file failed; read after done
	sent    int64         // atomic: bytes handed to Send
	passes  int64         // atomic
}

// sendFrom hands over a new offset, replacing one the sender has not picked
// up yet. Only the receiving goroutine calls it.
func (s *uploadSender) sendFrom(off int64) {
	select {
	case <-s.offsets:
	default:
	}
	s.offsets <- off
}

func (s *uploadSender) run(cancel context.CancelFunc) {
	defer close(s.done)
	buf := make([]byte, s.chunk)
	off, ok := s.nextOffset()
	for ok {
		atomic.AddInt64(&s.passes, 1)
		off, ok = s.pass(buf, off, cancel)
	}
}

// nextOffset waits for a send_from; false once the sender is to stop.
func (s *uploadSender) nextOffset() (int64, bool) {
	select {
	case off := <-s.offsets:
		return off, true
	case <-s.stop:
		return 0, false
	}
}

// pass sends the file from off to its end, then waits with the stream open.
// It returns the offset of the next pass (a send_from that came meanwhile
// ends this pass at once), or false when the sender is to stop.
func (s *uploadSender) pass(buf []byte, off int64, cancel context.CancelFunc) (int64, bool) {
	for {
		select {
		case next := <-s.offsets:
			return next, true
		case <-s.stop:
			return 0, false
		default:
		}
		n, err := s.file.ReadAt(buf, off)
		if n > 0 {
			atomic.AddInt64(&s.sent, int64(n))
			// Send marshals the message before it returns, so buf may be reused.
			req := &pb.UploadBlobRequest{Msg: &pb.UploadBlobRequest_Chunk{
				Chunk: &pb.UploadChunk{Offset: off, Data: buf[:n]}}}
			if serr := s.stream.Send(req); serr != nil {
				return 0, false // the stream is over; Recv reports its status
			}
			off += int64(n)
		}
		if err == io.EOF {
			return s.nextOffset() // not half-closed: regd may ask again
		}
		if err != nil {
			s.err = err
			cancel()
			return 0, false
		}
	}
}

func runUpload(c pb.RegistryClient, args []string) error {
	fs := flag.NewFlagSet("upload", flag.ContinueOnError)
	digest := fs.String("digest", "", "the blob's digest (default: computed from FILE)")
	mediaType := fs.String("media-type", "", "blob media type (default: OCI gzip layer)")
	mountFrom := fs.String("mount-from", "", "repository on the same registry to mount from")
	chunkBytes := fs.Int("chunk-bytes", mib, "bytes per UploadChunk")
	maxAttempts := fs.Int("max-attempts", 0, "retry attempts (0: daemon default)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError{"upload takes REPO FILE"}
	}
	if *chunkBytes <= 0 || *chunkBytes > maxChunkBytes {
		return usageError{fmt.Sprintf("-chunk-bytes must be 1..%d", maxChunkBytes)}
	}
	repo, file := pos[0], pos[1]

	var size int64
	if *digest == "" {
		if *digest, size, err = fileDigest(file); err != nil {
			return err
		}
	} else {
		fi, err := os.Stat(file)
		if err != nil {
			return err
		}
		size = fi.Size()
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()

	// No deadline: a large upload may legitimately take a long time.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := c.UploadBlob(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sent 0 bytes in 0 passes")
		return err
	}
	err = stream.Send(&pb.UploadBlobRequest{Msg: &pb.UploadBlobRequest_Start{Start: &pb.UploadBlobStart{
		Repo: repo, Digest: *digest, Size: size, MediaType: *mediaType, MountFrom: *mountFrom,
		Retry: &pb.RetryConfig{MaxAttempts: int32(*maxAttempts)},
	}}})
	if err != nil && err != io.EOF { // io.EOF: the status comes from Recv
		return err
	}

	s := &uploadSender{
		stream: stream, file: f, chunk: *chunkBytes,
		offsets: make(chan int64, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go s.run(cancel)
	var stopOnce sync.Once
	stopSender := func() { stopOnce.Do(func() { close(s.stop) }) }
	defer stopSender()
	summary := func() {
		fmt.Fprintf(os.Stderr, "sent %d bytes in %d passes\n",
			atomic.LoadInt64(&s.sent), atomic.LoadInt64(&s.passes))
	}

	var lastProgress time.Time
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			summary()
			return errors.New("stream ended without a LayerResult")
		}
		if err != nil {
			stopSender()
			select {
			case <-s.done:
				if s.err != nil {
					err = s.err // the cancel was ours: report why
				}
			case <-time.After(time.Second):
			}
			summary()
			return err
		}
		switch e := ev.Event.(type) {
		case *pb.UploadBlobEvent_SendFrom:
			fmt.Fprintf(os.Stderr, "send_from: offset %d\n", e.SendFrom.Offset)
			s.sendFrom(e.SendFrom.Offset)
		case *pb.UploadBlobEvent_Retry:
			r := e.Retry
			fmt.Fprintf(os.Stderr, "retry: attempt %d/%d failed: %s; next in %s\n",
				r.Attempt, r.MaxAttempts, r.Error, r.NextRetryIn.AsDuration())
		case *pb.UploadBlobEvent_Progress:
			p := e.Progress
			if time.Since(lastProgress) >= time.Second || (p.Total > 0 && p.Complete >= p.Total) {
				lastProgress = time.Now()
				logProgress(p)
			}
		case *pb.UploadBlobEvent_Result:
			// Committed. Stop the sender, then half-close (never concurrently
			// with a Send) and wait briefly for the stream's OK status.
			stopSender()
			select {
			case <-s.done:
				if err := stream.CloseSend(); err == nil {
					drainAfterResult(stream, cancel)
				}
			case <-time.After(10 * time.Second): // stuck in Send: give up on a clean close
			}
			cancel()
			summary()
			return printJSON(e.Result)
		}
	}
}

// drainAfterResult reads what follows the result (nothing, normally) until
// the stream ends, giving up after 10 s.
func drainAfterResult(stream pb.Registry_UploadBlobClient, cancel context.CancelFunc) {
	t := time.AfterFunc(10*time.Second, cancel)
	defer t.Stop()
	for {
		_, err := stream.Recv()
		if err == io.EOF {
			return
		}
		if err != nil {
			if st, ok := status.FromError(err); ok && st.Code() != codes.Canceled {
				fmt.Fprintf(os.Stderr, "note: stream ended with %s after the result\n", codeName(st.Code()))
			}
			return
		}
	}
}
