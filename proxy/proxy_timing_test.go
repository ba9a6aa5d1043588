package proxy

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkGET compares a plain GET through the proxy with its no-proxy twin (the same
// client talking to the same backend directly), all over in-memory listeners. The
// difference is the proxy's cost per request.
func BenchmarkGET(b *testing.B) {
	s := newInmemorySetup(b, "hello")
	for _, bc := range []struct {
		name string
		c    *fasthttp.HostClient
	}{{"direct", s.direct}, {"proxied", s.proxied}} {
		b.Run(bc.name, func(b *testing.B) {
			benchGETs(b, bc.c)
		})
	}
}

// BenchmarkScanRequestHeaders is the per-request framing and hop-by-hop scan alone.
func BenchmarkScanRequestHeaders(b *testing.B) {
	raw := []byte("Host: shop.example\r\nUser-Agent: wrk\r\nAccept: */*\r\nAccept-Encoding: gzip\r\n" +
		"X-Request-Id: 0af7651916cd43dd8448eb211c80319c\r\nCookie: a=b\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if scanRequestHeaders(raw, 100)&hdrBad != 0 {
			b.Fatal("bad")
		}
	}
}

// BenchmarkCanonicalize is the per-request target and Host check: a path already canonical
// (the common case: checked, not rewritten) and one that is rewritten.
func BenchmarkCanonicalize(b *testing.B) {
	for _, target := range []string{"/api/items?id=42", "/api/./v1/../it%65ms?id=42"} {
		b.Run(target, func(b *testing.B) {
			var req fasthttp.Request
			req.Header.SetHost("shop.example")
			b.ReportAllocs()
			for b.Loop() {
				req.Header.SetRequestURI(target)
				if canonicalize(&req, 0) != nil {
					b.Fatal("refused")
				}
			}
		})
	}
}
