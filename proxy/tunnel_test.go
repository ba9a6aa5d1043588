package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"go-loadbalancer/internal/testtool"
	"go-loadbalancer/state"
	"go-loadbalancer/sticky"
)

// openTunnel sends a WebSocket upgrade to addr and returns the connection once the 101
// is read, or the status line of another answer.
func openTunnel(t *testing.T, addr string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	return openTunnelPath(t, addr, "/chat")
}

func openTunnelPath(t *testing.T, addr, path string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	r := bufio.NewReader(c)
	status, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("no answer to the upgrade: %v", err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil || line == "\r\n" {
			break
		}
	}
	_ = c.SetDeadline(time.Time{})
	return c, r, strings.TrimSpace(status)
}

// upgradeOn sends a WebSocket upgrade on c (each read and write within 5 s from now) and
// returns the 101 and the reader of what follows it; any other answer fails t.
func upgradeOn(t *testing.T, c net.Conn) (*http.Response, *bufio.Reader) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v; want 101", resp, err)
	}
	return resp, r
}

// TestTunnelsCountAgainstBackendLimit: WebSocket tunnels hold the backend's
// max_conns_per_backend places (30 could be opened with a limit of 10 before): a tunnel
// over the limit gets 503, and so does a plain request while tunnels fill the limit; a
// closed tunnel gives its place back.
func TestTunnelsCountAgainstBackendLimit(t *testing.T) {
	t.Parallel()
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if len(ctx.Request.Header.Peek("Upgrade")) > 0 {
			wsEcho(ctx)
			return
		}
		ctx.SetBodyString("ok")
	})
	cfg := poolConfig(t, "    max_conns_per_backend: 3\n    retry: { attempts: 0 }\n", be.url)
	p := startProxy(t, cfg)
	var tunnels []net.Conn
	for i := range 3 {
		c, _, status := openTunnel(t, p.addr)
		if !strings.HasPrefix(status, "HTTP/1.1 101") {
			t.Fatalf("tunnel %d: got %q; want 101", i, status)
		}
		tunnels = append(tunnels, c)
	}
	if _, _, status := openTunnel(t, p.addr); !strings.HasPrefix(status, "HTTP/1.1 503") {
		t.Fatalf("a 4th tunnel with max_conns_per_backend 3: got %q; want 503", status)
	}
	if resp := p.get(t, "/plain"); resp.StatusCode() != 503 {
		t.Fatalf("a plain request while 3 tunnels fill the backend's 3 places: got %d; want 503", resp.StatusCode())
	}
	tunnels[0].Close()
	u := p.px.tables.cur.Load().ups[0]
	testtool.WaitFor(t, 5*time.Second, "the closed tunnel to give its place back", func() bool { return u.tunnels.Load() == 2 })
	if resp := p.get(t, "/plain"); resp.StatusCode() != 200 {
		t.Fatalf("after a tunnel closed: got %d; want 200", resp.StatusCode())
	}
}

// TestTunnelsGlobalCap: over server.max_tunnels an upgrade gets 503 and is counted.
func TestTunnelsGlobalCap(t *testing.T) {
	t.Parallel()
	be := startBackend(t, wsEcho)
	cfg := poolConfig(t, "server: { max_tunnels: 2 }\n", be.url)
	ts := NewTables(nil, nil)
	if _, err := state.NewBuilder(nil, ts.Hooks()).Apply(cfg); err != nil {
		t.Fatal(err)
	}
	px := New(Options{Tables: ts, Log: zerolog.Nop()})
	srv, addr := serveEdgeServer(t, px.NewServer(cfg.Server, zerolog.Nop()))
	for range 2 {
		if _, _, status := openTunnel(t, addr); !strings.HasPrefix(status, "HTTP/1.1 101") {
			t.Fatalf("got %q; want 101", status)
		}
	}
	if _, _, status := openTunnel(t, addr); !strings.HasPrefix(status, "HTTP/1.1 503") {
		t.Fatalf("a 3rd tunnel with max_tunnels 2: got %q; want 503", status)
	}
	if n := srv.Stats.TunnelsOverLimit.Load(); n != 1 {
		t.Fatalf("got %d tunnels counted over the limit; want 1", n)
	}
	if n := srv.Stats.Tunnels.Load(); n != 2 {
		t.Fatalf("got %d tunnels open; want 2", n)
	}
}

// TestTunnelIdleTimeout: a tunnel with traffic in either direction stays open past
// timeouts.tunnel_idle; one with none for tunnel_idle is closed.
func TestTunnelIdleTimeout(t *testing.T) {
	t.Parallel()
	// The backend speaks every 100 ms on its own: traffic in one direction only.
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		wsEcho(ctx)
		if ctx.Response.StatusCode() != fasthttp.StatusSwitchingProtocols {
			return
		}
		talk := string(ctx.Request.URI().QueryArgs().Peek("talk")) == "1"
		ctx.Hijack(func(c net.Conn) {
			if !talk {
				_, _ = io.Copy(io.Discard, c)
				return
			}
			for range 10 {
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			_, _ = io.Copy(io.Discard, c)
		})
	})
	cfg := poolConfig(t, "", be.url)
	cfg.Pools[0].Timeouts.TunnelIdle = time.Second
	p := startProxy(t, cfg)
	f := func(path string, wantBytes int) {
		t.Helper()
		c, r, status := openTunnelPath(t, p.addr, path)
		if !strings.HasPrefix(status, "HTTP/1.1 101") {
			t.Fatalf("got %q; want 101", status)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("%s: the tunnel was not closed when idle: %v", path, err)
		}
		if len(b) != wantBytes {
			t.Fatalf("%s: got %d bytes before the close after %v; want %d", path, len(b), time.Since(start), wantBytes)
		}
	}
	f("/quiet", 0)        // closed after 1 s of silence
	f("/talk?talk=1", 10) // 10 bytes over a second (gaps of 100 ms), then 1 s of silence
}

// upgradeBackend is wsEcho that names itself in the 101's X-Backend field.
func upgradeBackend(name string) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("X-Backend", name)
		wsEcho(ctx)
	}
}

// TestUpgradePicksLikeRequests: an upgrade picks its backend as a request does, so geo
// prefer_local applies to it — before, upgrades went through Pool.Pick and an eu client's
// tunnels went to the us backend, which has five times the eu one's weight.
func TestUpgradePicksLikeRequests(t *testing.T) {
	t.Parallel()
	eu, us := startBackend(t, upgradeBackend("eu")), startBackend(t, upgradeBackend("us"))
	// The test client is 127.0.0.1: region eu by CIDR.
	p := startProxy(t, parseConfig(t, fmt.Sprintf(`geo: { cidrs: { eu: ["127.0.0.0/8"], us: ["10.0.0.0/8"] } }
pools:
  - name: geo
    backends: [ { url: %q, region: eu }, { url: %q, region: us, weight: 5 } ]
`, eu.url, us.url)))
	for i := range 6 {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatalf("upgrade %d: %v", i, err)
		}
		if resp.StatusCode != 101 || resp.Header.Get("X-Backend") != "eu" {
			t.Fatalf("upgrade %d of an eu client: got %d from backend %q; want 101 from the eu backend", i, resp.StatusCode, resp.Header.Get("X-Backend"))
		}
	}
	// A plain request from the same client agrees.
	if b := p.get(t, "/").Header.Peek("X-Backend"); string(b) != "eu" {
		t.Fatalf("a request of an eu client went to %q; want eu", b)
	}
}

// TestPanicAfterTunnelSetUpReleasesIt: a panic in the handler after the tunnel was set up
// (the hijack handler set, the backend's 101 read) is contained with a 500 and cancels the
// hijack; what the tunnel held goes back — before, the backend connection stayed open and
// its server.max_tunnels and max_conns_per_backend places and in-flight count were never
// given back.
func TestPanicAfterTunnelSetUpReleasesIt(t *testing.T) {
	ended := make(chan struct{}) // the backend's side of the tunnel was closed
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		wsEcho(ctx)
		ctx.Hijack(func(c net.Conn) {
			_, _ = io.Copy(io.Discard, c)
			close(ended)
		})
	})
	cfg := poolConfig(t, "server: { max_tunnels: 4 }\n", be.url)
	ts := NewTables(nil, nil)
	if _, err := state.NewBuilder(nil, ts.Hooks()).Apply(cfg); err != nil {
		t.Fatal(err)
	}
	px := New(Options{Tables: ts, Log: zerolog.Nop()})
	srv := newServer(func(ctx *fasthttp.RequestCtx) {
		px.ServeHTTP(ctx)
		panic("after the tunnel was set up") // as a bug in the access log or a deferred step would
	}, cfg.Server, zerolog.Nop())
	px.edge, px.maxTunnels = &srv.Stats, int64(cfg.Server.MaxTunnels) // as NewServer does
	_, addr := serveEdgeServer(t, srv)

	if _, _, status := openTunnel(t, addr); !strings.HasPrefix(status, "HTTP/1.1 500") {
		t.Fatalf("got %q; want the panic's 500", status)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend connection of the cancelled tunnel is still open")
	}
	d := ts.cur.Load()
	be0, u := d.table.Backends()[0], d.ups[0]
	testtool.WaitFor(t, 5*time.Second, "the cancelled tunnel's places to come back", func() bool {
		return srv.Stats.Tunnels.Load() == 0 && u.tunnels.Load() == 0 && be0.Stats.Inflight.Load() == 0
	})
	if n := srv.Stats.Panics.Load(); n != 1 {
		t.Fatalf("got %d panics counted; want 1", n)
	}
}

// TestTunnelBackendCloseReachesClient: when the backend ends a tunnel, the client sees the
// end (EOF) at once, plain or over TLS, and the tunnel's places come back when it closes
// too — before, the half-close of the client side went to fasthttp's hijacked connection,
// whose Close does nothing, so a client waiting for the server kept its connection and
// the max_tunnels place until timeouts.tunnel_idle (an hour by default).
func TestTunnelBackendCloseReachesClient(t *testing.T) {
	t.Parallel()
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		wsEcho(ctx)
		ctx.Hijack(func(c net.Conn) { _, _ = io.WriteString(c, "bye") }) // then fasthttp closes c
	})
	certFile, keyFile, roots := testtool.SelfSignedCert(t)
	for _, tc := range []struct {
		name, extra string
		tls         *tls.Config
	}{
		{"plain", "", nil},
		{"tls", fmt.Sprintf("tls: { cert_file: %q, key_file: %q }\n", certFile, keyFile), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startProxy(t, poolConfig(t, "server: { max_tunnels: 8 }\n"+tc.extra, be.url))
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.tls != nil {
				c = tls.Client(c, tc.tls)
			}
			_, r := upgradeOn(t, c)
			b, err := io.ReadAll(r)
			if err != nil || string(b) != "bye" {
				t.Fatalf("got %q, then %v; want \"bye\", then EOF: the backend's close did not reach the client", b, err)
			}
			c.Close()
			testtool.WaitFor(t, 5*time.Second, "the ended tunnel to give its place back", func() bool {
				return p.srv.Stats.Tunnels.Load() == 0 && p.px.tables.cur.Load().ups[0].tunnels.Load() == 0
			})
		})
	}
}

// TestIdlePooledConnectionsMakeRoomForTunnels: pooled connections left idle after a burst
// fill max_conns_per_backend but serve nobody; an upgrade closes them and gets its tunnel
// — before, it got 503 until they had been idle for a minute.
func TestIdlePooledConnectionsMakeRoomForTunnels(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var arrived sync.WaitGroup
	arrived.Add(3)
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if len(ctx.Request.Header.Peek("Upgrade")) > 0 {
			wsEcho(ctx)
			return
		}
		arrived.Done()
		<-release // three requests in flight at once: three pooled connections
		ctx.SetBodyString("ok")
	})
	p := startProxy(t, poolConfig(t, "    max_conns_per_backend: 3\n    retry: { attempts: 0 }\n", be.url))
	var done sync.WaitGroup
	for range 3 {
		done.Add(1)
		go func() {
			defer done.Done()
			if resp := p.get(t, "/burst"); resp.StatusCode() != 200 {
				t.Errorf("a request of the burst: got %d; want 200", resp.StatusCode())
			}
		}()
	}
	arrived.Wait()
	close(release)
	done.Wait()
	u := p.px.tables.cur.Load().ups[0]
	if n := u.hc.ConnsCount(); n != 3 {
		t.Fatalf("got %d pooled connections after the burst; want 3, idle", n)
	}
	if _, _, status := openTunnel(t, p.addr); !strings.HasPrefix(status, "HTTP/1.1 101") {
		t.Fatalf("an upgrade while only idle pooled connections fill max_conns_per_backend: got %q; want 101", status)
	}
	// Tunnels in use still hold their places: with three open, a fourth is refused.
	for i := range 2 {
		if _, _, status := openTunnel(t, p.addr); !strings.HasPrefix(status, "HTTP/1.1 101") {
			t.Fatalf("tunnel %d of 3: got %q; want 101", i+2, status)
		}
	}
	if _, _, status := openTunnel(t, p.addr); !strings.HasPrefix(status, "HTTP/1.1 503") {
		t.Fatalf("a 4th tunnel with max_conns_per_backend 3: got %q; want 503", status)
	}
}

// panickyPins is a session store whose Pin panics, as a bug in it would.
type panickyPins struct{ sticky.Store }

func (panickyPins) Pin([]byte, string, time.Duration) { panic("pin") }

// TestPanicPinningTunnelClosesItsBackend: a panic while the 101 is being answered (pinning
// the new sticky session) closes the backend connection the upgrade opened and gives its
// places back — before, the places went back but the connection stayed open.
func TestPanicPinningTunnelClosesItsBackend(t *testing.T) {
	t.Parallel()
	ended := make(chan struct{}) // the backend's side of the tunnel was closed
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		wsEcho(ctx)
		ctx.Hijack(func(c net.Conn) {
			_, _ = io.Copy(io.Discard, c)
			close(ended)
		})
	})
	p := startProxy(t, poolConfig(t, "sticky: { enabled: true, header: X-Session }\nserver: { max_tunnels: 4 }\n", be.url),
		withSticky(panickyPins{newMemoryStore(t, sticky.Options{})}))
	resp, _ := p.raw(t, "GET /chat HTTP/1.1\r\nHost: x\r\nX-Session: s1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if !strings.HasPrefix(resp, "HTTP/1.1 500") {
		t.Fatalf("got %q; want the panic's 500", resp)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend connection of the failed upgrade is still open")
	}
	d := p.px.tables.cur.Load()
	be0, u := d.table.Backends()[0], d.ups[0]
	testtool.WaitFor(t, 5*time.Second, "the failed upgrade's places to come back", func() bool {
		return p.srv.Stats.Tunnels.Load() == 0 && u.tunnels.Load() == 0 && be0.Stats.Inflight.Load() == 0
	})
}

// TestUpgrade101HopByHop: the backend's 101 reaches the client cleaned like any response
// (RFC 9110 §7.6.1) — fields its Connection names and the other hop-by-hop fields dropped —
// but with Connection: Upgrade, Upgrade and the WebSocket fields the switch needs (RFC
// 9110 §7.8), and the tunnel then carries bytes both ways. Before, the 101 went out as
// the backend wrote it.
func TestUpgrade101HopByHop(t *testing.T) {
	t.Parallel()
	be := startRawBackend(t, "", func(r *backendRequest, c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"+
			"Connection: Upgrade, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\n"+
			"Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\nX-End: kept\r\n"+
			"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n")
		_, _ = io.Copy(c, c) // the tunnel: echo until the client ends it
	})
	px := startProxy(t, parseConfig(t, rawPoolConfig(t, be.addr, "")))
	c, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, r := upgradeOn(t, c)
	h := resp.Header
	for name, want := range map[string]string{
		"Upgrade": "websocket", "Connection": "Upgrade", "X-End": "kept",
		"Sec-Websocket-Accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "Sec-Websocket-Protocol": "chat",
	} {
		if got := h.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("%s: %q; want %q", name, got, want)
		}
	}
	for _, name := range []string{"X-Secret-Hop", "Keep-Alive", "Proxy-Connection", "Te", "Trailer"} {
		if got, ok := h[name]; ok {
			t.Errorf("hop-by-hop %s: %q relayed; want it dropped", name, got)
		}
	}
	for _, msg := range []string{"ping", "pong"} {
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(r, buf); err != nil || string(buf) != msg {
			t.Fatalf("through the tunnel: got %q, %v; want %q echoed", buf, err, msg)
		}
	}
}

// TestRefusedUpgradeStalledBody: a backend that refuses an upgrade with a head and then
// stalls its body past timeouts.response is a timeout of the backend's: 504, counted as
// its failure. Before, the refusal's body read failed as a silent 502 counted nowhere.
func TestRefusedUpgradeStalledBody(t *testing.T) {
	t.Parallel()
	be := startRawBackend(t, "", func(r *backendRequest, c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nno")
		_, _ = io.Copy(io.Discard, c) // the other 8 bytes never come; until the proxy closes
	})
	cfg := strings.Replace(rawPoolConfig(t, be.addr, ""), "response: 2s", "response: 300ms", 1)
	px := startProxy(t, parseConfig(t, cfg))
	_, _, status := openTunnel(t, px.addr)
	if status != "HTTP/1.1 504 Gateway Timeout" {
		t.Fatalf("a refusal whose body stalled: %q; want 504", status)
	}
	for _, b := range px.builder.Store.Load().Backends() {
		if n := b.Stats.Failures.Load(); n != 1 {
			t.Fatalf("%s: %d failures; want 1", b.ID, n)
		}
	}
}
