package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/testredis"
	"go-loadbalancer/internal/testtool"
	"go-loadbalancer/sticky"
)

// rawField returns the value of the first field name (case-insensitive) in a raw head.
func rawField(req, name string) string {
	head, _, _ := strings.Cut(req, "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n")[1:] {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// echoField answers 200 with the request's X-Echo echoed (as middleware echoes a trace
// or session field) and a Set-Cookie of extra bytes.
func echoField(extra int) func(string) string {
	return func(req string) string {
		return "HTTP/1.1 200 OK\r\nX-Echo: " + rawField(req, "X-Echo") +
			"\r\nSet-Cookie: big=" + strings.Repeat("c", extra) + "\r\nContent-Length: 2\r\n\r\nok"
	}
}

// TestLargeResponseHeadIsNotABackendFailure: a response head up to max_header_bytes
// passes (a backend echoing a 6000-byte request field, a big Set-Cookie); one over it is
// 502, tried once and never counted against the backend, so no client can open breakers.
func TestLargeResponseHeadIsNotABackendFailure(t *testing.T) {
	t.Parallel()
	a, b := startTapBackend(t, echoField(4000)), startTapBackend(t, echoField(4000))
	cfg := parseConfig(t, retryConfig(t, "    retry: { attempts: 2, on: [connect, \"502\"] }\n"+
		"    circuit_breaker: { consecutive_failures: 3, open_for: 30s }\n", a.url, b.url))
	px := startProxy(t, cfg)
	id := strings.Repeat("A", 6000)
	for i := range 12 {
		resp, _ := px.raw(t, "GET / HTTP/1.1\r\nHost: x\r\nX-Echo: "+id+"\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(resp, "HTTP/1.1 200") || !strings.Contains(resp, "\r\nX-Echo: "+id+"\r\n") {
			t.Fatalf("request %d with a 6000-byte X-Echo: got %.60q; want 200 and the field echoed", i, resp)
		}
	}
	// Over the limit: the echo plus the backend's own fields exceed 16 KiB.
	a.take()
	b.take()
	resp, _ := px.raw(t, "GET / HTTP/1.1\r\nHost: x\r\nX-Echo: "+strings.Repeat("B", 13000)+"\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(resp, "HTTP/1.1 502") {
		t.Fatalf("response head over max_header_bytes: got %.60q; want 502", resp)
	}
	if n := len(a.take()) + len(b.take()); n != 1 {
		t.Fatalf("a response head over the limit was tried %d times; want 1 (not retried)", n)
	}
	for _, be := range px.builder.Store.Load().Backends() {
		if f := be.Stats.Failures.Load(); f != 0 || be.Stats.Breaker.State().String() != "closed" {
			t.Fatalf("%s: %d failures, breaker %s; want 0 and closed", be.ID, f, be.Stats.Breaker.State())
		}
	}
	if resp, _ := px.raw(t, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(resp, "HTTP/1.1 200") {
		t.Fatalf("an ordinary request afterwards got %.60q; want 200", resp)
	}
}

// trailerSection returns what follows the last chunk of a raw chunked request: its
// trailer fields and the blank line ("\r\n" when there are none).
func trailerSection(req string) string {
	_, after, ok := strings.Cut(req, "\r\n0\r\n")
	if !ok {
		return "(no last chunk)"
	}
	return after
}

// TestRequestTrailersAreDropped: trailer fields of a chunked request (RFC 9110 §6.5)
// never reach the backend — malformed, claim-named, or many — and neither does the
// Trailer field announcing them; the body itself arrives whole. A body over
// request_buffer_bytes, whose trailers are read while it streams upstream, too.
func TestRequestTrailersAreDropped(t *testing.T) {
	t.Parallel()
	be := startTapBackend(t, answerOK)
	px := startProxy(t, poolConfig(t, "server: { request_buffer_bytes: 1024 }\n", be.url))
	big := strings.Repeat("z", 3000) // over request_buffer_bytes: streamed
	for _, tr := range []string{"X-F: 1\r\n", "X User: 1\r\n", "X_F: 1\r\n", "X-D: 1\r\n folded\r\n",
		"X-B: 1\nX-C: 2\r\n", "X-User: admin\r\n", "X-Forwarded-For: 10.0.0.1\r\n", strings.Repeat("X-N: a\r\n", 300)} {
		for _, body := range []string{"hello", big} {
			req := "POST /up HTTP/1.1\r\nHost: x\r\nTrailer: X-F, X-User\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
				strconv.FormatInt(int64(len(body)), 16) + "\r\n" + body + "\r\n0\r\n" + tr + "\r\n"
			resp, _ := px.raw(t, req)
			got := be.take()
			for _, g := range got {
				if s := trailerSection(g); s != "\r\n" {
					t.Fatalf("trailer %q (body %d bytes): the backend got trailer section %.80q; want none", tr, len(body), s)
				}
				if v := rawField(g, "Trailer"); v != "" {
					t.Fatalf("trailer %q: the backend got Trailer: %s; want no Trailer field", tr, v)
				}
				if !strings.Contains(g, body) {
					t.Fatalf("trailer %q: the body did not arrive whole", tr)
				}
			}
			if tr == "X-F: 1\r\n" && (!strings.HasPrefix(resp, "HTTP/1.1 200") || len(got) != 1) {
				t.Fatalf("a well-formed trailer (body %d bytes): got %.40q, %d forwarded; want 200, 1", len(body), resp, len(got))
			}
		}
	}
}

// TestConnectionCannotNameProxyHeaders: Connection tokens name only fields the client
// sent; the claim headers the proxy sets after JWT verification, X-Forwarded-* and
// X-Request-Id reach the backend whatever the client lists (before: "Connection: close,
// X-User, X-Role" deleted the verified claims).
func TestConnectionCannotNameProxyHeaders(t *testing.T) {
	t.Parallel()
	px, _, sign := jwtSetup(t, config.JWT{ForwardClaims: map[string]string{"sub": "X-User", "role": "X-Role"}}, "", echoHeaders)
	tok := sign(map[string]any{"sub": "alice", "role": "user", "exp": time.Now().Add(time.Hour).Unix()})
	resp, _ := px.raw(t, "GET /x HTTP/1.1\r\nHost: x\r\nAuthorization: "+tok+
		"\r\nX-Mine: hop\r\nConnection: close, X-User, X-Role, X-Mine, X-Forwarded-For, X-Forwarded-Proto, X-Request-Id\r\n\r\n")
	_, body, _ := strings.Cut(resp, "\r\n\r\n")
	if !strings.HasPrefix(resp, "HTTP/1.1 200") {
		t.Fatalf("got %.60q; want 200", resp)
	}
	got := map[string]string{}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("cannot decode echoed headers %q: %v", body, err)
	}
	for name, want := range map[string]string{"X-User": "alice", "X-Role": "user", "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http"} {
		if got[name] != want {
			t.Errorf("backend got %s %q; want %q", name, got[name], want)
		}
	}
	if got["X-Request-Id"] == "" {
		t.Error("backend got no X-Request-Id")
	}
	if v, ok := got["X-Mine"]; ok {
		t.Errorf("backend got X-Mine %q; a field the client named in Connection is hop-by-hop", v)
	}
}

// TestUntrustedForwardedFamilyDropped: from a peer not in trusted_proxies, Forwarded (RFC
// 7239) and every X-Forwarded-* field are dropped, whatever their case or count; the
// backend sees only the ones the proxy sets. A trusted peer's pass.
func TestUntrustedForwardedFamilyDropped(t *testing.T) {
	t.Parallel()
	const sent = "Forwarded: for=1.2.3.4;host=internal;proto=https\r\nX-Forwarded-Port: 443\r\n" +
		"x-forwarded-prefix: /admin\r\nX-Forwarded-Ssl: on\r\nX-Forwarded-Server: x\r\nX-FORWARDED-PORT: 8443\r\n" +
		"X-Forwarded-Host: internal\r\nX-Forwarded-Scheme: https\r\n"
	for _, trusted := range []bool{false, true} {
		be, px := tappedProxy(t, trusted)
		resp, _ := px.raw(t, "GET /x HTTP/1.1\r\nHost: pub.example\r\n"+sent+"Connection: close\r\n\r\n")
		got := be.take()
		if !strings.HasPrefix(resp, "HTTP/1.1 200") || len(got) != 1 {
			t.Fatalf("trusted %v: got %.40q, %d forwarded; want 200, 1", trusted, resp, len(got))
		}
		for _, name := range []string{"Forwarded", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Ssl", "X-Forwarded-Server", "X-Forwarded-Scheme"} {
			if v := rawField(got[0], name); (v != "") != trusted {
				t.Errorf("trusted %v: backend got %s %q", trusted, name, v)
			}
		}
		if !trusted {
			if v := rawField(got[0], "X-Forwarded-Host"); v != "pub.example" {
				t.Errorf("untrusted: backend got X-Forwarded-Host %q; want pub.example", v)
			}
			if strings.Count(strings.ToLower(got[0]), "x-forwarded-port") != 0 {
				t.Errorf("untrusted: a second X-Forwarded-Port line reached the backend:\n%s", got[0])
			}
		}
	}
}

// TestStickyAcrossPoolsWritesNothing: one client whose requests alternate between two
// pools (routes) with one session: the session's pool keeps it on its backend, the other
// pool places it by rendezvous hashing of its id (stable), and nothing is written to Redis
// or re-issued (before: each request moved the session, a Redis write and a new cookie).
// Header-keyed sessions alike: one pin, no re-pin.
func TestStickyAcrossPoolsWritesNothing(t *testing.T) {
	t.Parallel()
	rs := testredis.Start(t)
	bes := map[string]*testBackend{}
	for _, n := range []string{"a", "b", "c", "d"} {
		bes[n] = startBackend(t, named(n))
	}
	for _, mode := range []string{"cookie", "header"} {
		st := newRedisStore(t, rs, sticky.Options{Timeout: 2 * time.Second})
		stickyFields := ""
		if mode == "header" {
			stickyFields = ", header: X-Session"
		}
		cfg := parseConfig(t, fmt.Sprintf(`pools:
  - name: web
    backends: [{ url: %q }, { url: %q }]
  - name: admin
    backends: [{ url: %q }, { url: %q }]
routes:
  - { match: { path_prefix: /admin }, pool: admin }
sticky: { enabled: true%s }
`, bes["a"].url, bes["b"].url, bes["c"].url, bes["d"].url, stickyFields))
		px := startProxy(t, cfg, withSticky(st))
		hc := px.client()
		get := func(path, cookie string) (backend, setCookie string) {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + px.addr + path)
			if cookie != "" {
				req.Header.SetCookie("lb_sticky", cookie)
			}
			if mode == "header" {
				req.Header.Set("X-Session", "s1")
			}
			if err := hc.DoTimeout(req, resp, 5*time.Second); err != nil || resp.StatusCode() != 200 {
				t.Fatalf("%s GET %s: %v, status %d", mode, path, err, resp.StatusCode())
			}
			v := resp.Header.PeekCookie("lb_sticky")
			v, _, _ = bytes.Cut(v, []byte(";"))
			_, v, _ = bytes.Cut(v, []byte("="))
			return string(resp.Header.Peek("X-Backend")), string(v)
		}
		first, cookie := get("/x", "")
		if (cookie == "") != (mode == "header") {
			t.Fatalf("%s: first response set cookie %q", mode, cookie)
		}
		if mode == "header" {
			// The first pin's SET races the invalidation of the miss its lookup cached
			// (rueidis client-side caching): wait until this instance reads it back, so
			// what follows tests alternating pools and not that window.
			testtool.WaitFor(t, 5*time.Second, "the header session's first pin to be read back", func() bool {
				_, o := st.Lookup([]byte("s1"), time.Now().UnixNano())
				return o == sticky.CacheHit || o == sticky.RedisHit
			})
		}
		start := st.Stats()
		var adminBackend string
		for i := range 20 {
			path := "/x"
			if i%2 == 0 {
				path = "/admin/x"
			}
			b, set := get(path, cookie)
			if set != "" {
				t.Fatalf("%s request %d (%s): the cookie was re-issued; want it left alone", mode, i, path)
			}
			switch {
			case path == "/x" && b != first:
				t.Fatalf("%s request %d: web went to %s; want its session's %s", mode, i, b, first)
			case path != "/x" && adminBackend == "":
				adminBackend = b
			case path != "/x" && b != adminBackend:
				t.Fatalf("%s request %d: admin went to %s, then %s; want one backend", mode, i, adminBackend, b)
			}
		}
		if got := st.Stats(); got.Pins != start.Pins || got.Repins != start.Repins {
			t.Fatalf("%s: 20 alternating requests made %d pins, %d re-pins; want none", mode, got.Pins-start.Pins, got.Repins-start.Repins)
		}
	}
	keys, err := rs.Client().Do(t.Context(), rs.Client().B().Keys().Pattern(sticky.DefaultKeyPrefix+"s:*").Build()).AsStrSlice()
	if err != nil || len(keys) != 1 {
		t.Fatalf("session keys in Redis: %v, %v; want 1 (the header session's first pin)", keys, err)
	}
}

// TestPipelinedUploadWithLFBody: a GET whose large response is written while the next
// pipelined request, a POST, is still sending its body of LF-ended lines: both answered
// 200 and the body forwarded whole (before: the body's rest was scanned as a head, 400).
func TestPipelinedUploadWithLFBody(t *testing.T) {
	t.Parallel()
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if ctx.IsPost() {
			ctx.SetBodyString(strconv.Itoa(len(ctx.Request.Body())))
			return
		}
		ctx.SetBodyString(strings.Repeat("g", 70000))
	})
	px := startProxy(t, poolConfig(t, "", be.url))
	c, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	body := strings.Repeat("GET /x HTTP/1.1\n", 6250) // an access log upload: lines that look like request lines
	if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: a\r\n\r\nPOST /up HTTP/1.1\r\nHost: a\r\nContent-Type: text/csv\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\n\r\n"+body[:992]); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET: %v %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if _, err := io.WriteString(c, body[992:]); err != nil { // after the GET's response, from a line's start
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(got) != strconv.Itoa(len(body)) {
		t.Fatalf("pipelined POST: got %d %q; want 200 and the body's length %d", resp.StatusCode, got, len(body))
	}
}

// TestPipelinedBareLFRefused: a bare-LF head pipelined behind a good request, or behind a
// body, gets 400 and never reaches the backend; the requests before it are answered.
func TestPipelinedBareLFRefused(t *testing.T) {
	t.Parallel()
	be := startTapBackend(t, answerOK)
	px := startProxy(t, poolConfig(t, "", be.url))
	for _, first := range []string{
		"GET /a HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\na\nb\n",
		"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\na\nb\n\r\n0\r\n\r\n",
	} {
		for _, bad := range []string{"GET /b HTTP/1.1\nHost: a\r\n\r\n", "GET /b HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n"} {
			resp, closed := px.raw(t, first+bad)
			got := be.take()
			if strings.Count(resp, "HTTP/1.1 200") != 1 || !strings.Contains(resp, "HTTP/1.1 400") || !closed {
				t.Fatalf("%q then %q: got %q (closed %v); want 200, then 400 and close", first, bad, resp, closed)
			}
			if len(got) != 1 || !strings.HasPrefix(got[0], strings.Split(first, "\r\n")[0]) {
				t.Fatalf("%q then %q: the backend got %q; want only the first request", first, bad, got)
			}
		}
	}
}

// TestHostPortRange: a Host or authority port over 65535 is not a port: 400, nothing
// forwarded.
func TestHostPortRange(t *testing.T) {
	t.Parallel()
	be := startTapBackend(t, answerOK)
	px := startProxy(t, poolConfig(t, "", be.url))
	for _, c := range []struct{ target, host, status string }{
		{"/x", "a.example:65535", "200"},
		{"/x", "a.example:65536", "400"},
		{"/x", "a.example:99999", "400"},
		{"/x", "[::1]:70000", "400"},
		{"http://a.example:70000/x", "a.example", "400"},
	} {
		resp, _ := px.raw(t, "GET "+c.target+" HTTP/1.1\r\nHost: "+c.host+"\r\nConnection: close\r\n\r\n")
		got := be.take()
		if !strings.HasPrefix(resp, "HTTP/1.1 "+c.status) || (c.status == "400") != (len(got) == 0) {
			t.Fatalf("GET %s, Host %s: got %.40q, %d forwarded; want %s", c.target, c.host, resp, len(got), c.status)
		}
	}
}

// TestUpgradeResponseHeadUpToLimit: a 101 whose head is over 4 KiB (a big Set-Cookie) but
// within max_header_bytes is relayed; one over the limit is 502 and not a backend failure.
func TestUpgradeResponseHeadUpToLimit(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cookie int
		status string
	}{{6000, "101"}, {20000, "502"}} {
		be := startTapBackend(t, func(string) string {
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSet-Cookie: big=" + strings.Repeat("c", c.cookie) + "\r\n\r\n"
		})
		px := startProxy(t, poolConfig(t, "", be.url))
		resp, _ := px.raw(t, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		if !strings.HasPrefix(resp, "HTTP/1.1 "+c.status) {
			t.Fatalf("101 with a %d-byte Set-Cookie: got %.60q; want %s", c.cookie, resp, c.status)
		}
		for _, b := range px.builder.Store.Load().Backends() {
			if f := b.Stats.Failures.Load(); f != 0 {
				t.Fatalf("101 with a %d-byte Set-Cookie: %d backend failures; want 0", c.cookie, f)
			}
		}
	}
}
