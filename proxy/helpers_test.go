package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/testtool"
	"go-loadbalancer/state"
	"go-loadbalancer/sticky"
	"go-loadbalancer/tlsconf"
)

// testBackend is a real fasthttp server on a loopback port.
type testBackend struct {
	addr string
	url  string
	hits atomic.Int64
	srv  *fasthttp.Server
}

// startBackend serves h on 127.0.0.1:0 until the test ends. Each request counts a hit.
func startBackend(t testing.TB, h fasthttp.RequestHandler) *testBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &testBackend{addr: ln.Addr().String(), url: "http://" + ln.Addr().String()}
	b.srv = &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			b.hits.Add(1)
			h(ctx)
		},
		StreamRequestBody: true,
		CloseOnShutdown:   true,
	}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(func() { _ = b.srv.Shutdown() })
	return b
}

// named answers with its name in the body and the X-Backend header.
func named(name string) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("X-Backend", name)
		ctx.SetBodyString(name)
	}
}

// deadAddr returns a loopback address nothing listens on (listen, then close).
func deadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// parseConfig parses YAML text the way the binary does.
func parseConfig(t testing.TB, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("cannot parse test config: %v\n%s", err, yaml)
	}
	return cfg
}

// poolConfig is a config with one pool "web" of the given backend URLs (weight 1 each)
// plus extra top-level YAML.
func poolConfig(t testing.TB, extra string, urls ...string) *config.Config {
	t.Helper()
	var sb strings.Builder
	sb.WriteString("pools:\n  - name: web\n    timeouts: { connect: 500ms, response: 2s }\n    backends:\n")
	for _, u := range urls {
		fmt.Fprintf(&sb, "      - url: %q\n", u)
	}
	sb.WriteString(extra)
	return parseConfig(t, sb.String())
}

// testProxy is a running data plane on a loopback port.
type testProxy struct {
	addr    string
	builder *state.Builder
	srv     *Server
	px      *Proxy
}

// proxyOption changes the Options startProxy builds the proxy with.
type proxyOption func(*Options)

// withSticky makes st the proxy's session store (Options.Sticky).
func withSticky(st sticky.Store) proxyOption { return func(o *Options) { o.Sticky = st } }

// startProxy runs a proxy for cfg on a loopback port until the test ends; with cfg.TLS set
// the listener serves TLS, as main's does.
func startProxy(t testing.TB, cfg *config.Config, opts ...proxyOption) *testProxy {
	t.Helper()
	ts := NewTables(nil, nil)
	b := state.NewBuilder(nil, ts.Hooks())
	if _, err := b.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	o := Options{Tables: ts, Log: zerolog.Nop()}
	for _, opt := range opts {
		opt(&o)
	}
	px := New(o)
	srv := px.NewServer(cfg.Server, zerolog.Nop())
	tc, _, err := tlsconf.Front(cfg.TLS)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = Listener(srv.Listener(ln)) // as main's
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	ln = HeadScanner(ln)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return &testProxy{addr: ln.Addr().String(), builder: b, srv: srv, px: px}
}

// client returns a fasthttp client for the proxy with generous limits.
func (p *testProxy) client() *fasthttp.HostClient {
	return &fasthttp.HostClient{Addr: p.addr, MaxConns: 512, ReadTimeout: 10 * time.Second, MaxIdemponentCallAttempts: 1}
}

// get sends a GET through the proxy with extra headers and returns the response.
func (p *testProxy) get(t testing.TB, path string, headers ...string) *fasthttp.Response {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("http://" + p.addr + path)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp := &fasthttp.Response{}
	if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp
}

// raw writes a raw request on a fresh connection and returns everything read back. It
// reads one response per request it can frame in request (1xx interim answers aside), and
// then up to the close when an answer said Connection: close, a 101 switched protocols,
// a response could not be parsed or bytes were left in request that did not frame as a
// request (the proxy refuses those and closes). closed reports whether the proxy closed
// the connection. A 10 s deadline only bounds a proxy that neither answers nor closes.
func (p *testProxy) raw(t testing.TB, request string) (resp string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var sb strings.Builder
	br := bufio.NewReader(io.TeeReader(c, &sb))
	methods, unframed := requestMethods(request)
	toClose := func() (string, bool) {
		_, err := io.Copy(io.Discard, br)
		ne, ok := err.(net.Error)
		return sb.String(), !(ok && ne.Timeout())
	}
	for _, m := range methods {
		for {
			r, err := http.ReadResponse(br, &http.Request{Method: m})
			if err != nil {
				return toClose()
			}
			if r.StatusCode == http.StatusSwitchingProtocols {
				return sb.String(), false // the rest is the tunnel's
			}
			if _, err := io.Copy(io.Discard, r.Body); err != nil || r.Close {
				return toClose()
			}
			if r.StatusCode >= 200 {
				break
			}
		}
	}
	if unframed {
		return toClose()
	}
	return sb.String(), false
}

// requestMethods frames request as a sequence of HTTP/1.1 requests and returns their
// methods; unframed reports bytes left over that are not a complete request.
func requestMethods(request string) (methods []string, unframed bool) {
	br := bufio.NewReader(strings.NewReader(request))
	for {
		if _, err := br.Peek(1); err != nil {
			return methods, false
		}
		r, err := http.ReadRequest(br)
		if err != nil {
			return methods, true
		}
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return methods, true
		}
		methods = append(methods, r.Method)
	}
}

// TestMain runs up to 8 tests at once (testtool.Main): the parallel ones wait on loopback
// sockets and timers. The allocation tests and TestStreamingBodiesUseBoundedMemory are not
// parallel: allocations and the heap are counted for the whole process.
func TestMain(m *testing.M) { os.Exit(testtool.Main(m, 8)) }
