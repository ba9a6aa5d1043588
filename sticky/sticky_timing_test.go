package sticky

import (
	"fmt"
	"testing"
	"time"

	"go-loadbalancer/internal/testredis"
)

func BenchmarkMemoryLookup(b *testing.B) {
	m := newMemory(b, Options{})
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = AppendSessionID(nil)
		m.Pin(keys[i], fmt.Sprintf("web-127.0.0.1_%d", 8081+i%3), time.Hour)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, o := m.Lookup(keys[i&1023], time.Now().UnixNano()); o != CacheHit {
				b.Fatalf("got %v", o)
			}
			i++
		}
	})
}

func BenchmarkRedisLookupCacheHit(b *testing.B) {
	s := testredis.Start(b)
	r, _ := newRedisStore(b, s.URL(), Options{})
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = AppendSessionID(nil)
		r.Pin(keys[i], fmt.Sprintf("web-127.0.0.1_%d", 8081+i%3), time.Hour)
		r.Lookup(keys[i], time.Now().UnixNano())
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, o := r.Lookup(keys[i&1023], time.Now().UnixNano()); o != CacheHit {
				b.Fatalf("got %v", o)
			}
			i++
		}
	})
}

// BenchmarkRedisGETRoundTrip is the cost the client-side cache saves: one plain GET round
// trip to the local redis-server, through the same rueidis client.
func BenchmarkRedisGETRoundTrip(b *testing.B) {
	s := testredis.Start(b)
	r, _ := newRedisStore(b, s.URL(), Options{})
	c := r.client
	key := r.sessPrefix + "absent"
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := c.Do(b.Context(), c.B().Get().Key(key).Build()).Error(); err == nil {
			b.Fatal("absent key found")
		}
	}
}

func BenchmarkCookieParseVerify(b *testing.B) {
	s := NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	value := s.AppendCookieValue(nil, AppendSessionID(nil), s.Ref(0, "web-127.0.0.1_8081"))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, ok := ParseCookie(value)
			if !ok || !s.Verify(c) {
				b.Fatal("does not verify")
			}
		}
	})
}

func BenchmarkCookieParse(b *testing.B) {
	s := NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	value := s.AppendCookieValue(nil, AppendSessionID(nil), s.Ref(0, "web-127.0.0.1_8081"))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := ParseCookie(value); !ok {
			b.Fatal("does not parse")
		}
	}
}

func BenchmarkSetCookie(b *testing.B) {
	s := NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	spec := CookieSpec{Name: "lb_sticky", MaxAge: 30 * time.Minute}
	buf := make([]byte, 0, 256)
	ref := s.Ref(0, "web-127.0.0.1_8081")
	b.ReportAllocs()
	for b.Loop() {
		buf = spec.AppendSetCookie(buf[:0], s, AppendSessionID(buf[200:200]), ref)
	}
}

func BenchmarkRendezvous(b *testing.B) {
	bs := backends("web-127.0.0.1_8081", "web-127.0.0.1_8082", "web-127.0.0.1_8083")
	key := []byte("user-1234567890")
	b.ReportAllocs()
	for b.Loop() {
		Rendezvous(key, bs, func(b fakeBackend) string { return b.id }, func(i int) bool { return bs[i].healthy })
	}
}
