package proxy

import (
	"bufio"
	"encoding/json"
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

	"go-loadbalancer/internal/logbuf"
	"go-loadbalancer/internal/logring"
	"go-loadbalancer/internal/testtool"
	"go-loadbalancer/state"
)

// slowUpload sends a POST of size bytes: all but the last 1000 at once, then 10 bytes every
// 100 ms until the proxy answers or until stop. It returns the status the proxy answered
// (0: none before stop).
func slowUpload(t *testing.T, addr string, size int, stop <-chan struct{}) int {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return 0
	}
	defer c.Close()
	status := make(chan int, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
	c.Write(make([]byte, size-1000))
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for sent := size - 1000; sent < size; sent += 10 {
		select {
		case s := <-status:
			return s
		case <-stop:
			return 0
		case <-tick.C:
			if _, err := c.Write(make([]byte, 10)); err != nil {
				return <-status
			}
		}
	}
	select {
	case s := <-status:
		return s
	case <-stop:
		return 0
	}
}

// TestSlowUploadersDoNotStarveThePool: 40 clients send 70 KB quickly and then 10 bytes
// every 100 ms, against a backend allowed 10 connections. Their bodies are read whole
// before a backend is chosen, so they never hold an upstream connection, and they are cut
// with 408 once a request_body_grace period brings less than min_request_body_rate: not
// one of the normal requests sent meanwhile fails. (Before, each slow body streamed to
// the backend and held a connection: normal requests got 503.)
func TestSlowUploadersDoNotStarveThePool(t *testing.T) {
	t.Parallel()
	be := drainingBackend(t)
	cfg := poolConfig(t, `    max_conns_per_backend: 10
server: { request_body_grace: 1s, min_request_body_rate: 1024 }
`, be.url)
	p := startProxy(t, cfg)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var cut atomic.Int64
	for range 40 {
		wg.Go(func() {
			if slowUpload(t, p.addr, 70_000, stop) == fasthttp.StatusRequestTimeout {
				cut.Add(1)
			}
		})
	}
	time.AfterFunc(10*time.Second, func() { close(stop) }) // bounds the uploaders whatever happens
	// Normal requests while the uploaders trickle (they are cut after about 2 s).
	hc := p.client()
	var failed []string
	for i := range 100 {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + p.addr + "/normal")
		if i%2 == 1 {
			req.Header.SetMethod("POST")
			req.SetBodyString(strings.Repeat("x", 20_000))
		}
		err := hc.DoTimeout(req, resp, 5*time.Second)
		if err != nil || resp.StatusCode() != 200 {
			failed = append(failed, fmt.Sprintf("%d %v", resp.StatusCode(), err))
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of 100 normal requests failed while 40 clients uploaded slowly: %v", len(failed), failed)
	}
	if n := cut.Load(); n != 40 {
		t.Fatalf("got %d slow uploaders cut with 408; want 40", n)
	}
}

// TestBodyRate: the minimum rate over each period, the first period a grace.
func TestBodyRate(t *testing.T) {
	t.Parallel()
	srvConn, cliConn := net.Pipe()
	defer srvConn.Close()
	defer cliConn.Close()
	r := bodyRate{conn: srvConn, need: 100, period: 200 * time.Millisecond}
	go func() {
		cliConn.Write(make([]byte, 150)) // the first period is made
		// then silence: the second period fails
	}()
	b, err := r.readFull(nil, srvConn, 1000)
	if err != errSlowBody || len(b) != 150 {
		t.Fatalf("got %d bytes, %v; want 150, errSlowBody", len(b), err)
	}
}

// TestSlowStreamedUploadIsCut: a body over request_buffer_bytes streams to the backend, under
// the same minimum rate: a client that falls below it is cut, and its upstream connection
// freed, instead of holding it for as long as it trickles.
func TestSlowStreamedUploadIsCut(t *testing.T) {
	t.Parallel()
	be := drainingBackend(t)
	cfg := poolConfig(t, `server: { request_buffer_bytes: 10000, request_body_grace: 1s, min_request_body_rate: 1024 }
`, be.url)
	p := startProxy(t, cfg)
	stop := make(chan struct{})
	time.AfterFunc(10*time.Second, func() { close(stop) })
	if s := slowUpload(t, p.addr, 70_000, stop); s != fasthttp.StatusBadRequest {
		t.Fatalf("slow streamed upload: got status %d; want 400 (cut before the 10 s it would trickle)", s)
	}
}

// TestStreamedUploadsCountAsTunnels: a streamed upload ties an upstream connection to the
// client's pace like a tunnel, and takes one of server.max_tunnels places: over it, 503.
func TestStreamedUploadsCountAsTunnels(t *testing.T) {
	t.Parallel()
	be := drainingBackend(t)
	cfg := poolConfig(t, "server: { max_tunnels: 1, request_buffer_bytes: 10000, request_body_grace: 1s, min_request_body_rate: 1024 }\n", be.url)
	ts := NewTables(nil, nil)
	if _, err := state.NewBuilder(nil, ts.Hooks()).Apply(cfg); err != nil {
		t.Fatal(err)
	}
	px := New(Options{Tables: ts, Log: zerolog.Nop()})
	srv, addr := serveEdgeServer(t, px.NewServer(cfg.Server, zerolog.Nop()))
	stop := make(chan struct{})
	defer close(stop)
	first := make(chan int, 1)
	go func() { first <- slowUpload(t, addr, 70_000, stop) }() // streams, trickling
	testtool.WaitFor(t, 5*time.Second, "the first upload to stream", func() bool { return srv.Stats.Tunnels.Load() == 1 })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n")
	c.Write(make([]byte, 20_000))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 503 || !resp.Close {
		t.Fatalf("a second streamed upload with max_tunnels 1: got %d, close %v; want 503 and Connection: close", resp.StatusCode, resp.Close)
	}
	if s := <-first; s != fasthttp.StatusBadRequest {
		t.Fatalf("the slow first upload: got %d; want 400 (cut by the minimum rate)", s)
	}
	testtool.WaitFor(t, 5*time.Second, "its place to be given back", func() bool { return srv.Stats.Tunnels.Load() == 0 })
}

// trickleHead sends a POST head with Content-Length cl and then first bytes of its body
// and nothing more; it returns the status the proxy answered and how long after the head
// it came (the proxy closing the connection without an answer fails the test).
func trickleHead(t *testing.T, addr string, cl, first int) (int, time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", cl)
	start := time.Now()
	c.Write(make([]byte, first))
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second)) // bounds the test whatever happens
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("Content-Length %d, %d bytes sent: no answer: %v", cl, first, err)
	}
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

// TestSlowFirstBodyBytesAreCut: fasthttp reads up to 8 KiB of a body itself before the
// handler runs, and only read_timeout bounded that read: a client trickling those bytes
// held its connection for read_timeout (30 s by default) rather than request_body_grace.
// Now the minimum rate bounds them too: a client that stalls after 10 bytes is cut with
// 408 at the end of the grace period (500 ms here); read_timeout (10 min here) would let it
// hang past trickleHead's 30 s bound.
func TestSlowFirstBodyBytesAreCut(t *testing.T) {
	t.Parallel()
	be := drainingBackend(t)
	// rate × grace = 10000 bytes a period: the 8 KiB fasthttp reads ahead fit in one.
	cfg := poolConfig(t, `server: { read_timeout: 10m, request_body_grace: 500ms, min_request_body_rate: 20000 }
`, be.url)
	p := startProxy(t, cfg)
	for _, cl := range []int{5000, 100_000, 3_000_000} { // buffered, and streamed (over request_buffer_bytes)
		status, took := trickleHead(t, p.addr, cl, 10)
		if status != fasthttp.StatusRequestTimeout {
			t.Errorf("Content-Length %d, stalled after 10 bytes: got %d after %v; want 408 at the end of the 500 ms grace", cl, status, took.Round(time.Millisecond))
		}
	}
	if n := p.px.ClientErrors("timeout"); n != 3 {
		t.Errorf("lb_client_errors_total{reason=timeout} = %d; want 3", n)
	}
}

// TestPrefetchTimeout: the deadline for the bytes fasthttp reads ahead is as many grace
// periods as a client at the minimum rate needs for them, capped at read_timeout.
func TestPrefetchTimeout(t *testing.T) {
	t.Parallel()
	s := time.Second
	for _, c := range []struct {
		n, rate     int64
		grace, read time.Duration
		want        time.Duration
	}{
		{8192, 1024, 10 * s, 30 * s, 10 * s}, // the defaults: one period
		{8192, 100, 10 * s, 300 * s, 90 * s}, // 1000 bytes a period: 9 periods
		{8192, 100, 10 * s, 30 * s, 30 * s},  // capped at read_timeout
		{10, 0, 10 * s, 30 * s, 0},           // no minimum: fasthttp's read_timeout stays
	} {
		if got := prefetchTimeout(c.n, c.rate, c.grace, c.read); got != c.want {
			t.Errorf("prefetchTimeout(%d, %d, %v, %v) = %v; want %v", c.n, c.rate, c.grace, c.read, got, c.want)
		}
	}
}

// TestSlowBodyIsLoggedWithItsHead: fasthttp resets a request whose body it failed to
// read before calling serverError, which logged it as `"method":"GET","path":"/"` with a
// duration of 0. Now the line shows the head fasthttp parsed and the time since; and a
// head that fails to parse after a request with a body on the same connection is not
// logged with that request's head.
func TestSlowBodyIsLoggedWithItsHead(t *testing.T) {
	t.Parallel()
	be := drainingBackend(t)
	cfg := poolConfig(t, `server: { read_timeout: 20s, request_body_grace: 500ms, min_request_body_rate: 20000 }
`, be.url)
	var out logbuf.Buffer
	al := NewAccessLog(&out, logring.Options{Idle: time.Millisecond})
	p := startProxy(t, cfg, func(o *Options) { o.AccessLog = al })
	lines := func(n int) []map[string]any {
		testtool.WaitFor(t, 3*time.Second, "the access log lines", func() bool { return strings.Count(out.String(), "\n") >= n })
		var ls []map[string]any
		for _, s := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var l map[string]any
			if err := json.Unmarshal([]byte(s), &l); err != nil {
				t.Fatalf("access log line %q is not JSON: %v", s, err)
			}
			ls = append(ls, l)
		}
		return ls
	}

	if status, _ := trickleHead(t, p.addr, 5000, 10); status != fasthttp.StatusRequestTimeout {
		t.Fatalf("got %d; want 408", status)
	}
	l := lines(1)[0]
	for k, want := range map[string]any{"method": "POST", "path": "/upload", "host": "x", "status": 408.0} {
		if l[k] != want {
			t.Errorf("the 408's line: field %s: got %#v; want %#v", k, l[k], want)
		}
	}
	if d, _ := l["duration_ms"].(float64); d < 500 {
		t.Errorf("the 408's line: duration_ms %v; want at least the 500 ms grace it waited", l["duration_ms"])
	}

	// A complete POST, then a head fasthttp cannot parse, on one connection.
	resp, closed := p.raw(t, "POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"+
		"POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
	if !strings.HasPrefix(resp, "HTTP/1.1 200") || !strings.Contains(resp, "HTTP/1.1 400") || !closed {
		t.Fatalf("got %q (closed %v); want 200 then 400 and the connection closed", resp, closed)
	}
	ls := lines(3)
	if ls[1]["path"] != "/first" || ls[2]["status"] != 400.0 || ls[2]["path"] == "/first" {
		t.Errorf("got lines %v; want /first's, then a 400 not logged with /first's head", ls[1:])
	}
}

// drainingBackend reads each request's body whole and answers 200 "ok".
func drainingBackend(t *testing.T) *testBackend {
	t.Helper()
	return startBackend(t, func(ctx *fasthttp.RequestCtx) {
		_ = ctx.Request.BodyWriteTo(io.Discard)
		ctx.SetBodyString("ok")
	})
}
