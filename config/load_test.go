package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// specExample is the configuration example the project was specified with: every section,
// at its default values except trusted_proxies and forward_claims, with routes and
// geo.cidrs empty (TestParseSpecExampleVerbatim adds them).
const specExample = `listen: ":8080"
admin: { listen: "127.0.0.1:9901", token_file: "" }
tls: { cert_file: "", key_file: "", client_ca_file: "" }        # optional front TLS / client mTLS
server: { read_timeout: 30s, write_timeout: 30s, idle_timeout: 90s,
          max_header_bytes: 16384, max_body_bytes: 10485760,
          trusted_proxies: ["127.0.0.1/32"], shutdown_timeout: 15s }
pools:
  - name: web
    balance: smooth_weighted          # smooth_weighted | least_inflight (power of two choices)
    backends:
      - { url: "http://127.0.0.1:8081", weight: 3, region: "eu" }
      - { url: "http://127.0.0.1:8082", weight: 2, region: "us" }
      - { url: "http://127.0.0.1:8083", weight: 1, region: "us" }
    standby: []                       # backends the autoscaler may bring in
    discovery: { consul: { service: "", tag: "", passing_only: true } }
    health_check: { path: /health, interval: 2s, timeout: 1s, rise: 2, fall: 3, expect_status: "200-399" }
    circuit_breaker: { consecutive_failures: 5, failure_ratio: 0.5, min_requests: 20,
                       window: 10s, open_for: 5s, half_open_probes: 3 }
    retry: { attempts: 2, on: [connect, "502", "503", "504"], budget_ratio: 0.2 }
    timeouts: { connect: 1s, response: 30s }
    max_conns_per_backend: 1024
    upstream_tls: { ca_file: "", cert_file: "", key_file: "", server_name: "" }
    autoscale: { target_inflight_per_backend: 0, min_active: 1, cooldown: 30s }
routes: []
geo: { header: "", cidrs: {}, mmdb_file: "", prefer_local: true }
sticky: { enabled: false, cookie: lb_sticky, header: "", ttl: 30m }
redis: { url: "redis://127.0.0.1:6379/0", client_cache_ttl: 60s }   # used when REDIS_ENABLED
rate_limit: { enabled: false, key: ip, rate: 100, burst: 200, scope: local }  # key: ip | header:NAME | claim:NAME; scope: local | redis
auth: { jwt: { enabled: false, algorithms: [RS256], jwks_file: "", jwks_url: "", hmac_secret_file: "",
               issuer: "", audience: "", skip_paths: [], forward_claims: { sub: X-User-Id } } }
tracing: { enabled: false, otlp_endpoint: "", sample_ratio: 0.01, service_name: go-loadbalancer }
log: { level: info, access_log: true }
`

// parseErrors parses doc as lb.yaml and returns its errors, failing the test if it parses.
func parseErrors(t *testing.T, doc string) Errors {
	t.Helper()
	c, err := Parse("lb.yaml", []byte(doc))
	if err == nil {
		t.Fatalf("Parse succeeded (%+v); want an error", c)
	}
	if c != nil {
		t.Fatalf("Parse returned a config with an error")
	}
	var errs Errors
	if !errors.As(err, &errs) || len(errs) == 0 {
		t.Fatalf("got error %T %q; want non-empty Errors", err, err)
	}
	return errs
}

// mustParse parses doc as lb.yaml, failing the test on error.
func mustParse(t *testing.T, doc string) *Config {
	t.Helper()
	c, err := Parse("lb.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("Parse: unexpected error:\n%v", err)
	}
	return c
}

// errorLines returns errs formatted one per string.
func errorLines(errs Errors) []string {
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = e.Error()
	}
	return lines
}

// checkErrors parses doc and checks that it fails with exactly the errors want.
func checkErrors(t *testing.T, doc string, want ...string) {
	t.Helper()
	got := errorLines(parseErrors(t, doc))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got errors\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseSpecExample(t *testing.T) {
	c := mustParse(t, specExample)
	if c.File != "lb.yaml" {
		t.Fatalf("got File %q; want lb.yaml", c.File)
	}
	if len(c.Pools) != 1 {
		t.Fatalf("got %d pools; want 1", len(c.Pools))
	}
	p := c.Pools[0]
	wantBackends := []Backend{
		{URL: "http://127.0.0.1:8081", Weight: 3, Region: "eu"},
		{URL: "http://127.0.0.1:8082", Weight: 2, Region: "us"},
		{URL: "http://127.0.0.1:8083", Weight: 1, Region: "us"},
	}
	if p.Name != "web" || !reflect.DeepEqual(p.Backends, wantBackends) {
		t.Fatalf("got pool %q backends %+v; want web %+v", p.Name, p.Backends, wantBackends)
	}
	if got := c.Server.TrustedProxies; !reflect.DeepEqual(got, []string{"127.0.0.1/32"}) {
		t.Fatalf("got trusted_proxies %q; want [127.0.0.1/32]", got)
	}
	if got := c.Auth.JWT.ForwardClaims; !reflect.DeepEqual(got, map[string]string{"sub": "X-User-Id"}) {
		t.Fatalf("got forward_claims %v; want map[sub:X-User-Id]", got)
	}
	if got := p.Retry.On; !reflect.DeepEqual(got, []string{"connect", "502", "503", "504"}) {
		t.Fatalf("got retry.on %q; want [connect 502 503 504]", got)
	}
	if p.CircuitBreaker.Window != 10*time.Second || c.Sticky.TTL != 30*time.Minute {
		t.Fatalf("got window %s, ttl %s; want 10s, 30m", p.CircuitBreaker.Window, c.Sticky.TTL)
	}

	// The example states the defaults: it must equal the defaults with its one pool.
	want := Default()
	want.File = "lb.yaml"
	want.Server.TrustedProxies = []string{"127.0.0.1/32"}
	want.Auth.JWT.ForwardClaims = map[string]string{"sub": "X-User-Id"}
	want.Pools = []Pool{defaultPool("web", wantBackends...)}
	checkSameConfig(t, c, want)
}

// TestParseSpecExampleVerbatim parses the example as it was specified, routes and geo CIDRs
// included.
func TestParseSpecExampleVerbatim(t *testing.T) {
	doc := strings.Replace(specExample, "routes: []\n", `routes:                               # traffic policies; first match wins; none = first pool
  - match: { path_prefix: /api, host: "", method: "", headers: { X-Canary: "true" }, regions: [eu] }
    pool: web                         # or: split: [ { pool: stable, weight: 95 }, { pool: canary, weight: 5 } ]
`, 1)
	doc = strings.Replace(doc, `cidrs: {}`, `cidrs: { eu: ["10.1.0.0/16"] }`, 1)
	c, err := Parse("lb.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("the example does not parse: %v", err)
	}
	if len(c.Routes) != 1 || c.Routes[0].Match.Headers["X-Canary"] != "true" || len(c.Geo.CIDRs["eu"]) != 1 {
		t.Fatalf("got routes %+v, geo %+v; want the example's route and eu CIDR", c.Routes, c.Geo)
	}
}

// defaultPool returns a pool with every default (docs/config.md#pools).
func defaultPool(name string, backends ...Backend) Pool {
	t := true
	p := Pool{
		Name:               name,
		Balance:            BalanceSmoothWeighted,
		Backends:           backends,
		Discovery:          Discovery{Consul: ConsulDiscovery{PassingOnly: &t, Scheme: "http"}},
		HealthCheck:        HealthCheck{Path: "/health", Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3, ExpectStatus: "200-399"},
		CircuitBreaker:     CircuitBreaker{ConsecutiveFailures: 5, FailureRatio: 0.5, MinRequests: 20, Window: 10 * time.Second, OpenFor: 5 * time.Second, HalfOpenProbes: 3, MaxEjectionPercent: 50},
		Retry:              Retry{Attempts: 2, On: []string{"connect", "502", "503", "504"}, BudgetRatio: 0.2},
		Timeouts:           Timeouts{Connect: time.Second, Response: 30 * time.Second, TunnelIdle: time.Hour},
		MaxConnsPerBackend: 1024,
		Autoscale:          Autoscale{MinActive: 1, Cooldown: 30 * time.Second},
	}
	p.ResponseHeaderBytes = 16384 // server.max_header_bytes
	return p
}

// checkSameConfig compares the public parts of two configs; empty and nil lists and maps
// count as equal.
func checkSameConfig(t *testing.T, got, want *Config) {
	t.Helper()
	norm := func(c *Config) Config {
		n := *c
		n.src, n.envFrom = nil, nil
		n.Pools = nil
		for _, p := range c.Pools {
			if len(p.Standby) == 0 {
				p.Standby = nil
			}
			if len(p.Backends) == 0 {
				p.Backends = nil
			}
			n.Pools = append(n.Pools, p)
		}
		if len(n.Routes) == 0 {
			n.Routes = nil
		}
		if len(n.Geo.CIDRs) == 0 {
			n.Geo.CIDRs = nil
		}
		if len(n.Server.TrustedProxies) == 0 {
			n.Server.TrustedProxies = nil
		}
		if len(n.Auth.JWT.SkipPaths) == 0 {
			n.Auth.JWT.SkipPaths = nil
		}
		if len(n.Auth.JWT.ForwardClaims) == 0 {
			n.Auth.JWT.ForwardClaims = nil
		}
		return n
	}
	g, w := norm(got), norm(want)
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got config\n%+v\nwant\n%+v", g, w)
	}
}

func TestParseMinimal(t *testing.T) {
	c := mustParse(t, "pools:\n  - backends:\n      - url: http://10.0.0.1:8080\n")
	want := &Config{
		File:   "lb.yaml",
		Listen: ":8080",
		Admin:  Admin{Listen: "127.0.0.1:9901"},
		Server: Server{
			ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 90 * time.Second,
			MaxHeaderBytes: 16384, MaxBodyBytes: 10485760, ShutdownTimeout: 15 * time.Second,
			MaxHeaders: 100, EscapedSlashes: "reject",
			DrainGrace: 3 * time.Second, RequestBufferBytes: 1 << 20, MinRequestBodyRate: 1024,
			RequestBodyGrace: 10 * time.Second,
		},
		Pools:     []Pool{defaultPool("default", Backend{URL: "http://10.0.0.1:8080", Weight: 1})},
		Geo:       Geo{PreferLocal: new(true)},
		Sticky:    Sticky{Cookie: "lb_sticky", TTL: 30 * time.Minute, NewHeaderSessionsPerSecond: 100},
		Redis:     Redis{URL: "redis://127.0.0.1:6379/0", ClientCacheTTL: 60 * time.Second},
		RateLimit: RateLimit{Key: "ip", Rate: 100, Burst: 200, Scope: "local"},
		Auth:      Auth{JWT: JWT{Algorithms: []string{"RS256"}}},
		Tracing:   Tracing{SampleRatio: 0.01, ServiceName: "go-loadbalancer"},
		Log:       Log{Level: "info", AccessLog: new(true), Query: QueryRedact},
	}
	checkSameConfig(t, c, want)
	if len(c.Server.TrustedNets()) != 0 {
		t.Fatalf("got trusted nets %v; want none by default", c.Server.TrustedNets())
	}
	if !c.Log.AccessLogOn() {
		t.Fatalf("got access log off; want on by default")
	}
}

func TestParsePoolNames(t *testing.T) {
	c := mustParse(t, `pools:
  - backends: [{url: "http://a"}]
  - backends: [{url: "http://b"}]
  - name: named
    backends: [{url: "http://c"}]
  - backends: [{url: "http://d"}]
`)
	var got []string
	for _, p := range c.Pools {
		got = append(got, p.Name)
	}
	if want := []string{"default", "pool1", "named", "pool3"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got pool names %q; want %q", got, want)
	}
}

func TestParseExplicitZeroAndNull(t *testing.T) {
	// attempts: 0 means no retries; it must not become the default 2.
	c := mustParse(t, `pools:
  - backends: [{url: "http://a"}]
    retry: { attempts: 0, on: [] }
    autoscale: { target_inflight_per_backend: 0 }
`)
	if r := c.Pools[0].Retry; r.Attempts != 0 || len(r.On) != 0 {
		t.Fatalf("got retry %+v; want attempts 0 and no conditions", r)
	}

	// A null value counts as left out.
	c = mustParse(t, `pools:
  - backends:
      - url: "http://a"
        weight: ~
    retry:
      attempts:
    health_check:
log: { access_log: null }
`)
	p := c.Pools[0]
	if p.Backends[0].Weight != 1 || p.Retry.Attempts != 2 || p.HealthCheck.Interval != 2*time.Second || !c.Log.AccessLogOn() {
		t.Fatalf("got weight %d, attempts %d, interval %s, access log %v; want the defaults 1, 2, 2s, true",
			p.Backends[0].Weight, p.Retry.Attempts, p.HealthCheck.Interval, c.Log.AccessLogOn())
	}

	c = mustParse(t, "pools:\n  - backends: [{url: \"http://a\"}]\nlog: { access_log: false }\n")
	if c.Log.AccessLogOn() {
		t.Fatalf("got access log on; want off")
	}
}

func TestParseNoPools(t *testing.T) {
	f := func(doc, want string) {
		t.Helper()
		checkErrors(t, doc, want)
	}
	f("", "lb.yaml: pools: no pools configured")
	f("\n\n", "lb.yaml: pools: no pools configured")
	f("# only a comment\n", "lb.yaml: pools: no pools configured")
	f("~\n", "lb.yaml: pools: no pools configured")
	f("---\n", "lb.yaml: pools: no pools configured")
	f("listen: \":8080\"\n", "lb.yaml: pools: no pools configured")
	f("listen: \":8080\"\npools: []\n", "lb.yaml:2: pools: no pools configured")
	f("pools:\n", "lb.yaml:1: pools: no pools configured")
}

func TestParseUnknownField(t *testing.T) {
	checkErrors(t, "listen: \":8080\"\nlisten_addr: \":9090\"\npools:\n  - backends: [{url: \"http://a\"}]\n",
		`lb.yaml:2: unknown field "listen_addr"`)
	checkErrors(t, `pools:
  - name: web
    backends:
      - url: "http://a"
        wieght: 3
    health_check:
      intervall: 2s
`,
		`lb.yaml:5: pools[0].backends[0]: unknown field "wieght" (did you mean "weight"?)`,
		`lb.yaml:7: pools[0].health_check: unknown field "intervall" (did you mean "interval"?)`)
	checkErrors(t, "pools:\n  - backends: [{url: \"http://a\"}]\nauth: {jwt: {enabled: false, Issuer: x}}\n",
		`lb.yaml:3: auth.jwt: unknown field "Issuer" (did you mean "issuer"?)`)
	// Field names of the Go structs are not YAML keys.
	checkErrors(t, "pools:\n  - backends: [{url: \"http://a\"}]\nEnv: {RedisEnabled: true}\nFile: x\n",
		`lb.yaml:3: unknown field "Env"`,
		`lb.yaml:4: unknown field "File"`)
}

func TestParseBadDuration(t *testing.T) {
	checkErrors(t, `pools:
  - backends: [{url: "http://a"}]
    health_check:
      interval: 2 seconds
      timeout: 500
server:
  read_timeout: 5d
  idle_timeout: [1s]
sticky: { ttl: 1h30 }
`,
		`lb.yaml:4: pools[0].health_check.interval: invalid duration "2 seconds" (use Go syntax such as 500ms, 2s or 1m30s)`,
		`lb.yaml:5: pools[0].health_check.timeout: duration 500 needs a unit (use Go syntax such as 500ms, 2s or 1m30s)`,
		`lb.yaml:7: server.read_timeout: invalid duration "5d" (use Go syntax such as 500ms, 2s or 1m30s)`,
		`lb.yaml:8: server.idle_timeout: expected a duration such as 500ms, 2s or 1m30s, got a list`,
		`lb.yaml:9: sticky.ttl: invalid duration "1h30" (use Go syntax such as 500ms, 2s or 1m30s)`)
}

func TestParseTypeErrors(t *testing.T) {
	checkErrors(t, `listen: [":8080"]
pools:
  - backends:
      - url: "http://a"
        weight: three
      - url: "http://b"
        weight: 1.5
    circuit_breaker: { failure_ratio: half }
    retry: { on: connect }
sticky: { enabled: yes }
rate_limit: { rate: .nan }
server: { max_body_bytes: 10000000000000000000, max_header_bytes: 99999999999999999999 }
geo: { cidrs: [10.0.0.0/8] }
tls: "on"
`,
		`lb.yaml:1: listen: expected a string, got a list`,
		`lb.yaml:5: pools[0].backends[0].weight: expected an integer, got "three"`,
		`lb.yaml:7: pools[0].backends[1].weight: expected an integer, got 1.5`,
		`lb.yaml:8: pools[0].circuit_breaker.failure_ratio: expected a number, got "half"`,
		`lb.yaml:9: pools[0].retry.on: expected a list, got "connect"`,
		`lb.yaml:10: sticky.enabled: expected true or false, got "yes"`,
		`lb.yaml:11: rate_limit.rate: expected a number, got .nan`,
		`lb.yaml:12: server.max_body_bytes: number 10000000000000000000 is too large`,
		`lb.yaml:12: server.max_header_bytes: expected an integer, got "99999999999999999999"`,
		`lb.yaml:13: geo.cidrs: expected a mapping, got a list`,
		`lb.yaml:14: tls: expected a mapping, got "on"`)

	checkErrors(t, "- a\n- b\n", `lb.yaml:1: expected a mapping, got a list`)
	checkErrors(t, "just text\n", `lb.yaml:1: expected a mapping, got "just text"`)
}

func TestParseScalarsAsStrings(t *testing.T) {
	// Unquoted numbers are fine where a string is expected.
	c := mustParse(t, `pools:
  - backends: [{url: "http://a", region: 1}]
    health_check: { expect_status: 200 }
    retry: { on: [502, connect] }
`)
	p := c.Pools[0]
	if p.HealthCheck.ExpectStatus != "200" || p.Retry.On[0] != "502" || p.Backends[0].Region != "1" {
		t.Fatalf("got expect_status %q, on %q, region %q; want 200, 502, 1", p.HealthCheck.ExpectStatus, p.Retry.On, p.Backends[0].Region)
	}
}

func TestParseSyntaxError(t *testing.T) {
	checkErrors(t, "pools:\n  - backends: [{url: \"http://a\"}\nlisten: x\n",
		`lb.yaml:3: syntax error: ',' or ']' must be specified`)
	checkErrors(t, "listen: \":1\"\nlisten: \":2\"\n",
		`lb.yaml:2: syntax error: mapping key "listen" already defined at [1:1]`)
	for _, doc := range []string{"\t- x", "a: b: c", "{", "key: 'unterminated", "a:\n  - b\n c: d"} {
		errs := parseErrors(t, doc)
		if errs[0].Line == 0 || errs[0].File != "lb.yaml" {
			t.Fatalf("%q: got %q; want an error with a line", doc, errs)
		}
	}
}

func TestParseMultipleDocuments(t *testing.T) {
	checkErrors(t, "pools:\n  - backends: [{url: \"http://a\"}]\n---\nlisten: \":1\"\n",
		`lb.yaml:4: a config file holds one YAML document; remove the second ---`)
	// A leading document marker is fine.
	mustParse(t, "---\npools:\n  - backends: [{url: \"http://a\"}]\n")
}

func TestParseMultipleErrors(t *testing.T) {
	checkErrors(t, `listen: "8080"
pools:
  - name: web
    balance: round_robin
    backends:
      - url: "http://10.0.0.1:80"
        weight: 0
      - url: "ftp://10.0.0.2"
      - weight: 2
  - name: web
    backends: [{url: "http://10.0.0.3"}]
    retry: { attempts: 11, budget_ratio: 1.5 }
log: { level: verbose }
`,
		`lb.yaml:1: listen: "8080" is not host:port (for example ":8080" or "127.0.0.1:9901")`,
		`lb.yaml:4: pools[0].balance: balance must be smooth_weighted or least_inflight (got "round_robin")`,
		`lb.yaml:7: pools[0].backends[0].weight: weight must be between 1 and 10000`,
		`lb.yaml:8: pools[0].backends[1].url: url "ftp://10.0.0.2": scheme must be http or https`,
		`lb.yaml:9: pools[0].backends[2].url: url is required (for example url: "http://10.0.0.1:8080")`,
		`lb.yaml:10: pools[1].name: duplicate pool name "web" (also pools[0])`,
		`lb.yaml:12: pools[1].retry.attempts: attempts must be between 0 and 10 (got 11)`,
		`lb.yaml:12: pools[1].retry.budget_ratio: budget_ratio must be between 0 and 1 (got 1.5)`,
		`lb.yaml:13: log.level: log level must be one of trace, debug, info, warn, error (got "verbose")`)
}

func TestParseAnchorsAndMerge(t *testing.T) {
	c := mustParse(t, `pools:
  - name: a
    backends: [{url: "http://a"}]
    health_check: &hc { path: /ping, interval: 5s }
  - name: b
    backends: [{url: "http://b"}]
    health_check: *hc
    timeouts:
      <<: &t { connect: 2s }
      response: 9s
`)
	for _, p := range c.Pools {
		if p.HealthCheck.Path != "/ping" || p.HealthCheck.Interval != 5*time.Second || p.HealthCheck.Rise != 2 {
			t.Fatalf("pool %s: got health_check %+v; want path /ping, interval 5s, rise 2", p.Name, p.HealthCheck)
		}
	}
	if got := c.Pools[1].Timeouts; got.Connect != 2*time.Second || got.Response != 9*time.Second {
		t.Fatalf("got timeouts %+v; want connect 2s (merged), response 9s", got)
	}

	// An alias is checked like the value it stands for, on the anchor's lines.
	checkErrors(t, `pools:
  - name: a
    backends: [{url: "http://a"}]
    health_check: &hc
      interval: 0s
  - name: b
    backends: [{url: "http://b"}]
    health_check: *hc
`,
		`lb.yaml:5: pools[0].health_check.interval: duration must be greater than 0 (got 0s)`,
		`lb.yaml:5: pools[1].health_check.interval: duration must be greater than 0 (got 0s)`)
	checkErrors(t, `pools:
  - backends: [{url: "http://a"}]
    timeouts: &t {connect: 2s}
  - backends: [{url: "http://b"}]
    timeouts:
      <<: *t
      connect: 3s
`,
		`lb.yaml:7: pools[1].timeouts: key "connect" is also merged in with <<, and overriding a merged key is not supported`)
	checkErrors(t, "pools:\n  - backends: [{url: \"http://a\"}]\n    timeouts: *nope\n",
		`lb.yaml:3: pools[0].timeouts: unknown alias *nope`)
}

func TestParseAliasBomb(t *testing.T) {
	// 2000 aliases of a pool holding 1000 aliases of a backend: two million backends after
	// expansion. The walker must give up rather than hand that to the decoder.
	var b strings.Builder
	b.WriteString("pools:\n  - &p\n    name: x\n    backends:\n      - &b {url: \"http://a\"}\n")
	for range 999 {
		b.WriteString("      - *b\n")
	}
	for range 2000 {
		b.WriteString("  - *p\n")
	}
	b.WriteString("bogus: *nope\n")
	checkErrors(t, b.String(), "lb.yaml:5: pools[130].backends[874].url: document too large (after expanding aliases)")
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "certs"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "lb.yaml")
	doc := `admin: { token_file: token.txt }
tls: { cert_file: certs/front.pem, key_file: /etc/lb/front.key }
pools:
  - backends: [{url: "https://10.0.0.1"}]
    upstream_tls: { ca_file: certs/ca.pem, cert_file: ../client.pem, key_file: client.key }
`
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(file)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.File != file {
		t.Fatalf("got File %q; want %q", c.File, file)
	}
	f := func(got, want string) {
		t.Helper()
		if got != want {
			t.Fatalf("got path %q; want %q", got, want)
		}
	}
	f(c.Admin.TokenFile, filepath.Join(dir, "token.txt"))
	f(c.TLS.CertFile, filepath.Join(dir, "certs", "front.pem"))
	f(c.TLS.KeyFile, "/etc/lb/front.key")
	u := c.Pools[0].UpstreamTLS
	f(u.CAFile, filepath.Join(dir, "certs", "ca.pem"))
	f(u.CertFile, filepath.Join(filepath.Dir(dir), "client.pem"))
	f(u.KeyFile, filepath.Join(dir, "client.key"))

	// Paths relative to a relative config file stay relative to the working directory.
	c = mustParseFile(t, "conf/lb.yaml", `pools:
  - backends: [{url: "https://10.0.0.1"}]
geo: { mmdb_file: "" }
auth: { jwt: { jwks_file: keys/jwks.json, hmac_secret_file: secret } }
`)
	f(c.Auth.JWT.JWKSFile, filepath.Join("conf", "keys", "jwks.json"))
	f(c.Auth.JWT.HMACSecretFile, filepath.Join("conf", "secret"))
	f(c.Geo.MMDBFile, "")

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	want := filepath.Join(dir, "missing.yaml") + ": cannot read config: no such file or directory"
	if err == nil || err.Error() != want {
		t.Fatalf("got error %v; want %q", err, want)
	}
}

func mustParseFile(t *testing.T, file, doc string) *Config {
	t.Helper()
	c, err := Parse(file, []byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestErrorFormat(t *testing.T) {
	f := func(e Error, want string) {
		t.Helper()
		if got := e.Error(); got != want {
			t.Fatalf("got %q; want %q", got, want)
		}
	}
	f(Error{File: "lb.yaml", Line: 12, Path: "pools[0].name", Msg: "bad"}, "lb.yaml:12: pools[0].name: bad")
	f(Error{File: "lb.yaml", Path: "pools", Msg: "bad"}, "lb.yaml: pools: bad")
	f(Error{File: "lb.yaml", Line: 3, Msg: "bad"}, "lb.yaml:3: bad")
	f(Error{File: "environment", Path: "REDIS_ENABLED", Msg: "bad"}, "environment: REDIS_ENABLED: bad")
	f(Error{Path: "listen", Msg: "bad"}, "listen: bad")
	f(Error{Line: 4, Msg: "bad"}, "line 4: bad")

	errs := Errors{{File: "a", Line: 1, Msg: "x"}, {File: "a", Line: 2, Msg: "y"}}
	if got, want := errs.Error(), "a:1: x\na:2: y"; got != want {
		t.Fatalf("got %q; want %q", got, want)
	}
	if Errors(nil).Err() != nil {
		t.Fatalf("got non-nil Err for no errors; want nil")
	}
	if errs.Err() == nil {
		t.Fatalf("got nil Err for errors; want non-nil")
	}
}
