package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go-loadbalancer/auth"
	"go-loadbalancer/config"
)

// exchange writes request on a fresh connection and reads one response: its status,
// body, and whether the proxy then closed the connection (it said Connection: close and
// the next read ends).
func exchange(t testing.TB, addr, request string) (status int, body string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // a guard against a hang, not a measure
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%q: no response: %v", request, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Close {
		_, err := br.ReadByte()
		closed = err != nil
	}
	return resp.StatusCode, string(b), closed
}

// jwtVerifier returns a verifier for HS256 tokens with skip_paths [/public] and a token
// it accepts.
func jwtVerifier(t testing.TB) (*auth.Verifier, string) {
	t.Helper()
	v, sign := hs256Verifier(t, config.JWT{SkipPaths: []string{"/public"}})
	return v, sign(aliceClaims())
}

// fwd is the request a backend should receive for a client request from 127.0.0.1 with
// X-Request-Id r: the request line, Host, the client's other headers, then the
// forwarding headers the proxy sets.
func fwd(line, host string, headers ...string) string {
	var sb strings.Builder
	sb.WriteString(line + "\r\nHost: " + host + "\r\n")
	for _, h := range headers {
		sb.WriteString(h + "\r\n")
	}
	sb.WriteString("X-Request-Id: r\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n")
	if host != "" {
		sb.WriteString("X-Forwarded-Host: " + host + "\r\n")
	}
	sb.WriteString("\r\n")
	return sb.String()
}

// TestRequestCorpus sends raw requests over TCP to a real proxy in front of a raw
// recording backend, and checks the status the client got, that a refused request
// closed its connection, and the exact bytes the backend received (nothing, for a
// refused request). Every request case of "one request, one meaning" is here, with the
// smuggling vectors.
func TestRequestCorpus(t *testing.T) {
	t.Parallel()
	rec := startTapBackend(t, answerOK)
	v, tok := jwtVerifier(t)
	type tc struct {
		name    string
		config  string // extra YAML
		request string
		status  int
		forward string // "" when the backend must receive nothing
	}
	const id = "X-Request-Id: r\r\n"
	bearer := "Authorization: Bearer " + tok
	smuggled := "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
	cases := []tc{
		{name: "plain GET", request: "GET /public/x HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n",
			status: 200, forward: fwd("GET /public/x HTTP/1.1", "a.example")},
		{name: "query kept as sent", request: "GET /public/x?a=%2F..%2F&b=/../ HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n",
			status: 200, forward: fwd("GET /public/x?a=%2F..%2F&b=/../ HTTP/1.1", "a.example")},

		// Paths: decided and forwarded in one canonical form.
		{name: "dot segments are resolved and forwarded resolved",
			request: "GET /admin/../public/./x HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n",
			status:  200, forward: fwd("GET /public/x HTTP/1.1", "a.example")},
		{name: "dots out of the skip path need a token",
			request: "GET /public/../admin/secret HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n", status: 401},
		{name: "dots out of the skip path, with a token, reach the resolved path",
			request: "GET /public/../admin/secret HTTP/1.1\r\nHost: a.example\r\n" + bearer + "\r\n" + id + "\r\n",
			status:  200, forward: fwd("GET /admin/secret HTTP/1.1", "a.example", bearer)},
		{name: "escaped slashes are refused", request: "GET /admin/x/..%2F..%2Fpublic HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n", status: 400},
		{name: "escaped dots are refused", request: "GET /admin/x/%2e%2e/%2e%2e/public HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n", status: 400},
		{name: "escaped slash inside a segment is refused", request: "GET /admin%2f..%2fpublic HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n", status: 400},
		{name: "escaped backslash is refused", request: "GET /public%5c..%5cadmin HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n", status: 400},
		{name: "keep: an escaped slash is data, and the path needs a token",
			config:  "server: { escaped_slashes: keep }\n",
			request: "GET /admin/x/..%2F..%2Fpublic HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n", status: 401},
		{name: "keep: escaped dots are dots",
			config:  "server: { escaped_slashes: keep }\n",
			request: "GET /admin/x/%2e%2e/%2e%2e/public HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n",
			status:  200, forward: fwd("GET /public HTTP/1.1", "a.example")},
		{name: "keep: forwarded with the escape as sent (upper-case hex)",
			config:  "server: { escaped_slashes: keep }\n",
			request: "GET /admin%2f..%2fpublic HTTP/1.1\r\nHost: a.example\r\n" + bearer + "\r\n" + id + "\r\n",
			status:  200, forward: fwd("GET /admin%2F..%2Fpublic HTTP/1.1", "a.example", bearer)},
		{name: "unescape: decoded, then resolved, then matched",
			config:  "server: { escaped_slashes: unescape }\n",
			request: "GET /admin%2f..%2fpublic HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n",
			status:  200, forward: fwd("GET /public HTTP/1.1", "a.example")},
		{name: "unescape: out of the skip path needs a token",
			config:  "server: { escaped_slashes: unescape }\n",
			request: "GET /public%2F..%2Fadmin HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n", status: 401},
		{name: "a dot segment with parameters is refused", request: "GET /public/..;/admin/secret HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n", status: 400},
		{name: "skip paths match whole segments", request: "GET /publicity-admin HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n", status: 401},
		{name: "a parameter does not make a skip path", request: "GET /public;x HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n", status: 401},
		{name: "unreserved escapes are decoded", request: "GET /%70ublic/%7Ex HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n",
			status: 200, forward: fwd("GET /public/~x HTTP/1.1", "a.example")},
		{name: "a path starting with // is refused", request: "GET //evil.example/public HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n", status: 400},
		{name: "a raw backslash is refused", request: "GET /public\\..\\admin HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n", status: 400},
		{name: "an encoded NUL is refused", request: "GET /public/x%00 HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n", status: 400},

		// Host: the one routed on is the one forwarded.
		{name: "absolute form: the authority replaces Host",
			request: "GET http://internal.example/public/h HTTP/1.1\r\nHost: public.example\r\n" + id + "\r\n",
			status:  200, forward: fwd("GET /public/h HTTP/1.1", "internal.example")},
		{name: "Host is lower-cased: routed on as forwarded",
			request: "GET /public/x HTTP/1.1\r\nHost: A.Example:8080\r\n" + id + "\r\n",
			status:  200, forward: fwd("GET /public/x HTTP/1.1", "a.example:8080")},
		{name: "absolute form without a path", request: "GET http://internal.example?q HTTP/1.1\r\nHost: x\r\n" + bearer + "\r\n" + id + "\r\n",
			status: 200, forward: fwd("GET /?q HTTP/1.1", "internal.example", bearer)},
		{name: "absolute form is canonical too", request: "GET http://a.example/admin/%2e%2e/public HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n", status: 400},
		{name: "userinfo in Host", request: "GET /public/x HTTP/1.1\r\nHost: x@internal.example\r\n" + id + "\r\n", status: 400},
		{name: "userinfo in the authority", request: "GET http://x@internal.example/public HTTP/1.1\r\nHost: a\r\n" + id + "\r\n", status: 400},
		{name: "empty authority", request: "GET http:///public HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n", status: 400},
		{name: "invalid Host", request: "GET /public HTTP/1.1\r\nHost: a b\r\n" + id + "\r\n", status: 400},
		{name: "bad port", request: "GET /public HTTP/1.1\r\nHost: a.example:80x\r\n" + id + "\r\n", status: 400},
		{name: "two Hosts", request: "GET /public HTTP/1.1\r\nHost: a.example\r\nHost: internal.example\r\n" + id + "\r\n", status: 400},
		{name: "HTTP/1.1 without Host", request: "GET /public HTTP/1.1\r\n" + id + "\r\n", status: 400},
		{name: "HTTP/1.0 without Host goes with the backend's address",
			request: "GET /public HTTP/1.0\r\n" + id + "\r\n",
			status:  200, forward: strings.Replace(fwd("GET /public HTTP/1.1", "BACKEND"), "X-Forwarded-Host: BACKEND\r\n", "", 1)},
		{name: "HTTP/1.0 is forwarded as HTTP/1.1", request: "GET /public HTTP/1.0\r\nHost: a.example\r\n" + id + "\r\n",
			status: 200, forward: fwd("GET /public HTTP/1.1", "a.example")},
		{name: "HTTP/2.0 in a request line", request: "GET /public HTTP/2.0\r\nHost: a.example\r\n" + id + "\r\n", status: 505},
		{name: "HTTP/1.2", request: "GET /public HTTP/1.2\r\nHost: a.example\r\n" + id + "\r\n", status: 505},
		{name: "IPv6 literal Host", request: "GET /public HTTP/1.1\r\nHost: [::1]:8080\r\n" + id + "\r\n",
			status: 200, forward: fwd("GET /public HTTP/1.1", "[::1]:8080")},
		{name: "asterisk form", request: "OPTIONS * HTTP/1.1\r\nHost: a.example\r\n" + id + "\r\n", status: 400},

		// Strict framing.
		{name: "space in a header name", request: "GET /public HTTP/1.1\r\nHost: a.example\r\nX Y: z\r\n" + id + "\r\n", status: 400},
		{name: "space before the colon", request: "GET /public HTTP/1.1\r\nHost: a.example\r\nX-Y : z\r\n" + id + "\r\n", status: 400},
		{name: "invalid character in a header name", request: "GET /public HTTP/1.1\r\nHost: a.example\r\nX(Y): z\r\n" + id + "\r\n", status: 400},
		{name: "control character in a value", request: "GET /public HTTP/1.1\r\nHost: a.example\r\nX-Y: a\x01b\r\n" + id + "\r\n", status: 400},
		{name: "Transfer-Encoding: identity", request: "POST /public HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: identity\r\n\r\n" + smuggled, status: 400},
		{name: "Transfer-Encoding: chunked, identity", request: "POST /public HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", status: 400},
		{name: "Transfer-Encoding: gzip, chunked", request: "POST /public HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", status: 400},
		{name: "Transfer-Encoding twice", request: "POST /public HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400},
		{name: "Transfer-Encoding in HTTP/1.0", request: "POST /public HTTP/1.0\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400},
		{name: "POST without Content-Type gets none added", request: "POST /public HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\n" + id + "\r\nabc",
			status: 200, forward: strings.Replace(fwd("POST /public HTTP/1.1", "a.example", "Content-Length: 3"), "\r\n\r\n", "\r\n\r\nabc", 1)},
		{name: "chunked upload", request: "POST /public HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n" + id + "\r\n3\r\nabc\r\n0\r\n\r\n",
			status: 200, forward: strings.Replace(fwd("POST /public HTTP/1.1", "a.example", "Transfer-Encoding: chunked"), "\r\n\r\n", "\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 1)},
		{name: "bare LF request", request: "GET /public HTTP/1.1\nHost: a.example\n\n", status: 400},
		{name: "bare LF request line", request: "GET /public HTTP/1.1\nHost: a.example\r\n\r\n", status: 400},
		{name: "bare LF in a header", request: "GET /public HTTP/1.1\r\nHost: a.example\nX-A: b\r\n\r\n", status: 400},
		{name: "too many headers", request: "GET /public HTTP/1.1\r\nHost: a.example\r\n" + strings.Repeat("X-A: b\r\n", 100) + "\r\n", status: 431},
		{name: "max_headers is a setting", config: "server: { max_headers: 2 }\n",
			request: "GET /public HTTP/1.1\r\nHost: a.example\r\nX-A: 1\r\nX-B: 2\r\n\r\n", status: 431},

		// The smuggling vectors.
		{name: "CL.TE", request: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, status: 400},
		{name: "TE.CL", request: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n" + smuggled + "\r\n0\r\n\r\n", status: 400},
		{name: "duplicate CL", request: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: " + strconv.Itoa(len(smuggled)) + "\r\n\r\n" + smuggled, status: 400},
		{name: "obs-fold", request: "GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", status: 400},
		{name: "obs-fold TE", request: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc", status: 400},
		{name: "TE obfuscated", request: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\nContent-Length: 3\r\n\r\nabc", status: 400},
		{name: "TE with a space before the colon", request: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc", status: 400},
	}
	proxies := map[string]*testProxy{}
	for _, c := range cases {
		px := proxies[c.config]
		if px == nil { // started for the whole test, not the case
			px = startProxy(t, poolConfig(t, c.config, "http://"+rec.addr), func(o *Options) { o.Auth = v })
			proxies[c.config] = px
		}
		t.Run(c.name, func(t *testing.T) {
			rec.take()
			status, body, closed := exchange(t, px.addr, c.request)
			if status != c.status {
				t.Fatalf("got %d %s; want %d", status, body, c.status)
			}
			if status >= 400 && status != 401 && !closed {
				t.Errorf("a refused request left its connection open")
			}
			got := rec.take()
			want := strings.ReplaceAll(c.forward, "BACKEND", rec.addr)
			switch {
			case want == "" && len(got) > 0:
				t.Fatalf("the backend received %q; want nothing", got)
			case want != "" && (len(got) != 1 || got[0] != want):
				t.Fatalf("the backend received %q; want exactly\n%q", got, want)
			}
		})
	}
}

// TestClientFaultsSpareBackends: requests broken by the client — HTTP/1.0 without a Host
// included — are answered by the proxy, counted in lb_client_errors_total, and never
// count against a backend: no failure, no breaker opened, no retry.
func TestClientFaultsSpareBackends(t *testing.T) {
	t.Parallel()
	a, b := startTapBackend(t, answerOK), startTapBackend(t, answerOK)
	px := startProxy(t, poolConfig(t, "    circuit_breaker: { consecutive_failures: 2 }\n", "http://"+a.addr, "http://"+b.addr))
	for i := 0; i < 10; i++ {
		if status, body, _ := exchange(t, px.addr, "GET / HTTP/1.0\r\n\r\n"); status != 200 {
			t.Fatalf("HTTP/1.0 without Host: got %d %s; want 200 from a backend", status, body)
		}
		if status, _, _ := exchange(t, px.addr, "GET / HTTP/1.1\r\n\r\n"); status != 400 {
			t.Fatalf("HTTP/1.1 without Host: got %d; want 400", status)
		}
		if status, _, _ := exchange(t, px.addr, "GET /%2e%2e/x HTTP/1.1\r\nHost: x\r\n\r\n"); status != 400 {
			t.Fatalf("escaped dots: got %d; want 400", status)
		}
	}
	tab := px.builder.Store.Load()
	for _, be := range tab.Backends() {
		if n := be.Stats.Failures.Load(); n != 0 {
			t.Errorf("backend %s: %d failures; want 0", be.ID, n)
		}
		if !be.Stats.Breaker.Ready(time.Now().UnixNano()) {
			t.Errorf("backend %s: breaker open", be.ID)
		}
	}
	if n := tab.DefaultPool().Stats.Retries.Load(); n != 0 {
		t.Errorf("%d retries; want 0", n)
	}
	if n := px.px.ClientErrors("host"); n != 10 {
		t.Errorf("lb_client_errors_total{reason=\"host\"} = %d; want 10", n)
	}
	if n := px.px.ClientErrors("escaped_path"); n != 10 {
		t.Errorf("lb_client_errors_total{reason=\"escaped_path\"} = %d; want 10", n)
	}
}

// TestRoutedOnWhatIsForwarded: routes see the Host and path the backend receives — an
// absolute-form authority, not the Host header beside it; a dot-resolved path, matched on
// whole segments.
func TestRoutedOnWhatIsForwarded(t *testing.T) {
	t.Parallel()
	pub, internal := startTapBackend(t, answerOK), startTapBackend(t, answerOK)
	cfg := parseConfig(t, `pools:
  - name: public
    backends: [ { url: "http://`+pub.addr+`" } ]
  - name: internal
    backends: [ { url: "http://`+internal.addr+`" } ]
routes:
  - match: { host: internal.example }
    pool: internal
  - match: { path_prefix: /internal }
    pool: internal
`)
	px := startProxy(t, cfg)
	for _, c := range []struct {
		request, line, host string
		to                  *tapBackend
	}{
		{"GET http://internal.example/h HTTP/1.1\r\nHost: public.example\r\n\r\n", "GET /h HTTP/1.1", "internal.example", internal},
		{"GET http://public.example/h HTTP/1.1\r\nHost: internal.example\r\n\r\n", "GET /h HTTP/1.1", "public.example", pub},
		{"GET /public/../internal/x HTTP/1.1\r\nHost: public.example\r\n\r\n", "GET /internal/x HTTP/1.1", "public.example", internal},
		{"GET /internal/../public/x HTTP/1.1\r\nHost: public.example\r\n\r\n", "GET /public/x HTTP/1.1", "public.example", pub},
		{"GET /internalx HTTP/1.1\r\nHost: public.example\r\n\r\n", "GET /internalx HTTP/1.1", "public.example", pub},
	} {
		if status, body, _ := exchange(t, px.addr, c.request); status != 200 {
			t.Fatalf("%q: got %d %s", c.request, status, body)
		}
		got := c.to.take()
		if len(got) != 1 || !strings.HasPrefix(got[0], c.line+"\r\nHost: "+c.host+"\r\n") {
			t.Fatalf("%q: the routed-to backend received %q; want %q with Host %s", c.request, got, c.line, c.host)
		}
		if other := append(pub.take(), internal.take()...); len(other) != 0 {
			t.Fatalf("%q: the other backend received %q", c.request, other)
		}
	}
}
