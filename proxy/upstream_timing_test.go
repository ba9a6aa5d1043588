package proxy

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkGETOverTCP is BenchmarkGET over real loopback sockets (client, proxy and
// backend in this process): the path on which the idle check of a pooled upstream
// connection runs (in-memory pipes have no socket to look at).
func BenchmarkGETOverTCP(b *testing.B) {
	body := []byte("hello")
	be := startBackend(b, func(ctx *fasthttp.RequestCtx) { ctx.Response.SetBodyRaw(body) })
	px := startProxy(b, poolConfig(b, "", be.url))
	benchGETs(b, px.client())
}

// BenchmarkIdleCheck is the check itself on an idle loopback connection: what each reuse
// of a pooled upstream connection costs.
func BenchmarkIdleCheck(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			_, _ = c.Read(make([]byte, 1)) // until the benchmark closes its end
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	uc := newUpConn(c)
	b.ReportAllocs()
	for b.Loop() {
		if !uc.idleClean(uc) {
			b.Fatal("an idle healthy connection looked unusable")
		}
	}
}
