// Command peer is the benchmark's stand-in for other registry clients: the
// plain-HTTP ways of doing what regd does, with nothing but Go's standard
// library (it builds offline with `go build`, no modules to fetch).
//
//	peer head-rate --url URL [--url URL2 ...] [--method HEAD|GET] [--concurrency 16]
//	               [--duration 10s] [--warmup 0s] [--accept TYPES]
//	peer crane-pull --registry HOST:PORT --repo R --ref TAG|DIGEST --dir DIR [--jobs 4]
//	               [--scheme http] [--platform linux/amd64] [--fsync]
//
// head-rate: --concurrency goroutines, each looping over the URLs in order
// (one "round") on keep-alive connections of one http.Transport; prints the
// rounds and requests per second as JSON. Any status but 200 counts as a
// failure (and makes the exit status 1).
//
// crane-pull: what `crane pull --format=oci` does, done by hand (crane is not
// packaged in Debian 12): GET the manifest (an index picks --platform), then
// GET the config and layers, --jobs at a time, each streamed to a temporary
// file through crypto/sha256, checked against its digest and size, and renamed
// to blobs/sha256/<hex>; then the manifest blob, oci-layout and index.json.
// Prints the manifest digest, bytes and seconds as JSON.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const manifestAccept = "application/vnd.oci.image.manifest.v1+json," +
	"application/vnd.oci.image.index.v1+json," +
	"application/vnd.docker.distribution.manifest.v2+json," +
	"application/vnd.docker.distribution.manifest.list.v2+json"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: peer head-rate|crane-pull FLAGS (see the source's comment)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "head-rate":
		err = headRate(os.Args[2:])
	case "crane-pull":
		err = cranePull(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		os.Exit(1)
	}
}

// newTransport is a keep-alive transport for one host with room for n idle
// connections, no proxy (loopback), no compression.
func newTransport(n int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        n,
		MaxIdleConnsPerHost: n,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

func printJSON(v interface{}) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Printf("%s\n", b)
	return err
}

// ---------------------------------------------------------------------------
// head-rate

type urlList []string

func (u *urlList) String() string     { return strings.Join(*u, " ") }
func (u *urlList) Set(s string) error { *u = append(*u, s); return nil }

func headRate(args []string) error {
	fs := flag.NewFlagSet("head-rate", flag.ContinueOnError)
	var urls urlList
	fs.Var(&urls, "url", "URL to request (repeat: one round requests each in order)")
	method := fs.String("method", "HEAD", "HEAD or GET (a GET reads the whole body)")
	concurrency := fs.Int("concurrency", 16, "concurrent callers")
	duration := fs.Duration("duration", 10*time.Second, "measured time")
	warmup := fs.Duration("warmup", 0, "uncounted time before it")
	accept := fs.String("accept", manifestAccept, "Accept header")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(urls) == 0 || *concurrency < 1 || *duration <= 0 ||
		(*method != "HEAD" && *method != "GET") {
		return errors.New("head-rate needs --url, --concurrency >= 1, --duration > 0, --method HEAD|GET")
	}
	client := &http.Client{Transport: newTransport(*concurrency), Timeout: 30 * time.Second}
	round := func() error {
		for _, u := range urls {
			req, err := http.NewRequest(*method, u, nil)
			if err != nil {
				return err
			}
			req.Header.Set("Accept", *accept)
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, resp.Body) // read to the end: the connection is reused
			resp.Body.Close()
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s %s: %s", *method, u, resp.Status)
			}
		}
		return nil
	}

	var counting, stop int32
	var rounds, failed int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for i := 0; i < *concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for atomic.LoadInt32(&stop) == 0 {
				err := round()
				if atomic.LoadInt32(&counting) == 0 || atomic.LoadInt32(&stop) != 0 {
					continue
				}
				if err != nil {
					atomic.AddInt64(&failed, 1)
					once.Do(func() { firstErr = err })
				} else {
					atomic.AddInt64(&rounds, 1)
				}
			}
		}()
	}
	time.Sleep(*warmup)
	atomic.StoreInt32(&counting, 1)
	start := time.Now()
	time.Sleep(*duration)
	atomic.StoreInt32(&stop, 1)
	secs := time.Since(start).Seconds()
	wg.Wait()
	err := printJSON(map[string]interface{}{
		"method": *method, "urls": []string(urls), "concurrency": *concurrency,
		"seconds": secs, "rounds": rounds, "failed": failed,
		"rounds_per_second":   float64(rounds) / secs,
		"requests_per_second": float64(rounds) * float64(len(urls)) / secs,
	})
	if err == nil && firstErr != nil {
		err = fmt.Errorf("%d rounds failed, the first: %w", failed, firstErr)
	}
	return err
}

// ---------------------------------------------------------------------------
// crane-pull

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant,omitempty"`
	} `json:"platform,omitempty"`
}

type manifest struct {
	MediaType string       `json:"mediaType"`
	Config    *descriptor  `json:"config"`
	Layers    []descriptor `json:"layers"`
	Manifests []descriptor `json:"manifests"` // an index
}

type puller struct {
	client *http.Client
	base   string // scheme://host/v2/repo
	dir    string
	fsync  bool
	bytes  int64 // atomic
}

func cranePull(args []string) error {
	fs := flag.NewFlagSet("crane-pull", flag.ContinueOnError)
	registry := fs.String("registry", "", "registry host:port")
	repo := fs.String("repo", "", "repository")
	ref := fs.String("ref", "latest", "tag or digest")
	dir := fs.String("dir", "", "OCI layout directory to write")
	jobs := fs.Int("jobs", 4, "blobs downloaded at once")
	scheme := fs.String("scheme", "http", "http or https")
	platform := fs.String("platform", "linux/amd64", "for an index: the child to pull")
	fsync := fs.Bool("fsync", false, "fsync each blob before its rename (crane does not)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *registry == "" || *repo == "" || *dir == "" || *jobs < 1 {
		return errors.New("crane-pull needs --registry, --repo, --dir and --jobs >= 1")
	}
	start := time.Now()
	p := &puller{
		client: &http.Client{Transport: newTransport(*jobs)},
		base:   fmt.Sprintf("%s://%s/v2/%s", *scheme, *registry, *repo),
		dir:    *dir,
		fsync:  *fsync,
	}
	if err := os.MkdirAll(filepath.Join(*dir, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	raw, desc, err := p.getManifest(*ref)
	if err != nil {
		return err
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	if len(m.Manifests) > 0 { // an index: keep it, pull one child
		if err := p.putBlob(desc.Digest, raw); err != nil {
			return err
		}
		child, err := pickPlatform(m.Manifests, *platform)
		if err != nil {
			return err
		}
		if raw, desc, err = p.getManifest(child.Digest); err != nil {
			return err
		}
		m = manifest{}
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("manifest %s: %w", desc.Digest, err)
		}
	}
	if m.Config == nil {
		return fmt.Errorf("manifest %s has no config", desc.Digest)
	}
	if err := p.fetchAll(append([]descriptor{*m.Config}, m.Layers...), *jobs); err != nil {
		return err
	}
	if err := p.putBlob(desc.Digest, raw); err != nil {
		return err
	}
	if !strings.Contains(*ref, ":") {
		desc.Annotations = map[string]string{"org.opencontainers.image.ref.name": *ref}
	}
	if err := p.writeIndex(desc); err != nil {
		return err
	}
	return printJSON(map[string]interface{}{
		"digest": desc.Digest, "bytes": atomic.LoadInt64(&p.bytes),
		"seconds": time.Since(start).Seconds(),
	})
}

// getManifest GETs a manifest by tag or digest; it returns the bytes and a
// descriptor of them (the digest checked when ref is one).
func (p *puller) getManifest(ref string) ([]byte, descriptor, error) {
	req, err := http.NewRequest("GET", p.base+"/manifests/"+ref, nil)
	if err != nil {
		return nil, descriptor{}, err
	}
	req.Header.Set("Accept", manifestAccept)
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, descriptor{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, descriptor{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, descriptor{}, fmt.Errorf("GET manifest %s: %s", ref, resp.Status)
	}
	sum := sha256.Sum256(raw)
	d := descriptor{MediaType: resp.Header.Get("Content-Type"),
		Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(raw))}
	if strings.HasPrefix(ref, "sha256:") && ref != d.Digest {
		return nil, descriptor{}, fmt.Errorf("manifest %s hashes to %s", ref, d.Digest)
	}
	return raw, d, nil
}

func pickPlatform(children []descriptor, platform string) (descriptor, error) {
	for _, c := range children {
		if c.Platform == nil {
			continue
		}
		p := c.Platform.OS + "/" + c.Platform.Architecture
		if p == platform || (c.Platform.Variant != "" && p+"/"+c.Platform.Variant == platform) {
			return c, nil
		}
	}
	return descriptor{}, fmt.Errorf("the index has no %s manifest", platform)
}

// fetchAll downloads the blobs, jobs at a time; the first error wins.
func (p *puller) fetchAll(blobs []descriptor, jobs int) error {
	sem := make(chan struct{}, jobs)
	errs := make(chan error, len(blobs))
	var wg sync.WaitGroup
	for _, b := range blobs {
		wg.Add(1)
		go func(b descriptor) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs <- p.fetchBlob(b)
		}(b)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *puller) blobPath(digest string) string {
	return filepath.Join(p.dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

// fetchBlob streams one blob to a temporary file through sha256, checks it,
// and renames it into place.
func (p *puller) fetchBlob(b descriptor) error {
	if !strings.HasPrefix(b.Digest, "sha256:") {
		return fmt.Errorf("unsupported digest %q", b.Digest)
	}
	resp, err := p.client.Get(p.base + "/blobs/" + b.Digest)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET blob %s: %s", b.Digest, resp.Status)
	}
	final := p.blobPath(b.Digest)
	tmp, err := os.CreateTemp(filepath.Dir(final), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(tmp, h), resp.Body, make([]byte, 1<<20))
	atomic.AddInt64(&p.bytes, n)
	if err == nil && p.fsync {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("blob %s: %w", b.Digest, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != b.Digest || n != b.Size {
		return fmt.Errorf("blob %s: got %s, %d bytes (want %d)", b.Digest, got, n, b.Size)
	}
	return os.Rename(tmp.Name(), final)
}

func (p *puller) putBlob(digest string, data []byte) error {
	return writeFileAtomic(p.blobPath(digest), data)
}

func (p *puller) writeIndex(d descriptor) error {
	if err := writeFileAtomic(filepath.Join(p.dir, "oci-layout"),
		[]byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	idx, err := json.Marshal(map[string]interface{}{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []descriptor{d},
	})
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(p.dir, "index.json"), idx)
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
