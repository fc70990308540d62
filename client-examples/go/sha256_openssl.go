//go:build cgo

package main

// SHA-256 through OpenSSL's libcrypto. Debian 12's Go 1.19 crypto/sha256 has
// no SHA-NI code (about 460 MiB/s on the bench machine); libcrypto uses SHA-NI
// (about 1,330 MiB/s). Without cgo, sha256_std.go uses crypto/sha256 instead.
// Build needs a C compiler and libssl-dev (build.sh checks, and falls back to
// CGO_ENABLED=0 when either is missing).

/*
#cgo LDFLAGS: -lcrypto
#include <openssl/evp.h>
*/
import "C"

import (
	"errors"
	"hash"
	"runtime"
	"unsafe"
)

// opensslSHA256 is a hash.Hash over an EVP_MD_CTX. Call Close when done; a
// finalizer frees the context of one that was not closed. Each Write is one
// cgo call, so feed it large buffers (fileDigest reads 1 MiB at a time).
type opensslSHA256 struct {
	ctx *C.EVP_MD_CTX
}

// newSHA256 returns a SHA-256 hash.Hash backed by libcrypto; it also
// implements io.Closer.
func newSHA256() hash.Hash {
	ctx := C.EVP_MD_CTX_new()
	if ctx == nil {
		panic("sha256: EVP_MD_CTX_new failed")
	}
	h := &opensslSHA256{ctx: ctx}
	runtime.SetFinalizer(h, (*opensslSHA256).Close)
	h.Reset()
	return h
}

func (h *opensslSHA256) live() *C.EVP_MD_CTX {
	if h.ctx == nil {
		panic("sha256: use after Close")
	}
	return h.ctx
}

// Close frees the EVP context. It is safe to call more than once.
func (h *opensslSHA256) Close() error {
	if h.ctx != nil {
		C.EVP_MD_CTX_free(h.ctx)
		h.ctx = nil
		runtime.SetFinalizer(h, nil)
	}
	return nil
}

func (h *opensslSHA256) Reset() {
	if C.EVP_DigestInit_ex(h.live(), C.EVP_sha256(), nil) != 1 {
		panic("sha256: EVP_DigestInit_ex failed")
	}
	runtime.KeepAlive(h)
}

func (h *opensslSHA256) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	// p holds no Go pointers, so it may be passed to C for the call.
	ok := C.EVP_DigestUpdate(h.live(), unsafe.Pointer(&p[0]), C.size_t(len(p)))
	runtime.KeepAlive(h) // the finalizer must not free ctx during the call
	if ok != 1 {
		return 0, errors.New("sha256: EVP_DigestUpdate failed")
	}
	return len(p), nil
}

// Sum appends the digest of the data so far to b; like every hash.Hash, it
// does not change the state, so it finalizes a copy of the context.
func (h *opensslSHA256) Sum(b []byte) []byte {
	tmp := C.EVP_MD_CTX_new()
	if tmp == nil {
		panic("sha256: EVP_MD_CTX_new failed")
	}
	defer C.EVP_MD_CTX_free(tmp)
	var out [C.EVP_MAX_MD_SIZE]byte
	var n C.uint
	if C.EVP_MD_CTX_copy_ex(tmp, h.live()) != 1 ||
		C.EVP_DigestFinal_ex(tmp, (*C.uchar)(unsafe.Pointer(&out[0])), &n) != 1 {
		panic("sha256: EVP_DigestFinal_ex failed")
	}
	runtime.KeepAlive(h)
	return append(b, out[:n]...)
}

func (h *opensslSHA256) Size() int      { return 32 }
func (h *opensslSHA256) BlockSize() int { return 64 }
