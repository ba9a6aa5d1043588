//go:build !race

package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/internal/testredis"
	"go-loadbalancer/ratelimit"
	"go-loadbalancer/sticky"
)

// TestProxiedGETAllocatesNothing checks the hot-path discipline: once warm, a plain GET
// through the proxy costs no allocation anywhere in the process — client, proxy and
// backend together (the count is process-wide), so the proxy's share is zero too.
func TestProxiedGETAllocatesNothing(t *testing.T) {
	s := newInmemorySetup(t, "hello")
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for i := 0; i < 100; i++ { // warm pools and buffers
		get(t, s.proxied, req, resp)
	}
	direct := testing.AllocsPerRun(1000, func() { get(t, s.direct, req, resp) })
	proxied := testing.AllocsPerRun(1000, func() { get(t, s.proxied, req, resp) })
	if proxied > direct {
		t.Fatalf("got %.2f allocs per proxied GET (%.2f for the same GET without the proxy); want no more than without it", proxied, direct)
	}
	if proxied != 0 {
		t.Fatalf("got %.2f allocs per proxied GET; want 0", proxied)
	}
}

// TestStickyHitAllocatesNothing: a GET that carries the cookie of a session — cookie
// parsed and verified, its reference resolved, the store asked whether the session moved
// (the memory table, or rueidis's client cache for Redis, which caches the "no pin" answer
// too), no Set-Cookie — allocates no more than a plain one: nothing, process-wide.
// (AllocsPerRun rounds the average down: the Redis store's shared deadline context, renewed
// every Timeout/4, is a few allocations per 12.5 ms, far below one per request.)
func TestStickyHitAllocatesNothing(t *testing.T) {
	f := func(name string, st sticky.Store, gets func() int) {
		t.Run(name, func(t *testing.T) {
			s := newStickySetup(t, st)
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			startBenchSession(t, s, req, resp)
			for i := 0; i < 100; i++ { // warm pools and buffers
				get(t, s.proxied, req, resp)
			}
			before, getsBefore := st.Stats(), gets()
			if n := testing.AllocsPerRun(1000, func() { get(t, s.proxied, req, resp) }); n != 0 {
				t.Fatalf("got %.2f allocs per sticky-hit GET; want 0", n)
			}
			after := st.Stats()
			if n := after.CacheHits + after.Misses - before.CacheHits - before.Misses; n < 1000 {
				t.Fatalf("got %d answered lookups in 1,001; want every measured lookup answered", n)
			}
			if n := gets() - getsBefore; n > 1 {
				t.Fatalf("got %d Redis GETs for 1,001 requests of one session; want at most 1 (cached)", n)
			}
			if len(resp.Header.PeekCookie("lb_sticky")) != 0 {
				t.Fatalf("sticky hit: got Set-Cookie %q; want none", resp.Header.PeekCookie("lb_sticky"))
			}
		})
	}
	mem, err := sticky.NewMemory(sticky.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f("memory", mem, func() int { return 0 })
	rs := testredis.Start(t)
	// A generous Timeout: on a loaded machine one slow first reply would otherwise count as
	// an outage, and the measured lookups would be fallbacks, not cache hits.
	red, err := sticky.NewRedis(sticky.Options{RedisURL: rs.URL(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(red.Close)
	f("redis", red, func() int { return rs.Calls("get") })
}

// TestRoutedGETAllocatesNothing: traffic policies and geo (a CIDR lookup, header and path
// matches, a region-local pick) add no allocation to a GET.
func TestRoutedGETAllocatesNothing(t *testing.T) {
	s := newInmemorySetupWith(t, "hello", inmemoryOptions{observed: true, extra: `geo: { cidrs: { eu: ["0.0.0.0/0"] } }
routes:
  - match: { path_prefix: /nope, headers: { X-Canary: "true" } }
    pool: web
  - match: { path_prefix: /api, method: GET, regions: [eu] }
    split: [ { pool: web, weight: 3 }, { pool: web, weight: 1 } ]
`})
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for i := 0; i < 100; i++ {
		get(t, s.proxied, req, resp)
	}
	if n := testing.AllocsPerRun(1000, func() { get(t, s.proxied, req, resp) }); n != 0 {
		t.Fatalf("got %.2f allocs per routed GET; want 0", n)
	}
}

// TestNormalisedGETAllocatesNothing: a path that needs its canonical form (dot segments,
// an encoded unreserved character) is rewritten in place — scratch buffer, fasthttp's own
// URI buffers — with no allocation.
func TestNormalisedGETAllocatesNothing(t *testing.T) {
	s := newInmemorySetup(t, "hello")
	s.proxied.DisablePathNormalizing = true // send the path as written
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	do := func() {
		req.SetRequestURI("http://lb.test/api/./v1/../it%65ms?id=42")
		if err := s.proxied.Do(req, resp); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("GET: status %d, err %v", resp.StatusCode(), err)
		}
	}
	for i := 0; i < 100; i++ {
		do()
	}
	if n := testing.AllocsPerRun(1000, do); n != 0 {
		t.Fatalf("got %.2f allocs per GET with a path to normalise; want 0", n)
	}
}

// TestIdentityGETAllocatesNothing: resolving the client's identity from a trusted proxy's
// X-Forwarded-For, rate limiting by it, a geo CIDR lookup of it, and forwarding the chain
// from it allocate nothing.
func TestIdentityGETAllocatesNothing(t *testing.T) {
	s := newInmemorySetupWith(t, "hello", inmemoryOptions{observed: true, limiter: ratelimit.NewLocal(0),
		peer: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 4711},
		extra: `server: { trusted_proxies: [10.0.0.0/8] }
geo: { cidrs: { eu: ["203.0.113.0/24"] } }
rate_limit: { enabled: true, key: ip, rate: 1000000000, burst: 1000000000 }
`})
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.Set("X-Forwarded-For", "198.51.100.1, 203.0.113.5, 10.0.0.9")
	for i := 0; i < 100; i++ {
		get(t, s.proxied, req, resp)
	}
	if n := testing.AllocsPerRun(1000, func() { get(t, s.proxied, req, resp) }); n != 0 {
		t.Fatalf("got %.2f allocs per GET through a trusted proxy; want 0", n)
	}
}

// TestCachedJWTGETAllocatesNothing: a GET whose bearer token was verified before — the
// verification cache answers, the claim header is set, the rate limit keyed by the claim
// applies — allocates nothing.
func TestCachedJWTGETAllocatesNothing(t *testing.T) {
	v, sign := jwtVerifierForAllocs(t)
	s := newInmemorySetupWith(t, "hello", inmemoryOptions{observed: true, auth: v, limiter: ratelimit.NewLocal(0),
		peer:  &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 4711},
		extra: "rate_limit: { enabled: true, key: \"claim:sub\", rate: 1000000000, burst: 1000000000 }\n"})
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.Set("Authorization", sign())
	for i := 0; i < 100; i++ {
		get(t, s.proxied, req, resp)
	}
	if n := testing.AllocsPerRun(1000, func() { get(t, s.proxied, req, resp) }); n != 0 {
		t.Fatalf("got %.2f allocs per GET with a cached token; want 0", n)
	}
}
