package main

import (
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/otlptest"
	"go-loadbalancer/internal/testtool"
)

// count returns how many log lines contain substr.
func (p *process) count(substr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.logs {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// reload sends SIGHUP and waits for the reload's outcome to be logged; the outcome line is
// the reload's last, so every other line it logs is in p.logs by then.
func (p *process) reload(t *testing.T) {
	t.Helper()
	before := p.count(`"configuration reloaded"`) + p.count("reload rejected")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.count(`"configuration reloaded"`)+p.count("reload rejected") == before {
		if time.Now().After(deadline) {
			t.Fatalf("the reload was never logged:\n%s", p.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestTrafficPoliciesEnabledFalse: TRAFFIC_POLICIES_ENABLED=false ignores routes, and says
// so once at the start and once per reload.
func TestTrafficPoliciesEnabledFalse(t *testing.T) {
	t.Parallel()
	a, _ := backend(t, "a", 0)
	b, _ := backend(t, "b", 0)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	yaml := "listen: \"127.0.0.1:0\"\nadmin: { listen: \"127.0.0.1:0\" }\npools:\n" +
		"  - { name: first, backends: [ { url: \"" + a + "\" } ] }\n" +
		"  - { name: canary, backends: [ { url: \"" + b + "\" } ] }\n" +
		"routes:\n  - { match: { headers: { X-Canary: \"true\" } }, pool: canary }\n"
	writeFile(t, cfg, []byte(yaml))
	const said = "TRAFFIC_POLICIES_ENABLED=false: routes are ignored"

	p := startEnv(t, append(os.Environ(), "LOG_LEVEL=info", "TRAFFIC_POLICIES_ENABLED=false"), "-config", cfg)
	if _, body := httpGet(t, "http://"+p.addr+"/", "X-Canary", "true"); body != "a" {
		t.Fatalf("got backend %q; want a (routes ignored)", body)
	}
	if n := p.count(said); n != 1 {
		t.Fatalf("at start the log said %q %d times; want once\n%s", said, n, p.log())
	}
	p.reload(t)
	if n := p.count(said); n != 2 {
		t.Fatalf("after a reload the log said %q %d times; want twice\n%s", said, n, p.log())
	}

	// Unset: the routes apply, and nothing is said.
	q := start(t, "-config", cfg)
	if _, body := httpGet(t, "http://"+q.addr+"/", "X-Canary", "true"); body != "b" {
		t.Fatalf("got backend %q; want b (the canary route)", body)
	}
	if q.count(said) != 0 {
		t.Fatalf("the log said %q with the variable unset", said)
	}
}

// reloadWith writes yaml to file, reloads and fails unless the reload was accepted.
func (p *process) reloadWith(t *testing.T, file, yaml string) {
	t.Helper()
	writeFile(t, file, []byte(yaml))
	before := p.count("reload rejected")
	p.reload(t)
	if p.count("reload rejected") != before {
		t.Fatalf("reload rejected:\n%s", p.log())
	}
}

func TestRestartChanges(t *testing.T) {
	t.Parallel()
	base := func() *config.Config {
		c, err := config.Parse("lb.yaml", []byte("pools: [ { name: web, backends: [ { url: \"http://127.0.0.1:9\" } ] } ]\n"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	f := func(change func(c *config.Config), want ...string) {
		t.Helper()
		next := base()
		change(next)
		if got := restartChanges(base(), next); !slices.Equal(got, want) {
			t.Fatalf("got %q; want %q", got, want)
		}
	}
	f(func(c *config.Config) {})
	f(func(c *config.Config) { c.Server.ReadTimeout++ }, "server.read_timeout")
	f(func(c *config.Config) { c.Server.MaxHeaderBytes++; c.Listen = ":1" }, "listen", "server.max_header_bytes")
	f(func(c *config.Config) {
		c.Server.TrustedProxies = []string{"10.0.0.0/8"}
		c.Server.MaxBodyBytes++
		c.Server.ShutdownTimeout++
		c.Auth.JWT.Audience = "x"
		c.RateLimit.Burst++
		c.Sticky.TTL++
		c.Log.Level = "debug"
		c.Tracing.SampleRatio = 0.5
	})
	f(func(c *config.Config) { c.Auth.JWT.JWKSURL = "https://idp/jwks" })
	f(func(c *config.Config) { c.Redis.URL = "redis://other:6379" }, "redis.url")
	f(func(c *config.Config) { c.TLS.ClientCAFile = "ca.pem"; c.Tracing.OTLPEndpoint = "http://c:4318" },
		"tls.client_ca_file", "tracing.otlp_endpoint")
	f(func(c *config.Config) { c.Env.RedisEnabled = true; c.Sticky.Enabled = true }, "sticky.enabled", "REDIS_ENABLED")
}

// TestReadmeRestartOnly: README.md lists exactly the settings of restartOnly.
func TestReadmeRestartOnly(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(b), "<!-- restart-only")
	block, _, ok2 := strings.Cut(block, "<!-- end restart-only -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no <!-- restart-only --> ... <!-- end restart-only --> block")
	}
	_, block, _ = strings.Cut(block, "-->")
	var got []string
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(block, -1) {
		got = append(got, m[1])
	}
	want := slices.Clone(restartOnly)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("README.md lists %q; restartOnly is %q", got, want)
	}
}

// TestReloadAppliesAuth: each auth.jwt setting changed by a reload applies to the next
// request — the JWKS file's contents (a removed key), jwks_url, issuer, audience,
// algorithms, skip_paths and enabled — and none is called restart-only.
func TestReloadAppliesAuth(t *testing.T) {
	t.Parallel()
	a, _ := backend(t, "a", 0)
	dir := t.TempDir()
	k1, k2 := testtool.RSAKey(t), testtool.RSAKey(t)
	jwksFile := writeFile(t, filepath.Join(dir, "jwks.json"), testtool.JWKS(t, map[string]*rsa.PrivateKey{"k1": k1, "k2": k2}))
	urlKeys := testtool.JWKS(t, map[string]*rsa.PrivateKey{"k2": k2})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(urlKeys) }))
	defer idp.Close()
	secret := strings.Repeat("k", 32)
	hmacFile := writeFile(t, filepath.Join(dir, "hmac"), []byte(secret))
	cfg := filepath.Join(dir, "lb.yaml")
	conf := func(jwt string) string {
		return "listen: \"127.0.0.1:0\"\nadmin: { listen: \"127.0.0.1:0\" }\npools: [ { name: web, backends: [ { url: \"" + a + "\" } ] } ]\n" +
			"auth:\n  jwt:\n" + jwt
	}
	writeFile(t, cfg, []byte(conf("    enabled: true\n    jwks_file: "+q(jwksFile)+"\n    issuer: i\n    audience: a\n    skip_paths: [/public]\n")))
	p := start(t, "-config", cfg)
	rs := func(k *rsa.PrivateKey, kid, iss, aud string) string {
		return testtool.SignJWT(t, jose.RS256, k, kid, map[string]any{"iss": iss, "aud": aud, "exp": time.Now().Add(time.Hour).Unix()})
	}
	f := func(path, token string, want int) {
		t.Helper()
		var h []string
		if token != "" {
			h = []string{"Authorization", "Bearer " + token}
		}
		if code, body := httpGet(t, "http://"+p.addr+path, h...); code != want {
			t.Fatalf("GET %s: got %d %s; want %d", path, code, body, want)
		}
	}
	f("/", rs(k2, "k2", "i", "a"), 200)
	f("/", "", 401)
	f("/public", "", 200)

	// A key removed from the JWKS file stops working.
	writeFile(t, jwksFile, testtool.JWKS(t, map[string]*rsa.PrivateKey{"k1": k1}))
	p.reloadWith(t, cfg, conf("    enabled: true\n    jwks_file: "+q(jwksFile)+"\n    issuer: i\n    audience: a\n    skip_paths: [/public]\n"))
	f("/", rs(k2, "k2", "i", "a"), 401)
	f("/", rs(k1, "k1", "i", "a"), 200)

	p.reloadWith(t, cfg, conf("    enabled: true\n    jwks_file: "+q(jwksFile)+"\n    issuer: j\n    audience: b\n    skip_paths: [/open]\n"))
	f("/", rs(k1, "k1", "i", "a"), 401)
	f("/", rs(k1, "k1", "j", "a"), 401)
	f("/", rs(k1, "k1", "i", "b"), 401)
	f("/", rs(k1, "k1", "j", "b"), 200)
	f("/public", "", 401)
	f("/open", "", 200)

	p.reloadWith(t, cfg, conf("    enabled: true\n    algorithms: [HS256]\n    hmac_secret_file: "+q(hmacFile)+"\n"))
	f("/", rs(k1, "k1", "j", "b"), 401)
	f("/", testtool.SignJWT(t, jose.HS256, []byte(secret), "", map[string]any{"exp": time.Now().Add(time.Hour).Unix()}), 200)

	p.reloadWith(t, cfg, conf("    enabled: true\n    jwks_url: "+q(idp.URL)+"\n"))
	f("/", rs(k1, "k1", "", ""), 401)
	f("/", rs(k2, "k2", "", ""), 200)

	p.reloadWith(t, cfg, conf("    enabled: false\n"))
	f("/", "", 200)
	if n := p.count("restart to apply"); n != 0 {
		t.Fatalf("an auth change was called restart-only:\n%s", p.log())
	}
}

// TestReloadAppliesRateLimit: rate_limit's enabled, burst, rate and key apply on reload.
func TestReloadAppliesRateLimit(t *testing.T) {
	t.Parallel()
	a, _ := backend(t, "a", 0)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	conf := func(rl string) string {
		return "listen: \"127.0.0.1:0\"\nadmin: { listen: \"127.0.0.1:0\" }\npools: [ { name: web, backends: [ { url: \"" + a + "\" } ] } ]\n" + rl
	}
	writeFile(t, cfg, []byte(conf("")))
	p := start(t, "-config", cfg)
	codes := func(n int, header ...string) []int {
		var got []int
		for range n {
			code, _ := httpGet(t, "http://"+p.addr+"/", header...)
			got = append(got, code)
		}
		return got
	}
	if got := codes(5); !slices.Equal(got, []int{200, 200, 200, 200, 200}) {
		t.Fatalf("rate limiting off: got %v", got)
	}
	// A rate of one per 1000 s: only the burst passes within the test.
	p.reloadWith(t, cfg, conf("rate_limit: { enabled: true, rate: 0.001, burst: 2 }\n"))
	if got := codes(3); !slices.Equal(got, []int{200, 200, 429}) {
		t.Fatalf("burst 2: got %v; want [200 200 429]", got)
	}
	p.reloadWith(t, cfg, conf("rate_limit: { enabled: true, rate: 0.001, burst: 4, key: \"header:X-Key\" }\n"))
	if got := codes(5, "X-Key", "k1"); !slices.Equal(got, []int{200, 200, 200, 200, 429}) {
		t.Fatalf("burst 4 keyed by X-Key: got %v; want four 200 then 429", got)
	}
	if got := codes(1, "X-Key", "k2"); got[0] != 200 {
		t.Fatalf("another X-Key: got %v; want 200", got)
	}
	// A high rate lets everything through again.
	p.reloadWith(t, cfg, conf("rate_limit: { enabled: true, rate: 100000, burst: 1000, key: \"header:X-Key\" }\n"))
	if got := codes(3, "X-Key", "k1"); !slices.Equal(got, []int{200, 200, 200}) {
		t.Fatalf("rate 100000: got %v", got)
	}
}

// TestReloadAppliesLogSettings: log.level, log.access_log and sticky.ttl apply on reload;
// a restart-only change is named, alone.
func TestReloadAppliesLogSettings(t *testing.T) {
	t.Parallel()
	a, _ := backend(t, "a", 0)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	conf := func(extra string) string {
		return "listen: \"127.0.0.1:0\"\nadmin: { listen: \"127.0.0.1:0\" }\npools: [ { name: web, backends: [ { url: \"" + a + "\" } ] } ]\n" + extra
	}
	writeFile(t, cfg, []byte(conf("sticky: { enabled: true, ttl: 1h }\nlog: { level: info, access_log: false }\n")))
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LOG_LEVEL=") { // LOG_LEVEL would override log.level
			env = append(env, kv)
		}
	}
	p := startEnv(t, env, "-config", cfg)
	cookieMaxAge := func(path string) string {
		resp, err := http.Get("http://" + p.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		_, after, _ := strings.Cut(resp.Header.Get("Set-Cookie"), "Max-Age=")
		age, _, _ := strings.Cut(after, ";")
		return age
	}
	if age := cookieMaxAge("/off"); age != "3600" {
		t.Fatalf("sticky ttl 1h: got Max-Age %q", age)
	}

	// Level warn, access log on, ttl 2m, and one restart-only change. At warn the reload's
	// "configuration reloaded" (info) is not written; its warning is.
	before := p.count(`"configuration reloaded"`)
	writeFile(t, cfg, []byte(conf("sticky: { enabled: true, ttl: 2m }\nlog: { level: warn, access_log: true }\nserver: { read_timeout: 5s }\n")))
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, `"server.read_timeout changed: restart to apply"`)
	testtool.WaitFor(t, 5*time.Second, "sticky ttl 2m", func() bool { return cookieMaxAge("/on") == "120" })
	testtool.WaitFor(t, 5*time.Second, "an access log line", func() bool { return p.stdout.Count(`"path":"/on"`) > 0 })
	if n := p.stdout.Count(`"path":"/off"`); n != 0 {
		t.Fatalf("log.access_log false wrote %d lines:\n%s", n, p.stdout.String())
	}
	if n := p.count("restart to apply"); n != 1 {
		t.Fatalf("got %d restart warnings; want 1 (server.read_timeout)\n%s", n, p.log())
	}

	// Back to info, read_timeout back to the running value (no warning) and sticky off
	// (warned, not applied: cookies are still set). Reloads are handled one after another,
	// so exactly one "configuration reloaded" more means the reload at warn wrote none.
	p.reloadWith(t, cfg, conf("log: { level: info }\n"))
	if got := p.count(`"configuration reloaded"`); got != before+1 {
		t.Fatalf("got %d \"configuration reloaded\" lines after a reload at warn and one at info; want %d\n%s", got, before+1, p.log())
	}
	if n := p.count("restart to apply"); n != 2 || p.count(`"sticky.enabled changed: restart to apply"`) != 1 {
		t.Fatalf("got %d restart warnings; want 2 (server.read_timeout, then sticky.enabled)\n%s", n, p.log())
	}
	if age := cookieMaxAge("/still"); age == "" {
		t.Fatal("sticky.enabled false was reported as restart-only, yet the reload turned sticky sessions off")
	}
}

// TestReloadAppliesSampleRatio: tracing.sample_ratio applies on reload.
func TestReloadAppliesSampleRatio(t *testing.T) {
	t.Parallel()
	a, _ := backend(t, "a", 0)
	col := otlptest.Start(t)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	conf := func(ratio string) string {
		return "listen: \"127.0.0.1:0\"\nadmin: { listen: \"127.0.0.1:0\" }\npools: [ { name: web, backends: [ { url: \"" + a + "\" } ] } ]\n" +
			"tracing: { enabled: true, otlp_endpoint: " + q(col.URL()) + ", sample_ratio: " + ratio + " }\n"
	}
	writeFile(t, cfg, []byte(conf("0")))
	// Spans are exported every 50 ms instead of every 5 s (the OpenTelemetry SDK's
	// OTEL_BSP_SCHEDULE_DELAY), so the wait for /one's span is short.
	p := startEnv(t, append(os.Environ(), "LOG_LEVEL=info", "OTEL_BSP_SCHEDULE_DELAY=50"), "-config", cfg)
	httpGet(t, "http://"+p.addr+"/zero")
	p.reloadWith(t, cfg, conf("1"))
	httpGet(t, "http://"+p.addr+"/one")
	spans := col.WaitSpans(t, 1, 20*time.Second)
	for _, s := range spans {
		if s.Attrs["url.path"] == "/zero" {
			t.Fatal("a request at sample_ratio 0 was traced")
		}
	}
	if p.count("restart to apply") != 0 {
		t.Fatalf("sample_ratio was called restart-only:\n%s", p.log())
	}
}

// TestLogLines: every log line has an RFC 3339 UTC timestamp with milliseconds, and a
// duration's name gives its unit.
func TestLogLines(t *testing.T) {
	t.Parallel()
	p, _ := startOne(t)
	httpGet(t, "http://"+p.addr+"/")
	p.stop(t)
	ts := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
	access := p.stdout.String()
	all := strings.Split(strings.TrimSpace(p.log()+"\n"+access), "\n")
	if !strings.Contains(access, `"message":"access"`) {
		t.Fatalf("no access log line:\n%s", access)
	}
	for _, l := range all {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if s, _ := m["time"].(string); !ts.MatchString(s) {
			t.Errorf("log line %s: time %q; want RFC 3339 UTC with milliseconds", l, m["time"])
		}
	}
	if !strings.Contains(p.log(), `"timeout_ms":`) {
		t.Errorf("the shutdown line does not name its timeout in ms:\n%s", p.log())
	}
}
