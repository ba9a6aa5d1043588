package proxy

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/testredis"
	"go-loadbalancer/internal/testtool"
	"go-loadbalancer/state"
	"go-loadbalancer/sticky"
)

// Sticky sessions through the proxy (docs/behaviour.md#sticky-sessions, issue 5): real
// backends on loopback ports, a real redis-server for the shared store (internal/testredis),
// every outcome observed from the client side (status, X-Backend, Set-Cookie) and, where
// the docs say what is stored, in Redis itself.

// stickyBackends are three named backends a, b, c with weights 3, 2, 1 in pool "web": with
// no session, smooth WRR sends a b a c b a.
type stickyBackends struct {
	be   map[string]*testBackend // by name
	id   map[string]string       // name → backend ID
	name map[string]string       // backend ID → name
}

func startStickyBackends(t testing.TB) *stickyBackends {
	t.Helper()
	s := &stickyBackends{be: map[string]*testBackend{}, id: map[string]string{}, name: map[string]string{}}
	for _, n := range []string{"a", "b", "c"} {
		b := startBackend(t, named(n))
		id := state.BackendID("web", b.addr, false)
		s.be[n], s.id[n], s.name[id] = b, id, n
	}
	return s
}

// config returns the pool of a, b, c plus the given sticky: section (YAML flow mapping
// fields, e.g. "header: X-Session-Id") and extra top-level YAML.
func (s *stickyBackends) config(t testing.TB, stickyFields, extra string) *config.Config {
	t.Helper()
	var sb strings.Builder
	sb.WriteString("pools:\n  - name: web\n    timeouts: { connect: 500ms, response: 2s }\n    backends:\n")
	for _, n := range []string{"a", "b", "c"} {
		fmt.Fprintf(&sb, "      - { url: %q, weight: %d }\n", s.be[n].url, map[string]int{"a": 3, "b": 2, "c": 1}[n])
	}
	sb.WriteString("sticky: { enabled: true")
	if stickyFields != "" {
		sb.WriteString(", " + stickyFields)
	}
	sb.WriteString(" }\n" + extra)
	return parseConfig(t, sb.String())
}

// hits returns each backend's request count.
func (s *stickyBackends) hits() map[string]int64 {
	return map[string]int64{"a": s.be["a"].hits.Load(), "b": s.be["b"].hits.Load(), "c": s.be["c"].hits.Load()}
}

// startStickyProxy runs a proxy for cfg with store st and checks that the backend IDs the
// tests compute are the table's.
func startStickyProxy(t testing.TB, s *stickyBackends, cfg *config.Config, st sticky.Store) *testProxy {
	t.Helper()
	px := startProxy(t, cfg, withSticky(st))
	for n, id := range s.id {
		if px.builder.Store.Load().Backend(id) == nil {
			t.Fatalf("backend %s: no backend with ID %q in the table", n, id)
		}
	}
	return px
}

func newMemoryStore(t testing.TB, o sticky.Options) *sticky.Memory {
	t.Helper()
	m, err := sticky.NewMemory(o)
	if err != nil {
		t.Fatalf("NewMemory: %v", err)
	}
	return m
}

// newRedisStore returns a Redis store on s, closed in t.Cleanup, with a short back-off
// (100 ms) and a long call budget (5 s) unless o sets them. A call that overruns its budget
// is an outage; a round trip or a fresh connection's handshake on a loaded machine under the
// race detector can overrun production's 50 ms, and that outage would be none the test made.
// The tests make their outages by killing redis-server, which refuses at once.
func newRedisStore(t testing.TB, s *testredis.Server, o sticky.Options) *sticky.Redis {
	t.Helper()
	o.RedisURL = s.URL()
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Backoff == 0 {
		o.Backoff = 100 * time.Millisecond
	}
	r, err := sticky.NewRedis(o)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// pinKey is where the Redis store keeps a session's pin.
func pinKey(key string) string { return sticky.DefaultKeyPrefix + "s:" + key }

// lbReply is what a client sees of one response.
type lbReply struct {
	status     int
	backend    string // X-Backend: the name of the backend that answered
	setCookie  string // the lb_sticky Set-Cookie header value; "" if none
	setCookies int    // how many lb_sticky Set-Cookie headers there were
}

// cookie returns the value the Set-Cookie header sets ("" if none).
func (r lbReply) cookie() string {
	v, _, _ := strings.Cut(r.setCookie, ";")
	_, v, _ = strings.Cut(v, "=")
	return v
}

// lbClient talks to one proxy over keep-alive connections. Safe for concurrent use.
type lbClient struct {
	hc   *fasthttp.HostClient
	base string
}

func newLBClient(p *testProxy) *lbClient {
	return &lbClient{hc: p.client(), base: "http://" + p.addr}
}

// try sends GET /s with the session cookie (if not "") and header pairs.
func (c *lbClient) try(cookie string, headers ...string) (lbReply, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(c.base + "/s")
	if cookie != "" {
		req.Header.SetCookie("lb_sticky", cookie)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if err := c.hc.DoTimeout(req, resp, 5*time.Second); err != nil {
		return lbReply{}, err
	}
	r := lbReply{status: resp.StatusCode(), backend: string(resp.Header.Peek("X-Backend"))}
	resp.Header.VisitAllCookie(func(k, v []byte) {
		if string(k) == "lb_sticky" {
			r.setCookies++
			r.setCookie = string(v)
		}
	})
	return r, nil
}

// send is try that fails the test on an error or a status other than 200.
func (c *lbClient) send(t testing.TB, cookie string, headers ...string) lbReply {
	t.Helper()
	r, err := c.try(cookie, headers...)
	if err != nil {
		t.Fatalf("GET /s: %v", err)
	}
	if r.status != 200 {
		t.Fatalf("GET /s: got status %d; want 200", r.status)
	}
	if r.setCookies > 1 {
		t.Fatalf("GET /s: got %d lb_sticky Set-Cookie headers; want at most 1", r.setCookies)
	}
	return r
}

// newSession starts a cookie session: a request without a cookie, which must set one.
func (c *lbClient) newSession(t testing.TB) (cookie, backend string) {
	t.Helper()
	r := c.send(t, "")
	if r.cookie() == "" {
		t.Fatalf("first response: got no lb_sticky Set-Cookie; want one")
	}
	return r.cookie(), r.backend
}

// parseHint parses a cookie value and returns its session ID and backend reference.
func parseHint(t testing.TB, v string) (sid, ref string) {
	t.Helper()
	c, ok := sticky.ParseCookie([]byte(v))
	if !ok {
		t.Fatalf("cookie value %q does not parse", v)
	}
	return string(c.SID), string(c.Ref)
}

// signed returns a cookie value for a new session on backend name, made with st's key.
func (s *stickyBackends) signed(st sticky.Store, name string) string {
	sg := st.Signer()
	return string(sg.AppendCookieValue(nil, sticky.AppendSessionID(nil), sg.Ref(0, s.id[name])))
}

// checkHint checks that cookie value v hints backend name and is signed by st's signer.
func checkHint(t testing.TB, st sticky.Store, s *stickyBackends, v, name string) {
	t.Helper()
	c, ok := sticky.ParseCookie([]byte(v))
	if !ok {
		t.Fatalf("cookie value %q does not parse", v)
	}
	if want := st.Signer().Ref(0, s.id[name]); string(c.Ref) != want {
		t.Fatalf("cookie %q refers to %q; want %s's reference %q", v, c.Ref, name, want)
	}
	if !st.Signer().Verify(c) {
		t.Fatalf("cookie %q: signature does not verify", v)
	}
}

// stayOn sends n requests with the session and checks they all reach backend want, with no
// new cookie, and that no other backend saw a request meanwhile.
func stayOn(t testing.TB, c *lbClient, s *stickyBackends, want string, n int, cookie string, headers ...string) {
	t.Helper()
	before := s.hits()
	for i := range n {
		r := c.send(t, cookie, headers...)
		if r.backend != want {
			t.Fatalf("request %d of the session: got backend %s; want %s", i+1, r.backend, want)
		}
		if r.setCookie != "" {
			t.Fatalf("request %d of the session: got Set-Cookie %q; want none (the session did not move)", i+1, r.setCookie)
		}
	}
	after := s.hits()
	for name, h := range after {
		if name == want {
			if d := h - before[name]; d != int64(n) {
				t.Fatalf("backend %s: got %d requests; want %d", name, d, n)
			}
		} else if d := h - before[name]; d != 0 {
			t.Fatalf("backend %s: got %d requests of a session pinned to %s; want 0", name, d, want)
		}
	}
}

// TestStickyCookieAttributes: the first response sets the session cookie with every
// attribute of docs/behaviour.md#sticky-sessions — HttpOnly, SameSite=Lax, Path=/, Max-Age = sticky.ttl, and Secure
// exactly when the front listener is TLS — holding a signed hint of the backend that
// answered.
func TestStickyCookieAttributes(t *testing.T) {
	t.Parallel()
	s := startStickyBackends(t)
	certFile, keyFile, roots := testtool.SelfSignedCert(t)
	f := func(name, tlsYAML string, want []string) {
		t.Run(name, func(t *testing.T) {
			st := newMemoryStore(t, sticky.Options{TTL: 90 * time.Minute})
			px := startStickyProxy(t, s, s.config(t, "ttl: 90m", tlsYAML), st)
			c := newLBClient(px)
			if tlsYAML != "" {
				c.base = "https://" + px.addr
				c.hc.IsTLS = true
				c.hc.TLSConfig = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
			}
			r := c.send(t, "")
			if r.setCookies != 1 {
				t.Fatalf("first response: got %d lb_sticky Set-Cookie headers; want 1", r.setCookies)
			}
			parts := strings.Split(r.setCookie, "; ")
			if !strings.HasPrefix(parts[0], "lb_sticky=") {
				t.Fatalf("Set-Cookie %q: want it to start with lb_sticky=", r.setCookie)
			}
			got := slices.Sorted(slices.Values(parts[1:]))
			if !slices.Equal(got, want) {
				t.Fatalf("Set-Cookie %q: got attributes %q; want %q", r.setCookie, got, want)
			}
			checkHint(t, st, s, r.cookie(), r.backend)
			if sid, _ := parseHint(t, r.cookie()); len(sid) != sticky.SessionIDLen {
				t.Fatalf("session ID %q: got %d characters; want %d (128 random bits)", sid, len(sid), sticky.SessionIDLen)
			}
			// A second new session gets another ID.
			if r2 := c.send(t, ""); r2.cookie() == "" || r2.cookie()[:sticky.SessionIDLen] == r.cookie()[:sticky.SessionIDLen] {
				t.Fatalf("second new session: got cookie %q after %q; want a new session ID", r2.cookie(), r.cookie())
			}
		})
	}
	f("plain", "", []string{"HttpOnly", "Max-Age=5400", "Path=/", "SameSite=Lax"})
	f("tls", fmt.Sprintf("tls: { cert_file: %q, key_file: %q }\n", certFile, keyFile),
		[]string{"HttpOnly", "Max-Age=5400", "Path=/", "SameSite=Lax", "Secure"})
}

// TestStickyCookieSessionStaysOnBackend: 100 requests with a session's cookie all reach the
// backend of its first response, for sessions started on each backend, and the cookie is not
// sent again while the session stays.
func TestStickyCookieSessionStaysOnBackend(t *testing.T) {
	t.Parallel()
	s := startStickyBackends(t)
	st := newMemoryStore(t, sticky.Options{})
	c := newLBClient(startStickyProxy(t, s, s.config(t, "", ""), st))
	// Six new sessions take the smooth WRR order: a b a c b a.
	cookies, backends := make([]string, 6), make([]string, 6)
	for i := range cookies {
		cookies[i], backends[i] = c.newSession(t)
	}
	if got := strings.Join(backends, " "); got != "a b a c b a" {
		t.Fatalf("first backends of six new sessions: got %s; want a b a c b a", got)
	}
	for i := range cookies {
		stayOn(t, c, s, backends[i], 100, cookies[i])
	}
	// The cookies carry the sessions: nothing was stored, every lookup found no move.
	if got := st.Stats(); got.Pins != 0 || got.Repins != 0 || got.Misses != 600 || st.Len() != 0 {
		t.Fatalf("store stats: got %d pins, %d re-pins, %d misses, %d stored; want 0, 0, 600, 0", got.Pins, got.Repins, got.Misses, st.Len())
	}
}

// TestStickyHeaderSessions: with sticky.header the application's own session ID is the key:
// each key's requests stay on the backend of its first request, no cookie is set, and a
// request without the header is not a session.
func TestStickyHeaderSessions(t *testing.T) {
	t.Parallel()
	s := startStickyBackends(t)
	st := newMemoryStore(t, sticky.Options{})
	c := newLBClient(startStickyProxy(t, s, s.config(t, "header: X-Session-Id", ""), st))
	keys := []string{"user-1", "user-2", "user-3", "user-4", "user-5", "user-6"}
	first := make([]string, len(keys))
	for i, k := range keys {
		r := c.send(t, "", "X-Session-Id", k)
		if r.setCookie != "" {
			t.Fatalf("header session %s: got Set-Cookie %q; want none", k, r.setCookie)
		}
		first[i] = r.backend
	}
	if got := strings.Join(first, " "); got != "a b a c b a" {
		t.Fatalf("first backends of six header sessions: got %s; want a b a c b a", got)
	}
	for i, k := range keys {
		stayOn(t, c, s, first[i], 100, "", "X-Session-Id", k)
	}
	// No header, or one over sticky.MaxKeyLen: picked normally, nothing pinned.
	pins := st.Stats().Pins
	for _, h := range [][]string{nil, {"X-Session-Id", strings.Repeat("k", sticky.MaxKeyLen+1)}} {
		for range 6 {
			if r := c.send(t, "", h...); r.setCookie != "" {
				t.Fatalf("request without a session key: got Set-Cookie %q; want none", r.setCookie)
			}
		}
	}
	if got := st.Stats().Pins; got != pins {
		t.Fatalf("requests without a session key: got %d new pins; want 0", got-pins)
	}
}

// TestStickyNewHeaderSessionsBounded: clients inventing session keys cannot make the store
// hold more than sticky.new_header_sessions_per_second new sessions a second; a session over
// the budget is still served, and stays on one backend (rendezvous hashing of its key).
func TestStickyNewHeaderSessionsBounded(t *testing.T) {
	t.Parallel()
	s := startStickyBackends(t)
	st := newMemoryStore(t, sticky.Options{})
	c := newLBClient(startStickyProxy(t, s, s.config(t, "header: X-Session-Id, new_header_sessions_per_second: 3", ""), st))
	const n = 60
	start := time.Now()
	for i := range n {
		if r := c.send(t, "", "X-Session-Id", "invented-"+strconv.Itoa(i)); r.status != 200 {
			t.Fatalf("new header session %d: got status %d; want 200", i, r.status)
		}
	}
	secs := uint64(time.Since(start)/time.Second) + 1 // the seconds the requests spanned
	if pins := st.Stats().Pins; pins > 3*(secs+1) || pins >= n {
		t.Fatalf("%d new header sessions in %d s: got %d stored; want at most 3 a second", n, secs, pins)
	}
	// A session over the budget is placed by its key's hash, so it stays put; when a new
	// second's budget lets a request store it, it is pinned by the pool's pick and may
	// move once (docs/behaviour.md#sticky-sessions) — then never again.
	var moves int
	last := c.send(t, "", "X-Session-Id", "invented-59").backend
	for i := range 20 {
		r := c.send(t, "", "X-Session-Id", "invented-59")
		if r.status != 200 {
			t.Fatalf("request %d of the session: got status %d; want 200", i+1, r.status)
		}
		if r.backend != last {
			moves++
			last = r.backend
		}
	}
	if moves > 1 {
		t.Fatalf("a session over the new-session budget moved %d times in 21 requests; want at most once", moves)
	}
}

// TestStickyNoCookieKeepsSmoothSplit: requests that never send the cookie back (each is a new
// session) still get the exact 3:2:1 smooth weighted round-robin of the pool.
func TestStickyNoCookieKeepsSmoothSplit(t *testing.T) {
	t.Parallel()
	s := startStickyBackends(t)
	st := newMemoryStore(t, sticky.Options{})
	c := newLBClient(startStickyProxy(t, s, s.config(t, "", ""), st))
	var order strings.Builder
	count := map[string]int{}
	for i := range 600 {
		r := c.send(t, "")
		if r.cookie() == "" {
			t.Fatalf("request %d without a cookie: got no Set-Cookie; want a new session", i+1)
		}
		count[r.backend]++
		if i < 12 {
			order.WriteString(r.backend)
		}
	}
	if count["a"] != 300 || count["b"] != 200 || count["c"] != 100 {
		t.Fatalf("600 requests without a cookie: got %v; want a:300 b:200 c:100", count)
	}
	if got := order.String(); got != "abacbaabacba" {
		t.Fatalf("first 12 backends: got %s; want abacbaabacba", got)
	}
}

// TestStickyRepin: when the pinned backend is unhealthy, drained or refuses connections, the
// session moves to another backend, the store learns the new pin (one re-pin), the cookie is
// re-issued with the new backend, and the session then stays there — also once the old
// backend is back (drain means "empty this backend", unlike HAProxy).
func TestStickyRepin(t *testing.T) {
	t.Parallel()
	f := func(name string, headerMode bool, takeOut, putBack func(t *testing.T, px *testProxy, s *stickyBackends, id string)) {
		t.Run(name, func(t *testing.T) {
			s := startStickyBackends(t)
			st := newMemoryStore(t, sticky.Options{})
			fields := ""
			if headerMode {
				fields = "header: X-Session-Id"
			}
			px := startStickyProxy(t, s, s.config(t, fields, ""), st)
			c := newLBClient(px)
			var cookie string
			var hdr []string
			if headerMode {
				hdr = []string{"X-Session-Id", "user-42"}
			}
			r := c.send(t, "", hdr...)
			if r.backend != "a" {
				t.Fatalf("first request: got backend %s; want a", r.backend)
			}
			cookie = r.cookie()
			stayOn(t, c, s, "a", 5, cookie, hdr...)

			takeOut(t, px, s, s.id["a"])
			r = c.send(t, cookie, hdr...)
			moved := r.backend
			if moved == "a" {
				t.Fatalf("after taking a out: got backend a; want the session moved")
			}
			if headerMode {
				if r.setCookie != "" {
					t.Fatalf("header session moved: got Set-Cookie %q; want none", r.setCookie)
				}
			} else {
				checkHint(t, st, s, r.cookie(), moved)
				sid, _ := parseHint(t, cookie)
				if got, _ := parseHint(t, r.cookie()); got != sid {
					t.Fatalf("re-issued cookie: got session ID %q; want the same %q", got, sid)
				}
			}
			if got := st.Stats().Repins; got != 1 {
				t.Fatalf("re-pins: got %d; want 1", got)
			}
			newCookie := r.cookie()
			stayOn(t, c, s, moved, 20, newCookie, hdr...)
			if !headerMode {
				// The old cookie still names a: the store's pin wins and the cookie is fixed.
				r = c.send(t, cookie, hdr...)
				if r.backend != moved {
					t.Fatalf("old cookie after the move: got backend %s; want %s", r.backend, moved)
				}
				checkHint(t, st, s, r.cookie(), moved)
			}
			putBack(t, px, s, s.id["a"])
			stayOn(t, c, s, moved, 20, newCookie, hdr...)
			if got := st.Stats().Repins; got != 1 {
				t.Fatalf("re-pins after a is back: got %d; want 1 (the session stays where it moved)", got)
			}
		})
	}
	unhealthy := func(t *testing.T, px *testProxy, _ *stickyBackends, id string) {
		if _, err := px.builder.SetHealthy(id, false); err != nil {
			t.Fatal(err)
		}
	}
	healthy := func(t *testing.T, px *testProxy, _ *stickyBackends, id string) {
		if _, err := px.builder.SetHealthy(id, true); err != nil {
			t.Fatal(err)
		}
	}
	drain := func(t *testing.T, px *testProxy, _ *stickyBackends, id string) {
		if _, err := px.builder.Drain(id); err != nil {
			t.Fatal(err)
		}
	}
	enable := func(t *testing.T, px *testProxy, _ *stickyBackends, id string) {
		if _, err := px.builder.Enable(id); err != nil {
			t.Fatal(err)
		}
	}
	// A backend that goes away without the table knowing: the request to it fails, the retry
	// ends on another backend, and that one becomes the pin.
	kill := func(t *testing.T, _ *testProxy, s *stickyBackends, _ string) {
		if err := s.be["a"].srv.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	nothing := func(*testing.T, *testProxy, *stickyBackends, string) {}
	f("cookie/unhealthy", false, unhealthy, healthy)
	f("cookie/drained", false, drain, enable)
	f("cookie/connection-refused", false, kill, nothing)
	f("header/unhealthy", true, unhealthy, healthy)
	f("header/drained", true, drain, enable)
}

// TestStickyTTL: a pin lasts the table's sticky.ttl. The store is made once at startup with
// the startup TTL (main.newStickyStore); a reload that changes sticky.ttl must change the
// pins' lifetime as it changes the cookie's Max-Age. Within the TTL a header session stays;
// after it the session is new and the picker places it again.
func TestStickyTTL(t *testing.T) {
	t.Parallel()
	s := startStickyBackends(t)
	st := newMemoryStore(t, sticky.Options{TTL: 30 * time.Minute})
	px := startStickyProxy(t, s, s.config(t, "header: X-Session-Id, ttl: 30m", ""), st)
	c := newLBClient(px)
	const ttl = 300 * time.Millisecond
	if _, err := px.builder.Apply(s.config(t, "header: X-Session-Id, ttl: 300ms", "")); err != nil { // a reload
		t.Fatal(err)
	}
	start := time.Now()
	if r := c.send(t, "", "X-Session-Id", "k"); r.backend != "a" {
		t.Fatalf("first request: got %s; want a", r.backend)
	}
	r := c.send(t, "", "X-Session-Id", "k")
	if time.Since(start) < ttl && r.backend != "a" {
		t.Fatalf("second request within the TTL: got %s; want a", r.backend)
	}
	// The picker's next choice is b: the session lands there once its pin has expired.
	testtool.WaitFor(t, 5*time.Second, "the session's pin to expire", func() bool {
		return c.send(t, "", "X-Session-Id", "k").backend != "a"
	})
	if d := time.Since(start); d < ttl {
		t.Fatalf("session moved after %v; want no sooner than the TTL %v", d, ttl)
	}
	if got := st.Stats(); got.Misses < 2 || got.Pins < 2 {
		t.Fatalf("store stats: got %d misses, %d pins; want at least 2 each (the expired session is new again)", got.Misses, got.Pins)
	}
}

// TestStickyCookieTTLExpiry: the store keeps a moved session's pin for sticky.ttl; once it
// has expired, the re-issued cookie alone carries the session (Max-Age is the same TTL, but
// clocks and reloads differ), and nothing is pinned again.
func TestStickyCookieTTLExpiry(t *testing.T) {
	t.Parallel()
	s := startStickyBackends(t)
	st := newMemoryStore(t, sticky.Options{TTL: 200 * time.Millisecond})
	px := startStickyProxy(t, s, s.config(t, "ttl: 200ms", ""), st)
	c := newLBClient(px)
	r := c.send(t, "")
	if !strings.Contains(r.setCookie, "; Max-Age=1;") {
		t.Fatalf("Set-Cookie %q: want Max-Age=1 (200ms rounded up to whole seconds)", r.setCookie)
	}
	if r.backend != "a" {
		t.Fatalf("first backend: got %s; want a", r.backend)
	}
	if _, err := px.builder.Drain(s.id["a"]); err != nil {
		t.Fatal(err)
	}
	r = c.send(t, r.cookie())
	cookie, moved := r.cookie(), r.backend
	sid, _ := parseHint(t, cookie)
	if id, o := st.Lookup([]byte(sid), time.Now().UnixNano()); o != sticky.CacheHit || s.name[id] != moved {
		t.Fatalf("pin of the moved session: got %q, %v; want %s's ID, cache_hit", id, o, moved)
	}
	testtool.WaitFor(t, 5*time.Second, "the session's pin to expire", func() bool {
		_, o := st.Lookup([]byte(sid), time.Now().UnixNano())
		return o == sticky.Miss
	})
	pins, repins := st.Stats().Pins, st.Stats().Repins
	stayOn(t, c, s, moved, 5, cookie)
	if got := st.Stats(); got.Pins != pins || got.Repins != repins {
		t.Fatalf("pins, re-pins after the pin expired: got %d, %d; want %d, %d (the cookie carries the session)", got.Pins, got.Repins, pins, repins)
	}
}

// tamper returns variants of a valid cookie value whose signature no longer matches.
func tamper(t testing.TB, v string, otherRef string) map[string]string {
	t.Helper()
	c, ok := sticky.ParseCookie([]byte(v))
	if !ok {
		t.Fatalf("cookie value %q does not parse", v)
	}
	sig := []byte(string(c.Sig))
	if sig[0] == 'A' {
		sig[0] = 'B'
	} else {
		sig[0] = 'A'
	}
	otherSID := sticky.AppendSessionID(nil)
	return map[string]string{
		"signature changed": string(c.SID) + "." + string(c.Ref) + "." + string(sig),
		"backend changed":   string(c.SID) + "." + otherRef + "." + string(c.Sig),
		"session changed":   string(otherSID) + "." + string(c.Ref) + "." + string(c.Sig),
	}
}

// TestStickyTamperedHintIgnored: a session with no pin (new to this store, or its pin lost)
// is placed by its cookie's hint only when the signature verifies. A forged or altered hint
// is no hint: the picker places the session and the cookie is re-issued, properly signed.
func TestStickyTamperedHintIgnored(t *testing.T) {
	t.Parallel()
	s := startStickyBackends(t)
	st := newMemoryStore(t, sticky.Options{})
	c := newLBClient(startStickyProxy(t, s, s.config(t, "", ""), st))
	signed := func(backend string) string {
		return s.signed(st, backend)
	}
	// Control: six unpinned sessions with a valid hint of c (weight 1) all land on c.
	for i := range 6 {
		if r := c.send(t, signed("c")); r.backend != "c" || r.setCookie != "" {
			t.Fatalf("unpinned session %d with a valid hint of c: got backend %s, Set-Cookie %q; want c, none", i, r.backend, r.setCookie)
		}
	}
	// Tampered hints of c: the picker decides, so six of them reach c exactly once (a b a c b a).
	for _, name := range []string{"signature changed", "backend changed", "session changed"} {
		t.Run(name, func(t *testing.T) {
			onC := 0
			for range 6 {
				// "backend changed" is signed for b and claims c; the others are signed for c.
				v := signed("c")
				if name == "backend changed" {
					v = signed("b")
				}
				r := c.send(t, tamper(t, v, st.Signer().Ref(0, s.id["c"]))[name])
				if r.backend == "c" {
					onC++
				}
				if r.backend != "c" && r.setCookie == "" {
					t.Fatalf("tampered cookie placed on %s: got no Set-Cookie; want the cookie re-issued", r.backend)
				}
				if r.setCookie != "" {
					checkHint(t, st, s, r.cookie(), r.backend)
				}
			}
			if onC != 1 {
				t.Fatalf("six unpinned sessions with a tampered hint of c: got %d on c; want 1 (the picker's share)", onC)
			}
		})
	}
}

// TestStickyRedisNoRoundTripOnHit: with the Redis store, once each session has been read
// once, 1,000 sticky requests through the proxy are served from rueidis's tracked client
// cache (which holds "no pin" answers too): Redis's GET count rises by at most the number
// of distinct sessions.
func TestStickyRedisNoRoundTripOnHit(t *testing.T) {
	t.Parallel()
	rs := testredis.Start(t)
	s := startStickyBackends(t)
	st := newRedisStore(t, rs, sticky.Options{TTL: 10 * time.Minute})
	c := newLBClient(startStickyProxy(t, s, s.config(t, "ttl: 10m", ""), st))
	const sessions = 10
	cookies, backends := make([]string, sessions), make([]string, sessions)
	for i := range cookies {
		cookies[i], backends[i] = c.newSession(t)
		stayOn(t, c, s, backends[i], 1, cookies[i]) // warm-up: the first read is a round trip
	}
	gets, before := rs.Calls("get"), st.Stats()
	for i := range 1000 {
		r := c.send(t, cookies[i%sessions])
		if r.backend != backends[i%sessions] || r.setCookie != "" {
			t.Fatalf("request %d: got backend %s, Set-Cookie %q; want %s, none", i, r.backend, r.setCookie, backends[i%sessions])
		}
	}
	if got := rs.Calls("get") - gets; got > sessions {
		t.Fatalf("1,000 sticky requests over %d warm sessions: got %d Redis GETs; want at most %d", sessions, got, sessions)
	}
	after := st.Stats()
	if n := after.Misses - before.Misses; n != 1000 {
		t.Fatalf("1,000 sticky requests of sessions never moved: got %d lookups finding no pin; want 1000", n)
	}
}

// TestStickyTwoInstancesSharedSecret: two proxies without Redis, each with its own memory
// store but one configured secret, agree on every session: a session started on A goes to
// the same backend through B, which has never seen it, without B storing anything or
// re-issuing the cookie. With different keys (the per-process default) B does not
// recognise A's cookie and starts a new session.
func TestStickyTwoInstancesSharedSecret(t *testing.T) {
	t.Parallel()
	s := startStickyBackends(t)
	cfg := s.config(t, "", "")
	secret := []byte("a shared secret of 32 bytes.....")
	stA, stB := newMemoryStore(t, sticky.Options{HintKey: secret}), newMemoryStore(t, sticky.Options{HintKey: secret})
	a, b := newLBClient(startStickyProxy(t, s, cfg, stA)), newLBClient(startStickyProxy(t, s, cfg, stB))
	cookies, backends := make([]string, 6), make([]string, 6)
	for i := range cookies {
		cookies[i], backends[i] = a.newSession(t)
	}
	// B's own picker would send a new session to a first: sessions elsewhere prove the cookie.
	for i := range cookies {
		stayOn(t, b, s, backends[i], 10, cookies[i])
		stayOn(t, a, s, backends[i], 2, cookies[i])
	}
	if got := stB.Stats(); got.Pins+got.Repins != 0 || stB.Len() != 0 {
		t.Fatalf("B's store: got %d pins, %d re-pins, %d stored; want none", got.Pins, got.Repins, stB.Len())
	}

	stC := newMemoryStore(t, sticky.Options{}) // a random per-process key
	c := newLBClient(startStickyProxy(t, s, cfg, stC))
	if r := c.send(t, cookies[3]); r.setCookie == "" || r.cookie() == cookies[3] {
		t.Fatalf("instance with another key: got Set-Cookie %q; want a new session's cookie", r.setCookie)
	}
}

// TestStickyCookieNamesNoBackend: the cookie the proxy sets holds no backend ID, address or
// port (it carried "web-127.0.0.1_8082" before), for every backend and after a move.
func TestStickyCookieNamesNoBackend(t *testing.T) {
	t.Parallel()
	s := startStickyBackends(t)
	st := newMemoryStore(t, sticky.Options{})
	px := startStickyProxy(t, s, s.config(t, "", ""), st)
	c := newLBClient(px)
	check := func(v string) {
		t.Helper()
		for n, be := range s.be {
			_, port, _ := net.SplitHostPort(be.addr)
			for _, leak := range []string{s.id[n], be.addr, "127.0.0.1", "127-0-0-1", port} {
				if strings.Contains(v, leak) {
					t.Fatalf("cookie %q contains %q of backend %s", v, leak, n)
				}
			}
		}
	}
	for range 6 {
		cookie, _ := c.newSession(t)
		check(cookie)
	}
	cookie, first := c.newSession(t)
	if _, err := px.builder.Drain(s.id[first]); err != nil {
		t.Fatal(err)
	}
	r := c.send(t, cookie)
	if r.setCookie == "" {
		t.Fatal("moved session: got no Set-Cookie; want the cookie re-issued")
	}
	check(r.setCookie)
}

// TestStickyRedisBurstWritesNothing: a wrk-like burst of cookie-less requests (every one a
// new session) over concurrent keep-alive connections writes no key to Redis: a new cookie
// session is carried by its cookie alone (it wrote one key per request before: 190,457
// after 10 s of wrk). A moved session is stored, with sticky.ttl.
func TestStickyRedisBurstWritesNothing(t *testing.T) {
	t.Parallel()
	rs := testredis.Start(t)
	s := startStickyBackends(t)
	st := newRedisStore(t, rs, sticky.Options{})
	px := startStickyProxy(t, s, s.config(t, "ttl: 10m", ""), st)
	c := newLBClient(px)
	sessionKeys := func() int {
		keys, err := rs.Client().Do(t.Context(), rs.Client().B().Keys().Pattern(sticky.DefaultKeyPrefix+"s:*").Build()).AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}
	const workers, each = 8, 250
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if r, err := c.try(""); err != nil || r.status != 200 || r.setCookie == "" {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d cookie-less requests failed or set no cookie", n, workers*each)
	}
	if n := sessionKeys(); n != 0 {
		t.Fatalf("after %d new cookie sessions: got %d session keys in Redis; want 0", workers*each, n)
	}
	if got := st.Stats(); got.Pins+got.Repins != 0 {
		t.Fatalf("store: got %d pins, %d re-pins; want none", got.Pins, got.Repins)
	}

	// A moved session is the one thing stored, with the TTL.
	cookie, first := c.newSession(t)
	if _, err := px.builder.Drain(s.id[first]); err != nil {
		t.Fatal(err)
	}
	r := c.send(t, cookie)
	sid, _ := parseHint(t, cookie)
	if got, _ := rs.Get(pinKey(sid)); got != s.id[r.backend] || r.backend == first {
		t.Fatalf("moved session: got pin %q, backend %s; want %s's ID, not %s", got, r.backend, r.backend, first)
	}
	pttl, err := rs.Client().Do(t.Context(), rs.Client().B().Pttl().Key(pinKey(sid)).Build()).AsInt64()
	if err != nil || pttl <= 0 || pttl > (10*time.Minute).Milliseconds() {
		t.Fatalf("PTTL of the pin: got %d, %v; want in (0, 600000] ms (sticky.ttl)", pttl, err)
	}
	if n := sessionKeys(); n != 1 {
		t.Fatalf("session keys in Redis: got %d; want 1 (the moved session)", n)
	}
}

// TestStickyTwoInstances: two proxies with their own stores on one Redis share sessions. A
// session started on A routes the same through B (B has never seen it); when A moves the
// session (its backend drained on A only), B follows — through Redis's invalidation of B's
// cached pin (kept 60 s otherwise), since B's own table still has the old backend in rotation.
func TestStickyTwoInstances(t *testing.T) {
	t.Parallel()
	rs := testredis.Start(t)
	s := startStickyBackends(t)
	cfg := s.config(t, "", "")
	stA, stB := newRedisStore(t, rs, sticky.Options{}), newRedisStore(t, rs, sticky.Options{})
	pxA := startStickyProxy(t, s, cfg, stA)
	a, b := newLBClient(pxA), newLBClient(startStickyProxy(t, s, cfg, stB))

	cookies, backends := make([]string, 6), make([]string, 6)
	for i := range cookies {
		cookies[i], backends[i] = a.newSession(t)
	}
	for i := range cookies {
		stayOn(t, b, s, backends[i], 20, cookies[i]) // B reads the pin once, then from its cache
	}
	// Carried by their cookies: neither instance stored anything.
	if a, b := stA.Stats(), stB.Stats(); a.Pins+a.Repins+b.Pins+b.Repins != 0 {
		t.Fatalf("stores: got A %d pins %d re-pins, B %d pins %d re-pins; want none", a.Pins, a.Repins, b.Pins, b.Repins)
	}

	// Re-pin on A: drain session 0's backend on A only.
	old := backends[0]
	if _, err := pxA.builder.Drain(s.id[old]); err != nil {
		t.Fatal(err)
	}
	r := a.send(t, cookies[0])
	moved := r.backend
	if moved == old {
		t.Fatalf("A after draining %s: got backend %s; want the session moved", old, moved)
	}
	checkHint(t, stA, s, r.cookie(), moved)
	repinned := time.Now()
	// B, with its table unchanged and the old pin in its client cache, must follow. The old
	// cookie (a browser that has not been back to A) is the harder case: its hint still
	// names the old backend.
	var last lbReply
	// Well inside the client cache's 60 s TTL: only the invalidation can make B follow.
	testtool.WaitFor(t, 10*time.Second, "B to route the re-pinned session to "+moved, func() bool {
		last = b.send(t, cookies[0])
		return last.backend == moved
	})
	t.Logf("B followed A's re-pin after %v", time.Since(repinned))
	checkHint(t, stB, s, last.cookie(), moved) // B fixes the stale cookie too
	stayOn(t, b, s, moved, 20, r.cookie())
	// The other sessions did not move on B.
	for i := 1; i < len(cookies); i++ {
		stayOn(t, b, s, backends[i], 5, cookies[i])
	}
}

// load sends requests through several proxies from several goroutines until stopped and
// counts what went wrong.
type load struct {
	stop chan struct{}
	wg   sync.WaitGroup
	n    atomic.Int64 // responses

	mu       sync.Mutex
	failures []string // at most 10 kept
	failed   int
}

type loadSession struct {
	cookie, header string // the session's cookie value or X-Session-Id (one of them)
	want           string // backend it must stay on; "" to check only the status
}

// headers returns the session's header pair, or none for a cookie session.
func (s loadSession) headers() []string {
	if s.header == "" {
		return nil
	}
	return []string{"X-Session-Id", s.header}
}

// startLoad runs workers goroutines, each cycling over sessions and clients.
func startLoad(clients []*lbClient, sessions []loadSession, workers int) *load {
	l := &load{stop: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := w; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				sess, c := sessions[i%len(sessions)], clients[(i/len(sessions)+w)%len(clients)]
				r, err := c.try(sess.cookie, sess.headers()...)
				switch {
				case err != nil:
					l.fail(fmt.Sprintf("%s: %v", c.base, err))
				case r.status != 200:
					l.fail(fmt.Sprintf("%s: status %d", c.base, r.status))
				case sess.want != "" && r.backend != sess.want:
					l.fail(fmt.Sprintf("%s: session pinned to %s answered by %s", c.base, sess.want, r.backend))
				case sess.want != "" && r.setCookie != "":
					l.fail(fmt.Sprintf("%s: session on %s got a new cookie %q", c.base, sess.want, r.setCookie))
				}
				l.n.Add(1)
			}
		}()
	}
	return l
}

func (l *load) fail(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failed++
	if len(l.failures) < 10 {
		l.failures = append(l.failures, msg)
	}
}

// await waits until n more responses have come back.
func (l *load) await(t testing.TB, n int64, what string) {
	t.Helper()
	target := l.n.Load() + n
	testtool.WaitFor(t, 10*time.Second, fmt.Sprintf("%d more requests %s", n, what), func() bool { return l.n.Load() >= target })
}

// finish stops the load and fails the test if any request went wrong.
func (l *load) finish(t testing.TB) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed > 0 {
		t.Fatalf("%d of %d requests under load failed; first ones:\n%s", l.failed, l.n.Load(), strings.Join(l.failures, "\n"))
	}
	t.Logf("%d requests under load, none failed", l.n.Load())
}

// TestStickyRedisOutage: redis-server is killed under concurrent load through two instances
// and restarted on the same port, empty. Throughout: no 5xx (no error at all). Cookie sessions
// never leave their backend (their signed hint places them while Redis is down); header
// sessions are placed alike by both instances (rendezvous hashing); once Redis is back the
// header sessions' pins are in Redis again, and cookie sessions that never moved have none.
func TestStickyRedisOutage(t *testing.T) {
	t.Parallel()
	f := func(name string, headerMode bool) {
		t.Run(name, func(t *testing.T) {
			rs := testredis.Start(t)
			s := startStickyBackends(t)
			fields := ""
			if headerMode {
				fields = "header: X-Session-Id"
			}
			cfg := s.config(t, fields, "")
			stA, stB := newRedisStore(t, rs, sticky.Options{}), newRedisStore(t, rs, sticky.Options{})
			a, b := newLBClient(startStickyProxy(t, s, cfg, stA)), newLBClient(startStickyProxy(t, s, cfg, stB))
			clients := []*lbClient{a, b}

			// 12 sessions, started alternately on A and B; each is then read through both.
			sessions := make([]loadSession, 12)
			for i := range sessions {
				c := clients[i%2]
				if headerMode {
					sessions[i].header = fmt.Sprintf("user-%d", i)
					sessions[i].want = c.send(t, "", "X-Session-Id", sessions[i].header).backend
				} else {
					sessions[i].cookie, sessions[i].want = c.newSession(t)
				}
			}
			for _, sess := range sessions {
				for _, c := range clients {
					if got := c.send(t, sess.cookie, sess.headers()...).backend; got != sess.want {
						t.Fatalf("%s: session pinned to %s: got %s", c.base, sess.want, got)
					}
				}
			}
			loadSessions := sessions
			if headerMode {
				// Placement moves from pin to rendezvous and back: check statuses only.
				loadSessions = slices.Clone(sessions)
				for i := range loadSessions {
					loadSessions[i].want = ""
				}
			}
			l := startLoad(clients, loadSessions, 8)
			defer func() {
				if l != nil {
					l.finish(t)
				}
			}()
			l.await(t, 500, "before the kill")

			rs.Kill()
			testtool.WaitFor(t, 5*time.Second, "both stores to notice the outage", func() bool {
				return !stA.Stats().RedisUp && !stB.Stats().RedisUp
			})
			l.await(t, 1000, "during the outage")

			// During the outage, sequentially: every instance places each session alike.
			for _, sess := range sessions {
				var got []string
				for range 3 {
					for _, c := range clients {
						got = append(got, c.send(t, sess.cookie, sess.headers()...).backend)
					}
				}
				if u := slices.Compact(slices.Clone(got)); len(u) != 1 {
					t.Fatalf("session %s%s during the outage: got backends %v on A, B, A, B...; want one", sess.cookie, sess.header, got)
				}
				if !headerMode && got[0] != sess.want {
					t.Fatalf("cookie session during the outage: got %s; want its backend %s", got[0], sess.want)
				}
			}
			// New sessions during the outage: their pins are queued.
			var during []loadSession
			for i := range 4 {
				c := clients[i%2]
				if headerMode {
					k := fmt.Sprintf("outage-%d", i)
					during = append(during, loadSession{header: k, want: c.send(t, "", "X-Session-Id", k).backend})
				} else {
					cookie, be := c.newSession(t)
					during = append(during, loadSession{cookie: cookie, want: be})
				}
			}

			rs.Start() // same port, no data
			testtool.WaitFor(t, 5*time.Second, "both stores to use Redis again", func() bool {
				return stA.Stats().RedisUp && stB.Stats().RedisUp
			})
			l.await(t, 1000, "after Redis is back")
			l.finish(t)
			l = nil

			// The pins are in Redis again. Header sessions are placed afresh once Redis is
			// back empty (no pin was queued for them); request each once so it is pinned.
			all := append(slices.Clone(sessions), during...)
			for _, sess := range all {
				key := sess.header
				if !headerMode {
					key, _ = parseHint(t, sess.cookie)
				}
				want := ""
				r := a.send(t, sess.cookie, sess.headers()...)
				if !headerMode && r.backend != sess.want {
					t.Fatalf("cookie session after the outage: got %s; want %s", r.backend, sess.want)
				}
				want = s.id[r.backend]
				if headerMode {
					testtool.WaitFor(t, 5*time.Second, "pin of "+key+" in Redis", func() bool {
						got, _ := rs.Get(pinKey(key))
						return got == want
					})
				} else if got, ok := rs.Get(pinKey(key)); ok {
					// Never moved: the cookie carries it, nothing was stored or queued.
					t.Fatalf("cookie session that never moved: got pin %q in Redis; want none", got)
				}
				if r2 := b.send(t, sess.cookie, sess.headers()...); r2.backend != r.backend {
					t.Fatalf("after the outage: A sends the session to %s, B to %s; want the same", r.backend, r2.backend)
				}
			}
			// A second, brief outage is possible and harmless: the first call on a fresh
			// connection pays the dial and handshake inside the timeout, which a loaded
			// race-detector run can exceed. Nothing may be lost either way.
			for _, st := range []sticky.Store{stA, stB} {
				testtool.WaitFor(t, 5*time.Second, "the store to be up with nothing queued", func() bool {
					got := st.Stats()
					return got.RedisUp && got.QueuedPins == 0
				})
				if got := st.Stats(); got.Outages < 1 || got.DroppedPins != 0 {
					t.Fatalf("store stats: got %d outages, %d dropped pins; want at least 1, 0", got.Outages, got.DroppedPins)
				}
			}
		})
	}
	f("cookie", false)
	f("header", true)
}

// TestStickyRedisDownAtStart: a proxy whose Redis is down when it starts serves every
// request (no 5xx), cookie sessions stay on their cookie's backend, a tampered cookie is not
// trusted, and new sessions need no pin, queued or written, before or after Redis comes up.
func TestStickyRedisDownAtStart(t *testing.T) {
	t.Parallel()
	rs := testredis.New(t) // not started
	s := startStickyBackends(t)
	st := newRedisStore(t, rs, sticky.Options{})
	if st.Stats().RedisUp {
		t.Fatalf("store with Redis down: got RedisUp; want down")
	}
	c := newLBClient(startStickyProxy(t, s, s.config(t, "", ""), st))
	cookies, backends := make([]string, 6), make([]string, 6)
	for i := range cookies {
		cookies[i], backends[i] = c.newSession(t)
	}
	if got := strings.Join(backends, " "); got != "a b a c b a" {
		t.Fatalf("first backends with Redis down: got %s; want a b a c b a", got)
	}
	for i := range cookies {
		stayOn(t, c, s, backends[i], 20, cookies[i])
	}
	// A tampered hint of c with Redis down: the picker decides (c once in six).
	onC := 0
	for range 6 {
		v := s.signed(st, "b")
		r := c.send(t, tamper(t, v, st.Signer().Ref(0, s.id["c"]))["backend changed"])
		if r.backend == "c" {
			onC++
		}
		if r.setCookie != "" {
			checkHint(t, st, s, r.cookie(), r.backend)
		}
	}
	if onC != 1 {
		t.Fatalf("six sessions with a tampered hint of c, Redis down: got %d on c; want 1", onC)
	}
	// New cookie sessions are carried by their cookies: nothing to queue.
	if got := st.Stats().QueuedPins; got != 0 {
		t.Fatalf("queued pins with Redis down: got %d; want 0", got)
	}

	rs.Start()
	testtool.WaitFor(t, 5*time.Second, "the store to use Redis", func() bool { return st.Stats().RedisUp })
	for i, v := range cookies {
		sid, _ := parseHint(t, v)
		if got, ok := rs.Get(pinKey(sid)); ok {
			t.Fatalf("session %d in Redis after it came up: got pin %q; want none", i, got)
		}
	}
	for i := range cookies {
		stayOn(t, c, s, backends[i], 5, cookies[i])
	}
}

// TestStickyOutageMoveIsStored: with Redis down, a cookie session whose hinted backend fails
// is served by another (a retry) and its cookie re-issued; the move is a pin made during the
// outage, so it must reach Redis when Redis returns — otherwise Redis would keep (or later
// get) the old backend and send the session back there.
func TestStickyOutageMoveIsStored(t *testing.T) {
	t.Parallel()
	rs := testredis.New(t) // down
	s := startStickyBackends(t)
	st := newRedisStore(t, rs, sticky.Options{})
	c := newLBClient(startStickyProxy(t, s, s.config(t, "", ""), st))
	cookie, first := c.newSession(t)
	if first != "a" {
		t.Fatalf("first backend: got %s; want a", first)
	}
	if err := s.be["a"].srv.Shutdown(); err != nil {
		t.Fatal(err)
	}
	r := c.send(t, cookie)
	if r.backend == "a" {
		t.Fatalf("after a went away: got backend a; want another")
	}
	checkHint(t, st, s, r.cookie(), r.backend)
	sid, _ := parseHint(t, cookie)

	rs.Start()
	testtool.WaitFor(t, 5*time.Second, "the store to use Redis", func() bool { return st.Stats().RedisUp })
	if got, _ := rs.Get(pinKey(sid)); got != s.id[r.backend] {
		t.Fatalf("pin in Redis after the outage: got %q (%s); want %q (%s), where the session moved", got, s.name[got], s.id[r.backend], r.backend)
	}
}
