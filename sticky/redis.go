package sticky

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"github.com/rs/zerolog"
)

// Redis is the shared store: pins live in Redis under KeyPrefix+"s:"+key with the session
// TTL, and are read through rueidis's server-assisted client-side cache (DoCache, RESP3
// CLIENT TRACKING), so a repeated Lookup costs no round trip and a re-pin by any instance
// invalidates every instance's cached copy. Safe for concurrent use.
//
// State machine (see the package doc): up ⇄ down. up: Lookup reads through the cache and
// Pin writes SET PX. The first failed call (timeout, connection error) moves the store to
// down — a compare-and-swap elects the one goroutine that logs the warning and starts the
// recovery loop. down: Lookup returns Fallback at the cost of one atomic load, Pin queues.
// The recovery loop probes every Backoff (PING, hint-key sync, flush of queued pins) and
// moves the store back to up when a probe succeeds. rueidis drops its client-side cache
// with a broken connection, so after an outage the first Lookup of each key is a Redis
// round trip again (and never a stale hit).
type Redis struct {
	o          Options
	log        zerolog.Logger
	addr       string
	sessPrefix string
	hintKey    string
	fixedKey   bool // Options.HintKey was set: nothing to share through Redis
	// slowTimeout bounds the calls made off the request path (startup, probes, flushes).
	slowTimeout time.Duration

	client rueidis.Client
	keys   *table // session key → its Redis key string (so Lookup need not allocate one)
	dl     deadlines
	up     atomic.Bool
	signer atomic.Pointer[Signer]
	q      pinQueue
	c      counters

	mu      sync.Mutex // guards closed and wg.Add against Close
	closed  bool
	done    chan struct{}
	wg      sync.WaitGroup
	pinErrs atomic.Uint64 // sampled logging of error replies
}

var _ Store = (*Redis)(nil)

// NewRedis returns a Redis store for o.RedisURL. Redis being unreachable is not an error: the
// store starts down, logs one warning, serves Fallback and queues pins until a background
// probe reaches Redis. The error is for bad Options only. Call Close when done.
func NewRedis(o Options) (*Redis, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.RedisURL == "" {
		return nil, ErrNoRedisURL
	}
	o = o.withDefaults()
	co, err := rueidis.ParseURL(o.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("cannot parse redis url: %w", err)
	}
	// A standalone server, dialled lazily: with ForceSingleClient rueidis returns a client
	// even when the first dial fails, and redials on the next command.
	co.ForceSingleClient = true
	// No retries inside our time budget: a failure is a signal to back off, not to insist.
	co.DisableRetry = true
	co.Dialer.Timeout = o.Timeout
	// rueidis's keep-alive PINGs and write deadlines detect a stalled server; 20 timeouts
	// (1 s by default) before the connection, and with it the client cache, is given up.
	co.ConnWriteTimeout = max(20*o.Timeout, time.Second)
	co.CacheSizeEachConn = o.ClientCacheBytes
	if co.ClientName == "" {
		co.ClientName = "go-loadbalancer-sticky"
	}

	r := &Redis{
		o:           o,
		log:         o.Log,
		addr:        co.InitAddress[0],
		sessPrefix:  o.KeyPrefix + "s:",
		hintKey:     o.KeyPrefix + "hint-key",
		keys:        newTable(o.MaxSessions),
		dl:          deadlines{timeout: o.Timeout},
		slowTimeout: max(4*o.Timeout, 200*time.Millisecond),
		q:           pinQueue{max: o.MaxQueuedPins},
		done:        make(chan struct{}),
	}
	key, prev := o.HintKey, o.PreviousHintKey
	if key != nil {
		r.fixedKey = true
	} else {
		prev = nil
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("cannot generate sticky hint key: %w", err)
		}
	}
	r.signer.Store(NewSigner(key, prev))

	client, err := rueidis.NewClient(co)
	if client == nil {
		return nil, fmt.Errorf("cannot create redis client for %s: %w", r.addr, err)
	}
	r.client = client
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), r.slowTimeout)
		err = r.syncHintKey(ctx)
		cancel()
	}
	if err != nil {
		r.c.redisErrors.inc()
		r.c.outages.inc()
		r.log.Warn().Str("addr", r.addr).Err(err).Dur("retry_every_ms", o.Backoff).
			Msg("redis unreachable at startup: sticky sessions fall back to cookie hints and rendezvous hashing, pins are queued until it returns")
		r.startRecovery()
	} else {
		r.up.Store(true)
		r.log.Info().Str("addr", r.addr).Msg("sticky sessions stored in redis")
	}
	return r, nil
}

// Lookup implements Store. Outcomes: CacheHit (served by rueidis's tracked client-side
// cache), Redis (a round trip, bounded by Options.Timeout), Miss, or Fallback while Redis is
// down. On a cache hit it takes no lock of ours and allocates nothing once the key has been
// seen (rueidis's cache takes a read lock). A failure moves the store to down.
func (r *Redis) Lookup(key []byte, now int64) (string, Outcome) {
	if !r.up.Load() {
		r.c.fallbacks.inc()
		return "", Fallback
	}
	if len(key) == 0 || len(key) > MaxKeyLen {
		r.c.misses.inc()
		return "", Miss
	}
	k := r.redisKey(key, now)
	c := r.client
	res := c.DoCache(r.dl.get(now), c.B().Get().Key(k).Cache(), r.o.ClientCacheTTL)
	if err := res.NonRedisError(); err != nil {
		r.fail(err)
		r.c.fallbacks.inc()
		return "", Fallback
	}
	v, err := res.ToString()
	if err != nil {
		if !rueidis.IsRedisNil(err) {
			r.c.redisErrors.inc() // an error reply (say WRONGTYPE): no usable pin
		}
		r.c.misses.inc()
		return "", Miss
	}
	if res.IsCacheHit() {
		r.c.cacheHits.inc()
		return v, CacheHit
	}
	r.c.redisHits.inc()
	return v, RedisHit
}

// Pin implements Store: SET key backendID PX ttl, bounded by Options.Timeout; queued while
// Redis is down or when the SET fails.
func (r *Redis) Pin(key []byte, backendID string, ttl time.Duration) {
	r.c.pins.inc()
	r.pin(key, backendID, ttl)
}

// Repin implements Store.
func (r *Redis) Repin(key []byte, backendID string, ttl time.Duration) {
	r.c.repins.inc()
	r.pin(key, backendID, ttl)
}

func (r *Redis) pin(key []byte, backendID string, ttl time.Duration) {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return
	}
	if ttl <= 0 {
		ttl = r.o.TTL
	}
	now := time.Now()
	if !r.up.Load() {
		r.enqueue(key, backendID, now.Add(ttl))
		return
	}
	n := now.UnixNano()
	c := r.client
	err := c.Do(r.dl.get(n), c.B().Set().Key(r.redisKey(key, n)).Value(backendID).PxMilliseconds(ttl.Milliseconds()).Build()).Error()
	if err == nil {
		return
	}
	var re *rueidis.RedisError
	if errors.As(err, &re) {
		// Redis answered with an error (OOM, READONLY...): it is up, the pin is lost.
		r.c.redisErrors.inc() // (fail counts the other failures)
		if n := r.pinErrs.Add(1); n == 1 || n%100 == 0 {
			r.log.Warn().Str("addr", r.addr).Err(err).Uint64("errors_seen", n).Msg("redis refused a sticky pin")
		}
		return
	}
	r.fail(err)
	r.enqueue(key, backendID, now.Add(ttl))
}

func (r *Redis) enqueue(key []byte, backendID string, expires time.Time) {
	if !r.q.add(key, backendID, expires) {
		r.c.dropped.inc()
	}
}

// redisKey returns KeyPrefix+"s:"+key, from the intern table when this key was seen within
// ClientCacheTTL (no allocation), else a new string. The string must be owned, not a view
// of key: rueidis keeps it as its cache map key.
func (r *Redis) redisKey(key []byte, now int64) string {
	if e := r.keys.get(key, now); e != nil {
		return e.val
	}
	s := r.sessPrefix + string(key)
	r.keys.put(key, s[len(r.sessPrefix):], s, now+int64(r.o.ClientCacheTTL), now)
	return s
}

// Signer implements Store.
func (r *Redis) Signer() *Signer { return r.signer.Load() }

// Stats implements Store.
func (r *Redis) Stats() Stats {
	s := r.c.snapshot()
	s.QueuedPins = r.q.len()
	s.RedisUp = r.up.Load()
	return s
}

// Close implements Store. It waits for the recovery loop to stop; queued pins are dropped.
func (r *Redis) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.up.Store(false)
	close(r.done)
	r.mu.Unlock()
	r.wg.Wait()
	r.client.Close()
}

// fail records a failed call and, in the one goroutine that wins the up → down CAS, logs
// the outage and starts the recovery loop.
func (r *Redis) fail(err error) {
	r.c.redisErrors.inc()
	if !r.up.Load() || !r.up.CompareAndSwap(true, false) {
		return
	}
	r.c.outages.inc()
	r.log.Warn().Str("addr", r.addr).Err(err).Dur("retry_every_ms", r.o.Backoff).
		Msg("redis unreachable: sticky sessions fall back to cookie hints and rendezvous hashing, pins are queued until it returns")
	r.startRecovery()
}

func (r *Redis) startRecovery() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if !recoverLoop(r.done, r.o.Backoff, r.probe) {
			return // closed
		}
		r.up.Store(true)
		st := r.c.snapshot()
		r.log.Info().Str("addr", r.addr).Uint64("pins_flushed", st.FlushedPins).Uint64("pins_dropped", st.DroppedPins).
			Msg("redis reachable again: sticky sessions stored in redis")
		// Pins queued between the last flush and up.Store: write them now (a failure here
		// starts a new outage and a new loop).
		if err := r.flush(); err != nil {
			r.fail(err)
		}
	}()
}

// recoverLoop calls probe every backoff until it returns nil (true) or done is closed
// (false).
func recoverLoop(done <-chan struct{}, backoff time.Duration, probe func() error) bool {
	t := time.NewTimer(backoff)
	defer t.Stop()
	for {
		select {
		case <-done:
			return false
		case <-t.C:
		}
		if probe() == nil {
			return true
		}
		t.Reset(backoff)
	}
}

// probe checks Redis end to end and catches up: PING, hint-key sync, queued pins.
func (r *Redis) probe() error {
	ctx, cancel := context.WithTimeout(context.Background(), r.slowTimeout)
	err := r.client.Do(ctx, r.client.B().Ping().Build()).Error()
	if err == nil {
		err = r.syncHintKey(ctx)
	}
	cancel()
	if err == nil {
		err = r.flush()
	}
	if err != nil {
		r.c.redisErrors.inc()
		r.log.Debug().Str("addr", r.addr).Err(err).Msg("redis still unreachable")
	}
	return err
}

// flushBatch is how many queued pins one round trip writes.
const flushBatch = 256

// flush writes the queued pins with the TTL each has left; on failure the unwritten ones go
// back into the queue.
func (r *Redis) flush() error {
	pins := r.q.take()
	if len(pins) == 0 {
		return nil
	}
	c := r.client
	keys := make([]string, 0, flushBatch)
	cmds := make(rueidis.Commands, 0, flushBatch)
	var err error
	write := func() {
		ctx, cancel := context.WithTimeout(context.Background(), r.slowTimeout)
		defer cancel()
		for i, res := range c.DoMulti(ctx, cmds...) {
			if e := res.Error(); e == nil {
				delete(pins, keys[i])
				r.c.flushed.inc()
			} else if err == nil {
				err = e
			}
		}
		keys, cmds = keys[:0], cmds[:0]
	}
	now := time.Now()
	for k, p := range pins {
		if err != nil {
			break
		}
		left := p.expires.Sub(now).Milliseconds()
		if left <= 0 {
			delete(pins, k)
			r.c.dropped.inc()
			continue
		}
		keys = append(keys, k)
		cmds = append(cmds, c.B().Set().Key(r.sessPrefix+k).Value(p.backendID).PxMilliseconds(left).Build())
		if len(cmds) == flushBatch {
			write()
		}
	}
	if err == nil && len(cmds) > 0 {
		write()
	}
	if len(pins) > 0 {
		for range r.q.putBack(pins) {
			r.c.dropped.inc()
		}
	}
	return err
}

// syncHintKey makes every instance sign hints with one key: the first to reach Redis stores
// its signing key with SET NX; everyone adopts what is stored (and keeps verifying its old
// keys). Nothing to do with a configured Options.HintKey.
func (r *Redis) syncHintKey(ctx context.Context) error {
	if r.fixedKey {
		return nil
	}
	c := r.client
	cur := r.signer.Load()
	mine := hex.EncodeToString(cur.keys[0])
	if err := c.Do(ctx, c.B().Set().Key(r.hintKey).Value(mine).Nx().Build()).Error(); err != nil && !rueidis.IsRedisNil(err) {
		return err
	}
	v, err := c.Do(ctx, c.B().Get().Key(r.hintKey).Build()).ToString()
	if err != nil {
		return err
	}
	if v == mine {
		return nil
	}
	shared, err := hex.DecodeString(v)
	if err != nil || len(shared) < MinHintKeyLen {
		r.log.Warn().Str("key", r.hintKey).Msg("redis holds an invalid sticky hint key; signing with this instance's own key (delete the key to share one again)")
		return nil
	}
	r.signer.Store(cur.with(shared))
	return nil
}
