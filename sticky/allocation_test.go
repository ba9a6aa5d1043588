//go:build !race

package sticky

import (
	"testing"
	"time"

	"go-loadbalancer/internal/testredis"
)

func checkNoAllocs(t *testing.T, what string, f func()) {
	t.Helper()
	f() // warm pools
	if n := testing.AllocsPerRun(1000, f); n != 0 {
		t.Fatalf("got %.2f allocs per %s; want 0", n, what)
	}
}

func TestMemoryLookupAllocatesNothing(t *testing.T) {
	m := newMemory(t, Options{})
	key := []byte("AAAAAAAAAAAAAAAAAAAAAA")
	m.Pin(key, "web-127.0.0.1_8081", time.Minute)
	miss := []byte("BBBBBBBBBBBBBBBBBBBBBB")
	checkNoAllocs(t, "memory Lookup hit", func() {
		if _, o := m.Lookup(key, time.Now().UnixNano()); o != CacheHit {
			t.Fatalf("got %v; want cache_hit", o)
		}
	})
	checkNoAllocs(t, "memory Lookup miss", func() { m.Lookup(miss, time.Now().UnixNano()) })
}

func TestCookieAllocatesNothing(t *testing.T) {
	s := NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	spec := CookieSpec{Name: "lb_sticky", MaxAge: 30 * time.Minute, Secure: true}
	buf := make([]byte, 0, 256)
	sid := AppendSessionID(nil)
	ref := s.Ref(0, "web-127.0.0.1_8081")
	value := s.AppendCookieValue(nil, sid, ref)
	checkNoAllocs(t, "ParseCookie+Verify", func() {
		c, ok := ParseCookie(value)
		if !ok || !s.Verify(c) {
			t.Fatal("cookie does not verify")
		}
	})
	checkNoAllocs(t, "AppendSessionID", func() { buf = AppendSessionID(buf[:0]) })
	checkNoAllocs(t, "AppendCookieValue", func() { buf = s.AppendCookieValue(buf[:0], sid, ref) })
	checkNoAllocs(t, "AppendSetCookie", func() { buf = spec.AppendSetCookie(buf[:0], s, sid, ref) })
}

func TestRendezvousAllocatesNothing(t *testing.T) {
	bs := backends("web-127.0.0.1_8081", "web-127.0.0.1_8082", "web-127.0.0.1_8083")
	key := []byte("user-42")
	checkNoAllocs(t, "Rendezvous", func() {
		if Rendezvous(key, bs, func(b fakeBackend) string { return b.id }, func(i int) bool { return bs[i].healthy }) < 0 {
			t.Fatal("no pick")
		}
	})
}

// TestRedisCacheHitAllocatesNothing: a Lookup served by rueidis's client-side cache allocates
// nothing (the Redis key string is interned; the timeout context is shared). A new context
// is made once per Timeout/4 at most, amortised to 0 per call.
func TestRedisCacheHitAllocatesNothing(t *testing.T) {
	s := testredis.Start(t)
	r, _ := newRedisStore(t, s.URL(), Options{})
	key := []byte("AAAAAAAAAAAAAAAAAAAAAA")
	r.Pin(key, "web-127.0.0.1_8081", time.Minute)
	r.Lookup(key, time.Now().UnixNano())
	checkNoAllocs(t, "Redis Lookup cache hit", func() {
		if _, o := r.Lookup(key, time.Now().UnixNano()); o != CacheHit {
			t.Fatalf("got outcome %v; want cache_hit", o)
		}
	})
}

// TestRedisFallbackAllocatesNothing: while Redis is down a Lookup is one atomic load.
func TestRedisFallbackAllocatesNothing(t *testing.T) {
	s := testredis.New(t)
	r, _ := newRedisStore(t, s.URL(), Options{})
	checkNoAllocs(t, "Redis Lookup fallback", func() {
		if _, o := r.Lookup([]byte("k"), time.Now().UnixNano()); o != Fallback {
			t.Fatalf("got outcome %v; want fallback", o)
		}
	})
}
