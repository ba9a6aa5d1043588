package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/logbuf"
	"go-loadbalancer/internal/testtool"
	"go-loadbalancer/metrics"
	"go-loadbalancer/ratelimit"
	"go-loadbalancer/state"
	"go-loadbalancer/tlsconf"
)

// meteredProxy is a data plane as main wires it: metrics hooks and a limiting, lingering,
// connection-counting (TLS when cfg.TLS is set) listener.
type meteredProxy struct {
	addr  string
	reg   *metrics.Registry
	conns *ConnStats
	srv   *Server
	b     *state.Builder
}

// meteredState applies cfg to a state builder whose hooks feed a metrics registry, as
// main's do.
func meteredState(t *testing.T, cfg *config.Config) (*state.Builder, *Tables, *metrics.Registry) {
	t.Helper()
	store := new(state.Store)
	reg := metrics.New(metrics.Options{Store: store})
	ts := NewTables(nil, reg)
	b := state.NewBuilder(store, ts.Hooks())
	if _, err := b.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	return b, ts, reg
}

func startMetered(t *testing.T, cfg *config.Config) *meteredProxy {
	t.Helper()
	b, ts, reg := meteredState(t, cfg)
	px := New(Options{Tables: ts, Log: zerolog.Nop(), Limiter: ratelimit.NewLocal(1024), OnRateLimited: reg.RateLimited.Inc})
	srv := px.NewServer(cfg.Server, zerolog.Nop())
	tc, _, err := tlsconf.Front(cfg.TLS)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := &ConnStats{}
	go func() { _ = srv.Serve(conns.Listener(Listener(srv.Listener(ln)), tc)) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return &meteredProxy{addr: ln.Addr().String(), reg: reg, conns: conns, srv: srv, b: b}
}

// scrape returns every sample of the Prometheus exposition by its full name with labels.
func (m *meteredProxy) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	var buf bytes.Buffer
	m.reg.WritePrometheus(&buf)
	out := map[string]float64{}
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// delta runs do and returns how each sample named in want moved; it fails unless each
// moved by exactly its want.
func (m *meteredProxy) delta(t *testing.T, do func(), want map[string]float64) {
	t.Helper()
	before := m.scrape(t)
	do()
	after := m.scrape(t)
	for name, w := range want {
		if got := after[name] - before[name]; got != w {
			t.Errorf("%s moved by %v; want %v", name, got, w)
		}
	}
}

func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(c)
	return buf.String()
}

// TestClientFacingMetrics: one event moves each counter by exactly one, and a try that
// never reached a backend is counted under its cause, not as a 502 the balancer made up.
func TestClientFacingMetrics(t *testing.T) {
	t.Parallel()
	live := startBackend(t, named("live"))
	dead := "http://" + deadAddr(t)
	cfg := poolConfig(t, "rate_limit: { enabled: true, key: \"header:X-Key\", rate: 0.001, burst: 1 }\n"+
		"routes: [ { match: { path_prefix: /api }, pool: web } ]\n", dead, live.url)
	m := startMetered(t, cfg)
	ids := []string{m.b.Store.Load().Pools[0].Backends[0].ID, m.b.Store.Load().Pools[0].Backends[1].ID}
	try := func(i int, code string) string {
		return `lb_requests_total{pool="web",backend="` + ids[i] + `",code="` + code + `"}`
	}
	get := func(path string, header ...string) {
		req := "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		for i := 0; i+1 < len(header); i += 2 {
			req += header[i] + ": " + header[i+1] + "\r\n"
		}
		rawRequest(t, m.addr, req+"\r\n")
	}

	// Smooth 1:1 starts with the dead backend: the first GET is retried on the live one.
	m.delta(t, func() { get("/") }, map[string]float64{
		`lb_http_requests_total{pool="web",route="",code="200"}`:         1,
		`lb_http_requests_total{pool="web",route="",code="502"}`:         0,
		`lb_http_requests_total{pool="web",route="",code="503"}`:         0,
		try(0, "connect_error"):                                          1,
		try(0, "502"):                                                    0,
		try(0, "503"):                                                    0,
		try(1, "200"):                                                    1,
		`lb_retries_total{pool="web"}`:                                   1,
		`lb_pool_requests_total{pool="web"}`:                             1,
		`lb_backend_failures_total{pool="web",backend="` + ids[0] + `"}`: 1,
		`lb_backend_failures_total{pool="web",backend="` + ids[1] + `"}`: 0,
		`lb_http_request_duration_seconds_count{pool="web",route=""}`:    1,
		`lb_http_response_bytes_total{pool="web",route=""}`:              4, // "live"
		`lb_connections_accepted_total`:                                  0, // exposed by main, not here
	})
	if a, o := m.conns.Accepted(), m.srv.Stats.Conns.Load(); a != 1 || o > 1 {
		t.Fatalf("after one connection: accepted %d, open %d; want 1 and at most 1", a, o)
	}
	testtool.WaitFor(t, 3*time.Second, "the connection counted closed", func() bool { return m.srv.Stats.Conns.Load() == 0 })

	// A request a route matched counts under the route's path_prefix.
	m.delta(t, func() { get("/api/items", "X-Key", "api") }, map[string]float64{
		`lb_http_requests_total{pool="web",route="/api",code="200"}`: 1,
		`lb_http_requests_total{pool="web",route="",code="200"}`:     0,
	})

	// A rate-limited request is answered before a pool is chosen: pool="".
	get("/", "X-Key", "k")
	m.delta(t, func() { get("/", "X-Key", "k") }, map[string]float64{
		`lb_http_requests_total{pool="",route="",code="429"}`:    1,
		`lb_ratelimited_total`:                                   1,
		`lb_http_requests_total{pool="web",route="",code="200"}`: 0,
	})

	// A request fasthttp refuses (headers over max_header_bytes) is counted too.
	m.delta(t, func() { get("/", "X-Big", strings.Repeat("b", 20000)) }, map[string]float64{
		`lb_http_requests_total{pool="",route="",code="431"}`: 1,
	})

	// Request body bytes.
	m.delta(t, func() {
		rawRequest(t, m.addr, "PUT / HTTP/1.1\r\nHost: x\r\nX-Key: put\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
	}, map[string]float64{
		`lb_http_request_bytes_total{pool="web",route=""}`:       5,
		`lb_http_requests_total{pool="web",route="",code="200"}`: 1,
	})
	if a := m.conns.Accepted(); a != 6 {
		t.Fatalf("got %d accepted connections; want 6", a)
	}
}

// TestTLSHandshakeMetrics: a completed handshake and a failed one each count once.
func TestTLSHandshakeMetrics(t *testing.T) {
	t.Parallel()
	live := startBackend(t, named("live"))
	certFile, keyFile, roots := testtool.SelfSignedCert(t)
	cfg := poolConfig(t, "tls: { cert_file: "+strconv.Quote(certFile)+", key_file: "+strconv.Quote(keyFile)+" }\n", live.url)
	m := startMetered(t, cfg)

	c := &fasthttp.HostClient{Addr: m.addr, IsTLS: true, TLSConfig: &tls.Config{RootCAs: roots}}
	code, body, err := c.Get(nil, "https://"+m.addr+"/")
	if err != nil || code != 200 || string(body) != "live" {
		t.Fatalf("GET over TLS: %d %q %v", code, body, err)
	}
	if h, e := m.conns.Handshakes(), m.conns.HandshakeErrors(); h != 1 || e != 0 {
		t.Fatalf("after one TLS request: %d handshakes, %d errors; want 1 and 0", h, e)
	}
	// Plain HTTP to the TLS port: the handshake fails.
	rawRequest(t, m.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	testtool.WaitFor(t, 3*time.Second, "the failed handshake counted", func() bool { return m.conns.HandshakeErrors() == 1 })
	if h := m.conns.Handshakes(); h != 1 {
		t.Fatalf("got %d handshakes; want still 1", h)
	}
}

// TestUpstreamErrorLogNamesCause: the log line of a failed try says what went wrong
// underneath (here the backend's certificate), not only "cannot connect to backend"; the
// try counts as a connect_error.
func TestUpstreamErrorLogNamesCause(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // the handshake failures we cause
	cfg := poolConfig(t, "", srv.URL)
	var logs logbuf.Buffer
	ts := NewTables(nil, nil)
	if _, err := state.NewBuilder(nil, ts.Hooks()).Apply(cfg); err != nil {
		t.Fatal(err)
	}
	px := New(Options{Tables: ts, Log: zerolog.New(&logs)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := px.NewServer(cfg.Server, zerolog.Nop())
	go func() { _ = fs.Serve(ln) }()
	defer fs.Shutdown()
	resp := rawRequest(t, ln.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(resp, "HTTP/1.1 503") {
		t.Fatalf("got %.40q; want 503 (no backend could be reached)", resp)
	}
	if !strings.Contains(logs.String(), `"cause":"tls: failed to verify certificate: x509:`) {
		t.Fatalf("the upstream error log does not name the certificate problem:\n%s", logs.String())
	}
}
