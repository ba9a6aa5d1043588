package auth

import (
	"crypto/subtle"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-jose/go-jose/v4"
)

// cache remembers verified tokens, so a client that reuses its token costs no signature
// check per request: token → claims, until the token's exp (with Leeway) and at most
// MaxCacheAge, and only while the key set that verified it is the current one (a JWKS
// refresh starts afresh, so a key removed from the set stops verifying at once).
//
// Layout (as sticky's session table): 2^k buckets of cacheWays slots; a slot holds a pointer
// to an immutable entry, so a lookup is a seeded hash and up to cacheWays atomic loads — no
// lock, no allocation. Writers serialise per bucket; a full bucket replaces its entry that
// expires first, so the cache never holds more than its capacity. The seed is random, and
// the token is compared in constant time, so which tokens share a bucket cannot be chosen
// and a lookup's timing tells nothing of a cached token.
type cache struct {
	seed    maphash.Seed
	mask    uint64
	buckets []cacheBucket
}

const cacheWays = 8

// MaxCacheAge bounds how long a verified token is served from the cache, whatever its exp
// says; DefaultCacheSize is the number of tokens cached.
const (
	MaxCacheAge      = 10 * time.Minute
	DefaultCacheSize = 8192
)

type cacheBucket struct {
	mu    sync.Mutex // writers only
	slots [cacheWays]atomic.Pointer[cacheEntry]
}

// cacheEntry is immutable once published.
type cacheEntry struct {
	hash   uint64
	token  string
	claims map[string]any // read-only
	keys   *jose.JSONWebKeySet
	until  int64 // unix nanoseconds: not served from this instant on
}

func newCache(capacity int) *cache {
	n := 1
	for n*cacheWays < capacity {
		n <<= 1
	}
	return &cache{seed: maphash.MakeSeed(), mask: uint64(n - 1), buckets: make([]cacheBucket, n)}
}

// get returns the claims of a cached token verified under keys, or nil. Allocation-free.
func (c *cache) get(token []byte, keys *jose.JSONWebKeySet, now int64) map[string]any {
	h := maphash.Bytes(c.seed, token)
	b := &c.buckets[h&c.mask]
	for i := range b.slots {
		e := b.slots[i].Load()
		if e != nil && e.hash == h && len(e.token) == len(token) &&
			subtle.ConstantTimeCompare(s2b(e.token), token) == 1 {
			if now >= e.until || e.keys != keys {
				return nil
			}
			return e.claims
		}
	}
	return nil
}

// put caches token's claims until until.
func (c *cache) put(token string, claims map[string]any, keys *jose.JSONWebKeySet, until, now int64) {
	h := maphash.String(c.seed, token)
	b := &c.buckets[h&c.mask]
	e := &cacheEntry{hash: h, token: token, claims: claims, keys: keys, until: until}
	b.mu.Lock()
	defer b.mu.Unlock()
	victim := 0
	for i := range b.slots {
		old := b.slots[i].Load()
		if old == nil || now >= old.until || (old.hash == h && old.token == token) {
			victim = i
			break
		}
		if old.until < b.slots[victim].Load().until {
			victim = i
		}
	}
	b.slots[victim].Store(e)
}

// s2b views s as bytes without copying; the bytes must not be modified.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
