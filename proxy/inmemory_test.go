package proxy

import (
	"io"
	"net"
	"testing"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"go-loadbalancer/auth"
	"go-loadbalancer/internal/logring"
	"go-loadbalancer/metrics"
	"go-loadbalancer/state"
	"go-loadbalancer/sticky"
	"go-loadbalancer/tracing"
)

// inmemorySetup is a backend and, in front of it, the proxy, each on an in-memory listener,
// plus a client for each: the proxy path and its no-proxy twin (the same request straight to
// the backend) for benchmarks and allocation checks.
type inmemorySetup struct {
	direct, proxied *fasthttp.HostClient
}

func newInmemorySetup(tb testing.TB, backendBody string) *inmemorySetup {
	tb.Helper()
	return newInmemorySetupObserved(tb, backendBody, true)
}

// newInmemorySetupObserved is newInmemorySetup with the production defaults (metrics and
// the access log, to io.Discard) on or off.
func newInmemorySetupObserved(tb testing.TB, backendBody string, observed bool) *inmemorySetup {
	tb.Helper()
	return newInmemorySetupWith(tb, backendBody, inmemoryOptions{observed: observed})
}

// inmemoryOptions vary newInmemorySetupWith's proxy.
type inmemoryOptions struct {
	observed bool            // metrics and the access log on
	extra    string          // more top-level YAML for the config (say a sticky: section)
	sticky   sticky.Store    // Options.Sticky; nil: none
	tracer   *tracing.Tracer // Options.Tracer; nil: tracing off
	limiter  Limiter         // Options.Limiter; nil: none
	auth     *auth.Verifier  // Options.Auth; nil: none
	peer     net.Addr        // the proxy's clients' address; nil: the listener's (no IP)
}

func newInmemorySetupWith(tb testing.TB, backendBody string, opt inmemoryOptions) *inmemorySetup {
	tb.Helper()
	observed := opt.observed
	beLn := fasthttputil.NewInmemoryListener()
	body := []byte(backendBody)
	be := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.Response.SetBodyRaw(body) }}
	go func() { _ = be.Serve(beLn) }()

	cfg := poolConfig(tb, opt.extra, "http://backend.invalid:80")
	dial := func(string) (net.Conn, error) { return beLn.Dial() }
	store := new(state.Store)
	opts := Options{Log: zerolog.Nop(), Sticky: opt.sticky, Tracer: opt.tracer, Limiter: opt.limiter, Auth: opt.auth}
	var reg *metrics.Registry
	if observed {
		reg = metrics.New(metrics.Options{Store: store})
		al := NewAccessLog(io.Discard, logring.Options{})
		tb.Cleanup(func() { _ = al.Close() })
		opts.AccessLog = al
	}
	opts.Tables = NewTables(dial, reg)
	b := state.NewBuilder(store, opts.Tables.Hooks())
	if _, err := b.Apply(cfg); err != nil {
		tb.Fatal(err)
	}
	pxLn := fasthttputil.NewInmemoryListener()
	px := New(opts)
	srv := px.NewServer(cfg.Server, zerolog.Nop())
	go func() { _ = srv.Serve(pxLn) }()
	tb.Cleanup(func() {
		_ = srv.Shutdown()
		_ = be.Shutdown()
	})
	client := func(ln *fasthttputil.InmemoryListener, peer net.Addr) *fasthttp.HostClient {
		return &fasthttp.HostClient{Addr: "lb.test", Dial: func(string) (net.Conn, error) { return ln.DialWithLocalAddr(peer) }, MaxConns: 1024}
	}
	return &inmemorySetup{direct: client(beLn, nil), proxied: client(pxLn, opt.peer)}
}

// get sends one GET with c, reusing req and resp, and fails on anything but 200.
func get(tb testing.TB, c *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) {
	req.SetRequestURI("http://lb.test/api/items?id=42")
	if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
		tb.Fatalf("GET: status %d, err %v", resp.StatusCode(), err)
	}
}

// benchGETs reports allocations and runs get through c from parallel goroutines, each
// request with the header fields given (name, value pairs).
func benchGETs(b *testing.B, c *fasthttp.HostClient, header ...string) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		for pb.Next() {
			get(b, c, req, resp)
		}
	})
}
