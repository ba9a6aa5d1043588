package proxy

import (
	"fmt"
	"strings"
	"testing"
)

// routesConfig has pools stable (a), canary (b), api (c) and eu/us (d, e).
func routesConfig(t *testing.T, urls map[string]string, extra string) string {
	var sb strings.Builder
	sb.WriteString("pools:\n")
	for _, p := range []struct{ name, backends string }{
		{"stable", fmt.Sprintf("[ { url: %q } ]", urls["a"])},
		{"canary", fmt.Sprintf("[ { url: %q } ]", urls["b"])},
		{"api", fmt.Sprintf("[ { url: %q } ]", urls["c"])},
		{"geo", fmt.Sprintf("[ { url: %q, region: eu }, { url: %q, region: us, weight: 5 } ]", urls["d"], urls["e"])},
	} {
		fmt.Fprintf(&sb, "  - name: %s\n    backends: %s\n", p.name, p.backends)
	}
	sb.WriteString(extra)
	return sb.String()
}

func TestTrafficPolicies(t *testing.T) {
	t.Parallel()
	urls := map[string]string{}
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		urls[n] = startBackend(t, named(n)).url
	}
	cfg := parseConfig(t, routesConfig(t, urls, `routes:
  - match: { path_prefix: /api, method: POST }
    pool: api
  - match: { headers: { X-Canary: "true" } }
    pool: canary
  - match: { host: Shop.Example }
    pool: api
  - match: { headers: { X-Forwarded-Proto: http, X_Canary: "true" } }
    pool: canary
  - match: { headers: { X-Original-URL: /admin } }
    pool: canary
  - match: { path_prefix: /split }
    split: [ { pool: stable, weight: 95 }, { pool: canary, weight: 5 } ]
`))
	px := startProxy(t, cfg)
	f := func(req, want string) {
		t.Helper()
		resp, _ := px.raw(t, req)
		if !strings.HasSuffix(resp, "\r\n\r\n"+want) {
			t.Fatalf("%q: got %q; want the answer of backend %s", req, resp, want)
		}
	}
	f("POST /api/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", "c")
	f("GET /api/orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "a") // method does not match
	f("GET / HTTP/1.1\r\nHost: x\r\nX-Canary: true\r\nConnection: close\r\n\r\n", "b")
	f("GET / HTTP/1.1\r\nHost: x\r\nX-Canary: false\r\nConnection: close\r\n\r\n", "a")
	f("GET / HTTP/1.1\r\nHost: shop.example:8443\r\nConnection: close\r\n\r\n", "c")
	f("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "a") // no match: the first pool
	// Fields the backend never gets decide nothing: the forwarded family from a peer not in
	// trusted_proxies, underscore aliases, path overrides.
	f("GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: http\r\nX_Canary: true\r\nConnection: close\r\n\r\n", "a")
	f("GET / HTTP/1.1\r\nHost: x\r\nX-Original-URL: /admin\r\nConnection: close\r\n\r\n", "a")

	// A 95/5 split is exact over every 100 requests (smooth weighted round-robin).
	got := map[string]int{}
	for range 100 {
		got[string(px.get(t, "/split").Body())]++
	}
	if got["a"] != 95 || got["b"] != 5 {
		t.Fatalf("got split %v over 100 requests; want a:95 b:5", got)
	}
}

func TestGeoRouting(t *testing.T) {
	t.Parallel()
	urls := map[string]string{}
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		urls[n] = startBackend(t, named(n)).url
	}
	// The test client is 127.0.0.1: region eu by CIDR.
	px := startProxy(t, parseConfig(t, routesConfig(t, urls, `geo: { cidrs: { eu: ["127.0.0.0/8"], us: ["10.0.0.0/8"] }, header: X-Region }
routes:
  - match: { regions: [eu], path_prefix: /geo }
    pool: geo
`)))
	// prefer_local (the default): every eu client goes to the eu backend, although the us
	// one has five times its weight.
	for range 12 {
		if b := string(px.get(t, "/geo").Body()); b != "d" {
			t.Fatalf("got backend %s for an eu client; want the eu backend d", b)
		}
	}
	// An untrusted peer's region header is ignored: still eu by address.
	if b := string(px.get(t, "/geo", "X-Region", "us").Body()); b != "d" {
		t.Fatalf("got backend %s; the region header of an untrusted peer must be ignored", b)
	}
	// Drained, the local backend's traffic goes to the rest of the pool.
	tb := px.builder.Store.Load()
	if _, err := px.builder.Drain(tb.Pool("geo").Backends[0].ID); err != nil {
		t.Fatal(err)
	}
	if b := string(px.get(t, "/geo").Body()); b != "e" {
		t.Fatalf("got backend %s with the eu backend drained; want the us one", b)
	}

	// From a trusted peer the header decides the region: us does not match the eu route.
	px2 := startProxy(t, parseConfig(t, routesConfig(t, urls, `server: { trusted_proxies: [127.0.0.1/32] }
geo: { header: X-Region }
routes:
  - match: { regions: [eu] }
    pool: geo
`)))
	if b := string(px2.get(t, "/", "X-Region", "us").Body()); b != "a" {
		t.Fatalf("got backend %s for region us; want the default pool (a)", b)
	}
	if b := string(px2.get(t, "/", "X-Region", "eu").Body()); b != "d" {
		t.Fatalf("got backend %s for region eu; want the eu backend of the geo pool (d)", b)
	}
}

// TestTrafficPoliciesOff: with TRAFFIC_POLICIES_ENABLED=false the routes are ignored and
// every request goes to the first pool.
func TestTrafficPoliciesOff(t *testing.T) {
	t.Parallel()
	urls := map[string]string{}
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		urls[n] = startBackend(t, named(n)).url
	}
	cfg := parseConfig(t, routesConfig(t, urls, `routes:
  - match: { headers: { X-Canary: "true" } }
    pool: canary
  - match: { path_prefix: /api }
    pool: api
`))
	if errs := cfg.ApplyEnv(func(name string) string {
		if name == "TRAFFIC_POLICIES_ENABLED" {
			return "false"
		}
		return ""
	}); errs != nil {
		t.Fatal(errs)
	}
	px := startProxy(t, cfg)
	for _, req := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\nX-Canary: true\r\nConnection: close\r\n\r\n",
		"GET /api/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	} {
		if resp, _ := px.raw(t, req); !strings.HasSuffix(resp, "\r\n\r\na") {
			t.Fatalf("%q: got %q; want the first pool's backend a", req, resp)
		}
	}
}
