package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// basePool is appended to test documents that have no pools of their own.
const basePool = "pools:\n  - backends: [{url: \"http://127.0.0.1:1\"}]\n"

// markedLine returns the 1-based line of doc that holds the marker "#<".
func markedLine(t *testing.T, doc string) int {
	t.Helper()
	for i, line := range strings.Split(doc, "\n") {
		if strings.Contains(line, "#<") {
			return i + 1
		}
	}
	t.Fatalf("no #< marker in %q", doc)
	return 0
}

// TestValidateRules checks each rule with a document that breaks only that rule: it must
// fail with exactly one error, "lb.yaml:LINE: want", where LINE is the line marked "#<".
func TestValidateRules(t *testing.T) {
	f := func(doc, want string) {
		t.Helper()
		if !strings.Contains(doc, "pools:") {
			doc = strings.TrimSuffix(doc, "\n") + "\n" + basePool
		}
		checkErrors(t, doc, fmt.Sprintf("lb.yaml:%d: %s", markedLine(t, doc), want))
	}

	// listeners
	f(`listen: "8080" #<`, `listen: "8080" is not host:port (for example ":8080" or "127.0.0.1:9901")`)
	f(`listen: ":http" #<`, `listen: port "http" of ":http" must be a number from 0 to 65535`)
	f(`listen: "0.0.0.0:70000" #<`, `listen: port "70000" of "0.0.0.0:70000" must be a number from 0 to 65535`)
	f("admin:\n  token_file: x\n  listen: localhost #<", `admin.listen: "localhost" is not host:port (for example ":8080" or "127.0.0.1:9901")`)
	f("listen: \":9000\"\nadmin: { listen: \":9000\" } #<", `admin.listen: admin.listen must differ from listen (both are ":9000")`)

	// front TLS; a missing key is reported on the line of its mapping
	f(`tls: { cert_file: a.pem } #<`, `tls.key_file: cert_file is set but key_file is not (set both or neither)`)
	f("tls: #<\n  key_file: a.key", `tls.cert_file: key_file is set but cert_file is not (set both or neither)`)
	f("tls:\n  client_ca_file: ca.pem #<", `tls.client_ca_file: client_ca_file needs cert_file and key_file (client certificates are verified only on a TLS listener)`)

	// server
	f("server:\n  read_timeout: 0s #<", `server.read_timeout: duration must be greater than 0 (got 0s)`)
	f("server:\n  write_timeout: -1s #<", `server.write_timeout: duration must be greater than 0 (got -1s)`)
	f("server:\n  idle_timeout: 0ms #<", `server.idle_timeout: duration must be greater than 0 (got 0s)`)
	f("server:\n  shutdown_timeout: 0s #<", `server.shutdown_timeout: duration must be greater than 0 (got 0s)`)
	f("server:\n  max_header_bytes: 512 #<", `server.max_header_bytes: must be at least 1024 (got 512)`)
	f("server:\n  max_headers: -1 #<", `server.max_headers: must be at least 1 (got -1)`)
	f("server:\n  escaped_slashes: decode #<", `server.escaped_slashes: escaped_slashes must be reject, keep or unescape (got "decode")`)
	f("auth:\n  jwt:\n    skip_paths: [/public, /a/./b] #<", `auth.jwt.skip_paths[1]: "/a/./b" is not in canonical form; requests are matched as "/a/b"`)
	f("server:\n  max_body_bytes: 0 #<", `server.max_body_bytes: must be greater than 0 (got 0)`)
	f("server:\n  shutdown_timeout: 2s\n  drain_grace: 2s #<", `server.drain_grace: must be at least 0 and less than server.shutdown_timeout (got 2s; shutdown_timeout 2s)`)
	f("server:\n  max_conns: -1 #<", `server.max_conns: must be at least 0 (got -1)`)
	f("server:\n  max_conns_per_ip: -1 #<", `server.max_conns_per_ip: must be at least 0 (got -1)`)
	f("server:\n  max_tunnels: -1 #<", `server.max_tunnels: must be at least 0 (got -1)`)
	f("server:\n  request_buffer_bytes: -1 #<", `server.request_buffer_bytes: must be at least 0 (got -1)`)
	f("server:\n  min_request_body_rate: -1 #<", `server.min_request_body_rate: must be at least 0 (got -1)`)
	f("server:\n  request_body_grace: 0s #<", `server.request_body_grace: duration must be greater than 0 (got 0s)`)
	f("server:\n  trusted_proxies:\n    - 10.0.0.1\n    - not-an-ip #<", `server.trusted_proxies[1]: "not-an-ip" is not a valid IP address or CIDR`)
	f("server:\n  trusted_proxies:\n    - 10.0.0.0/33 #<", `server.trusted_proxies[0]: "10.0.0.0/33" is not a valid CIDR`)
	f("server:\n  trusted_proxies:\n    - fe80::1%eth0 #<", `server.trusted_proxies[0]: "fe80::1%eth0" is not a valid IP address or CIDR`)

	// pools
	f("pools:\n  - name: my pool #<\n    backends: [{url: \"http://a\"}]", `pools[0].name: pool name "my pool" may hold only letters, digits, '_', '.' and '-'`)
	f("pools:\n  - name: a\n    backends: [{url: \"http://a\"}]\n  - name: a #<\n    backends: [{url: \"http://b\"}]", `pools[1].name: duplicate pool name "a" (also pools[0])`)
	f("pools:\n  - balance: random #<\n    backends: [{url: \"http://a\"}]", `pools[0].balance: balance must be smooth_weighted or least_inflight (got "random")`)
	f("pools:\n  - name: web #<\n", `pools[0].backends: pool "web" has no backends (list them as backends: [{url: ...}])`)
	f("pools:\n  - name: web\n    backends: [] #<\n", `pools[0].backends: pool "web" has no backends (list them as backends: [{url: ...}])`)

	// backends
	backend := func(entry, want string) {
		t.Helper()
		f("pools:\n  - backends:\n      - url: \"http://10.0.0.9\"\n"+entry, want)
	}
	backend("      - weight: 2 #<", `pools[0].backends[1].url: url is required (for example url: "http://10.0.0.1:8080")`)
	backend("      - {url: \"http://a\", weight: 0} #<", `pools[0].backends[1].weight: weight must be between 1 and 10000`)
	backend("      - url: \"http://a\"\n        weight: 10001 #<", `pools[0].backends[1].weight: weight must be between 1 and 10000`)
	backend("      - url: \"http://a\"\n        weight: -3 #<", `pools[0].backends[1].weight: weight must be between 1 and 10000`)
	backend("      - url: \"ftp://a\" #<", `pools[0].backends[1].url: url "ftp://a": scheme must be http or https`)
	backend("      - url: \"10.0.0.1:80\" #<", `pools[0].backends[1].url: invalid url "10.0.0.1:80": first path segment in URL cannot contain colon`)
	backend("      - url: \"http://[::1\" #<", `pools[0].backends[1].url: invalid url "http://[::1": missing ']' in host`)
	backend("      - url: \"http://\" #<", `pools[0].backends[1].url: url "http://" has no host`)
	backend("      - url: \"http://:8080\" #<", `pools[0].backends[1].url: url "http://:8080" has no host`)
	backend("      - url: \"http:a\" #<", `pools[0].backends[1].url: url "http:a" has no host`)
	backend("      - url: \"http://u:p@a\" #<", `pools[0].backends[1].url: url "http://u:p@a" must not contain a user name or password`)
	backend("      - url: \"http://a/api\" #<", `pools[0].backends[1].url: url "http://a/api" must not have a path (got "/api")`)
	backend("      - url: \"http://a/?x=1\" #<", `pools[0].backends[1].url: url "http://a/?x=1" must not have a query`)
	backend("      - url: \"http://a#top\" #<", `pools[0].backends[1].url: url "http://a#top" must not have a fragment`)
	backend("      - url: \"http://a:0\" #<", `pools[0].backends[1].url: url "http://a:0": port must be from 1 to 65535`)
	backend("      - url: \"http://a:65536\" #<", `pools[0].backends[1].url: url "http://a:65536": port must be from 1 to 65535`)
	backend("      - url: \"http://10.0.0.9:80/\" #<", `pools[0].backends[1].url: duplicate backend "http://10.0.0.9:80/" (same address as backends[0])`)

	// health checks
	pool := func(settings, want string) {
		t.Helper()
		f("pools:\n  - backends: [{url: \"http://a\"}]\n"+settings, want)
	}
	pool("    timeouts:\n      tunnel_idle: 0s #<", `pools[0].timeouts.tunnel_idle: duration must be greater than 0 (got 0s)`)
	pool("    health_check: { path: health } #<", `pools[0].health_check.path: path must start with / (got "health")`)
	pool("    health_check:\n      interval: 0s #<", `pools[0].health_check.interval: duration must be greater than 0 (got 0s)`)
	pool("    health_check:\n      timeout: 0s #<", `pools[0].health_check.timeout: duration must be greater than 0 (got 0s)`)
	pool("    health_check:\n      interval: 1s\n      timeout: 1s #<", `pools[0].health_check.timeout: timeout (1s) must be shorter than interval (1s)`)
	pool("    health_check:\n      rise: 0 #<", `pools[0].health_check.rise: must be at least 1 (got 0)`)
	pool("    health_check:\n      fall: 0 #<", `pools[0].health_check.fall: must be at least 1 (got 0)`)
	pool("    health_check:\n      expect_status: \"\" #<", `pools[0].health_check.expect_status: empty status list (use codes or ranges such as "200-399")`)
	pool("    health_check:\n      expect_status: 200-2xx #<", `pools[0].health_check.expect_status: "2xx" is not an HTTP status code 100-599 (use codes or ranges such as "200-399")`)
	pool("    health_check:\n      expect_status: 600 #<", `pools[0].health_check.expect_status: "600" is not an HTTP status code 100-599 (use codes or ranges such as "200-399")`)
	pool("    health_check:\n      expect_status: 399-200 #<", `pools[0].health_check.expect_status: status range "399-200" is backwards`)

	// circuit breaker
	pool("    circuit_breaker:\n      consecutive_failures: 0 #<", `pools[0].circuit_breaker.consecutive_failures: must be at least 1 (got 0)`)
	pool("    circuit_breaker:\n      failure_ratio: 0 #<", `pools[0].circuit_breaker.failure_ratio: failure_ratio must be greater than 0 and at most 1 (got 0)`)
	pool("    circuit_breaker:\n      failure_ratio: 1.5 #<", `pools[0].circuit_breaker.failure_ratio: failure_ratio must be greater than 0 and at most 1 (got 1.5)`)
	pool("    circuit_breaker:\n      failure_ratio: .nan #<", `pools[0].circuit_breaker.failure_ratio: expected a number, got .nan`)
	pool("    circuit_breaker:\n      min_requests: 0 #<", `pools[0].circuit_breaker.min_requests: must be at least 1 (got 0)`)
	pool("    circuit_breaker:\n      window: 0s #<", `pools[0].circuit_breaker.window: duration must be greater than 0 (got 0s)`)
	pool("    circuit_breaker:\n      open_for: -5s #<", `pools[0].circuit_breaker.open_for: duration must be greater than 0 (got -5s)`)
	pool("    circuit_breaker:\n      half_open_probes: 0 #<", `pools[0].circuit_breaker.half_open_probes: must be at least 1 (got 0)`)

	// retry
	pool("    retry:\n      attempts: -1 #<", `pools[0].retry.attempts: attempts must be between 0 and 10 (got -1)`)
	pool("    retry:\n      attempts: 11 #<", `pools[0].retry.attempts: attempts must be between 0 and 10 (got 11)`)
	pool("    retry:\n      on:\n        - 5xx\n        - \"404\" #<", `pools[0].retry.on[1]: unknown retry condition "404" (use connect, timeout, reset, 5xx or a 5xx status code such as "503")`)
	pool("    retry:\n      on:\n        - always #<", `pools[0].retry.on[0]: unknown retry condition "always" (use connect, timeout, reset, 5xx or a 5xx status code such as "503")`)
	pool("    retry:\n      budget_ratio: -0.1 #<", `pools[0].retry.budget_ratio: budget_ratio must be between 0 and 1 (got -0.1)`)

	// timeouts, connections, upstream TLS, autoscale
	pool("    timeouts: { connect: 0s } #<", `pools[0].timeouts.connect: duration must be greater than 0 (got 0s)`)
	pool("    timeouts:\n      response: 0s #<", `pools[0].timeouts.response: duration must be greater than 0 (got 0s)`)
	pool("    max_conns_per_backend: 0 #<", `pools[0].max_conns_per_backend: must be at least 1 (got 0)`)
	pool("    upstream_tls: #<\n      cert_file: c.pem", `pools[0].upstream_tls.key_file: cert_file is set but key_file is not (set both or neither)`)
	pool("    upstream_tls: { key_file: c.key } #<", `pools[0].upstream_tls.cert_file: key_file is set but cert_file is not (set both or neither)`)
	pool("    autoscale:\n      target_inflight_per_backend: -1 #<", `pools[0].autoscale.target_inflight_per_backend: must be at least 0 (got -1)`)
	pool("    autoscale:\n      min_active: 0 #<", `pools[0].autoscale.min_active: must be at least 1 (got 0)`)
	pool("    autoscale:\n      cooldown: 0s #<", `pools[0].autoscale.cooldown: duration must be greater than 0 (got 0s)`)

	// sticky sessions, Redis, rate limits, JWT, tracing, log
	f("sticky:\n  cookie: \"lb sticky\" #<", `sticky.cookie: cookie name "lb sticky" is not a valid cookie name (RFC 6265 token)`)
	f("sticky:\n  cookie: \"a;b\" #<", `sticky.cookie: cookie name "a;b" is not a valid cookie name (RFC 6265 token)`)
	f("sticky:\n  cookie: \"\" #<", `sticky.cookie: cookie name "" is not a valid cookie name (RFC 6265 token)`)
	f("sticky:\n  header: \"X Session\" #<", `sticky.header: header "X Session" is not a valid header name`)
	f("sticky:\n  new_header_sessions_per_second: 0 #<", `sticky.new_header_sessions_per_second: must be at least 1 (got 0)`)
	f("sticky:\n  ttl: 0s #<", `sticky.ttl: duration must be greater than 0 (got 0s)`)
	f("redis:\n  url: \"http://127.0.0.1:6379\" #<", `redis.url: url "http://127.0.0.1:6379": scheme must be redis or rediss`)
	f("redis:\n  url: \"redis://\" #<", `redis.url: url "redis://" has no host`)
	f("redis:\n  url: \"%zz\" #<", `redis.url: invalid url "%zz": invalid URL escape "%zz"`)
	f("redis:\n  client_cache_ttl: 0s #<", `redis.client_cache_ttl: duration must be greater than 0 (got 0s)`)
	f("rate_limit:\n  key: cookie:x #<", `rate_limit.key: key must be ip, header:NAME or claim:NAME (got "cookie:x")`)
	f("rate_limit:\n  key: \"header:\" #<", `rate_limit.key: key must be ip, header:NAME or claim:NAME (got "header:")`)
	f("rate_limit:\n  key: \"header:X Y\" #<", `rate_limit.key: key must be ip, header:NAME or claim:NAME (got "header:X Y")`)
	f("rate_limit:\n  key: \"claim:\" #<", `rate_limit.key: key must be ip, header:NAME or claim:NAME (got "claim:")`)
	f("rate_limit:\n  scope: global #<", `rate_limit.scope: scope must be local or redis (got "global")`)
	f("rate_limit:\n  rate: 0 #<", `rate_limit.rate: rate must be greater than 0 (got 0)`)
	f("rate_limit:\n  rate: .inf #<", `rate_limit.rate: expected a number, got .inf`)
	f("rate_limit:\n  burst: 0 #<", `rate_limit.burst: must be at least 1 (got 0)`)
	allowed := "HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512, EdDSA"
	f("auth:\n  jwt:\n    algorithms:\n      - RS256\n      - none #<", `auth.jwt.algorithms[1]: algorithm "none" is not allowed (allowed: `+allowed+`)`)
	f("auth:\n  jwt:\n    algorithms: [rs256] #<", `auth.jwt.algorithms[0]: algorithm "rs256" is not allowed (allowed: `+allowed+`)`)
	f("tracing:\n  sample_ratio: 1.5 #<", `tracing.sample_ratio: sample_ratio must be between 0 and 1 (got 1.5)`)
	f("tracing:\n  sample_ratio: -0.5 #<", `tracing.sample_ratio: sample_ratio must be between 0 and 1 (got -0.5)`)
	f("tracing:\n  enabled: true #<", `tracing.enabled: tracing needs tracing.otlp_endpoint, an OTLP/HTTP collector such as http://127.0.0.1:4318`)
	f("tracing:\n  otlp_endpoint: \"127.0.0.1:4318\" #<", `tracing.otlp_endpoint: otlp_endpoint must be an OTLP/HTTP collector URL such as http://127.0.0.1:4318 (got "127.0.0.1:4318")`)
	f("tracing:\n  otlp_endpoint: \"http://c:4318/?x=1\" #<", `tracing.otlp_endpoint: otlp_endpoint must not have a query, fragment or user (got "http://c:4318/?x=1")`)
	f("tracing:\n  enabled: true\n  otlp_endpoint: http://c:4318\n  service_name: \"\" #<", `tracing.service_name: service_name must not be empty`)
	f("log:\n  level: INFO #<", `log.level: log level must be one of trace, debug, info, warn, error (got "INFO")`)
}

// TestValidateRoutes checks the route rules; routes are not available yet, so each document
// also gets that error.
func TestValidateRoutes(t *testing.T) {
	const head = basePool + "routes:\n"
	f := func(routes, want string) {
		t.Helper()
		doc := head + routes
		checkErrors(t, doc, fmt.Sprintf("lb.yaml:%d: %s", markedLine(t, doc), want))
	}
	f("  - match: { path_prefix: /api } #<", `routes[0]: a route needs exactly one of pool or split`)
	f("  - pool: default #<\n    split: [{pool: default, weight: 1}]", `routes[0]: a route needs exactly one of pool or split`)
	f("  - pool: default\n  - pool: web #<", `routes[1].pool: unknown pool "web"`)
	f("  - split:\n      - {pool: default, weight: 1}\n      - {pool: canary, weight: 1} #<", `routes[0].split[1].pool: unknown pool "canary"`)
	f("  - split:\n      - pool: default\n        weight: 0 #<", `routes[0].split[0].weight: must be at least 1 (got 0)`)
	f("  - pool: default\n    match:\n      path_prefix: api #<", `routes[0].match.path_prefix: must start with / (got "api")`)
	f("  - pool: default\n    match:\n      path_prefix: /a/../b #<", `routes[0].match.path_prefix: "/a/../b" is not in canonical form; requests are matched as "/b"`)
	f("  - pool: default\n    match:\n      path_prefix: \"/a b\" #<", `routes[0].match.path_prefix: "/a b" is not a valid path: invalid request path`)

	// Valid routes parse.
	if _, err := Parse("lb.yaml", []byte(head+"  - match: { path_prefix: /api, headers: { X-Canary: \"true\" }, regions: [eu] }\n    pool: default\n"+
		"  - split: [ { pool: default, weight: 95 }, { pool: default, weight: 5 } ]\n")); err != nil {
		t.Fatalf("valid routes rejected: %v", err)
	}
}

func TestValidateUnavailable(t *testing.T) {
	// JWT on needs a key source for its algorithms.
	checkErrors(t, basePool+"auth:\n  jwt:\n    enabled: true\n    algorithms: [RS256, HS256]\n",
		"lb.yaml:6: auth.jwt.algorithms: HMAC algorithms need auth.jwt.hmac_secret_file",
		"lb.yaml:6: auth.jwt.algorithms: public-key algorithms need auth.jwt.jwks_file or jwks_url")

	// Switched off, their settings are accepted (and still checked).
	mustParse(t, basePool+"sticky: { enabled: false, header: X-Session }\nrate_limit: { enabled: false, key: \"claim:sub\", scope: redis }\n"+
		"auth: { jwt: { enabled: false, algorithms: [HS256, EdDSA] } }\ntracing: { enabled: false, sample_ratio: 1 }\n")
	mustParse(t, basePool+"tracing: { enabled: true, otlp_endpoint: \"http://127.0.0.1:4318\", sample_ratio: 0 }\n")
	checkErrors(t, basePool+"geo:\n  cidrs:\n    eu: [10.0.0.0/8, 10.0.0.300]\n",
		`lb.yaml:5: geo.cidrs.eu[1]: "10.0.0.300" is not a valid IP address or CIDR`)
	// Standby backends are checked like backends, duplicates across both included.
	checkErrors(t, "pools:\n  - backends: [{url: \"http://a\"}]\n    standby:\n      - url: \"http://a:80\"\n        weight: 0\n",
		`lb.yaml:5: pools[0].standby[0].weight: weight must be between 1 and 10000`,
		`lb.yaml:4: pools[0].standby[0].url: duplicate backend "http://a:80" (same address as backends[0])`)
}

func TestValidateAccepts(t *testing.T) {
	// Values at the edges of what is allowed.
	mustParse(t, `listen: "[::]:0"
admin: { listen: "localhost:0" }
tls: { cert_file: c.pem, key_file: c.key, client_ca_file: ca.pem }
server: { max_header_bytes: 1024, max_body_bytes: 1, trusted_proxies: [10.0.0.0/8, "::1", 192.168.1.1, "2001:db8::/32"] }
pools:
  - name: A-b_c.1
    balance: least_inflight
    backends:
      - { url: "http://a", weight: 10000 }
      - { url: "https://a" }
      - { url: "http://a:8080/" }
      - { url: "http://[::1]:80" }
      - { url: "HTTP://B" }
    health_check: { path: /, interval: 2s, timeout: 1999ms, rise: 1, fall: 1, expect_status: "200, 204,300-308" }
    circuit_breaker: { consecutive_failures: 1, failure_ratio: 1, min_requests: 1, half_open_probes: 1 }
    retry: { attempts: 10, on: [connect, timeout, reset, 5xx, "500", "599"], budget_ratio: 0 }
    max_conns_per_backend: 1
    upstream_tls: { ca_file: ca.pem, server_name: backend.internal }
  - name: b
    retry: { attempts: 0, budget_ratio: 1 }
    backends: [{url: "http://a"}]
redis: { url: "rediss://user:pw@redis.internal:6380/2" }
rate_limit: { key: "header:X-Api-Key", rate: 0.5, burst: 1 }
tracing: { sample_ratio: 0 }
log: { level: trace }
`)
}

func TestValidateBuiltIn(t *testing.T) {
	if errs := Demo().Validate(); errs != nil {
		t.Fatalf("Demo().Validate() = %v; want nil", errs)
	}
	errs := Default().Validate()
	if got, want := errs.Error(), "pools: no pools configured"; got != want {
		t.Fatalf("Default().Validate() = %q; want %q", got, want)
	}

	// A config built in code has no lines.
	c := Demo()
	c.Pools[0].Backends[1].Weight = 0
	c.Pools[0].HealthCheck.Rise = 0
	want := "pools[0].backends[1].weight: weight must be between 1 and 10000\npools[0].health_check.rise: must be at least 1 (got 0)"
	for range 2 { // Validate may be called again
		if got := c.Validate().Error(); got != want {
			t.Fatalf("got %q; want %q", got, want)
		}
	}

	// ApplyDefaults fills zero fields of a config built in code.
	c = &Config{Pools: []Pool{{Backends: []Backend{{URL: "http://a"}}}}}
	c.ApplyDefaults()
	if errs := c.Validate(); errs != nil {
		t.Fatalf("got %v; want a valid config", errs)
	}
	if c.Pools[0].Name != "default" || c.Pools[0].Backends[0].Weight != 1 || c.Pools[0].Retry.Attempts != 2 {
		t.Fatalf("got pool %+v; want defaults", c.Pools[0])
	}
}

func TestDemo(t *testing.T) {
	c := Demo()
	if c.Listen != ":8080" || c.Admin.Listen != "127.0.0.1:9901" {
		t.Fatalf("got listen %q, admin %q; want :8080, 127.0.0.1:9901", c.Listen, c.Admin.Listen)
	}
	want := []Backend{
		{URL: "http://127.0.0.1:8081", Weight: 3, Region: "eu"},
		{URL: "http://127.0.0.1:8082", Weight: 2, Region: "us"},
		{URL: "http://127.0.0.1:8083", Weight: 1, Region: "us"},
	}
	if len(c.Pools) != 1 || c.Pools[0].Name != "demo" || !reflect.DeepEqual(c.Pools[0].Backends, want) {
		t.Fatalf("got pools %+v; want one pool demo with %+v", c.Pools, want)
	}
	if hc := c.Pools[0].HealthCheck; hc.Path != "/health" || hc.Interval == 0 {
		t.Fatalf("got health check %+v; want path /health with defaults", hc)
	}
	// Each call returns a fresh config.
	c.Pools[0].Retry.On[0] = "changed"
	if Demo().Pools[0].Retry.On[0] != "connect" {
		t.Fatalf("Demo shares state between calls")
	}
}

func TestParseStatusRanges(t *testing.T) {
	f := func(s string, want [][2]int) {
		t.Helper()
		got, err := ParseStatusRanges(s)
		if err != nil {
			t.Fatalf("ParseStatusRanges(%q): %v", s, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("ParseStatusRanges(%q) = %v; want %v", s, got, want)
		}
	}
	f("200-399", [][2]int{{200, 399}})
	f("200", [][2]int{{200, 200}})
	f(" 200, 204,300 - 308 ", [][2]int{{200, 200}, {204, 204}, {300, 308}})
	f("100-599", [][2]int{{100, 599}})

	bad := func(s, want string) {
		t.Helper()
		_, err := ParseStatusRanges(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("ParseStatusRanges(%q) error = %v; want one containing %q", s, err, want)
		}
	}
	bad("", "empty status list")
	bad(" ", "empty status list")
	bad("abc", `"abc" is not an HTTP status code`)
	bad("99", `"99" is not an HTTP status code`)
	bad("600", `"600" is not an HTTP status code`)
	bad("2000", `"2000" is not an HTTP status code`)
	bad("+200", `"+200" is not an HTTP status code`)
	bad("200-", `"" is not an HTTP status code`)
	bad("-200", `"" is not an HTTP status code`)
	bad("200,,204", `"" is not an HTTP status code`)
	bad("200-300-400", `"300-400" is not an HTTP status code`)
	bad("399-200", `status range "399-200" is backwards`)
}

func TestTrustedNets(t *testing.T) {
	s := Server{TrustedProxies: []string{"127.0.0.1/32", "10.1.2.3", "::1", "10.9.8.7/8", "::ffff:1.2.3.4", "2001:db8::/32", "bad"}}
	var got []string
	for _, p := range s.TrustedNets() {
		got = append(got, p.String())
	}
	want := []string{"127.0.0.1/32", "10.1.2.3/32", "::1/128", "10.0.0.0/8", "1.2.3.4/32", "2001:db8::/32"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q; want %q", got, want)
	}
	if nets := s.TrustedNets(); !nets[3].Contains(netip.MustParseAddr("10.200.0.1")) {
		t.Fatalf("got %v; want 10.0.0.0/8 to contain 10.200.0.1", nets[3])
	}
	if nets := (Server{}).TrustedNets(); len(nets) != 0 {
		t.Fatalf("got %v; want none", nets)
	}
}

func TestBackendAddr(t *testing.T) {
	f := func(url, wantAddr string, wantTLS bool) {
		t.Helper()
		addr, tls := Backend{URL: url}.Addr()
		if addr != wantAddr || tls != wantTLS {
			t.Fatalf("Backend{%q}.Addr() = %q, %v; want %q, %v", url, addr, tls, wantAddr, wantTLS)
		}
	}
	f("http://127.0.0.1:8081", "127.0.0.1:8081", false)
	f("http://a", "a:80", false)
	f("http://a/", "a:80", false)
	f("https://a", "a:443", true)
	f("https://a:8443", "a:8443", true)
	f("http://[::1]:9", "[::1]:9", false)
	f("https://[::1]", "[::1]:443", true)
	f("HTTP://Example.COM", "Example.COM:80", false)
	f("", "", false)
	f("http://[::1", "", false)
}

// TestErrorsBounded: a config error never prints a whole runaway line of the file (it
// went whole, 3 MB, into the log and the admin API's reload answer), never more than
// MaxPrinted problems, and never the Redis password.
func TestErrorsBounded(t *testing.T) {
	big := strings.Repeat("A", 3<<20)
	f := func(doc string, maxLen int, forbidden ...string) {
		t.Helper()
		_, err := Parse("lb.yaml", []byte(doc))
		if err == nil {
			t.Fatal("got no error")
		}
		s := err.Error()
		if len(s) > maxLen {
			t.Fatalf("error of %d bytes; want at most %d: %.200s…", len(s), maxLen, s)
		}
		for _, x := range forbidden {
			if strings.Contains(s, x) {
				t.Fatalf("error %q contains %q", s, x)
			}
		}
	}
	f("pools:\n  - backends: [{url: \"http://a\"}]\nlisten: \""+big+"\"\n", MaxMsgLen+100)
	f("pools:\n  - backends: [{url: \"http://a\", weight: "+big+"}]\n", MaxMsgLen+100)
	var many strings.Builder
	many.WriteString("pools:\n  - backends:\n")
	for range 500 {
		many.WriteString("      - {url: \"http://a\", weight: 0}\n")
	}
	f(many.String(), (MaxPrinted+1)*(MaxMsgLen+100))
	f("pools:\n  - backends: [{url: \"http://a\"}]\nredis: {url: \"redis://u:hunter2secret@h:port/0\"}\n", 300, "hunter2secret")
	f("pools:\n  - backends: [{url: \"http://a\"}]\nredis: {url: \"http://u:hunter2secret@h:6379/0\"}\n", 300, "hunter2secret")
}

// TestMTLSNeedsTLS: a pool with a client certificate (upstream_tls or MTLS_ENABLED) and a
// plain http:// backend — listed, standby or discovered — is a config error naming the pool
// and the backend: the certificate would never be sent and the traffic would go out in
// plain text.
func TestMTLSNeedsTLS(t *testing.T) {
	f := func(doc string, env map[string]string, want string) {
		t.Helper()
		c, err := Parse("lb.yaml", []byte(doc))
		if err == nil && env != nil {
			if errs := c.ApplyEnv(func(k string) string { return env[k] }); errs != nil {
				t.Fatalf("ApplyEnv: %v", errs)
			}
			err = c.Validate().Err()
		}
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != want {
			t.Fatalf("got errors\n%s\nwant\n%s", got, want)
		}
	}
	const plain = "pools:\n  - name: web\n    backends:\n      - url: \"https://a\"\n      - url: \"http://b:8082\"\n"
	mtls := map[string]string{"MTLS_ENABLED": "true", "MTLS_CERT_FILE": "c.pem", "MTLS_KEY_FILE": "c.key"}
	f(plain, map[string]string{}, "")
	f(plain, mtls, `lb.yaml:5: pools[0].backends[1].url: pool "web": MTLS_CERT_FILE sets a client certificate (MTLS_ENABLED=true), but backend "http://b:8082" is plain http:// and would get the traffic unencrypted; use https://`)
	f(plain+"    standby: [{url: \"HTTP://c\"}]\n    upstream_tls: { cert_file: c.pem, key_file: c.key }\n", nil,
		`lb.yaml:5: pools[0].backends[1].url: pool "web": upstream_tls.cert_file is set, but backend "http://b:8082" is plain http:// and would get the traffic unencrypted; use https://`+"\n"+
			`lb.yaml:6: pools[0].standby[0].url: pool "web": upstream_tls.cert_file is set, but backend "HTTP://c" is plain http:// and would get the traffic unencrypted; use https://`)
	const consul = "pools:\n  - name: api\n    upstream_tls: { cert_file: c.pem, key_file: c.key }\n"
	f(consul+"    discovery: { consul: { service: api } }\n", nil,
		`lb.yaml:4: pools[0].discovery.consul.scheme: pool "api": upstream_tls.cert_file is set, but its Consul backends are reached over plain http; set discovery.consul.scheme: https`)
	f(consul+"    discovery: { consul: { service: api, scheme: https } }\n", nil, "")
	f(consul+"    discovery: { consul: { service: api, scheme: ftp } }\n", nil, `lb.yaml:4: pools[0].discovery.consul.scheme: scheme must be http or https (got "ftp")`)
}
