package main

// pull: PullImage, an image pulled into an OCI layout on the daemon's disk.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	pb "example.com/regd/client-examples/go/regdpb"
)

func runPull(c pb.RegistryClient, args []string) error {
	fs := flag.NewFlagSet("pull", flag.ContinueOnError)
	layout := fs.String("layout", "", "OCI layout directory (regd writes it: inside its --allowed_paths)")
	refName := fs.String("ref-name", "", "index.json entry name (default: the tag, else the digest)")
	platform := fs.String("platform", "", "os/arch[/variant]: the index child to pull")
	allPlatforms := fs.Bool("all-platforms", false, "pull a whole index (every child)")
	concurrency := fs.Int("concurrency", 0, "blobs downloaded at once (0: 4)")
	maxAttempts := fs.Int("max-attempts", 0, "retry attempts (0: daemon default)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"pull takes one image reference"}
	}
	if *layout == "" {
		return usageError{"pull needs -layout DIR"}
	}
	if *platform != "" && *allPlatforms {
		return usageError{"-platform and -all-platforms exclude each other"}
	}
	// The daemon creates and writes the directory itself.
	dir, err := filepath.Abs(*layout)
	if err != nil {
		return err
	}
	req := &pb.PullImageRequest{
		Ref:          pos[0],
		Layout:       &pb.OciLayout{Path: dir, RefName: *refName},
		AllPlatforms: *allPlatforms,
		Concurrency:  int32(*concurrency),
	}
	if *maxAttempts > 0 {
		// Unset, regd uses its read policy (short delays between attempts).
		req.Retry = &pb.RetryConfig{MaxAttempts: int32(*maxAttempts)}
	}
	if *platform != "" {
		if req.Platform, err = parsePlatform(*platform); err != nil {
			return err
		}
	}

	// No deadline: a large image may legitimately take a long time.
	start := time.Now()
	stream, err := c.PullImage(context.Background(), req)
	if err != nil {
		return err
	}
	// Per blob: when progress was last printed (at most once a second), and
	// whether it showed 100% (printed once).
	lastProgress := map[string]time.Time{}
	complete := map[string]bool{}
	outcomes := map[pb.LayerResult_Outcome]int{}
	var result *pb.PullResult
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		blob := shortDigest(ev.BlobDigest)
		switch e := ev.Event.(type) {
		case *pb.PullEvent_Progress:
			p := e.Progress
			done := p.Total > 0 && p.Complete >= p.Total
			if (done && !complete[ev.BlobDigest]) || time.Since(lastProgress[ev.BlobDigest]) >= time.Second {
				lastProgress[ev.BlobDigest] = time.Now()
				complete[ev.BlobDigest] = done
				fmt.Fprintf(os.Stderr, "%s ", blob)
				logProgress(p)
			}
		case *pb.PullEvent_Retry:
			r := e.Retry
			fmt.Fprintf(os.Stderr, "%s retry: attempt %d/%d failed: %s; next in %s\n",
				blob, r.Attempt, r.MaxAttempts, r.Error, r.NextRetryIn.AsDuration())
		case *pb.PullEvent_Layer:
			outcomes[e.Layer.Outcome]++
			fmt.Fprintf(os.Stderr, "%s done: %s\n", blob, e.Layer.Outcome)
		case *pb.PullEvent_Result:
			result = e.Result
		}
	}
	if result == nil {
		return errors.New("stream ended without a PullResult")
	}
	fmt.Fprintf(os.Stderr, "pulled in %.3f s: %d blobs downloaded, %d existed\n",
		time.Since(start).Seconds(),
		outcomes[pb.LayerResult_DOWNLOADED], outcomes[pb.LayerResult_EXISTED])
	return printJSON(result)
}

// shortDigest abbreviates a digest for progress lines: "sha256:0123456789ab".
func shortDigest(d string) string {
	const keep = len("sha256:") + 12
	if len(d) > keep {
		return d[:keep]
	}
	return d
}
