//go:build !race

package proxy

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestProxiedGETOverTCPAllocatesNothing: over real loopback sockets a reused upstream
// connection is checked before each request (the idle peek), and that check allocates
// nothing either — process-wide, client and backend included.
func TestProxiedGETOverTCPAllocatesNothing(t *testing.T) {
	body := []byte("hello")
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.Response.SetBodyRaw(body) })
	px := startProxy(t, poolConfig(t, "", be.url))
	c := px.client()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for i := 0; i < 100; i++ {
		get(t, c, req, resp)
	}
	if n := testing.AllocsPerRun(1000, func() { get(t, c, req, resp) }); n != 0 {
		t.Fatalf("got %.2f allocs per proxied GET over TCP; want 0", n)
	}
}
