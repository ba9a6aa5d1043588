package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"github.com/rs/zerolog"

	"go-loadbalancer/internal/redact"
)

// gcraScript is GCRA in Redis, on Redis's own clock (TIME) so that instances with skewed
// clocks share one limit. KEYS[1]: the key's arrival time (microseconds); ARGV: interval
// and tolerance in microseconds. Returns 0 to allow, else the microseconds to wait. The
// arrival time is capped as Local caps it (a limit loosened by a reload).
var gcraScript = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat > now + tolerance + interval then tat = now + tolerance end
if tat - now > tolerance then return tat - now - tolerance end
local nexttat = tat + interval
redis.call('SET', KEYS[1], nexttat, 'PX', math.ceil((nexttat - now) / 1000) + 1000)
return 0
`)

// Redis is a GCRA limiter shared by every instance through Redis: one round trip per
// request (EVALSHA), bounded by a short timeout. Redis is not a dependency: when a call
// fails the limiter falls back to a Local one for a back-off period (a compare-and-swap
// elects the one request that tries Redis again), so an outage costs neither a timeout per
// request nor an error to the client. Safe for concurrent use.
type Redis struct {
	client   rueidis.Client
	local    *Local
	timeout  time.Duration
	backoff  time.Duration
	prefix   string
	downAt   atomic.Int64 // UnixNano of the last failure; 0 while Redis answers
	retrying atomic.Bool
	errors   atomic.Uint64
	log      zerolog.Logger
}

// RedisOptions configure NewRedis.
type RedisOptions struct {
	URL     string        // redis:// or rediss:// URL
	Timeout time.Duration // per call; 0 means 50 ms
	Backoff time.Duration // how long to use the local limiter after a failure; 0 means 1 s
	Log     zerolog.Logger
}

// NewRedis returns a Redis limiter. A Redis that is down at start is not an error: the
// limiter starts on its local fallback and logs one warning.
func NewRedis(o RedisOptions) (*Redis, error) {
	opt, err := rueidis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("cannot use redis url %q: %w", redact.URL(o.URL), redact.Err(err))
	}
	if o.Timeout <= 0 {
		o.Timeout = 50 * time.Millisecond
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	opt.DisableCache = true
	opt.ForceSingleClient = true
	opt.DisableRetry = true
	opt.Dialer.Timeout = o.Timeout
	r := &Redis{local: NewLocal(0), timeout: o.Timeout, backoff: o.Backoff, prefix: "lb:ratelimit:", log: o.Log}
	// With ForceSingleClient rueidis connects lazily: a Redis that is down now is found
	// by the first call, which switches to the local fallback.
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("cannot create redis client for %q: %w", redact.URL(o.URL), redact.Err(err))
	}
	r.client = c
	return r, nil
}

// Allow is Local.Allow against the limit kept in Redis, or against the local fallback while
// Redis is failing.
func (r *Redis) Allow(key []byte, now int64, l Limit) (bool, time.Duration) {
	if down := r.downAt.Load(); down != 0 {
		if now-down < int64(r.backoff) || !r.retrying.CompareAndSwap(false, true) {
			return r.local.Allow(key, now, l)
		}
		defer r.retrying.Store(false)
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	res := gcraScript.Exec(ctx, r.client, []string{r.prefix + string(key)},
		[]string{strconv.FormatInt(l.interval/1000, 10), strconv.FormatInt(l.tolerance/1000, 10)})
	wait, err := res.AsInt64()
	if err != nil {
		r.errors.Add(1)
		if r.downAt.Swap(now) == 0 {
			r.log.Warn().Err(err).Msg("rate limit: Redis call failed; limiting per instance until it answers")
		}
		return r.local.Allow(key, now, l)
	}
	if r.downAt.Swap(0) != 0 {
		r.log.Info().Msg("rate limit: Redis answers again; limits are shared")
	}
	if wait > 0 {
		return false, time.Duration(wait) * time.Microsecond
	}
	return true, 0
}

// Errors is the number of failed Redis calls.
func (r *Redis) Errors() uint64 { return r.errors.Load() }

// Close releases the Redis connection.
func (r *Redis) Close() {
	r.client.Close()
}
