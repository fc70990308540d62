package main

// read-blob: ReadBlob, a server stream of BlobChunks.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"

	pb "example.com/regd/client-examples/go/regdpb"
)

// maxChunkRecvBytes is the largest BlobChunk read-blob accepts. regd sends
// 256 KiB chunks, well under grpc-go's default limit of 4 MiB; the higher
// limit only keeps the client working with a server that sends bigger ones.
const maxChunkRecvBytes = 64 * mib

// blobSink is where read-blob puts the bytes: a file (or stdout) and, from
// offset 0, a SHA-256 of everything written.
type blobSink struct {
	w    io.Writer
	hash interface {
		io.Writer
		Sum([]byte) []byte
	} // nil when not verifying
	n int64
}

func (s *blobSink) write(p []byte) error {
	if s.hash != nil {
		s.hash.Write(p) // never fails
	}
	if _, err := s.w.Write(p); err != nil {
		return err
	}
	s.n += int64(len(p))
	return nil
}

func (s *blobSink) digest() string {
	return "sha256:" + hex.EncodeToString(s.hash.Sum(nil))
}

// openOutput opens -o: "-" is stdout, offset > 0 appends to FILE (the bytes
// before it are already there), else FILE is created or truncated.
func openOutput(path string, offset int64) (io.WriteCloser, error) {
	if path == "-" {
		return nopCloser{os.Stdout}, nil
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if offset > 0 {
		flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
	}
	return os.OpenFile(path, flags, 0o644)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func runReadBlob(c pb.RegistryClient, args []string) error {
	fs := flag.NewFlagSet("read-blob", flag.ContinueOnError)
	out := fs.String("o", "-", "write the blob to FILE (- for stdout, /dev/null to discard)")
	offset := fs.Int64("offset", 0, "start at this byte (appends to FILE; no digest check)")
	maxAttempts := fs.Int("max-attempts", 0, "attempts per transfer fault (0: daemon default)")
	noVerify := fs.Bool("no-verify", false, "do not hash here: rely on regd's check (from offset 0 "+
		"regd hashes every byte, holds the last chunk back and ends the stream with DATA_LOSS on a mismatch)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError{"read-blob takes REPO DIGEST"}
	}
	if *offset < 0 {
		return usageError{"-offset must not be negative"}
	}
	repo, digest := pos[0], pos[1]
	const algo = "sha256:"
	verify := *offset == 0 && !*noVerify
	if verify && (len(digest) <= len(algo) || digest[:len(algo)] != algo) {
		return usageError{fmt.Sprintf("can only verify sha256 digests, got %q (use -offset to skip)", digest)}
	}

	lessGC()
	w, err := openOutput(*out, *offset)
	if err != nil {
		return err
	}
	sink := &blobSink{w: w}
	if verify {
		h := newSHA256() // OpenSSL with cgo (sha256_openssl.go): SHA-NI
		if cl, ok := h.(io.Closer); ok {
			defer cl.Close()
		}
		sink.hash = h
	}
	req := &pb.ReadBlobRequest{Repo: repo, Digest: digest, Offset: *offset}
	if *maxAttempts > 0 {
		// Unset, regd uses its read policy (short delays between attempts).
		req.Retry = &pb.RetryConfig{MaxAttempts: int32(*maxAttempts)}
	}
	start := time.Now()
	err = receiveBlob(c, req, sink)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil && verify && sink.digest() != digest {
		err = fmt.Errorf("received bytes hash to %s, want %s", sink.digest(), digest)
	}
	secs := time.Since(start).Seconds()
	if err != nil {
		// Leave no partial, unverified blob behind (a resume appends, so keep those).
		if *offset == 0 && *out != "-" && isRegularFile(*out) {
			os.Remove(*out)
		}
		return err
	}
	note := ""
	if verify {
		note = ", sha256 verified"
	} else if *offset == 0 {
		note = ", sha256 verified by regd"
	}
	fmt.Fprintf(os.Stderr, "read %d bytes in %.3f s (%.1f MiB/s)%s\n",
		sink.n, secs, float64(sink.n)/mib/secs, note)
	if *out == "-" {
		return nil // stdout holds the blob
	}
	res := struct {
		Repo         string `json:"repo"`
		Digest       string `json:"digest"`
		Out          string `json:"out"`
		BytesWritten int64  `json:"bytes_written"`
		SHA256       string `json:"sha256,omitempty"` // from offset 0: what was checked
	}{Repo: repo, Digest: digest, Out: *out, BytesWritten: sink.n}
	if verify {
		res.SHA256 = sink.digest()
	}
	return printJSONValue(res)
}

// lessGC makes the garbage collector run less often. Every received chunk is
// garbage as soon as it is hashed and written; with the default GOGC=100 the
// collector runs every few MiB and took a third of read-blob's CPU (2.6 s of
// CPU per GiB; 1.8 s with this). A soft memory limit (Go 1.19) with GOGC off
// lets garbage build up to 64 MiB between collections instead, for a peak RSS
// of about 72 MiB instead of 35. GOGC or GOMEMLIMIT in the environment win.
func lessGC() {
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetGCPercent(-1)
		debug.SetMemoryLimit(64 << 20)
	}
}

// receiveBlob streams the blob into sink. Data chunks form one unbroken
// stream; a chunk with `retry` set carries no data and announces that regd
// resumes the transfer (from the next byte) after a wait.
func receiveBlob(c pb.RegistryClient, req *pb.ReadBlobRequest, sink *blobSink) error {
	// No deadline: a large blob may legitimately take a long time. Cancel
	// on return, so an early exit (a failed write) ends the stream.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := c.ReadBlob(ctx, req, grpc.MaxCallRecvMsgSize(maxChunkRecvBytes))
	if err != nil {
		return err
	}
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if r := chunk.GetRetry(); r != nil {
			fmt.Fprintf(os.Stderr, "retry: attempt %d/%d failed: %s; next in %s\n",
				r.Attempt, r.MaxAttempts, r.Error, r.NextRetryIn.AsDuration())
		}
		if len(chunk.Data) > 0 {
			if err := sink.write(chunk.Data); err != nil {
				return fmt.Errorf("writing the blob: %w", err)
			}
		}
	}
}

func isRegularFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// printJSONValue prints v (not a proto message) as indented JSON on stdout.
func printJSONValue(v interface{}) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Printf("%s\n", b)
	return err
}
