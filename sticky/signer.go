package sticky

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"hash"
	"sync"
)

// sigBytes is how much of the HMAC-SHA256 is kept (128 bits, RFC 2104 §5 allows truncation
// to no less than half the output); sigLen is its base64url length in the cookie.
const (
	sigBytes = 16
	sigLen   = 22
)

// Signer signs and verifies the backend hint carried in a session cookie:
// HMAC-SHA256(key, sid "." backendID), truncated to 128 bits. The hint is trusted only while
// Redis is unreachable (SPEC §5); a cookie whose signature does not verify is treated as
// carrying no hint. Safe for concurrent use; AppendCookieValue and Verify allocate nothing
// in steady state (their HMAC states are pooled).
type Signer struct {
	keys [][]byte // keys[0] signs; every key verifies (a replaced key keeps verifying)
	pool sync.Pool
}

// macState is one goroutine's scratch: an HMAC per key, and buffers.
type macState struct {
	macs []hash.Hash
	msg  []byte
	sum  [sha256.Size]byte
	enc  [sigLen]byte
}

// NewSigner returns a signer that signs with keys[0] and accepts a signature by any of keys.
// The keys are copied. It panics without a key (a programming error: stores always have one).
func NewSigner(keys ...[]byte) *Signer {
	if len(keys) == 0 {
		panic("BUG: sticky.NewSigner needs a key")
	}
	s := &Signer{keys: make([][]byte, len(keys))}
	for i, k := range keys {
		s.keys[i] = append([]byte(nil), k...)
	}
	s.pool.New = func() any {
		st := &macState{macs: make([]hash.Hash, len(s.keys)), msg: make([]byte, 0, SessionIDLen+1+MaxBackendIDLen)}
		for i, k := range s.keys {
			st.macs[i] = hmac.New(sha256.New, k)
		}
		return st
	}
	return s
}

// maxKeys bounds how many replaced keys a Signer keeps verifying.
const maxKeys = 3

// with returns a signer signing with key and still verifying s's most recent keys.
func (s *Signer) with(key []byte) *Signer {
	keys := [][]byte{key}
	for _, k := range s.keys {
		if len(keys) < maxKeys && !hmac.Equal(k, key) {
			keys = append(keys, k)
		}
	}
	return NewSigner(keys...)
}

// sign computes the encoded signature of sid.backendID with key i into st.enc.
func (st *macState) sign(i int, sid, backendID []byte) []byte {
	m := st.macs[i]
	m.Reset()
	st.msg = append(append(append(st.msg[:0], sid...), '.'), backendID...)
	m.Write(st.msg)
	sum := m.Sum(st.sum[:0])
	base64.RawURLEncoding.Encode(st.enc[:], sum[:sigBytes])
	return st.enc[:]
}

// AppendCookieValue appends the cookie value "<sid>.<backendID>.<sig>" to dst and returns
// the extended buffer. sid is a session ID (AppendSessionID); backendID must consist of
// [A-Za-z0-9._-] (state.BackendID guarantees it) and be at most MaxBackendIDLen bytes, or
// ParseCookie will reject the value. Allocation-free when dst has room.
func (s *Signer) AppendCookieValue(dst, sid []byte, backendID string) []byte {
	st := s.pool.Get().(*macState)
	dst = append(dst, sid...)
	dst = append(dst, '.')
	dst = append(dst, backendID...)
	// The ID was just appended: sign those bytes rather than converting the string.
	id := dst[len(dst)-len(backendID):]
	dst = append(dst, '.')
	dst = append(dst, st.sign(0, sid, id)...)
	s.pool.Put(st)
	return dst
}

// Verify reports whether c's signature is valid under any of the signer's keys, comparing
// in constant time. Allocation-free.
func (s *Signer) Verify(c Cookie) bool {
	if len(c.Sig) != sigLen {
		return false
	}
	st := s.pool.Get().(*macState)
	ok := false
	for i := range s.keys {
		if subtle.ConstantTimeCompare(st.sign(i, c.SID, c.Backend), c.Sig) == 1 {
			ok = true
			break
		}
	}
	s.pool.Put(st)
	return ok
}
