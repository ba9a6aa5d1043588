package ratelimit

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"go-loadbalancer/internal/testredis"
)

func TestLocalGCRA(t *testing.T) {
	t.Parallel()
	l := NewLocal(1024)
	lim := NewLimit(10, 5) // 10/s, bursts of 5
	now := int64(1_000_000_000)
	for i := range 5 {
		if ok, _ := l.Allow([]byte("a"), now, lim); !ok {
			t.Fatalf("request %d of a burst of 5 refused", i+1)
		}
	}
	ok, wait := l.Allow([]byte("a"), now, lim)
	if ok || wait != 100*time.Millisecond {
		t.Fatalf("6th request at once: got ok=%v wait=%v; want refused, retry after 100ms", ok, wait)
	}
	if ok, _ := l.Allow([]byte("b"), now, lim); !ok {
		t.Fatal("another key was limited by a's burst")
	}
	// After one interval exactly one more passes.
	now += int64(100 * time.Millisecond)
	if ok, _ := l.Allow([]byte("a"), now, lim); !ok {
		t.Fatal("refused after one interval")
	}
	if ok, _ := l.Allow([]byte("a"), now, lim); ok {
		t.Fatal("two passed after one interval")
	}
	// Over a long run the rate is exactly 10/s: 100 more over 10 s of steady arrivals.
	passed := 0
	for i := range 1000 {
		if ok, _ := l.Allow([]byte("a"), now+int64(i)*int64(10*time.Millisecond), lim); ok {
			passed++
		}
	}
	if passed < 99 || passed > 101 { // ±1 at the edges of the 10 s span
		t.Fatalf("got %d passed over 10 s at 100 req/s; want 100 (10/s)", passed)
	}
}

// TestLoosenedLimit: a client blocked under a strict limit is not held to its debt once
// a reload brings in a looser one; under the new limit it starts with its burst used up.
func TestLoosenedLimit(t *testing.T) {
	t.Parallel()
	type limiter interface {
		Allow(key []byte, now int64, l Limit) (bool, time.Duration)
	}
	f := func(name string, l limiter) {
		t.Helper()
		strict, loose := NewLimit(0.001, 2), NewLimit(10, 3) // one per 1000 s; 10/s
		now := time.Now().UnixNano()
		for i := range 3 {
			if ok, _ := l.Allow([]byte("c"), now, strict); ok != (i < 2) {
				t.Fatalf("%s: strict limit, request %d: got ok=%v", name, i+1, ok)
			}
		}
		if ok, wait := l.Allow([]byte("c"), now, loose); !ok {
			t.Fatalf("%s: loosened limit refused (retry after %v); want it to pass", name, wait)
		}
		if ok, wait := l.Allow([]byte("c"), now, loose); ok || wait > 100*time.Millisecond {
			t.Fatalf("%s: got ok=%v wait=%v; want refused for at most one interval (burst used up)", name, ok, wait)
		}
	}
	f("local", NewLocal(1024))
	f("redis", newRedis(t, testredis.Start(t).URL()))
}

func TestLocalConcurrentBurstIsExact(t *testing.T) {
	t.Parallel()
	l := NewLocal(0)
	lim := NewLimit(1, 50)
	now := time.Now().UnixNano()
	var passed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if ok, _ := l.Allow([]byte("10.0.0.1"), now, lim); ok {
					passed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := passed.Load(); n != 50 {
		t.Fatalf("got %d of 800 concurrent requests through a burst of 50; want exactly 50", n)
	}
}

func TestLocalAllocatesNothing(t *testing.T) {
	l := NewLocal(0)
	lim := NewLimit(1e6, 1000)
	key := []byte("192.0.2.1")
	if n := testing.AllocsPerRun(1000, func() { l.Allow(key, time.Now().UnixNano(), lim) }); n != 0 {
		t.Fatalf("got %.1f allocs per Allow; want 0", n)
	}
}

func TestRedisSharedAcrossInstances(t *testing.T) {
	t.Parallel()
	rs := testredis.Start(t)
	a := newRedis(t, rs.URL())
	b := newRedis(t, rs.URL())
	lim := NewLimit(1, 4)
	now := time.Now().UnixNano()
	passed := 0
	for i := range 10 {
		l := a
		if i%2 == 1 {
			l = b
		}
		if ok, _ := l.Allow([]byte("client"), now, lim); ok {
			passed++
		}
	}
	if passed != 4 {
		t.Fatalf("got %d of 10 requests through two instances with a shared burst of 4; want 4", passed)
	}
	if ok, wait := a.Allow([]byte("client"), now, lim); ok || wait <= 0 || wait > time.Second {
		t.Fatalf("got ok=%v wait=%v; want refused with a wait up to 1 s", ok, wait)
	}
	if a.Errors() != 0 || b.Errors() != 0 {
		t.Fatalf("got %d and %d Redis errors; want none", a.Errors(), b.Errors())
	}
}

func TestRedisOutageFallsBackToLocal(t *testing.T) {
	t.Parallel()
	rs := testredis.Start(t)
	r := newRedis(t, rs.URL())
	lim := NewLimit(1000, 10)
	if ok, _ := r.Allow([]byte("k"), time.Now().UnixNano(), lim); !ok {
		t.Fatal("first request refused")
	}
	rs.Kill()
	// Every call during the outage is answered by the local limiter: the first one tries
	// Redis and fails, later ones (all at one instant, inside the back-off) do not try.
	now := time.Now().UnixNano()
	for range 200 {
		r.Allow([]byte("k"), now, lim)
	}
	if n := r.Errors(); n != 1 {
		t.Fatalf("got %d failed Redis calls for 200 calls in the back-off; want 1 (the first), the rest answered locally", n)
	}
	// The local fallback still limits.
	passed := 0
	now = time.Now().UnixNano()
	for range 50 {
		if ok, _ := r.Allow([]byte("fresh"), now, lim); ok {
			passed++
		}
	}
	if passed != 10 {
		t.Fatalf("got %d of 50 through the local fallback with a burst of 10; want 10", passed)
	}
	// Redis returns: after the back-off, calls go to Redis again.
	rs.Start()
	deadline := time.Now().Add(10 * time.Second)
	for r.downAt.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the limiter never went back to Redis")
		}
		r.Allow([]byte("k2"), time.Now().UnixNano(), lim)
		time.Sleep(50 * time.Millisecond)
	}
}

func newRedis(t *testing.T, url string) *Redis {
	t.Helper()
	r, err := NewRedis(RedisOptions{URL: url, Timeout: time.Second, Backoff: 200 * time.Millisecond, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// TestLocalSlotsSeeded: which keys share a slot differs from limiter to limiter (a random
// seed per process), so a pair colliding in one — as an attacker could compute offline
// against an unseeded hash, to get a victim limited by their own traffic — does not collide
// in the next ones.
func TestLocalSlotsSeeded(t *testing.T) {
	t.Parallel()
	a := NewLocal(1024)
	victim := []byte("203.0.113.7")
	var attacker []byte
	for i := 0; attacker == nil; i++ {
		k := []byte("198.51.100." + strconv.Itoa(i))
		if a.index(k) == a.index(victim) {
			attacker = k
		}
	}
	collisions := 0
	for range 20 {
		b := NewLocal(1024)
		if b.index(attacker) == b.index(victim) {
			collisions++
		}
	}
	if collisions > 2 { // 1 in 1024 each by chance
		t.Fatalf("keys colliding in one limiter: got them colliding in %d of 20 other limiters; want about none", collisions)
	}
}

// TestRedisURLNotPrinted: a bad Redis URL is reported without its password (the whole URL
// was printed before).
func TestRedisURLNotPrinted(t *testing.T) {
	t.Parallel()
	_, err := NewRedis(RedisOptions{URL: "redis://u:hunter2secret@h:port/0"})
	if err == nil || strings.Contains(err.Error(), "hunter2secret") {
		t.Fatalf("got %v; want an error without the password", err)
	}
}
