package proxy

import (
	"strconv"
	"sync/atomic"
	"testing"

	"go-loadbalancer/ratelimit"
)

func withLimiter(l Limiter, refused *atomic.Int64) proxyOption {
	return func(o *Options) {
		o.Limiter = l
		o.OnRateLimited = func() { refused.Add(1) }
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	be := startBackend(t, named("ok"))
	var refused atomic.Int64
	px := startProxy(t, poolConfig(t, "rate_limit: { enabled: true, rate: 0.5, burst: 3 }\n", be.url),
		withLimiter(ratelimit.NewLocal(0), &refused))
	for i := range 3 {
		if code := px.get(t, "/").StatusCode(); code != 200 {
			t.Fatalf("request %d of the burst: got %d; want 200", i+1, code)
		}
	}
	resp := px.get(t, "/")
	if resp.StatusCode() != 429 || string(resp.Body()) != "{\"error\":\"rate limited\"}\n" {
		t.Fatalf("got %d %q; want 429 rate limited", resp.StatusCode(), resp.Body())
	}
	// 0.5/s: the next request is allowed in 2 s.
	if ra, _ := strconv.Atoi(string(resp.Header.Peek("Retry-After"))); ra != 2 {
		t.Fatalf("got Retry-After %q; want 2", resp.Header.Peek("Retry-After"))
	}
	if be.hits.Load() != 3 || refused.Load() != 1 {
		t.Fatalf("backend got %d requests, %d refused; want 3 and 1", be.hits.Load(), refused.Load())
	}
	for _, b := range px.builder.Store.Load().Backends() {
		if b.Stats.Failures.Load() != 0 {
			t.Fatal("a refusal of the rate limiter counted against the backend")
		}
	}
}

func TestRateLimitByHeader(t *testing.T) {
	t.Parallel()
	be := startBackend(t, named("ok"))
	var refused atomic.Int64
	px := startProxy(t, poolConfig(t, "rate_limit: { enabled: true, key: \"header:X-Api-Key\", rate: 1, burst: 2 }\n", be.url),
		withLimiter(ratelimit.NewLocal(0), &refused))
	f := func(key string, want int) {
		t.Helper()
		if code := px.get(t, "/", "X-Api-Key", key).StatusCode(); code != want {
			t.Fatalf("key %q: got %d; want %d", key, code, want)
		}
	}
	f("alice", 200)
	f("alice", 200)
	f("alice", 429)
	f("bob", 200) // another key has its own budget
}
