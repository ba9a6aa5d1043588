package sticky

// Rendezvous (highest random weight) hashing places a header-keyed session while Redis is
// unreachable: every instance computes the same backend for the same key from the same
// healthy set, with no coordination, and removing a backend moves only the sessions that were
// on it (Thaler & Ravishankar, "Using name-based mappings to increase hit rates", 1998).
//
// The hash is fixed — FNV-1a 64 of the key and of the backend ID, combined and finished with
// the murmur3 fmix64 mixer — never seeded per process, so all instances and versions agree.

// Score is the rendezvous weight of backend id for key. Allocation-free.
func Score(key []byte, id string) uint64 {
	return score(fnv1a(key), id)
}

func score(kh uint64, id string) uint64 {
	return fmix64(kh ^ fmix64(fnv1aString(id)))
}

// Rendezvous returns the index in backends of the element with usable(i) true and the
// highest Score(key, id(backends[i])), or -1 when none is usable. The result depends only on
// key and the set of usable IDs, not on their order, so every instance agrees. The proxy
// passes one pool's Backends, with usable reporting healthy, not drained, breaker ready and
// not yet tried. Allocation-free (the closures do not escape) and lock-free.
func Rendezvous[B any](key []byte, backends []B, id func(B) string, usable func(i int) bool) int {
	kh := fnv1a(key)
	best := -1
	var bestScore uint64
	var bestID string
	for i, b := range backends {
		if !usable(i) {
			continue
		}
		bid := id(b)
		s := score(kh, bid)
		if best < 0 || s > bestScore || (s == bestScore && bid > bestID) {
			best, bestScore, bestID = i, s, bid
		}
	}
	return best
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnv1a(b []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

func fnv1aString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// fmix64 is murmur3's 64-bit finaliser: full avalanche, so FNV's weak low bits do not bias
// which backend wins.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9a53fe26e53
	h ^= h >> 33
	return h
}
