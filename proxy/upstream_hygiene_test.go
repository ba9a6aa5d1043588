package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/internal/testtool"
)

// rawPoolConfig is a one-pool config for a raw backend: one upstream connection at most
// (so that every request goes over the connection the one before used, if it was pooled)
// and no retries (so that what a client gets is what the one try produced).
func rawPoolConfig(t testing.TB, addr, extra string) string {
	t.Helper()
	return "pools:\n  - name: web\n    max_conns_per_backend: 1\n    retry: { attempts: 0 }\n" +
		"    timeouts: { connect: 500ms, response: 2s }\n" + extra +
		"    backends:\n      - url: \"http://" + addr + "\"\n"
}

// TestSloppyHEADBodyNeverReachesAnotherClient reproduces the Python http.server case: a
// backend whose HEAD handler also writes a body. That body is a forged response; with the
// upstream connection pooled as if the HEAD answer were all, the next client — on another
// connection — would read the forged response as its own.
func TestSloppyHEADBodyNeverReachesAnotherClient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		late   bool
		forged string
	}{
		{"same-write", false, forged},
		{"same-write-larger-than-a-read", false, forgedSized(20 << 10)},
		{"body-arrives-later", true, forged},
	} {
		late, forged := tc.late, tc.forged
		t.Run(tc.name, func(t *testing.T) {
			// Two channels: with one, the test's own send could be taken back by its
			// receive before the backend saw it (a hang, or a 504 behind the held HEAD).
			release, written := make(chan struct{}, 1), make(chan struct{}, 1)
			be := startRawBackend(t, "", func(r *backendRequest, c net.Conn) {
				if r.method != "HEAD" {
					_, _ = c.Write([]byte(goodAnswer(r.id)))
					return
				}
				head := "HTTP/1.1 200 OK\r\nX-Req: " + r.id + "\r\nContent-Length: " + strconv.Itoa(len(forged)) + "\r\n\r\n"
				if !late {
					_, _ = c.Write([]byte(head + forged))
					return
				}
				_, _ = c.Write([]byte(head))
				<-release // the test says when: after the HEAD's client has its answer
				_, _ = c.Write([]byte(forged))
				written <- struct{}{}
			})
			px := startProxy(t, parseConfig(t, rawPoolConfig(t, be.addr, "")))
			for i := 0; i < 10; i++ {
				a, b := dialRaw(t, px.addr), dialRaw(t, px.addr)
				idA, idB := "a"+strconv.Itoa(i), "b"+strconv.Itoa(i)
				status, id, _, err := a.do("HEAD", "/", idA, "")
				if err != nil || status != 200 || id != idA {
					t.Fatalf("HEAD: status %d, X-Req %q, err %v; want 200 %q", status, id, err, idA)
				}
				if late {
					release <- struct{}{}
					<-written
				}
				status, id, body, err := b.do("GET", "/", idB, "")
				if err != nil || status != 200 || id != idB || body != "id="+idB {
					t.Fatalf("round %d: the next client got status %d, X-Req %q, body %q, err %v; want its own answer (X-Req %q)",
						i, status, id, body, err, idB)
				}
			}
		})
	}
}

// TestBackendRestartCostsNoPOST: the backend is restarted on the same address while the
// proxy holds a pool of idle keep-alive connections to it. Every one of those is closed
// by the backend; a POST — never replayed — must not be sent on one of them. 100 POSTs
// after the restart: 0 errors.
func TestBackendRestartCostsNoPOST(t *testing.T) {
	t.Parallel()
	const pooled = 10
	var inflight atomic.Int32
	release := make(chan struct{})
	serve := func(ln net.Listener) *fasthttp.Server {
		srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
			if string(ctx.Path()) == "/fill" {
				// Hold the requests until all of them are in: each gets its own connection.
				if inflight.Add(1) == pooled {
					close(release)
				}
				<-release
			}
			ctx.SetBody(ctx.PostBody())
		}, CloseOnShutdown: true}
		go func() { _ = srv.Serve(ln) }()
		return srv
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	first := serve(ln)
	px := startProxy(t, poolConfig(t, "", "http://"+addr))
	c := px.client()

	var wg sync.WaitGroup
	for range pooled {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if status, body := post(t, c, "/fill", "x"); status != 200 || body != "x" {
				t.Errorf("filling the pool: status %d body %q", status, body)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// The restart: the old process closes every connection, a new one listens.
	if err := first.Shutdown(); err != nil {
		t.Fatal(err)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	second := serve(ln)
	t.Cleanup(func() { _ = second.Shutdown() })

	failed := 0
	for i := range 100 {
		want := "post-" + strconv.Itoa(i)
		if status, body := post(t, c, "/", want); status != 200 || body != want {
			failed++
			t.Logf("POST %d: status %d, body %q", i, status, body)
		}
	}
	if failed != 0 {
		t.Fatalf("%d of 100 POSTs failed after the backend restarted; want 0", failed)
	}
}

// post sends a POST through c and returns the status and body.
func post(t testing.TB, c *fasthttp.HostClient, path, body string) (int, string) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://lb.test" + path)
	req.Header.SetMethod("POST")
	req.SetBodyString(body)
	if err := c.Do(req, resp); err != nil {
		t.Errorf("POST %s: %v", path, err)
		return 0, ""
	}
	return resp.StatusCode(), string(resp.Body())
}

// TestUploadToBackendThatStopsReading: a streamed upload to a backend that accepts the
// connection and never reads ends at the response timeout with a 504 (before, the write
// had no deadline and the request hung for as long as the client kept sending).
func TestUploadToBackendThatStopsReading(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held <- c // never read
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for len(held) > 0 {
			(<-held).Close()
		}
	})
	cfg := parseConfig(t, "server: { max_body_bytes: 1073741824 }\npools:\n  - name: web\n    retry: { attempts: 0 }\n"+
		"    timeouts: { connect: 500ms, response: 300ms }\n    backends:\n      - url: \"http://"+ln.Addr().String()+"\"\n")
	px := startProxy(t, cfg)

	c, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const size = 1 << 30 // far more than any socket buffers
	go func() {
		_, _ = io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: lb.test\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
		_, _ = io.Copy(c, &zeros{n: size}) // until the proxy closes the connection
	}()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 504 {
		t.Fatalf("got status %d; want 504", resp.StatusCode)
	}
}

// TestUpgradeAnsweredWithAnotherProtocol: a WebSocket upgrade answered with a 101 that
// switches to something else (or names nothing) is a 502, not a byte pipe to the backend.
func TestUpgradeAnsweredWithAnotherProtocol(t *testing.T) {
	t.Parallel()
	for _, upgrade := range []string{"", "Upgrade: h2c\r\n"} {
		be := startRawBackend(t, "", func(r *backendRequest, c net.Conn) {
			_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n" + upgrade + "\r\n" + forged))
		})
		px := startProxy(t, parseConfig(t, rawPoolConfig(t, be.addr, "")))
		resp, _ := px.raw(t, "GET /ws HTTP/1.1\r\nHost: lb.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		if !strings.HasPrefix(resp, "HTTP/1.1 502 ") || strings.Contains(resp, "stolen") {
			t.Fatalf("101 with %q: got %q; want a 502 and nothing of the backend's", upgrade, resp)
		}
	}
}

// TestTLSUpstreamHygiene: over TLS a healthy pooled connection is reused (the idle check
// reads what TLS buffered — session tickets included — without mistaking it for data),
// and bytes arriving on an idle one close it.
func TestTLSUpstreamHygiene(t *testing.T) {
	t.Parallel()
	certFile, keyFile, _ := testtool.SelfSignedCert(t)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	lateGo, lateDone := make(chan struct{}), make(chan struct{})
	be := serveRawBackend(t, ln, func(r *backendRequest, c net.Conn) {
		_, _ = c.Write([]byte(goodAnswer(r.id)))
		if r.id == "late" {
			<-lateGo
			_, _ = c.Write([]byte(forged))
			close(lateDone)
		}
	})
	cfg := "pools:\n  - name: web\n    max_conns_per_backend: 1\n    retry: { attempts: 0 }\n" +
		"    timeouts: { connect: 500ms, response: 2s }\n    upstream_tls: { ca_file: \"" + certFile + "\" }\n" +
		"    backends:\n      - url: \"https://" + be.addr + "\"\n"
	px := startProxy(t, parseConfig(t, cfg))
	for i := range 5 {
		id := "keep" + strconv.Itoa(i)
		if status, got, _, err := dialRaw(t, px.addr).do("GET", "/", id, ""); err != nil || status != 200 || got != id {
			t.Fatalf("GET %d: status %d, X-Req %q, err %v", i, status, got, err)
		}
	}
	if n := be.accepted.Load(); n != 1 {
		t.Fatalf("5 GETs over TLS took %d connections; want 1 (the pooled one reused)", n)
	}
	if status, got, _, err := dialRaw(t, px.addr).do("GET", "/", "late", ""); err != nil || status != 200 || got != "late" {
		t.Fatalf("GET late: status %d, X-Req %q, err %v", status, got, err)
	}
	close(lateGo)
	<-lateDone
	status, got, body, err := dialRaw(t, px.addr).do("GET", "/", "next", "")
	if err != nil || status != 200 || got != "next" || body != "id=next" {
		t.Fatalf("after late bytes on the idle TLS connection the next client got status %d, X-Req %q, body %q, err %v", status, got, body, err)
	}
	if n := be.accepted.Load(); n != 2 {
		t.Fatalf("the backend accepted %d connections; want 2 (the one with late bytes closed)", n)
	}
}

// TestIdleConnectionResetIsNotUsed: a backend that resets an idle keep-alive connection
// (a close with SO_LINGER 0, as a crashing or load-shedding server does) costs the next
// POST nothing: the reset is seen before the request is written.
func TestIdleConnectionResetIsNotUsed(t *testing.T) {
	t.Parallel()
	served := make(chan net.Conn, 1)
	be := startRawBackend(t, "", func(r *backendRequest, c net.Conn) {
		_, _ = c.Write([]byte(goodAnswer(r.id)))
		if r.id == "first" {
			served <- c
		}
	})
	px := startProxy(t, parseConfig(t, rawPoolConfig(t, be.addr, "")))
	if status, id, _, err := dialRaw(t, px.addr).do("GET", "/", "first", ""); err != nil || status != 200 || id != "first" {
		t.Fatalf("GET: status %d, X-Req %q, err %v", status, id, err)
	}
	c := <-served
	_ = c.(*net.TCPConn).SetLinger(0)
	c.Close() // RST
	status, id, body, err := dialRaw(t, px.addr).do("POST", "/", "post", "payload")
	if err != nil || status != 200 || id != "post" || body != "id=post" {
		t.Fatalf("POST after the idle connection was reset: status %d, X-Req %q, body %q, err %v; want its answer", status, id, body, err)
	}
	if n := be.accepted.Load(); n != 2 {
		t.Fatalf("the backend accepted %d connections; want 2 (the reset one not used)", n)
	}
}
