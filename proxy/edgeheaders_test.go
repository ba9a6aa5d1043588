package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"go-loadbalancer/auth"
	"go-loadbalancer/config"
	"go-loadbalancer/ratelimit"
)

// TestClientAddressAndPathOverrideFields: the client-address fields backends and
// frameworks take for the client (X-Real-IP, True-Client-IP, X-Client-IP,
// CF-Connecting-IP, Fastly-Client-IP) reach the backend only from a peer in
// trusted_proxies, every copy and case dropped otherwise; the path overrides IIS URL
// Rewrite and Symfony serve instead of the target (X-Original-URL, X-Rewrite-URL) never
// reach it, from any peer. The backend is a raw recording one: what it got is checked
// byte for byte.
func TestClientAddressAndPathOverrideFields(t *testing.T) {
	t.Parallel()
	cases := []struct {
		field       string // as sent, twice, in two cases
		fromTrusted bool   // reaches the backend from a trusted peer
	}{
		{"X-Real-IP", true},
		{"True-Client-IP", true},
		{"X-Client-IP", true},
		{"CF-Connecting-IP", true},
		{"Fastly-Client-IP", true},
		{"X-Original-URL", false},
		{"X-Rewrite-URL", false},
	}
	for _, trusted := range []bool{false, true} {
		be, px := tappedProxy(t, trusted)
		for _, c := range cases {
			value := "203.0.113.9"
			if strings.HasSuffix(c.field, "-URL") {
				value = "/admin/secret"
			}
			resp, _ := px.raw(t, "GET /public HTTP/1.1\r\nHost: pub.example\r\n"+c.field+": "+value+"\r\n"+
				strings.ToLower(c.field)+": "+value+"\r\nX-Other: kept\r\nConnection: close\r\n\r\n")
			got := be.take()
			if !strings.HasPrefix(resp, "HTTP/1.1 200") || len(got) != 1 {
				t.Fatalf("trusted %v, %s: got %.40q, %d forwarded; want 200, 1", trusted, c.field, resp, len(got))
			}
			n := strings.Count(strings.ToLower(got[0]), "\r\n"+strings.ToLower(c.field)+":")
			want := 0
			if trusted && c.fromTrusted {
				want = 2
			}
			if n != want {
				t.Errorf("trusted %v: the backend got %d %s lines; want %d:\n%s", trusted, n, c.field, want, got[0])
			}
			if rawField(got[0], "X-Other") != "kept" || !strings.HasPrefix(got[0], "GET /public HTTP/1.1\r\n") {
				t.Errorf("trusted %v, %s: the rest of the request changed:\n%s", trusted, c.field, got[0])
			}
		}
	}
}

// TestClientRequestIDIsBounded: an X-Request-Id of 1 to 200 token characters is kept; a
// longer one, one with other characters, an empty one, or two of them are replaced by one
// the proxy generates (32 hex digits), so a backend that echoes it cannot be made to
// answer a head over max_header_bytes, nor echo markup or a second field.
func TestClientRequestIDIsBounded(t *testing.T) {
	t.Parallel()
	be := startTapBackend(t, func(req string) string {
		return "HTTP/1.1 200 OK\r\nX-Request-Id: " + rawField(req, "X-Request-Id") + "\r\nContent-Length: 2\r\n\r\nok"
	})
	px := startProxy(t, poolConfig(t, "", be.url))
	ok200 := strings.Repeat("a", 200)
	cases := []struct {
		name, fields string
		kept         string // the id the backend must get; "" for a generated one
	}{
		{"short", "X-Request-Id: abc-123_x.Y~\r\n", "abc-123_x.Y~"},
		{"at the limit", "X-Request-Id: " + ok200 + "\r\n", ok200},
		{"over the limit", "X-Request-Id: " + ok200 + "b\r\n", ""},
		{"near max_header_bytes", "X-Request-Id: " + strings.Repeat("B", 13000) + "\r\n", ""},
		{"space inside", "X-Request-Id: a b\r\n", ""},
		{"markup", "x-request-id: <script>alert(1)</script>\r\n", ""},
		{"quote", "X-Request-Id: a\"b\r\n", ""},
		{"empty", "X-Request-Id: \r\n", ""},
		{"twice", "X-Request-Id: one\r\nX-Request-Id: two\r\n", ""},
		{"twice, second long", "X-Request-Id: one\r\nX-REQUEST-ID: " + strings.Repeat("C", 9000) + "\r\n", ""},
	}
	for _, c := range cases {
		resp, _ := px.raw(t, "GET / HTTP/1.1\r\nHost: x\r\n"+c.fields+"Connection: close\r\n\r\n")
		got := be.take()
		if !strings.HasPrefix(resp, "HTTP/1.1 200") || len(got) != 1 {
			t.Fatalf("%s: got %.60q, %d forwarded; want 200, 1", c.name, resp, len(got))
		}
		if n := strings.Count(strings.ToLower(got[0]), "\r\nx-request-id:"); n != 1 {
			t.Fatalf("%s: the backend got %d X-Request-Id lines; want 1", c.name, n)
		}
		id := rawField(got[0], "X-Request-Id")
		if c.kept != "" && id != c.kept {
			t.Errorf("%s: the backend got X-Request-Id %.40q; want the client's kept", c.name, id)
		}
		if c.kept == "" && !generatedID(id) {
			t.Errorf("%s: the backend got X-Request-Id %.40q; want a generated one (32 hex digits)", c.name, id)
		}
	}
}

func generatedID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range id {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// TestAnswerKeepsOrClosesTheConnection: an answer the proxy gives or relays — 401, 429,
// 502, 503, 504, a backend's 401/403/502/503 — keeps the client's connection when the
// request's body was received whole (none, or a Content-Length up to 8 KiB, read before
// any decision): the next request on it is answered. When the body was left unread (a
// large or chunked one refused by JWT or the rate limit, a streamed upload that found no
// backend or whose backend timed out) the connection closes lingering: the client sends
// its whole body without a reset, reads the answer, then the end of the connection.
func TestAnswerKeepsOrClosesTheConnection(t *testing.T) {
	t.Parallel()
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := auth.New(auth.Options{Config: config.JWT{Enabled: true, Algorithms: []string{"HS256"},
		HMACSecretFile: secretFile}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	be := startTapBackend(t, func(req string) string {
		line, _, _ := strings.Cut(req, "\r\n")
		switch {
		case strings.Contains(line, "/two-lengths"):
			return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"
		case strings.Contains(line, "/slow"):
			time.Sleep(time.Second) // over timeouts.response
		case strings.Contains(line, "/status/"):
			code := line[strings.Index(line, "/status/")+8:][:3]
			return "HTTP/1.1 " + code + " X\r\nContent-Length: 2\r\n\r\nno"
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	})
	const bigBodies = "server: { max_body_bytes: 67108864 }\n"
	jwtPx := startProxy(t, poolConfig(t, bigBodies, be.url), func(o *Options) { o.Auth = v })
	var refused atomic.Int64
	limitPx := startProxy(t, poolConfig(t, bigBodies+"rate_limit: { enabled: true, rate: 0.001, burst: 1 }\n", be.url),
		withLimiter(ratelimit.NewLocal(0), &refused))
	if resp, _ := limitPx.raw(t, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(resp, "HTTP/1.1 200") {
		t.Fatalf("the rate limit's burst: got %.40q; want 200", resp)
	}
	plainPx := startProxy(t, parseConfig(t, "pools:\n  - name: web\n    timeouts: { connect: 500ms, response: 300ms }\n"+
		"    backends:\n      - url: \""+be.url+"\"\n"))
	deadPx := startProxy(t, poolConfig(t, bigBodies, "http://"+deadAddr(t)))

	post := func(path string, n int) string {
		return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(n) + "\r\n\r\n" + strings.Repeat("b", n)
	}
	for _, c := range []struct {
		name, addr, req string
		status          string
	}{
		{"401 GET", jwtPx.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "401"},
		{"401 POST of 8 KiB", jwtPx.addr, post("/", 8<<10), "401"},
		{"429 GET", limitPx.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "429"},
		{"429 small POST", limitPx.addr, post("/", 5), "429"},
		{"502 two Content-Lengths", plainPx.addr, post("/two-lengths", 5), "502"},
		{"504", plainPx.addr, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", "504"},
		{"503 no backend", deadPx.addr, post("/", 100), "503"},
		{"backend's 401", plainPx.addr, "GET /status/401 HTTP/1.1\r\nHost: x\r\n\r\n", "401"},
		{"backend's 403", plainPx.addr, post("/status/403", 5), "403"},
		{"backend's 502", plainPx.addr, "GET /status/502 HTTP/1.1\r\nHost: x\r\n\r\n", "502"},
		{"backend's 503", plainPx.addr, "GET /status/503 HTTP/1.1\r\nHost: x\r\n\r\n", "503"},
	} {
		first, second := twoOnOneConn(t, c.addr, c.req)
		if !strings.HasPrefix(first, "HTTP/1.1 "+c.status) {
			t.Errorf("%s: got %.60q; want %s", c.name, first, c.status)
			continue
		}
		if !strings.HasPrefix(second, "HTTP/1.1 ") {
			t.Errorf("%s: the next request on the connection got %q; want an answer (connection kept)", c.name, second)
		}
	}

	big := 32 << 20 // more than socket buffers hold: a close with it unread resets
	chunked := "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + strconv.FormatInt(int64(big), 16) + "\r\n"
	for _, c := range []struct {
		name, addr, head string
		body             int
		status           string
	}{
		{"401 large POST", jwtPx.addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(big) + "\r\n\r\n", big, "401"},
		{"401 chunked POST", jwtPx.addr, chunked, big, "401"},
		{"429 large POST", limitPx.addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(big) + "\r\n\r\n", big, "429"},
		{"503 streamed upload, no backend", deadPx.addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(big) + "\r\n\r\n", big, "503"},
	} {
		resp, werr, rerr := uploadAndRead(t, c.addr, c.head, c.body)
		if !strings.HasPrefix(resp, "HTTP/1.1 "+c.status) || werr != nil || rerr != io.EOF {
			t.Errorf("%s: got %.60q, writing the body: %v, then %v; want %s, the body sent whole, then EOF (a lingering close)",
				c.name, resp, werr, rerr, c.status)
		}
	}
}

// twoOnOneConn sends req and then a GET on one connection and returns the two answers'
// heads (the second empty, or an error, when the connection was closed).
func twoOnOneConn(t *testing.T, addr, req string) (first, second string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	read := func() string {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err.Error()
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Proto + " " + resp.Status
	}
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	first = read()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return first, err.Error()
	}
	return first, read()
}

// uploadAndRead sends head and a body of n bytes (chunked when head says so) while
// reading what comes back, then half-closes; it returns what was read, the first write
// error and the error that ended the reading (io.EOF for a clean end).
func uploadAndRead(t *testing.T, addr, head string, n int) (resp string, werr, rerr error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	done := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, head)
		chunk := []byte(strings.Repeat("u", 64<<10))
		for left := n; err == nil && left > 0; left -= len(chunk) {
			_, err = c.Write(chunk[:min(len(chunk), left)])
		}
		if err == nil && strings.Contains(head, "chunked") {
			_, err = io.WriteString(c, "\r\n0\r\n\r\n")
		}
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		done <- err
	}()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		m, err := c.Read(buf)
		sb.Write(buf[:m])
		if err != nil {
			rerr = err
			break
		}
	}
	return sb.String(), <-done, rerr
}

// TestMethodCaseIsForwardedAsDecided: methods are case-sensitive (RFC 9110 §9.1), so
// "post" is another method than "POST": it matches no method: POST route, is not
// idempotent (never retried), its answer is not framed as a HEAD answer's when it is
// "head" — and it reaches the backend exactly as sent, the value every decision saw.
func TestMethodCaseIsForwardedAsDecided(t *testing.T) {
	t.Parallel()
	answer := func(req string) string {
		if strings.Contains(req, " /fail ") {
			return "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 2\r\n\r\nno"
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	}
	web1, web2, api := startTapBackend(t, answer), startTapBackend(t, answer), startTapBackend(t, answer)
	px := startProxy(t, parseConfig(t, `pools:
  - name: web
    timeouts: { connect: 500ms, response: 2s }
    retry: { attempts: 2, on: [connect, "502"] }
    backends: [ { url: "`+web1.url+`" }, { url: "`+web2.url+`" } ]
  - name: api
    backends: [ { url: "`+api.url+`" } ]
routes:
  - match: { path_prefix: /api, method: POST }
    pool: api
`))
	take := func() (webs, apis []string) { return append(web1.take(), web2.take()...), api.take() }
	for _, c := range []struct {
		method, path string
		toAPI        bool
		tries        int
		body         bool // the client gets the answer's body
	}{
		{"POST", "/api/x", true, 1, true},
		{"post", "/api/x", false, 1, true},
		{"Post", "/api/x", false, 1, true},
		{"GET", "/fail", false, 2, true},
		{"get", "/fail", false, 1, true},
		{"HEAD", "/h", false, 1, false},
		{"head", "/h", false, 1, true},
	} {
		resp, _ := px.raw(t, c.method+" "+c.path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		webs, apis := take()
		got := webs
		if c.toAPI {
			got = apis
		}
		if len(got) != c.tries || len(webs)+len(apis) != c.tries {
			t.Fatalf("%s %s: %d tries at web, %d at api; want %d at %s", c.method, c.path, len(webs), len(apis), c.tries,
				map[bool]string{true: "api", false: "web"}[c.toAPI])
		}
		for _, g := range got {
			if !strings.HasPrefix(g, c.method+" "+c.path+" HTTP/1.1\r\n") {
				t.Errorf("%s %s: the backend got %.40q; want the method as sent", c.method, c.path, g)
			}
		}
		if hasBody := strings.HasSuffix(resp, "\r\n\r\nok") || strings.HasSuffix(resp, "\r\n\r\nno"); hasBody != c.body {
			t.Errorf("%s %s: got %q; want the body relayed: %v", c.method, c.path, resp, c.body)
		}
	}
}
