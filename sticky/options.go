package sticky

import (
	"errors"
	"fmt"
	"time"

	"github.com/redis/rueidis"
	"github.com/rs/zerolog"
)

// Defaults applied by NewMemory and NewRedis to zero Options fields.
const (
	DefaultMaxSessions      = 1 << 20
	DefaultTTL              = 30 * time.Minute
	DefaultClientCacheTTL   = 60 * time.Second
	DefaultTimeout          = 50 * time.Millisecond
	DefaultBackoff          = time.Second
	DefaultMaxQueuedPins    = 10000
	DefaultKeyPrefix        = "lb:sticky:"
	DefaultClientCacheBytes = 32 << 20
)

// MinHintKeyLen is the shortest Options.HintKey accepted (128 bits).
const MinHintKeyLen = 16

// Options configure a store. The zero value is a valid memory-store configuration: every
// zero field takes the Default* value named beside it.
type Options struct {
	// Log receives the store's state changes: one warning when Redis becomes unreachable
	// (or is at startup), one info line when it is back. Never a line per request. The zero
	// Logger logs nothing.
	Log zerolog.Logger

	// TTL is the pin lifetime used when Pin is given ttl <= 0 (config sticky.ttl).
	// Zero means DefaultTTL.
	TTL time.Duration

	// HintKey is the HMAC-SHA256 key that makes the cookie's backend reference and signs the
	// cookie (config sticky.secret_file or STICKY_SECRET). Nil means: the Redis store shares
	// one random key through Redis (SET NX, so the first instance's key wins and every
	// instance signs alike); the memory store makes a random per-process key, so instances
	// do not recognise each other's cookies. At least MinHintKeyLen bytes when set.
	HintKey []byte
	// PreviousHintKey, if set, is a key replaced by HintKey during a rotation (config
	// sticky.previous_secret_file or STICKY_PREVIOUS_SECRET): cookies made with it are still
	// accepted, and re-issued under HintKey. Ignored without HintKey.
	PreviousHintKey []byte

	// MaxSessions bounds the memory store (and the Redis store's key-intern table). Zero
	// means DefaultMaxSessions. Past it the entry nearest to expiry in the same bucket is
	// evicted.
	MaxSessions int

	// RedisURL is the Redis server, "redis://[user:pass@]host:port/db" (config redis.url).
	// Required by NewRedis, ignored by NewMemory. Only a standalone server is supported
	// (no Cluster or Sentinel).
	RedisURL string
	// ClientCacheTTL bounds how long a pin is served from rueidis's client-side cache
	// without asking Redis (config redis.client_cache_ttl). Invalidations from Redis evict it
	// sooner. Zero means DefaultClientCacheTTL.
	ClientCacheTTL time.Duration
	// ClientCacheBytes is the size of rueidis's client-side cache. Zero means
	// DefaultClientCacheBytes.
	ClientCacheBytes int
	// Timeout bounds every Redis call on the request path (Lookup's GET, Pin's SET, and the
	// dial either may trigger): each gets between 3/4 of Timeout and Timeout (see deadlines).
	// The calls made off the request path — the startup hint-key sync, recovery probes and
	// the flush of queued pins — get 4×Timeout, at least 200 ms. Zero means DefaultTimeout.
	Timeout time.Duration
	// Backoff is how long Redis is skipped after a failure before one background probe tries
	// it again; probes repeat every Backoff until one succeeds. Zero means DefaultBackoff.
	Backoff time.Duration
	// MaxQueuedPins bounds the pins remembered while Redis is unreachable (one per session
	// key; a later pin of the same key replaces the earlier). Past it new pins are dropped
	// and counted. Zero means DefaultMaxQueuedPins.
	MaxQueuedPins int
	// KeyPrefix is put before every Redis key. Empty means DefaultKeyPrefix.
	KeyPrefix string
}

// ErrNoRedisURL is returned by NewRedis when Options.RedisURL is empty.
var ErrNoRedisURL = errors.New("sticky: Options.RedisURL is required for the Redis store (set redis.url, or REDIS_URL)")

// Validate reports the first invalid setting. It does not contact Redis.
func (o *Options) Validate() error {
	switch {
	case o.TTL < 0:
		return fmt.Errorf("cannot use sticky TTL %v: must not be negative", o.TTL)
	case o.HintKey != nil && len(o.HintKey) < MinHintKeyLen:
		return fmt.Errorf("cannot use sticky hint key of %d bytes: want at least %d", len(o.HintKey), MinHintKeyLen)
	case o.PreviousHintKey != nil && len(o.PreviousHintKey) < MinHintKeyLen:
		return fmt.Errorf("cannot use previous sticky hint key of %d bytes: want at least %d", len(o.PreviousHintKey), MinHintKeyLen)
	case o.MaxSessions < 0:
		return fmt.Errorf("cannot use sticky MaxSessions %d: must not be negative", o.MaxSessions)
	case o.ClientCacheTTL < 0:
		return fmt.Errorf("cannot use redis client_cache_ttl %v: must not be negative", o.ClientCacheTTL)
	case o.ClientCacheBytes < 0:
		return fmt.Errorf("cannot use redis client cache size %d: must not be negative", o.ClientCacheBytes)
	case o.Timeout < 0:
		return fmt.Errorf("cannot use redis timeout %v: must not be negative", o.Timeout)
	case o.Backoff < 0:
		return fmt.Errorf("cannot use redis backoff %v: must not be negative", o.Backoff)
	case o.MaxQueuedPins < 0:
		return fmt.Errorf("cannot use MaxQueuedPins %d: must not be negative", o.MaxQueuedPins)
	}
	for i := 0; i < len(o.KeyPrefix); i++ {
		if c := o.KeyPrefix[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("cannot use redis key prefix %q: only printable ASCII without spaces", o.KeyPrefix)
		}
	}
	if o.RedisURL != "" {
		if _, err := rueidis.ParseURL(o.RedisURL); err != nil {
			return fmt.Errorf("cannot parse redis url: %w", err) // the URL may hold a password: not echoed
		}
	}
	return nil
}

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.MaxSessions == 0 {
		o.MaxSessions = DefaultMaxSessions
	}
	if o.ClientCacheTTL == 0 {
		o.ClientCacheTTL = DefaultClientCacheTTL
	}
	if o.ClientCacheBytes == 0 {
		o.ClientCacheBytes = DefaultClientCacheBytes
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Backoff == 0 {
		o.Backoff = DefaultBackoff
	}
	if o.MaxQueuedPins == 0 {
		o.MaxQueuedPins = DefaultMaxQueuedPins
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	return o
}
