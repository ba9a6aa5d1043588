package sticky

import (
	"sync/atomic"
	"time"
)

// MaxKeyLen is the longest session key a store accepts. A longer key (an over-long session
// header) is not a session: Lookup returns Miss and Pin ignores it. Cookie keys are
// SessionIDLen bytes.
const MaxKeyLen = 256

// Store maps a session key to the ID of the backend the session is pinned to.
// Implementations: *Memory (one process) and *Redis (shared by every instance).
//
// All methods are safe for concurrent use. Lookup and Signer are the per-request calls: they
// take no lock of this package's and make no allocation in steady state (see each
// implementation; a Redis cache hit goes through rueidis's client-side cache, which takes
// a read lock). Pin and Repin run once per session or move and may allocate; Memory's take
// its bucket's mutex, Redis's make a round trip (or, while Redis is down, take the write
// queue's mutex).
type Store interface {
	// Lookup returns the backend ID key is pinned to and where the answer came from. The ID
	// is "" unless the outcome is CacheHit or RedisHit. It may name a backend that no longer
	// exists or is not usable: the caller checks and Repins. now is time.Now().UnixNano(),
	// the clock reading the proxy already takes for state.Pool.Pick (a second reading costs
	// as much as the lookup itself). key is not retained.
	Lookup(key []byte, now int64) (backendID string, o Outcome)
	// Pin pins key to backendID for ttl (Options.TTL when ttl <= 0): a new session. It never
	// fails from the caller's point of view: while Redis is unreachable the pin is queued
	// and written when it returns. key is not retained.
	Pin(key []byte, backendID string, ttl time.Duration)
	// Repin is Pin for a session that moves to another backend (its pinned one is gone,
	// unhealthy, open-breaker or drained); it is counted as a re-pin.
	Repin(key []byte, backendID string, ttl time.Duration)
	// Signer returns the signer of cookie hints current now. Never nil. The Redis store may
	// replace it once (when it adopts the key shared through Redis); a Signer keeps verifying
	// the keys it replaced.
	Signer() *Signer
	// Stats returns a snapshot of the store's counters.
	Stats() Stats
	// Close stops background work and releases the Redis connection. Lookup and Pin after
	// Close return Fallback / do nothing on the Redis store.
	Close()
}

// Stats is a snapshot of a store's counters; counters only increase.
type Stats struct {
	// Lookups by outcome (lb_sticky_lookups_total{result=...}).
	CacheHits, RedisHits, Misses, Fallbacks uint64
	// Pins and Repins count calls; Repins is the re-pin metric.
	Pins, Repins uint64
	// RedisErrors counts failed Redis calls (timeouts, connection errors, failed probes,
	// error replies).
	RedisErrors uint64
	// QueuedPins is the number of pins waiting for Redis now; FlushedPins were written after
	// an outage; DroppedPins did not fit in the queue or expired in it.
	QueuedPins               int
	FlushedPins, DroppedPins uint64
	// Evictions counts live entries pushed out of the memory table by a full bucket.
	Evictions uint64
	// RedisUp reports whether Redis is in use now (always false for the memory store).
	RedisUp bool
	// Outages counts transitions from Redis up to Redis unreachable (including at startup).
	Outages uint64
}

// counter is an atomic counter alone on its cache line, so that cores incrementing
// different counters do not contend.
type counter struct {
	n atomic.Uint64
	_ [56]byte
}

func (c *counter) inc()         { c.n.Add(1) }
func (c *counter) load() uint64 { return c.n.Load() }

// counters are the counters every store keeps.
type counters struct {
	cacheHits, redisHits, misses, fallbacks counter
	pins, repins                            counter
	redisErrors, flushed, dropped, outages  counter
}

func (c *counters) snapshot() Stats {
	return Stats{
		CacheHits:   c.cacheHits.load(),
		RedisHits:   c.redisHits.load(),
		Misses:      c.misses.load(),
		Fallbacks:   c.fallbacks.load(),
		Pins:        c.pins.load(),
		Repins:      c.repins.load(),
		RedisErrors: c.redisErrors.load(),
		FlushedPins: c.flushed.load(),
		DroppedPins: c.dropped.load(),
		Outages:     c.outages.load(),
	}
}
