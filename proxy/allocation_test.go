//go:build !race

package proxy

import (
	"testing"

	"github.com/valyala/fasthttp"
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
