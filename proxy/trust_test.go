package proxy

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/auth"
	"go-loadbalancer/config"
	"go-loadbalancer/internal/testtool"
	"go-loadbalancer/ratelimit"
)

// The client's identity behind a trusted proxy (docs/behaviour.md#trust-model): the test client is
// 127.0.0.1, a trusted CDN; the visitors are its X-Forwarded-For addresses.

// TestIdentityRateLimit: behind a trusted proxy each visitor has its own rate-limit bucket
// (before: every visitor shared the CDN's: 10 distinct clients got 1×200, then 9×429), and
// a visitor cannot pick another's bucket by writing its own X-Forwarded-For.
func TestIdentityRateLimit(t *testing.T) {
	t.Parallel()
	be := startBackend(t, named("ok"))
	var refused atomic.Int64
	px := startProxy(t, poolConfig(t, "server: { trusted_proxies: [127.0.0.1/32] }\nrate_limit: { enabled: true, key: ip, rate: 0.1, burst: 1 }\n", be.url),
		withLimiter(ratelimit.NewLocal(0), &refused))
	for i := range 10 {
		xff := fmt.Sprintf("203.0.113.%d", i+1)
		if code := px.get(t, "/", "X-Forwarded-For", xff).StatusCode(); code != 200 {
			t.Fatalf("first request of visitor %s: got %d; want 200", xff, code)
		}
	}
	// Visitor .1 again, with a forged entry to its left: still .1's bucket, refused.
	if code := px.get(t, "/", "X-Forwarded-For", "198.51.100.77, 203.0.113.1").StatusCode(); code != 429 {
		t.Fatalf("second request of 203.0.113.1 (forged left entry): got %d; want 429", code)
	}
	// An untrusted peer's X-Forwarded-For is ignored: the peer itself is the client.
	px2 := startProxy(t, poolConfig(t, "rate_limit: { enabled: true, key: ip, rate: 0.1, burst: 1 }\n", be.url),
		withLimiter(ratelimit.NewLocal(0), &refused))
	px2.get(t, "/", "X-Forwarded-For", "203.0.113.1")
	if code := px2.get(t, "/", "X-Forwarded-For", "203.0.113.2").StatusCode(); code != 429 {
		t.Fatalf("untrusted peer, another X-Forwarded-For: got %d; want 429 (one client: the peer)", code)
	}
}

// TestIdentityGeoAndForwarding: geo CIDRs place the visitor, not the CDN (before: every
// visitor got the CDN's region); the backend's X-Forwarded-For starts with the visitor and
// ends with the peer; the access log's client is the visitor.
func TestIdentityGeoAndForwarding(t *testing.T) {
	t.Parallel()
	urls := map[string]string{}
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		urls[n] = startBackend(t, named(n)).url
	}
	echo := startBackend(t, echoHeaders)
	cfg := parseConfig(t, routesConfig(t, urls, `  - name: echo
    backends: [ { url: "`+echo.url+`" } ]
server: { trusted_proxies: [127.0.0.1/32, 10.0.0.0/8] }
geo: { cidrs: { eu: ["203.0.113.0/24"], us: ["127.0.0.0/8", "198.51.100.0/24"] } }
routes:
  - match: { path_prefix: /echo }
    pool: echo
  - match: { regions: [eu] }
    pool: geo
`))
	lp := accessLogged(t, cfg)
	tp, out := &testProxy{addr: lp.addr}, lp.out

	if got := string(tp.get(t, "/", "X-Forwarded-For", "203.0.113.9").Body()); got != "d" {
		t.Fatalf("eu visitor behind the CDN: got backend %s; want the eu backend d", got)
	}
	if got := string(tp.get(t, "/", "X-Forwarded-For", "203.0.113.9, 198.51.100.5").Body()); got != "a" {
		t.Fatalf("us visitor (a forged eu entry to its left): got backend %s; want the default pool (a)", got)
	}
	h := decodeHeaders(t, tp.get(t, "/echo", "X-Forwarded-For", "1.1.1.1, 203.0.113.9, 10.0.0.3"))
	if got := h["X-Forwarded-For"]; got != "203.0.113.9, 10.0.0.3, 127.0.0.1" {
		t.Fatalf("forwarded X-Forwarded-For: got %q; want the chain from the visitor, then the peer", got)
	}
	testtool.WaitFor(t, 3*time.Second, "three access log lines", func() bool { return strings.Count(out.String(), "\n") >= 3 })
	var clients []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, fmt.Sprint(m["client"]))
	}
	if got := strings.Join(clients, " "); got != "203.0.113.9 198.51.100.5 203.0.113.9" {
		t.Fatalf("access log clients: got %s; want the visitors", got)
	}
}

// TestTrustedHeadersStripped: headers the proxy trusts only from a trusted proxy, or sets
// itself — the geo header, X-Forwarded-*, X-Forwarded-Client-Cert — never reach the backend
// from an untrusted peer (the geo header did: ignored for routing, but forwarded); from a
// trusted one they pass.
func TestTrustedHeadersStripped(t *testing.T) {
	t.Parallel()
	be := startBackend(t, echoHeaders)
	send := []string{"X-Region", "eu", "X-Forwarded-Client-Cert", "Hash=forged", "X-Forwarded-Proto", "https"}
	px := startProxy(t, poolConfig(t, "geo: { header: X-Region }\n", be.url))
	h := decodeHeaders(t, px.get(t, "/", send...))
	for _, k := range []string{"X-Region", "X-Forwarded-Client-Cert"} {
		if v, ok := h[k]; ok {
			t.Errorf("untrusted peer: backend got %s: %q; want it removed", k, v)
		}
	}
	if h["X-Forwarded-Proto"] != "http" {
		t.Errorf("untrusted peer: got X-Forwarded-Proto %q; want ours (http)", h["X-Forwarded-Proto"])
	}
	px2 := startProxy(t, poolConfig(t, "server: { trusted_proxies: [127.0.0.1/32] }\ngeo: { header: X-Region }\n", be.url))
	h = decodeHeaders(t, px2.get(t, "/", send...))
	if h["X-Region"] != "eu" || h["X-Forwarded-Client-Cert"] != "Hash=forged" || h["X-Forwarded-Proto"] != "https" {
		t.Errorf("trusted peer: got %v; want its X-Region, X-Forwarded-Client-Cert and X-Forwarded-Proto kept", h)
	}
}

// jwtSetup is a proxy with JWT verification (HS256) and the given extra config.
func jwtSetup(t *testing.T, jc config.JWT, extra string, handler fasthttp.RequestHandler) (*testProxy, *atomic.Int64, func(claims map[string]any) string) {
	t.Helper()
	be := startBackend(t, handler)
	v, sign := hs256Verifier(t, jc)
	var refused atomic.Int64
	px := startProxy(t, poolConfig(t, extra, be.url), func(o *Options) { o.Auth = v }, withLimiter(ratelimit.NewLocal(0), &refused))
	return px, &refused, func(claims map[string]any) string { return "Bearer " + sign(claims) }
}

// TestRateLimitBeforeJWT: a flood of badly signed tokens is rate limited by client
// address before any signature check (before: every one got 401, none 429, each costing a
// verification). With a claim-keyed limit each token that must be verified is charged to
// the client address; a valid token is then limited by its claim.
func TestRateLimitBeforeJWT(t *testing.T) {
	t.Parallel()
	bad := "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	f := func(key string) {
		t.Run(key, func(t *testing.T) {
			px, refused, _ := jwtSetup(t, config.JWT{}, "rate_limit: { enabled: true, key: \""+key+"\", rate: 0.1, burst: 3 }\n", named("ok"))
			var codes []int
			for range 10 {
				codes = append(codes, px.get(t, "/", "Authorization", bad).StatusCode())
			}
			if got := fmt.Sprint(codes); got != "[401 401 401 429 429 429 429 429 429 429]" {
				t.Fatalf("10 bad tokens from one client: got %s; want 3×401 then 429", got)
			}
			if refused.Load() != 7 {
				t.Fatalf("refusals counted: got %d; want 7", refused.Load())
			}
		})
	}
	f("ip")
	f("claim:sub")
}

// TestRateLimitByClaimCachedTokenNotCharged: with a claim-keyed limit, a client whose
// address is out of verification budget still gets through with a token already verified
// (a cache hit costs no verification and is limited by its claim alone).
func TestRateLimitByClaimCachedTokenNotCharged(t *testing.T) {
	t.Parallel()
	px, _, sign := jwtSetup(t, config.JWT{}, "rate_limit: { enabled: true, key: \"claim:sub\", rate: 0.1, burst: 2 }\n", named("ok"))
	good := sign(map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	if code := px.get(t, "/", "Authorization", good).StatusCode(); code != 200 {
		t.Fatalf("first request with a valid token: got %d; want 200", code)
	}
	bad := "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	for range 3 {
		px.get(t, "/", "Authorization", bad) // uses up the address's verification budget
	}
	if code := px.get(t, "/", "Authorization", bad).StatusCode(); code != 429 {
		t.Fatalf("bad token with the budget used: got %d; want 429", code)
	}
	if code := px.get(t, "/", "Authorization", good).StatusCode(); code != 200 {
		t.Fatalf("cached valid token: got %d; want 200 (limited by its claim, not the address)", code)
	}
	if code := px.get(t, "/", "Authorization", good).StatusCode(); code != 429 {
		t.Fatalf("third request of alice: got %d; want 429 (alice's burst of 2)", code)
	}
}

// TestJWTAuthorizationRules: two Authorization headers are a 400 (before: the first was
// checked and both forwarded); forward_token: false keeps the token from the backend, the
// default forwards it; a token without exp is refused by default.
func TestJWTAuthorizationRules(t *testing.T) {
	t.Parallel()
	exp := time.Now().Add(time.Hour).Unix()
	px, _, sign := jwtSetup(t, config.JWT{}, "", echoHeaders)
	good := sign(map[string]any{"sub": "alice", "exp": exp})
	resp, _ := px.raw(t, "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: "+good+"\r\nAuthorization: Bearer other\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(resp, "HTTP/1.1 400 ") || !strings.Contains(resp, "more than one Authorization header") {
		t.Fatalf("two Authorization headers: got %q; want 400", resp)
	}
	if h := decodeHeaders(t, px.get(t, "/", "Authorization", good)); h["Authorization"] != good {
		t.Fatalf("forward_token default: backend got Authorization %q; want the token", h["Authorization"])
	}
	if code := px.get(t, "/", "Authorization", sign(map[string]any{"sub": "alice"})).StatusCode(); code != 401 {
		t.Fatalf("token without exp: got %d; want 401", code)
	}
	no := false
	px2, _, sign2 := jwtSetup(t, config.JWT{ForwardToken: &no, SkipPaths: []string{"/public"}}, "", echoHeaders)
	h := decodeHeaders(t, px2.get(t, "/", "Authorization", sign2(map[string]any{"sub": "alice", "exp": exp})))
	if v, ok := h["Authorization"]; ok {
		t.Fatalf("forward_token false: backend got Authorization %q; want none", v)
	}
	if h := decodeHeaders(t, px2.get(t, "/public/x", "Authorization", "Bearer whatever")); h["Authorization"] != "" {
		t.Fatalf("forward_token false, skip path: backend got Authorization %q; want none", h["Authorization"])
	}
}

// jwtVerifierForAllocs returns an HS256 verifier forwarding sub as X-User-Id, and a
// function making a valid token for it.
func jwtVerifierForAllocs(t *testing.T) (*auth.Verifier, func() string) {
	t.Helper()
	v, sign := hs256Verifier(t, config.JWT{ForwardClaims: map[string]string{"sub": "X-User-Id"}})
	return v, func() string { return "Bearer " + sign(aliceClaims()) }
}

// TestSplitForwardedForIsOneList: a trusted peer's X-Forwarded-For in two lines is one list
// (RFC 9110 §5.3) for every step: a route matching the whole list takes it (before, routing
// saw the first line alone), and the backend gets the chain from the client on.
func TestSplitForwardedForIsOneList(t *testing.T) {
	a, b := startBackend(t, echoHeaders), startBackend(t, named("b"))
	px := startProxy(t, parseConfig(t, fmt.Sprintf(`server: { trusted_proxies: [127.0.0.1/32] }
pools:
  - name: a
    backends: [ { url: %q } ]
  - name: b
    backends: [ { url: %q } ]
routes:
  - match: { headers: { X-Forwarded-For: "203.0.113.1, 198.51.100.2" } }
    pool: b
`, a.url, b.url)))
	resp, _ := px.raw(t, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.1\r\nX-Forwarded-For: 198.51.100.2\r\nConnection: close\r\n\r\n")
	if !strings.HasSuffix(resp, "\r\n\r\nb") {
		t.Fatalf("got %q; want backend b, whose route matches the list of both lines", resp)
	}
	resp, _ = px.raw(t, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.1\r\nX-Forwarded-For: 198.51.100.3\r\nConnection: close\r\n\r\n")
	if !strings.Contains(strings.ToLower(resp), "198.51.100.3, 127.0.0.1") {
		t.Fatalf("got %q; want pool a and the chain from the client, ending with the peer", resp)
	}
}
