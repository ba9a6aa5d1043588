package sticky

// Outcome says where a Lookup's answer came from. It is also the value of the result label
// of lb_sticky_lookups_total (see String).
type Outcome uint8

const (
	// Miss: the session has no pin (new, expired, or lost with Redis's data). The caller
	// picks a backend and Pins it.
	Miss Outcome = iota
	// CacheHit: the pin was served from process memory — the memory store, or rueidis's
	// tracked client-side cache — without a Redis round trip.
	CacheHit
	// RedisHit: the pin was read from Redis with a round trip (the first read of the key on this
	// connection, or after an invalidation); later reads are CacheHits.
	RedisHit
	// Fallback: Redis is unreachable or backing off. No pin is known; the caller places the
	// session by its cookie's signed hint (Signer.Verify) or, for header-keyed sessions, by
	// Rendezvous, and serves the request normally.
	Fallback
)

// String returns the metric label value: "miss", "cache_hit", "redis" or "fallback".
func (o Outcome) String() string {
	switch o {
	case Miss:
		return "miss"
	case CacheHit:
		return "cache_hit"
	case RedisHit:
		return "redis"
	case Fallback:
		return "fallback"
	}
	return "unknown"
}
