package sticky

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go-loadbalancer/internal/testredis"
	"go-loadbalancer/internal/testtool"
)

// TestRedisCacheHitNoRoundTrip: after warm-up, 1,000 lookups over a few sessions are
// served from rueidis's tracked cache — Redis's GET count rises by at most the number of
// distinct sessions (the warm-up reads), and every lookup after warm-up is a cache hit.
func TestRedisCacheHitNoRoundTrip(t *testing.T) {
	s := testredis.Start(t)
	r, _ := newRedisStore(t, s.URL(), Options{})

	const sessions = 10
	keys := make([][]byte, sessions)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("sess-%d", i))
		r.Pin(keys[i], fmt.Sprintf("web-b%d", i%3), time.Minute)
	}
	before := s.Calls("get")
	for i, k := range keys { // warm-up: one round trip per session
		id, o := r.Lookup(k, time.Now().UnixNano())
		if want := fmt.Sprintf("web-b%d", i%3); id != want || o != RedisHit {
			t.Fatalf("warm-up lookup %d: got %q, %v; want %q, redis", i, id, o, want)
		}
	}
	for i := range 1000 {
		k := keys[i%sessions]
		id, o := r.Lookup(k, time.Now().UnixNano())
		if want := fmt.Sprintf("web-b%d", i%sessions%3); id != want || o != CacheHit {
			t.Fatalf("lookup %d: got %q, %v; want %q, cache_hit", i, id, o, want)
		}
	}
	if got := s.Calls("get") - before; got > sessions {
		t.Fatalf("got %d GETs for 1,000 warm lookups of %d sessions; want at most %d", got, sessions, sessions)
	}
	st := r.Stats()
	if st.CacheHits != 1000 || st.RedisHits != sessions || st.Pins != sessions {
		t.Fatalf("got stats %+v; want 1000 cache hits, %d redis reads, %d pins", st, sessions, sessions)
	}
}

// TestRedisTwoInstances: a pin made through A is seen by B, and a re-pin on A reaches B's
// client cache through Redis's invalidation within 1 s.
func TestRedisTwoInstances(t *testing.T) {
	s := testredis.Start(t)
	a, _ := newRedisStore(t, s.URL(), Options{})
	b, _ := newRedisStore(t, s.URL(), Options{})
	key := []byte("shared-session")

	a.Pin(key, "web-one", time.Minute)
	if id, o := b.Lookup(key, time.Now().UnixNano()); id != "web-one" || o != RedisHit {
		t.Fatalf("B after A's pin: got %q, %v; want web-one, redis", id, o)
	}
	if id, o := b.Lookup(key, time.Now().UnixNano()); id != "web-one" || o != CacheHit {
		t.Fatalf("B again: got %q, %v; want web-one, cache_hit", id, o)
	}

	a.Repin(key, "web-two", time.Minute)
	testtool.WaitFor(t, time.Second, "A's re-pin seen by B", func() bool {
		id, _ := b.Lookup(key, time.Now().UnixNano())
		return id == "web-two"
	})
	// And the new value is cached again on B.
	if id, o := b.Lookup(key, time.Now().UnixNano()); id != "web-two" || o != CacheHit {
		t.Fatalf("B after invalidation: got %q, %v; want web-two, cache_hit", id, o)
	}
	// A sees its own re-pin too (its cached copy was invalidated as well).
	testtool.WaitFor(t, time.Second, "A's re-pin seen by A", func() bool {
		id, _ := a.Lookup(key, time.Now().UnixNano())
		return id == "web-two"
	})
	if got := a.Stats().Repins; got != 1 {
		t.Fatalf("got %d re-pins on A; want 1", got)
	}
}

// TestRedisTTLExpiry: a pin lives for its TTL in Redis and in the client cache, then is a
// miss on every instance.
func TestRedisTTLExpiry(t *testing.T) {
	s := testredis.Start(t)
	a, _ := newRedisStore(t, s.URL(), Options{})
	b, _ := newRedisStore(t, s.URL(), Options{})
	key := []byte("short-lived")
	a.Pin(key, "web-one", 300*time.Millisecond)
	for _, st := range []*Redis{a, b} {
		if id, _ := st.Lookup(key, time.Now().UnixNano()); id != "web-one" {
			t.Fatalf("got %q before expiry; want web-one", id)
		}
	}
	for _, st := range []*Redis{a, b} {
		testtool.WaitFor(t, 2*time.Second, "pin expiry", func() bool {
			id, o := st.Lookup(key, time.Now().UnixNano())
			return id == "" && o == Miss
		})
	}
	if v, err := s.Client().Do(context.Background(), s.Client().B().Exists().Key(DefaultKeyPrefix+"s:short-lived").Build()).AsInt64(); err != nil || v != 0 {
		t.Fatalf("got EXISTS %d, %v after expiry; want 0", v, err)
	}
}

// TestRedisOutage kills redis-server under concurrent lookups: no panic, lookups fall back
// without trying Redis (the store backs off instead of paying a failure each), pins are queued;
// then restarts it on the same port: the queued pins are written and lookups use Redis again.
func TestRedisOutage(t *testing.T) {
	s := testredis.Start(t)
	const backoff = 100 * time.Millisecond
	r, logs := newRedisStore(t, s.URL(), Options{Backoff: backoff})
	keys := make([][]byte, 50)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("outage-%d", i))
		r.Pin(keys[i], "web-before", time.Minute)
		r.Lookup(keys[i], time.Now().UnixNano())
	}

	var (
		stop atomic.Bool
		wg   sync.WaitGroup
		bad  atomic.Value
	)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; !stop.Load(); i++ {
				id, o := r.Lookup(keys[i%len(keys)], time.Now().UnixNano())
				time.Sleep(100 * time.Microsecond) // the machine is shared
				switch o {
				case Fallback:
					if id != "" {
						bad.Store(fmt.Sprintf("fallback with id %q", id))
					}
				case CacheHit, RedisHit:
					if id != "web-before" && id != "web-during" {
						bad.Store(fmt.Sprintf("got %q, %v", id, o))
					}
				}
			}
		}()
	}
	// Lookups from the cache before the kill.
	hits0 := r.Stats().CacheHits
	testtool.WaitFor(t, 5*time.Second, "cache hits before the kill", func() bool { return r.Stats().CacheHits >= hits0+100 })
	s.Kill()
	testtool.WaitFor(t, 2*time.Second, "store down", func() bool { return !r.Stats().RedisUp })
	// Lookups keep running against the dead server and must not try it (back-off, not an
	// attempt per request): Redis errors rise only by the lookups that raced the failure (one
	// per goroutine at most) and by the recovery loop's probes (one per back-off).
	st0, t0 := r.Stats(), time.Now()
	testtool.WaitFor(t, 10*time.Second, "1,000 lookups during the outage", func() bool {
		return r.Stats().Fallbacks >= st0.Fallbacks+1000
	})
	st1, elapsed := r.Stats(), time.Since(t0)
	if errs, probes := st1.RedisErrors-st0.RedisErrors, uint64(elapsed/backoff)+1; errs > 8+probes {
		t.Fatalf("got %d Redis errors over %d fallback lookups in %v; want at most 8 + %d probes (lookups must not try a Redis that is down)",
			errs, st1.Fallbacks-st0.Fallbacks, elapsed, probes)
	}

	// Pins made during the outage are queued, not lost.
	r.Repin(keys[0], "web-during", time.Minute)
	r.Pin([]byte("new-during-outage"), "web-new", time.Minute)
	if q := r.Stats().QueuedPins; q != 2 {
		t.Fatalf("got %d queued pins; want 2", q)
	}

	s.Start() // same port
	testtool.WaitFor(t, 3*time.Second, "store up again", func() bool { return r.Stats().RedisUp })
	stop.Store(true)
	wg.Wait()

	if v := bad.Load(); v != nil {
		t.Fatalf("bad lookup during outage: %v", v)
	}
	raw := s.Client()
	for k, want := range map[string]string{"outage-0": "web-during", "new-during-outage": "web-new"} {
		got, err := raw.Do(context.Background(), raw.B().Get().Key(DefaultKeyPrefix+"s:"+k).Build()).ToString()
		if err != nil || got != want {
			t.Fatalf("got %q, %v in redis for %s after recovery; want %q", got, err, k, want)
		}
	}
	// The lookup goroutines may have read it already: redis or cache_hit.
	if id, o := r.Lookup(keys[0], time.Now().UnixNano()); id != "web-during" || (o != RedisHit && o != CacheHit) {
		t.Fatalf("after recovery: got %q, %v; want web-during from redis", id, o)
	}
	if id, o := r.Lookup(keys[0], time.Now().UnixNano()); id != "web-during" || o != CacheHit {
		t.Fatalf("after recovery, again: got %q, %v; want web-during, cache_hit", id, o)
	}
	st := r.Stats()
	if st.Outages != 1 || st.FlushedPins != 2 || st.QueuedPins != 0 || st.RedisErrors == 0 {
		t.Fatalf("got stats %+v; want 1 outage, 2 flushed pins, none queued, some redis errors", st)
	}
	if w := logs.Level("warn"); w != 1 {
		t.Fatalf("got %d warnings; want 1\n%s", w, logs.String())
	}
	if !strings.Contains(logs.String(), "redis reachable again") {
		t.Fatalf("no recovery line in the log:\n%s", logs.String())
	}
}

// TestRedisStartDown: a store whose Redis is not running works from the start (fallback,
// queued pins), logs exactly one warning, and catches up when Redis appears.
func TestRedisStartDown(t *testing.T) {
	s := testredis.New(t) // not started
	start := time.Now()
	r, logs := newRedisStore(t, s.URL(), Options{Backoff: 50 * time.Millisecond})
	if d := time.Since(start); d > time.Second {
		t.Fatalf("NewRedis took %v with Redis down; want it not to wait", d)
	}
	if id, o := r.Lookup([]byte("k"), time.Now().UnixNano()); id != "" || o != Fallback {
		t.Fatalf("got %q, %v with Redis down; want fallback", id, o)
	}
	r.Pin([]byte("k"), "web-one", time.Minute)
	if sig := r.Signer(); sig == nil {
		t.Fatal("got nil Signer with Redis down")
	}
	time.Sleep(200 * time.Millisecond) // several failed probes: still one warning
	if w := logs.Level("warn"); w != 1 {
		t.Fatalf("got %d warnings; want 1\n%s", w, logs.String())
	}
	if !strings.Contains(logs.String(), "redis unreachable at startup") {
		t.Fatalf("warning does not say Redis is unreachable:\n%s", logs.String())
	}

	s.Start()
	testtool.WaitFor(t, 3*time.Second, "store up", func() bool { return r.Stats().RedisUp })
	if id, o := r.Lookup([]byte("k"), time.Now().UnixNano()); id != "web-one" || o != RedisHit {
		t.Fatalf("got %q, %v after Redis came up; want web-one, redis (the queued pin)", id, o)
	}
}

// TestRedisSharedHintKey: instances without a configured key agree on one through Redis, so
// a hint signed by one verifies on the other; a store created while Redis was down adopts it
// once Redis is back, and keeps accepting what it signed before.
func TestRedisSharedHintKey(t *testing.T) {
	s := testredis.Start(t)
	a, _ := newRedisStore(t, s.URL(), Options{})
	b, _ := newRedisStore(t, s.URL(), Options{})
	sid := AppendSessionID(nil)
	v := a.Signer().AppendCookieValue(nil, sid, a.Signer().Ref(0, "web-127.0.0.1_8081"))
	c, ok := ParseCookie(v)
	if !ok || !b.Signer().Verify(c) {
		t.Fatalf("B does not verify A's hint %q (parsed %v)", v, ok)
	}

	down := testredis.New(t)
	late, _ := newRedisStore(t, down.URL(), Options{Backoff: 50 * time.Millisecond})
	early := late.Signer().AppendCookieValue(nil, sid, late.Signer().Ref(0, "web-x"))
	down.Start()
	testtool.WaitFor(t, 3*time.Second, "late store up", func() bool { return late.Stats().RedisUp })
	// down is a different server: late's key is what it stored there; a fresh instance on
	// the same server must agree with it.
	peer, _ := newRedisStore(t, down.URL(), Options{})
	v2 := peer.Signer().AppendCookieValue(nil, sid, peer.Signer().Ref(0, "web-y"))
	if c, _ := ParseCookie(v2); !late.Signer().Verify(c) {
		t.Fatal("late store does not verify its peer's hint")
	}
	if c, _ := ParseCookie(early); !late.Signer().Verify(c) {
		t.Fatal("late store no longer verifies a hint it signed before it reached Redis")
	}
}

// TestRedisConfiguredHintKey: with Options.HintKey, Redis is not consulted for the key.
func TestRedisConfiguredHintKey(t *testing.T) {
	s := testredis.Start(t)
	key := []byte("0123456789abcdef0123456789abcdef")
	r, _ := newRedisStore(t, s.URL(), Options{HintKey: key})
	v := r.Signer().AppendCookieValue(nil, AppendSessionID(nil), r.Signer().Ref(0, "web-a"))
	c, _ := ParseCookie(v)
	if !NewSigner(key).Verify(c) {
		t.Fatal("hint not signed with the configured key")
	}
	raw := s.Client()
	if n, _ := raw.Do(context.Background(), raw.B().Exists().Key(DefaultKeyPrefix+"hint-key").Build()).AsInt64(); n != 0 {
		t.Fatal("configured hint key was written to Redis")
	}
}

// TestRedisInvalidKeys: empty and over-long keys are not sessions.
func TestRedisInvalidKeys(t *testing.T) {
	s := testredis.Start(t)
	r, _ := newRedisStore(t, s.URL(), Options{})
	long := []byte(strings.Repeat("x", MaxKeyLen+1))
	r.Pin(long, "web-a", time.Minute)
	for _, k := range [][]byte{nil, long} {
		if id, o := r.Lookup(k, time.Now().UnixNano()); id != "" || o != Miss {
			t.Fatalf("got %q, %v for a %d-byte key; want miss", id, o, len(k))
		}
	}
}

// TestRedisClose: Close is idempotent and stops the recovery loop; the store falls back.
func TestRedisClose(t *testing.T) {
	s := testredis.New(t)
	r, _ := newRedisStore(t, s.URL(), Options{Backoff: 10 * time.Millisecond})
	r.Close()
	r.Close()
	if _, o := r.Lookup([]byte("k"), time.Now().UnixNano()); o != Fallback {
		t.Fatalf("got %v after Close; want fallback", o)
	}
	r.Pin([]byte("k"), "web-a", time.Minute) // no panic
}

// TestRedisPinErrorsCountOnce: a failed pin adds exactly one to RedisErrors, whether
// Redis answers with an error or cannot be reached.
func TestRedisPinErrorsCountOnce(t *testing.T) {
	s := testredis.Start(t)
	r, _ := newRedisStore(t, s.URL(), Options{Backoff: time.Hour})
	r.Pin([]byte("ok"), "web-a", time.Minute)
	if n := r.Stats().RedisErrors; n != 0 {
		t.Fatalf("a pin that worked: got %d Redis errors; want 0", n)
	}
	// An error reply: OOM once maxmemory is below what Redis uses.
	c := s.Client()
	if err := c.Do(context.Background(), c.B().ConfigSet().ParameterValue().ParameterValue("maxmemory", "1").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	r.Pin([]byte("oom"), "web-a", time.Minute)
	if n := r.Stats().RedisErrors; n != 1 {
		t.Fatalf("a pin refused with OOM: got %d Redis errors; want 1", n)
	}
	// Redis gone.
	s.Kill()
	r.Pin([]byte("down"), "web-a", time.Minute)
	if n := r.Stats().RedisErrors; n != 2 {
		t.Fatalf("a pin with Redis down: got %d Redis errors; want 2 (one more)", n)
	}
}
