package proxy

import (
	"io"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/internal/logring"
	"go-loadbalancer/state"
)

// BenchmarkGETObserved measures what metrics and the access log add to a proxied GET:
// "bare" has neither, "observed" both (the production default).
func BenchmarkGETObserved(b *testing.B) {
	for _, bc := range []struct {
		name     string
		observed bool
	}{{"bare", false}, {"observed", true}} {
		b.Run(bc.name, func(b *testing.B) {
			s := newInmemorySetupObserved(b, "hello", bc.observed)
			benchGETs(b, s.proxied)
		})
	}
}

// BenchmarkAccessLogLine is the handler's share of one access log line: format and queue.
func BenchmarkAccessLogLine(b *testing.B) {
	al := NewAccessLog(io.Discard, logring.Options{})
	defer al.Close()
	ctx := testCtx("GET", "/api/items?id=42")
	ctx.Request.Header.Set("X-Request-Id", "0af7651916cd43dd8448eb211c80319c")
	ctx.Response.SetBodyString("hello")
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		al.log(ctx, start, time.Now(), logQueryRedact, nil)
	}
}

// BenchmarkAppendAccess formats one access-log line (no ring: every line is formatted,
// none dropped) for a browser-like request as forwarded, answered by a backend.
func BenchmarkAppendAccess(b *testing.B) {
	ctx := benchAccessCtx()
	start := time.Now()
	now := start.Add(1412 * time.Microsecond)
	client := clientAddr(ctx)
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendAccess(buf[:0], ctx, client, start, now, logQueryRedact)
	}
	b.SetBytes(int64(len(buf)))
}

// benchAccessCtx is a request as go-loadbalancer forwards it (X-Forwarded-*, X-Request-Id
// and a traceparent set), answered with 512 bytes by a backend on the second try.
func benchAccessCtx() *fasthttp.RequestCtx {
	ctx := testCtx("GET", "/api/items?id=42&page=2")
	h := &ctx.Request.Header
	h.SetHost("shop.example")
	h.SetUserAgent("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
	h.SetReferer("https://shop.example/catalogue?page=1")
	h.Set("Accept", "application/json")
	h.Set("X-Forwarded-For", "10.0.0.7")
	h.Set("X-Forwarded-Proto", "https")
	h.Set("X-Forwarded-Host", "shop.example")
	h.Set("X-Request-Id", "0af7651916cd43dd8448eb211c80319c")
	h.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	ctx.Response.SetBody(make([]byte, 512))
	r := &tryRecord{backend: &state.Backend{ID: "web-127.0.0.1_8081", Addr: "127.0.0.1:8081"}, tries: 2, upstream: 318_000, cause: -1}
	ctx.SetUserValue(servedBy{}, r)
	return ctx
}
