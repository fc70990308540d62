package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// newSHA256 (OpenSSL with cgo, crypto/sha256 without) must agree with
// crypto/sha256, also through fileDigest's 1 MiB reads.
func TestSHA256MatchesCryptoSHA256(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{0, 1, 55, 56, 64, 1000, mib - 1, mib, mib + 1, 3*mib + 7} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i*7 + i>>11)
		}
		want := sha256.Sum256(data)

		h := newSHA256()
		// Uneven writes, and a Sum in the middle that must not change the state.
		half := size / 2
		h.Write(data[:half])
		h.Sum(nil)
		h.Write(data[half:])
		if got := h.Sum([]byte("x")); !bytes.Equal(got, append([]byte("x"), want[:]...)) {
			t.Errorf("size %d: Sum = %x, want x+%x", size, got, want)
		}
		h.Reset()
		h.Write(data)
		if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
			t.Errorf("size %d after Reset: %x, want %x", size, got, want)
		}
		if c, ok := h.(io.Closer); ok {
			c.Close()
			c.Close()
		}

		path := filepath.Join(dir, "f")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		d, n, err := fileDigest(path)
		if err != nil || n != int64(size) || d != "sha256:"+hex.EncodeToString(want[:]) {
			t.Errorf("fileDigest size %d: %s %d %v, want sha256:%x", size, d, n, err, want)
		}
	}
}

// A read error ends fileDigest with that error (and its reader goroutine).
func TestFileDigestReadError(t *testing.T) {
	if _, _, err := fileDigest(t.TempDir()); err == nil {
		t.Error("fileDigest of a directory: no error")
	}
}

// go test -bench SHA256 . (and CGO_ENABLED=0 go test -bench SHA256 . for Go's).
func BenchmarkSHA256(b *testing.B) {
	buf := make([]byte, mib)
	h := newSHA256()
	b.SetBytes(int64(len(buf)))
	for i := 0; i < b.N; i++ {
		h.Write(buf)
	}
	h.Sum(nil)
}
