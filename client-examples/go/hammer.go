package main

// hammer: a load generator for the unary read RPCs, used by bench/read.py.
// It is a benchmark tool, not an example of how to call regd.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	pb "example.com/regd/client-examples/go/regdpb"
)

// hammerCall makes one call and checks its answer.
type hammerCall func(ctx context.Context, c pb.RegistryClient, ref string) error

var hammerRPCs = map[string]hammerCall{
	"exists": func(ctx context.Context, c pb.RegistryClient, ref string) error {
		res, err := c.Exists(ctx, &pb.ExistsRequest{ImageRef: ref})
		if err == nil && !res.Exists {
			err = fmt.Errorf("%s does not exist", ref)
		}
		return err
	},
	"descriptor": func(ctx context.Context, c pb.RegistryClient, ref string) error {
		res, err := c.GetDescriptor(ctx, &pb.GetDescriptorRequest{ImageRef: ref})
		if err == nil && res.Digest == "" {
			err = errors.New("descriptor without a digest")
		}
		return err
	},
	"inspect": func(ctx context.Context, c pb.RegistryClient, ref string) error {
		res, err := c.Inspect(ctx, &pb.InspectRequest{ImageRef: ref})
		if err == nil && res.Digest == "" {
			err = errors.New("manifest without a digest")
		}
		return err
	},
}

// runHammer calls one RPC from -concurrency goroutines for -duration and
// prints the rate as JSON. Calls spread over -conns connections (dialed with
// dial); calls that finish during -warmup are not counted.
func runHammer(dial func() (*grpc.ClientConn, error), timeout time.Duration, args []string) error {
	fs := flag.NewFlagSet("hammer", flag.ContinueOnError)
	rpc := fs.String("rpc", "exists", "exists, descriptor or inspect")
	ref := fs.String("ref", "", "image reference to ask about")
	concurrency := fs.Int("concurrency", 16, "callers")
	conns := fs.Int("conns", 1, "gRPC connections the callers share")
	duration := fs.Duration("duration", 10*time.Second, "measured time")
	warmup := fs.Duration("warmup", 0, "uncounted time before it")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	call, ok := hammerRPCs[*rpc]
	switch {
	case len(pos) != 0:
		return usageError{"hammer takes no positional arguments"}
	case !ok:
		return usageError{fmt.Sprintf("-rpc must be exists, descriptor or inspect, got %q", *rpc)}
	case *ref == "":
		return usageError{"hammer needs -ref"}
	case *concurrency < 1 || *conns < 1 || *duration <= 0:
		return usageError{"-concurrency and -conns must be >= 1, -duration > 0"}
	}
	clients := make([]pb.RegistryClient, *conns)
	for i := range clients {
		cc, err := dial()
		if err != nil {
			return err
		}
		defer cc.Close()
		clients[i] = pb.NewRegistryClient(cc)
	}

	var counting, stop int32
	var calls, failed int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for i := 0; i < *concurrency; i++ {
		wg.Add(1)
		go func(c pb.RegistryClient) {
			defer wg.Done()
			for atomic.LoadInt32(&stop) == 0 {
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				err := call(ctx, c, *ref)
				cancel()
				if atomic.LoadInt32(&counting) == 0 || atomic.LoadInt32(&stop) != 0 {
					continue
				}
				if err != nil {
					atomic.AddInt64(&failed, 1)
					errOnce.Do(func() { firstErr = err })
				} else {
					atomic.AddInt64(&calls, 1)
				}
			}
		}(clients[i%len(clients)])
	}
	time.Sleep(*warmup)
	atomic.StoreInt32(&counting, 1)
	start := time.Now()
	time.Sleep(*duration)
	atomic.StoreInt32(&stop, 1)
	secs := time.Since(start).Seconds()
	wg.Wait()

	if firstErr != nil {
		fmt.Fprintf(os.Stderr, "hammer: %d calls failed, the first: %v\n", failed, firstErr)
	}
	err = printJSONValue(struct {
		RPC            string  `json:"rpc"`
		Ref            string  `json:"ref"`
		Concurrency    int     `json:"concurrency"`
		Conns          int     `json:"conns"`
		Seconds        float64 `json:"seconds"`
		Calls          int64   `json:"calls"`
		Failed         int64   `json:"failed"`
		CallsPerSecond float64 `json:"calls_per_second"`
	}{*rpc, *ref, *concurrency, *conns, secs, calls, failed, float64(calls) / secs})
	if err == nil && failed > 0 {
		err = firstErr
	}
	return err
}
