package proxy

import (
	"encoding/json"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// echoHeaders answers with the request headers it received as a JSON object.
func echoHeaders(ctx *fasthttp.RequestCtx) {
	m := map[string]string{}
	ctx.Request.Header.VisitAll(func(k, v []byte) { m[string(k)] = string(v) })
	if ctx.Request.Header.ConnectionClose() {
		m["Connection"] = "close"
	}
	body, _ := json.Marshal(m)
	ctx.SetBody(body)
}

func decodeHeaders(t *testing.T, resp *fasthttp.Response) map[string]string {
	t.Helper()
	m := map[string]string{}
	if err := json.Unmarshal(resp.Body(), &m); err != nil {
		t.Fatalf("cannot decode echoed headers %q: %v", resp.Body(), err)
	}
	return m
}

func TestHopByHopRequestHeadersAreNotForwarded(t *testing.T) {
	t.Parallel()
	be := startBackend(t, echoHeaders)
	px := startProxy(t, poolConfig(t, "", be.url))
	resp, _ := px.raw(t, "GET /h HTTP/1.1\r\nHost: example.com\r\n"+
		"Connection: keep-alive, X-Named-Hop\r\nX-Named-Hop: secret\r\nKeep-Alive: timeout=5\r\n"+
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\nProxy-Foo: bar\r\n"+
		"TE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-Keep: yes\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n")
	i := strings.Index(resp, "\r\n\r\n")
	if !strings.HasPrefix(resp, "HTTP/1.1 200") || i < 0 {
		t.Fatalf("got response %q; want 200", resp)
	}
	got := map[string]string{}
	if err := json.Unmarshal([]byte(resp[i+4:]), &got); err != nil {
		t.Fatalf("cannot decode %q: %v", resp[i+4:], err)
	}
	for _, h := range []string{"Connection", "X-Named-Hop", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Proxy-Foo", "Te", "Trailer", "Upgrade"} {
		if v, ok := got[h]; ok {
			t.Errorf("backend got hop-by-hop header %s: %q; want it removed", h, v)
		}
	}
	if got["X-Keep"] != "yes" {
		t.Errorf("got X-Keep %q; want yes", got["X-Keep"])
	}
	if got["Traceparent"] != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" {
		t.Errorf("got traceparent %q; want it passed through", got["Traceparent"])
	}
}

func TestConnectionCloseFromClientIsNotForwarded(t *testing.T) {
	t.Parallel()
	be := startBackend(t, echoHeaders)
	px := startProxy(t, poolConfig(t, "", be.url))
	resp := px.get(t, "/", "Connection", "close")
	if got := decodeHeaders(t, resp)["Connection"]; got != "" {
		t.Fatalf("backend got Connection %q; want none (the upstream connection is the proxy's)", got)
	}
}

func TestForwardedHeaders(t *testing.T) {
	t.Parallel()
	be := startBackend(t, echoHeaders)
	f := func(trusted string, sent []string, want map[string]string) {
		t.Helper()
		px := startProxy(t, poolConfig(t, trusted, be.url))
		got := decodeHeaders(t, px.get(t, "/", sent...))
		for k, v := range want {
			if v == "PROXY" {
				v = px.addr // the Host the client sent
			}
			if got[k] != v {
				t.Errorf("trusted=%q sent=%q: got %s %q; want %q", trusted, sent, k, got[k], v)
			}
		}
	}
	// Untrusted peer (default: trust nobody): spoofed forwarded headers are replaced.
	f("", []string{"X-Forwarded-For", "6.6.6.6", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "evil.example"},
		map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "PROXY"})
	// Trusted peer: the chain is appended to, proto and host kept.
	f("server: { trusted_proxies: [127.0.0.1/32] }\n",
		[]string{"X-Forwarded-For", "203.0.113.7", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "shop.example"},
		map[string]string{"X-Forwarded-For": "203.0.113.7, 127.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example"})
	// Trusted peer without forwarded headers: they are set.
	f("server: { trusted_proxies: [\"127.0.0.0/8\"] }\n", nil,
		map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http"})
}

func TestForwardedHostIsTheRequestHost(t *testing.T) {
	t.Parallel()
	be := startBackend(t, echoHeaders)
	px := startProxy(t, poolConfig(t, "", be.url))
	resp, _ := px.raw(t, "GET / HTTP/1.1\r\nHost: shop.example:8080\r\nConnection: close\r\n\r\n")
	if !strings.Contains(resp, `"X-Forwarded-Host":"shop.example:8080"`) || !strings.Contains(resp, `"Host":"shop.example:8080"`) {
		t.Fatalf("got %q; want Host and X-Forwarded-Host shop.example:8080", resp)
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	be := startBackend(t, echoHeaders)
	px := startProxy(t, poolConfig(t, "", be.url))
	if got := decodeHeaders(t, px.get(t, "/", "X-Request-Id", "abc-123"))["X-Request-Id"]; got != "abc-123" {
		t.Errorf("got X-Request-Id %q; want the client's abc-123 kept", got)
	}
	hex := regexp.MustCompile(`^[0-9a-f]{32}$`)
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		id := decodeHeaders(t, px.get(t, "/"))["X-Request-Id"]
		if !hex.MatchString(id) {
			t.Fatalf("got generated X-Request-Id %q; want 32 hex digits", id)
		}
		if seen[id] {
			t.Fatalf("X-Request-Id %q generated twice", id)
		}
		seen[id] = true
	}
}

func TestHopByHopResponseHeadersAreNotForwarded(t *testing.T) {
	t.Parallel()
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		h := &ctx.Response.Header
		h.Set("Connection", "X-Secret-Hop")
		h.Set("X-Secret-Hop", "1")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set("Upgrade", "h2c")
		h.Set("X-Kept", "1")
		ctx.SetBodyString("ok")
	})
	closer := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetConnectionClose()
		ctx.SetBodyString("bye")
	})
	px := startProxy(t, poolConfig(t, "", be.url))
	resp := px.get(t, "/")
	for _, h := range []string{"X-Secret-Hop", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
		if v := resp.Header.Peek(h); len(v) > 0 {
			t.Errorf("client got hop-by-hop %s: %q; want it removed", h, v)
		}
	}
	if string(resp.Header.Peek("X-Kept")) != "1" {
		t.Errorf("X-Kept was removed; want end-to-end headers kept")
	}

	// A backend closing its connection does not close the client's: a second request on
	// it is answered too.
	px2 := startProxy(t, poolConfig(t, "", closer.url))
	get := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	raw, closed := px2.raw(t, get+get)
	if closed || strings.Count(raw, "HTTP/1.1 200 ") != 2 || strings.Contains(strings.ToLower(raw), "connection: close") {
		t.Fatalf("got %q (closed=%v); want the client connection kept open for both requests", raw, closed)
	}
}

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	hang := startBackend(t, func(ctx *fasthttp.RequestCtx) { <-release })
	t.Cleanup(func() { close(release) }) // before the backend's shutdown waits for it
	ok := startBackend(t, named("ok"))
	dead := "http://" + deadAddr(t)

	f := func(name string, px *testProxy, req string, wantStatus string, wantInBody string, wantHeader string) {
		t.Helper()
		resp, _ := px.raw(t, req)
		if !strings.HasPrefix(resp, "HTTP/1.1 "+wantStatus) {
			t.Fatalf("%s: got %q; want status %s", name, resp, wantStatus)
		}
		if !strings.Contains(resp, wantInBody) {
			t.Errorf("%s: got %q; want body containing %q", name, resp, wantInBody)
		}
		if wantHeader != "" && !strings.Contains(resp, wantHeader) {
			t.Errorf("%s: got %q; want header %q", name, resp, wantHeader)
		}
		if strings.Contains(resp, "127.0.0.1") {
			t.Errorf("%s: got %q; the error leaks a backend address", name, resp)
		}
		if !strings.Contains(resp, "Content-Type: application/json") {
			t.Errorf("%s: got %q; want a JSON error body", name, resp)
		}
	}
	get := "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

	f("dead backend", startProxy(t, poolConfig(t, "", dead)), get, "503", `{"error":"no backend available"}`, "Retry-After: 1")

	cfg := parseConfig(t, "pools:\n  - name: web\n    timeouts: { connect: 500ms, response: 300ms }\n    backends: [ { url: \""+hang.url+"\" } ]\n")
	f("hanging backend", startProxy(t, cfg), get, "504", `{"error":"gateway timeout"}`, "")

	px := startProxy(t, poolConfig(t, "", ok.url))
	if _, err := px.builder.Drain(px.builder.Store.Load().Backends()[0].ID); err != nil {
		t.Fatal(err)
	}
	f("all drained", px, get, "503", `{"error":"no backend available"}`, "Retry-After: 1")

	small := poolConfig(t, "server: { max_body_bytes: 100, max_header_bytes: 1024 }\n", ok.url)
	pxs := startProxy(t, small)
	f("body over max_body_bytes", pxs, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n"+strings.Repeat("a", 101), "413", "too large", "")
	f("header over max_header_bytes", pxs, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 2000)+"\r\n\r\n", "431", "too large", "")
	f("malformed request line", pxs, "GARBAGE\r\n\r\n", "400", "bad request", "")
	if n := ok.hits.Load(); n != 0 {
		t.Errorf("backend got %d requests; want 0 (every request above is refused before it)", n)
	}
	// A chunked upload has no length to check up front: it streams, and is cut off (413)
	// as soon as it passes the limit. The backend sees a truncated request, never the excess.
	f("chunked body over max_body_bytes", pxs, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"c8\r\n"+strings.Repeat("a", 200)+"\r\n0\r\n\r\n", "413", "too large", "")
}

// TestTableSwapUnderLoad swaps 100 tables while clients send requests: none may fail.
func TestTableSwapUnderLoad(t *testing.T) {
	t.Parallel()
	a, b := startBackend(t, named("a")), startBackend(t, named("b"))
	cfgA := poolConfig(t, "", a.url, b.url)
	cfgB := poolConfig(t, "", b.url)
	px := startProxy(t, cfgA)
	c := px.client()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	var total int
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			n := 0
			for {
				select {
				case <-stop:
					mu.Lock()
					total += n
					mu.Unlock()
					return
				default:
				}
				req.SetRequestURI("http://" + px.addr + "/")
				err := c.Do(req, resp)
				n++
				if err != nil || resp.StatusCode() != 200 {
					mu.Lock()
					failures = append(failures, fmtFailure(err, resp))
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < 100; i++ {
		cfg := cfgA
		if i%2 == 1 {
			cfg = cfgB
		}
		if _, err := px.builder.Apply(cfg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed across 100 swaps; first: %s", len(failures), total, failures[0])
	}
	if total < 100 {
		t.Fatalf("only %d requests were sent; want the swaps to happen under load", total)
	}
	if v := px.builder.Store.Load().Version; v != 101 {
		t.Fatalf("got table version %d; want 101", v)
	}
}

func fmtFailure(err error, resp *fasthttp.Response) string {
	if err != nil {
		return err.Error()
	}
	return string(resp.Header.StatusMessage()) + " " + string(resp.Body())
}

// echoRaw answers with the header block exactly as the backend received it.
func echoRaw(ctx *fasthttp.RequestCtx) {
	ctx.SetBody(append([]byte(nil), ctx.Request.Header.RawHeaders()...))
}

// TestForwardedHeadersCannotBeSmuggledIn: duplicates of the forwarding headers, their
// underscore spellings and Connection tokens naming protected headers must not get a
// client's values to the backend (found in review).
func TestForwardedHeadersCannotBeSmuggledIn(t *testing.T) {
	t.Parallel()
	be := startBackend(t, echoRaw)
	px := startProxy(t, poolConfig(t, "", be.url))
	resp, _ := px.raw(t, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 6.6.6.6\r\n"+
		"X-Forwarded-Proto: https\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Host: evil\r\n"+
		"X_Forwarded_For: 7.7.7.7\r\nConnection: close, Host, Content-Length\r\n\r\n")
	i := strings.Index(resp, "\r\n\r\n")
	if i < 0 {
		t.Fatalf("got %q", resp)
	}
	got := strings.ToLower(resp[i+4:])
	for _, bad := range []string{"1.1.1.1", "6.6.6.6", "7.7.7.7", "https", "evil", "x_forwarded"} {
		if strings.Contains(got, bad) {
			t.Errorf("backend got %q; the client's %q got through", got, bad)
		}
	}
	if strings.Count(got, "x-forwarded-for: 127.0.0.1") != 1 || !strings.Contains(got, "x-forwarded-host: a") || !strings.Contains(got, "host: a") {
		t.Errorf("backend got %q; want one X-Forwarded-For of the peer, Host and X-Forwarded-Host a", got)
	}

	// A trusted peer's chain in several lines is joined in order and walked from the right:
	// the client is 198.51.100.2 (not trusted); what it wrote left of it (203.0.113.1) is
	// its own claim and dropped; the peer is appended.
	px2 := startProxy(t, poolConfig(t, "server: { trusted_proxies: [127.0.0.1/32] }\n", be.url))
	resp, _ = px2.raw(t, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.1\r\nX-Forwarded-For: 198.51.100.2\r\nConnection: close\r\n\r\n")
	if !strings.Contains(strings.ToLower(resp), "x-forwarded-for: 198.51.100.2, 127.0.0.1\r\n") || strings.Count(strings.ToLower(resp), "x-forwarded-for") != 1 {
		t.Fatalf("got %q; want one chain from the client, ending with the peer", resp)
	}
}
