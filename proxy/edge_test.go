package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/logbuf"
	"go-loadbalancer/internal/testtool"
)

func edgeServerConfig() config.Server {
	return config.Server{ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second,
		MaxHeaderBytes: 16384, MaxBodyBytes: 1 << 20}
}

// serveEdge runs newServer(h, s) on a loopback port and returns the server and its address.
func serveEdge(t *testing.T, h fasthttp.RequestHandler, s config.Server, log zerolog.Logger) (*Server, string) {
	t.Helper()
	return serveEdgeServer(t, newServer(h, s, log))
}

// serveEdgeServer serves srv on a loopback port as main does, until the test ends.
func serveEdgeServer(t *testing.T, srv *Server) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(srv.Listener(ln)); close(done) }()
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	return srv, ln.Addr().String()
}

// rawGet sends one GET on c and returns the response.
func rawGet(t *testing.T, c net.Conn, br *bufio.Reader, path string) *http.Response {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestServerContainsPanic: a handler panic answers 500 with a JSON body and closes that
// connection; it is counted, its stack logged once a minute at most; the server goes on
// serving (fasthttp alone would let the panic end the process).
func TestServerContainsPanic(t *testing.T) {
	t.Parallel()
	var logs logbuf.Buffer
	srv, addr := serveEdge(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/boom" {
			var m map[string]int
			m["x"] = 1 // a nil map write: a runtime panic like a real bug's
		}
		ctx.SetBodyString("ok")
	}, edgeServerConfig(), zerolog.New(&logs))

	for i := range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp := rawGet(t, c, br, "/boom")
		if resp.StatusCode != 500 || !resp.Close {
			t.Fatalf("panic %d: got status %d, close %v; want 500 and Connection: close", i, resp.StatusCode, resp.Close)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("panic %d: connection still open after the 500 (read: %v)", i, err)
		}
		c.Close()
	}
	if n := srv.Stats.Panics.Load(); n != 3 {
		t.Fatalf("got %d panics counted; want 3", n)
	}
	if n := logs.Count(`"stack":`); n != 1 {
		t.Fatalf("got %d stacks logged for 3 panics within a minute; want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "assignment to entry in nil map") {
		t.Fatalf("the log does not name the panic:\n%s", logs.String())
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if resp := rawGet(t, c, bufio.NewReader(c), "/"); resp.StatusCode != 200 {
		t.Fatalf("after the panics: got %d; want 200", resp.StatusCode)
	}
}

// TestServerConnLimits: over server.max_conns_per_ip and server.max_conns, a new connection
// is closed before anything is read from it, and counted; a closed connection gives its
// place back.
func TestServerConnLimits(t *testing.T) {
	t.Parallel()
	s := edgeServerConfig()
	s.MaxConns = 3
	fMax := func(srv *Server) *atomic.Uint64 { return &srv.Stats.ConnsOverLimit }
	f := func(s config.Server, over func(*Server) *atomic.Uint64, limit int) {
		t.Helper()
		srv, addr := serveEdge(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }, s, zerolog.Nop())
		var conns []net.Conn
		for range limit {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rawGet(t, c, bufio.NewReader(c), "/") // admitted and served
			conns = append(conns, c)
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
			t.Fatalf("connection over the limit: read %d bytes, %v; want it closed at once", n, err)
		}
		c.Close()
		if n := over(srv).Load(); n != 1 {
			t.Fatalf("got %d connections counted over the limit; want 1", n)
		}
		conns[0].Close()
		testtool.WaitFor(t, 5*time.Second, "the closed connection's place to be given back", func() bool {
			return srv.Stats.Conns.Load() == int64(limit-1)
		})
		c, err = net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if resp := rawGet(t, c, bufio.NewReader(c), "/"); resp.StatusCode != 200 {
			t.Fatalf("after a place was freed: got %d; want 200", resp.StatusCode)
		}
	}
	f(s, fMax, 3)
	s = edgeServerConfig()
	s.MaxConnsPerIP = 2
	f(s, func(srv *Server) *atomic.Uint64 { return &srv.Stats.ConnsOverPerIP }, 2)
}

// TestServerDrainKeepAliveLosesNothing: keep-alive clients sending back to back while the
// server stops (drain_grace, then shutdown) see no failed request: during the grace every
// response says Connection: close, and the clients reconnect — here to nothing, so they
// stop — instead of having an idle connection closed under a request. The grace is long,
// so that on a loaded machine every client gets its answer within it; it ends when the
// last client has gone (TestServerDrainEndsWhenNoConnectionIsLeft).
func TestServerDrainKeepAliveLosesNothing(t *testing.T) {
	t.Parallel()
	srv, addr := serveEdge(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }, edgeServerConfig(), zerolog.Nop())
	var ok, failed, closedByServer atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				failed.Add(1)
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					failed.Add(1)
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					failed.Add(1)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ok.Add(1)
				if resp.Close {
					closedByServer.Add(1)
					return // a real client would reconnect; the listener is about to go
				}
			}
		})
	}
	testtool.WaitFor(t, 5*time.Second, "load", func() bool { return ok.Load() > 100 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.Stop(ctx, 50*time.Second); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || closedByServer.Load() != 8 {
		t.Fatalf("got %d failed requests, %d clients told to close (of 8), %d ok; want 0 failed, 8 told",
			failed.Load(), closedByServer.Load(), ok.Load())
	}
}

// TestServerDrainEndsWhenNoConnectionIsLeft: the drain grace ends as soon as the last
// client connection has closed — the listeners are closed, so nothing is left to drain —
// instead of holding the process for all of server.drain_grace.
func TestServerDrainEndsWhenNoConnectionIsLeft(t *testing.T) {
	t.Parallel()
	srv, addr := serveEdge(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }, edgeServerConfig(), zerolog.Nop())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	rawGet(t, c, br, "/") // one kept-alive connection, idle when the stop begins

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Stop(ctx, time.Hour) }()
	testtool.WaitFor(t, 5*time.Second, "draining", srv.draining.Load)
	if resp := rawGet(t, c, br, "/"); !resp.Close {
		t.Fatal("a response during the drain grace does not say Connection: close")
	}
	c.Close()
	if err := <-stopped; err != nil || ctx.Err() != nil {
		t.Fatalf("Stop returned %v with the context %v; want it to return once the last connection closed, long before the grace or the context ends", err, ctx.Err())
	}
}

// TestTableSwapsUnderLoad is a race-detector stress test (go test -race): requests flow
// while tables are swapped as fast as they can be built — backends added and removed (a
// reload, Consul, the autoscaler), breakers configured on backends already taking
// requests. Every request succeeds, nothing panics.
func TestTableSwapsUnderLoad(t *testing.T) {
	t.Parallel()
	a := startBackend(t, named("a"))
	b := startBackend(t, named("b"))
	c := startBackend(t, named("c"))
	configs := []*config.Config{
		poolConfig(t, "", a.url),
		poolConfig(t, "", a.url, b.url),
		poolConfig(t, "", b.url, c.url),
		poolConfig(t, "", c.url, a.url, b.url),
	}
	p := startProxy(t, configs[0])
	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			hc := p.client()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + p.addr + "/")
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := hc.DoTimeout(req, resp, 5*time.Second); err != nil || resp.StatusCode() != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %v", resp.StatusCode(), err))
					continue
				}
				ok.Add(1)
			}
		})
	}
	testtool.WaitFor(t, 5*time.Second, "load", func() bool { return ok.Load() > 10 })
	// At least 300 swaps, and on until 300 requests went through while swapping (bounded).
	base := ok.Load()
	for i := 0; i < 300 || ok.Load()-base < 300; i++ {
		if i == 100_000 {
			t.Fatalf("only %d requests in 100000 table swaps", ok.Load()-base)
		}
		if _, err := p.builder.Apply(configs[i%len(configs)]); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("got %d failed, %d ok requests during 300 table swaps; want 0 failed (first: %v)", failed.Load(), ok.Load(), firstErr.Load())
	}
}
