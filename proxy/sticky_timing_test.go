package proxy

import (
	"testing"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/internal/testredis"
	"go-loadbalancer/sticky"
)

// BenchmarkStickyGET is the sticky-hit request path against the plain one, over in-memory
// listeners with the production defaults (metrics, access log): every request carries the
// cookie of a session pinned to the backend, so the proxy parses the cookie, looks the
// session up and sends no Set-Cookie. Each goroutine has its own session. With the Redis
// store (a real redis-server) a hit is served from rueidis's client cache: no round trip.
//
//	go test -run '^$' -bench BenchmarkStickyGET -benchmem ./proxy/
func BenchmarkStickyGET(b *testing.B) {
	b.Run("plain", func(b *testing.B) {
		benchSticky(b, newInmemorySetup(b, "hello"), false)
	})
	b.Run("sticky-memory", func(b *testing.B) {
		st, err := sticky.NewMemory(sticky.Options{})
		if err != nil {
			b.Fatal(err)
		}
		benchSticky(b, newStickySetup(b, st), true)
	})
	b.Run("sticky-redis", func(b *testing.B) {
		rs := testredis.Start(b)
		st, err := sticky.NewRedis(sticky.Options{RedisURL: rs.URL()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(st.Close)
		benchSticky(b, newStickySetup(b, st), true)
		s := st.Stats()
		if s.Fallbacks != 0 || s.Misses != 0 {
			b.Fatalf("redis store: got %d fallbacks, %d misses; want 0, 0", s.Fallbacks, s.Misses)
		}
		// One round trip per session (its first read); every other lookup is a cache hit.
		b.ReportMetric(float64(s.RedisHits)/float64(b.N), "redis-rt/op")
	})
}

func newStickySetup(tb testing.TB, st sticky.Store) *inmemorySetup {
	return newInmemorySetupWith(tb, "hello", inmemoryOptions{observed: true, extra: "sticky: { enabled: true }\n", sticky: st})
}

// benchSticky runs GETs through the proxy from parallel goroutines; with withSession each
// first starts a session and then sends its cookie on every request.
func benchSticky(b *testing.B, s *inmemorySetup, withSession bool) {
	b.ReportAllocs()
	b.ResetTimer() // not the setup: a memory store's table alone is tens of MB
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		if withSession {
			startBenchSession(b, s, req, resp)
		}
		for pb.Next() {
			get(b, s.proxied, req, resp)
		}
		if withSession && len(resp.Header.PeekCookie("lb_sticky")) != 0 {
			b.Fatalf("sticky hit: got Set-Cookie %q; want none", resp.Header.PeekCookie("lb_sticky"))
		}
	})
}

// startBenchSession sends one GET without a cookie and puts the cookie it sets on req.
func startBenchSession(tb testing.TB, s *inmemorySetup, req *fasthttp.Request, resp *fasthttp.Response) {
	get(tb, s.proxied, req, resp)
	var v []byte
	resp.Header.VisitAllCookie(func(k, sc []byte) {
		if string(k) != "lb_sticky" {
			return
		}
		c := fasthttp.AcquireCookie()
		defer fasthttp.ReleaseCookie(c)
		if err := c.ParseBytes(sc); err == nil {
			v = append(v[:0], c.Value()...)
		}
	})
	if len(v) == 0 {
		tb.Fatalf("first response: got no lb_sticky cookie")
	}
	req.Header.SetCookieBytesKV([]byte("lb_sticky"), v)
	get(tb, s.proxied, req, resp) // warm: the first read of the pin (a round trip with Redis)
}
