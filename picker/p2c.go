package picker

import "math/rand/v2"

// LeastInflight is power-of-two-choices on in-flight counts: two random distinct candidates
// among available ones, the lower load wins (ties: either). Lock-free, 0 allocs.
//
// It returns an index in [0, n) for which avail reported true, or -1 if there is none (or
// n < 1). load(i) is the in-flight count of backend i, typically an atomic load; a nil
// avail means every backend is available. Neither func is retained. Safe for concurrent
// use: the randomness is math/rand/v2's runtime-backed source, which needs no lock.
//
// When a random candidate is unavailable it falls back to one linear pass from a random
// offset, keeping the less loaded of the first two available backends found: at most n+2
// avail calls and 2 load calls. Like any scan-based fallback, that pass favours a backend
// that follows a run of unavailable ones.
func LeastInflight(n int, load func(i int) int64, avail func(i int) bool) int {
	switch {
	case n < 1:
		return -1
	case n == 1:
		if avail == nil || avail(0) {
			return 0
		}
		return -1
	}
	// Two distinct indices from one 64-bit draw: a in [0, n), b in [0, n-1) shifted past a.
	// Multiply-shift reduction (Lemire) is off from uniform by at most n/2^32.
	r := rand.Uint64()
	a := int(uint64(uint32(r>>32)) * uint64(n) >> 32)
	b := int(uint64(uint32(r)) * uint64(n-1) >> 32)
	if b >= a {
		b++
	}
	// Fast path: both candidates available.
	if avail == nil || avail(a) && avail(b) {
		if load(b) < load(a) {
			return b
		}
		return a
	}
	return leastInflightSlow(n, a, load, avail)
}

// leastInflightSlow scans all n backends once starting at start and returns the less
// loaded of the first two available ones, the only one, or -1.
func leastInflightSlow(n, start int, load func(i int) int64, avail func(i int) bool) int {
	first := -1
	for k := range n {
		i := start + k
		if i >= n {
			i -= n
		}
		if !avail(i) {
			continue
		}
		if first < 0 {
			first = i
			continue
		}
		if load(i) < load(first) {
			return i
		}
		return first
	}
	return first
}
