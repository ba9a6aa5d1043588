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

// refBytes is how much of HMAC-SHA256(key, "ref\x00" backendID) a backend reference keeps
// (96 bits: two backends of one table colliding is a 2^-96·n² event); RefLen is its
// base64url length in the cookie.
const (
	refBytes = 12
	RefLen   = 16
)

// Signer makes and checks the two keyed parts of a session cookie:
//
//   - the backend reference, HMAC-SHA256(key, "ref" 0x00 backendID) truncated to 96 bits:
//     opaque (it names no backend ID, address or port; only a holder of the key can tell
//     which backend it stands for, by computing the references of the backends it knows,
//     see Ref), and equal on every instance that shares the key;
//   - the signature, HMAC-SHA256(key, sid "." ref) truncated to 128 bits, binding the
//     reference to the session.
//
// A cookie whose signature does not verify is treated as no cookie. Safe for concurrent use;
// AppendCookieValue and Verify allocate nothing in steady state (their HMAC states are
// pooled).
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

// NewSigner returns a signer that signs with keys[0] and accepts a signature by any of keys
// (key rotation: the new key first, the previous one after it). Nil keys are skipped; the
// keys are copied. It panics without a key (a programming error: stores always have one).
func NewSigner(keys ...[]byte) *Signer {
	s := &Signer{}
	for _, k := range keys {
		if k != nil {
			s.keys = append(s.keys, append([]byte(nil), k...))
		}
	}
	if len(s.keys) == 0 {
		panic("BUG: sticky.NewSigner needs a key")
	}
	s.pool.New = func() any {
		st := &macState{macs: make([]hash.Hash, len(s.keys)), msg: make([]byte, 0, SessionIDLen+1+RefLen)}
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

// Keys returns how many keys the signer accepts; Ref takes an index below it.
func (s *Signer) Keys() int { return len(s.keys) }

// Ref returns the reference to backendID under key i (0: the signing key): RefLen base64url
// characters. It allocates: call it when a table is built, and resolve the references of
// incoming cookies with a map from Ref to backend (indexed as m[string(c.Ref)], which Go
// does without allocating).
func (s *Signer) Ref(i int, backendID string) string {
	m := hmac.New(sha256.New, s.keys[i])
	m.Write([]byte("ref\x00"))
	m.Write([]byte(backendID))
	sum := m.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:refBytes])
}

// sign computes the encoded signature of sid.ref with key i into st.enc.
func (st *macState) sign(i int, sid, ref []byte) []byte {
	m := st.macs[i]
	m.Reset()
	st.msg = append(append(append(st.msg[:0], sid...), '.'), ref...)
	m.Write(st.msg)
	sum := m.Sum(st.sum[:0])
	base64.RawURLEncoding.Encode(st.enc[:], sum[:sigBytes])
	return st.enc[:]
}

// AppendCookieValue appends the cookie value "<sid>.<ref>.<sig>" to dst, signed with the
// signing key, and returns the extended buffer. sid is a session ID (AppendSessionID); ref
// is Ref(0, backendID). Allocation-free when dst has room.
func (s *Signer) AppendCookieValue(dst, sid []byte, ref string) []byte {
	st := s.pool.Get().(*macState)
	dst = append(dst, sid...)
	dst = append(dst, '.')
	dst = append(dst, ref...)
	// The reference was just appended: sign those bytes rather than converting the string.
	r := dst[len(dst)-len(ref):]
	dst = append(dst, '.')
	dst = append(dst, st.sign(0, sid, r)...)
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
		if subtle.ConstantTimeCompare(st.sign(i, c.SID, c.Ref), c.Sig) == 1 {
			ok = true
			break
		}
	}
	s.pool.Put(st)
	return ok
}
