// Package ratelimit decides whether a client may send another request: the generic cell
// rate algorithm (GCRA, the token bucket stated as one "theoretical arrival time" per key),
// kept either in this process (Local) or in Redis so that every instance shares one limit
// (Redis).
//
// GCRA state is a single number per key, so Local keeps it in a fixed array of atomics
// indexed by a hash of the key: no lock, no map write, no allocation per request, and
// memory that does not grow with the number of clients. Two keys that hash to the same
// slot share a limit (with the default 1<<20 slots, about one client in a thousand at
// 1,000 active clients): a collision can only make limiting stricter, never let a client
// through that should have been stopped. The hash is seeded at random per limiter
// (hash/maphash), so colliding keys cannot be computed offline to get a victim limited by
// someone else's traffic.
//
// Rate and burst are passed with each call rather than fixed in the limiter, so a reload
// that changes them applies at once and keeps every client's state. An arrival time
// further ahead than the current limit can produce (more than tolerance+interval past now)
// comes from a stricter limit a reload replaced: it is capped to now+tolerance, the most
// the current limit can owe (one request is then still allowed), so the client is not
// held to the old limit's debt. Under an unchanged limit that never happens.
package ratelimit

import (
	"hash/maphash"
	"math"
	"sync/atomic"
	"time"
)

// Limit is a rate and burst: Rate requests per second on average, up to Burst at once.
type Limit struct {
	interval  int64 // nanoseconds between requests at Rate
	tolerance int64 // how far ahead of now the arrival time may run: (Burst-1) intervals
}

// NewLimit returns the Limit for rate (> 0, per second) and burst (>= 1).
func NewLimit(rate float64, burst int) Limit {
	interval := int64(math.Round(float64(time.Second) / rate))
	if interval < 1 {
		interval = 1
	}
	return Limit{interval: interval, tolerance: interval * int64(burst-1)}
}

// Interval is the time between requests at the limit's rate.
func (l Limit) Interval() time.Duration { return time.Duration(l.interval) }

// Local is a GCRA limiter kept in this process. Safe for concurrent use.
type Local struct {
	slots []atomic.Int64 // theoretical arrival time (UnixNano) per hashed key
	mask  uint64
	seed  maphash.Seed // random per limiter: which keys share a slot is unpredictable
}

// DefaultSlots is the number of slots of NewLocal(0): 8 MiB of state.
const DefaultSlots = 1 << 20

// NewLocal returns a limiter with slots slots (rounded up to a power of two; 0 means
// DefaultSlots).
func NewLocal(slots int) *Local {
	if slots <= 0 {
		slots = DefaultSlots
	}
	n := 1
	for n < slots {
		n <<= 1
	}
	return &Local{slots: make([]atomic.Int64, n), mask: uint64(n - 1), seed: maphash.MakeSeed()}
}

// Allow reports whether a request under key may pass at now (UnixNano) under l; when it
// may not, retryAfter says how long until it would. Allocation-free.
func (lc *Local) Allow(key []byte, now int64, l Limit) (ok bool, retryAfter time.Duration) {
	slot := &lc.slots[lc.index(key)]
	for {
		old := slot.Load()
		tat := max(old, now)
		if tat > now+l.tolerance+l.interval {
			tat = now + l.tolerance // from a stricter limit (a reload)
		}
		next := tat + l.interval
		if over := next - now - l.interval - l.tolerance; over > 0 {
			return false, time.Duration(over)
		}
		if slot.CompareAndSwap(old, next) {
			return true, 0
		}
	}
}

// index returns key's slot: maphash (AES-based where the CPU has it) under the limiter's
// random seed. Allocation-free.
func (lc *Local) index(key []byte) uint64 { return maphash.Bytes(lc.seed, key) & lc.mask }
