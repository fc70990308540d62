//go:build !cgo

package main

// Without cgo (CGO_ENABLED=0, or build.sh found no C compiler or no OpenSSL
// headers), SHA-256 comes from Go's crypto/sha256. Go 1.19's has no SHA-NI
// code, so it is about 3x slower than sha256_openssl.go on a SHA-NI machine.

import (
	"crypto/sha256"
	"hash"
)

func newSHA256() hash.Hash { return sha256.New() }
