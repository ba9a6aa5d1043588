package proxy

import (
	"io"
	"testing"
	"time"

	"go-loadbalancer/internal/logring"
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
