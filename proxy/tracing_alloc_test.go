//go:build !race

package proxy

import (
	"testing"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/internal/otlptest"
)

// TestUntracedGETAllocatesNothing: with tracing on, a request that is not traced — its
// client's traceparent says "not sampled", or it has none and sample_ratio is 0 — costs
// no allocation, process-wide.
func TestUntracedGETAllocatesNothing(t *testing.T) {
	col := otlptest.Start(t)
	f := func(name string, ratio float64, traceparent string) {
		t.Run(name, func(t *testing.T) {
			s := newInmemorySetupWith(t, "hello", inmemoryOptions{observed: true, tracer: startTracer(t, col.URL(), ratio)})
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			if traceparent != "" {
				req.Header.Set("traceparent", traceparent)
			}
			for i := 0; i < 100; i++ {
				get(t, s.proxied, req, resp)
			}
			if n := testing.AllocsPerRun(1000, func() { get(t, s.proxied, req, resp) }); n != 0 {
				t.Fatalf("got %.2f allocs per untraced GET; want 0", n)
			}
		})
	}
	f("unsampled parent", 1, clientNotSamp)
	f("no parent, sample_ratio 0", 0, "")
	if n := len(col.Spans()); n != 0 {
		t.Fatalf("collector got %d spans; want none", n)
	}
}
