package admin

import (
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/internal/testtool"
)

func TestHealthAndReady(t *testing.T) {
	t.Parallel()
	l := startLB(t, 1, lbOptions{})
	if code, _, body := do(t, "GET", l.admin+"/health", "", ""); code != 200 || strings.TrimSpace(body) != `{"status":"ok"}` {
		t.Fatalf("GET /health: got %d %s; want 200 {\"status\":\"ok\"}", code, body)
	}
	if code, _, body := do(t, "GET", l.admin+"/ready", "", ""); code != 200 || !strings.Contains(body, `"ready"`) {
		t.Fatalf("GET /ready: got %d %s; want 200 ready", code, body)
	}
	l.ready.Store(false)
	if code, _, body := do(t, "GET", l.admin+"/ready", "", ""); code != 503 || !strings.Contains(body, "draining") {
		t.Fatalf("GET /ready while draining: got %d %s; want 503 draining", code, body)
	}
	if code, _, _ := do(t, "POST", l.admin+"/health", "", ""); code != 405 {
		t.Fatalf("POST /health: got %d; want 405", code)
	}
	if code, _, _ := do(t, "GET", l.admin+"/nope", "", ""); code != 404 {
		t.Fatalf("GET /nope: got %d; want 404", code)
	}
}

func TestMetricsJSON(t *testing.T) {
	t.Parallel()
	l := startLB(t, 3, lbOptions{})
	l.get(t, "/", 60)
	// Rates come from the once-a-second sampler: poll until it has seen the traffic.
	var doc map[string]any
	testtool.WaitFor(t, 5*time.Second, "a sample with traffic", func() bool {
		doc = nil
		getJSON(t, l.admin+"/metrics?history=1", &doc)
		b := doc["backends"].([]any)[0].(map[string]any)
		lat := b["latency_ms"].(map[string]any)
		return b["rps"].(float64) > 0 && lat["p99"] != nil
	})
	for _, k := range []string{"uptime_s", "table_version", "backends", "pools", "retries", "ratelimited", "sticky_lookups", "ready", "controls"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("/metrics lacks %q", k)
		}
	}
	if up := doc["uptime_s"].(float64); up <= 0 {
		t.Errorf("got uptime_s %v; want > 0", up)
	}
	bs := doc["backends"].([]any)
	if len(bs) != 3 {
		t.Fatalf("got %d backends; want 3", len(bs))
	}
	var total float64
	for i, x := range bs {
		b := x.(map[string]any)
		for _, k := range []string{"id", "url", "pool", "weight", "healthy", "drained", "state", "breaker", "breaker_for_s",
			"inflight", "requests", "failures", "rps", "error_rate", "latency_ms", "responses", "history"} {
			if _, ok := b[k]; !ok {
				t.Errorf("backend %d lacks %q", i, k)
			}
		}
		if b["id"] != l.backendID(i) || b["url"] != l.backends[i].url || b["pool"] != "web" || b["weight"] != 1.0 ||
			b["healthy"] != true || b["state"] != "up" || b["breaker"] != "closed" || b["failures"] != 0.0 {
			t.Errorf("backend %d: got %v", i, b)
		}
		lat := b["latency_ms"].(map[string]any)
		if _, ok := lat["p50"]; !ok {
			t.Errorf("backend %d latency_ms lacks p50", i)
		}
		total += b["requests"].(float64)
		h := b["history"].(map[string]any)
		if len(h["rps"].([]any)) == 0 {
			t.Errorf("backend %d has no rps history", i)
		}
	}
	if total != 60 {
		t.Errorf("got %v requests over the backends; want 60", total)
	}
	p := doc["pools"].([]any)[0].(map[string]any)
	if p["name"] != "web" || p["backends"] != 3.0 || p["usable"] != 3.0 || p["panic"] != false || p["requests"] != 60.0 {
		t.Errorf("got pool %v; want web, 3 backends, 3 usable, 60 requests", p)
	}
	if r := p["responses"].(map[string]any); r["2xx"] != 60.0 {
		t.Errorf("got pool responses %v; want 60 2xx", r)
	}
	// Without ?history=1 there is no history.
	var plain map[string]any
	getJSON(t, l.admin+"/metrics", &plain)
	if _, ok := plain["backends"].([]any)[0].(map[string]any)["history"]; ok {
		t.Errorf("/metrics without history=1 has history")
	}
}

func TestDashboardAndPrometheusServed(t *testing.T) {
	t.Parallel()
	l := startLB(t, 1, lbOptions{})
	code, h, body := do(t, "GET", l.admin+"/", "", "")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(body, "<table id=\"backends\">") {
		t.Fatalf("GET /: got %d %s; want the dashboard", code, h.Get("Content-Type"))
	}
	if b := strings.ReplaceAll(body, `"http://www.w3.org/2000/svg"`, ""); strings.Contains(b, "http://") || strings.Contains(b, "https://") {
		t.Errorf("the dashboard references an external URL; it must work air-gapped")
	}
	if h.Get("Content-Security-Policy") == "" {
		t.Errorf("the dashboard has no Content-Security-Policy")
	}
	code, h, body = do(t, "GET", l.admin+"/prometheus", "", "")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain; version=0.0.4") ||
		!strings.Contains(body, "# TYPE lb_requests_total counter") {
		t.Fatalf("GET /prometheus: got %d %s", code, h.Get("Content-Type"))
	}
}

func TestPprof(t *testing.T) {
	t.Parallel()
	off := startLB(t, 1, lbOptions{})
	if code, _, _ := do(t, "GET", off.admin+"/debug/pprof/", "", ""); code != 404 {
		t.Fatalf("GET /debug/pprof/ with admin.pprof off: got %d; want 404", code)
	}
	on := startLB(t, 1, lbOptions{pprof: true})
	if code, _, body := do(t, "GET", on.admin+"/debug/pprof/", "", ""); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("GET /debug/pprof/ with admin.pprof on: got %d; want the index", code)
	}
	if code, _, _ := do(t, "GET", on.admin+"/debug/pprof/goroutine?debug=1", "", ""); code != 200 {
		t.Fatalf("GET /debug/pprof/goroutine: got %d; want 200", code)
	}
}

func TestTokenRules(t *testing.T) {
	t.Parallel()
	// No token configured: the API is off and says how to turn it on.
	off := startLB(t, 1, lbOptions{})
	id := off.backendID(0)
	for _, r := range [][2]string{{"POST", "/api/backends/" + id + "/drain"}, {"POST", "/api/backends/" + id + "/enable"},
		{"PUT", "/api/backends/" + id + "/weight"}, {"POST", "/api/reload"}} {
		code, _, body := do(t, r[0], off.admin+r[1], "anything", `{"weight":2}`)
		if code != 403 || !strings.Contains(body, "ADMIN_TOKEN") || !strings.Contains(body, "admin.token_file") {
			t.Fatalf("%s %s without a configured token: got %d %s; want 403 naming ADMIN_TOKEN and admin.token_file", r[0], r[1], code, body)
		}
	}
	if off.builder.Store.Load().Backend(id).Drained {
		t.Fatal("a refused drain drained the backend")
	}

	l := startLB(t, 2, lbOptions{token: "s3cret"})
	id = l.backendID(0)
	drain := l.admin + "/api/backends/" + id + "/drain"
	for _, tok := range []string{"", "wrong", "s3cret2", "S3CRET"} {
		code, h, _ := do(t, "POST", drain, tok, "")
		if code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("token %q: got %d, WWW-Authenticate %q; want 401 Bearer", tok, code, h.Get("WWW-Authenticate"))
		}
	}
	if l.builder.Store.Load().Backend(id).Drained {
		t.Fatal("a drain with a wrong token drained the backend")
	}

	// The right token: each action takes effect in a new table.
	code, _, body := do(t, "POST", drain, "s3cret", "")
	if code != 200 || !l.builder.Store.Load().Backend(id).Drained || !strings.Contains(body, `"drained":true`) {
		t.Fatalf("drain: got %d %s; want 200 and the backend drained", code, body)
	}
	code, _, body = do(t, "POST", l.admin+"/api/backends/"+id+"/enable", "s3cret", "")
	if code != 200 || l.builder.Store.Load().Backend(id).Drained {
		t.Fatalf("enable: got %d %s; want 200 and the backend back", code, body)
	}
	weight := l.admin + "/api/backends/" + id + "/weight"
	code, _, body = do(t, "PUT", weight, "s3cret", `{"weight": 7}`)
	if code != 200 || l.builder.Store.Load().Backend(id).Weight != 7 {
		t.Fatalf("weight: got %d %s; want 200 and weight 7", code, body)
	}
	for _, bad := range []string{``, `{}`, `{"weight":0}`, `{"weight":10001}`, `{"weight":1.5}`, `{"weight":"3"}`,
		`{"weight":3,"x":1}`, `[3]`, `{"weight":-2}`, `not json`} {
		if code, _, body := do(t, "PUT", weight, "s3cret", bad); code != 400 {
			t.Fatalf("weight body %q: got %d %s; want 400", bad, code, body)
		}
	}
	if w := l.builder.Store.Load().Backend(id).Weight; w != 7 {
		t.Fatalf("got weight %d after bad requests; want 7 kept", w)
	}
	for _, r := range [][2]string{{"POST", "/api/backends/nope/drain"}, {"POST", "/api/backends/nope/enable"}, {"PUT", "/api/backends/nope/weight"}} {
		if code, _, body := do(t, r[0], l.admin+r[1], "s3cret", `{"weight":2}`); code != 404 || !strings.Contains(body, "nope") {
			t.Fatalf("%s %s: got %d %s; want 404", r[0], r[1], code, body)
		}
	}
	if code, _, _ := do(t, "GET", drain, "s3cret", ""); code != 405 {
		t.Fatalf("GET on drain: got %d; want 405", code)
	}

	// Reload calls main's reload; its error is reported.
	if code, _, body := do(t, "POST", l.admin+"/api/reload", "s3cret", ""); code != 200 || l.reloads.Load() != 1 || !strings.Contains(body, "reloaded") {
		t.Fatalf("reload: got %d %s, %d reloads; want 200 and 1", code, body, l.reloads.Load())
	}
	l.reloadFn = func() error { return errBadConfig }
	if code, _, body := do(t, "POST", l.admin+"/api/reload", "s3cret", ""); code != 422 || !strings.Contains(body, "lb.yaml:3") {
		t.Fatalf("failed reload: got %d %s; want 422 with the error", code, body)
	}
	// The JSON shows the changes.
	var doc struct {
		Backends []struct {
			ID     string `json:"id"`
			Weight int    `json:"weight"`
		} `json:"backends"`
	}
	getJSON(t, l.admin+"/metrics", &doc)
	if doc.Backends[0].ID != id || doc.Backends[0].Weight != 7 {
		t.Fatalf("got %+v in /metrics; want %s with weight 7", doc.Backends[0], id)
	}
}

var errBadConfig = &configError{"lb.yaml:3: pools[0].backends[0].url: unsupported scheme"}

type configError struct{ s string }

func (e *configError) Error() string { return e.s }

// TestDrainUnderLoad drains a backend while clients hammer the proxy: no request fails,
// and once the drain call has returned the backend gets no new request.
func TestDrainUnderLoad(t *testing.T) {
	t.Parallel()
	l := startLB(t, 3, lbOptions{token: "t"})
	victim := l.backends[1]
	var stop atomic.Bool
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	const workers = 16
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &fasthttp.HostClient{Addr: l.proxy, MaxConns: 4, ReadTimeout: 10 * time.Second}
			for !stop.Load() {
				code, _, err := c.Get(nil, "http://"+l.proxy+"/slow")
				sent.Add(1)
				if err != nil || code != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	testtool.WaitFor(t, 5*time.Second, "traffic on the victim", func() bool { return victim.hits.Load() >= 20 })
	code, _, body := do(t, "POST", l.admin+"/api/backends/"+l.backendID(1)+"/drain", "t", "")
	if code != 200 {
		t.Fatalf("drain: got %d %s", code, body)
	}
	// Requests already picked before the swap may still arrive: at most one per worker.
	atDrain := victim.hits.Load()
	sentAtDrain := sent.Load()
	testtool.WaitFor(t, 10*time.Second, "300 more requests", func() bool { return sent.Load() >= sentAtDrain+300 })
	stop.Store(true)
	wg.Wait()
	if late := victim.hits.Load() - atDrain; late > workers {
		t.Fatalf("the drained backend got %d requests after the drain; want at most %d in flight", late, workers)
	}
	if f := failed.Load(); f != 0 {
		t.Fatalf("%d of %d requests failed; want 0", f, sent.Load())
	}
	var doc struct {
		Backends []struct {
			State    string `json:"state"`
			Inflight int64  `json:"inflight"`
		} `json:"backends"`
	}
	getJSON(t, l.admin+"/metrics", &doc)
	if doc.Backends[1].State != "drained" || doc.Backends[1].Inflight != 0 {
		t.Fatalf("got %+v for the drained backend; want drained with nothing in flight", doc.Backends[1])
	}
	t.Logf("%d requests, 0 failed; the drained backend got %d after the drain returned", sent.Load(), victim.hits.Load()-atDrain)
}

// TestDemoPathsOnDataPlane: with the Local hook (-demo), the demo's admin paths
// answer on the data-plane port through fasthttpadaptor, and everything else is proxied.
func TestDemoPathsOnDataPlane(t *testing.T) {
	t.Parallel()
	l := startLB(t, 1, lbOptions{demo: true, token: "t"})
	c := &fasthttp.HostClient{Addr: l.proxy}
	get := func(path string) (int, string, string) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://" + l.proxy + path)
		if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp.StatusCode(), string(resp.Header.ContentType()), string(resp.Body())
	}
	if code, _, body := get("/health"); code != 200 || !strings.Contains(body, `"ok"`) {
		t.Fatalf("GET /health on the data plane: got %d %s", code, body)
	}
	if code, ct, body := get("/"); code != 200 || !strings.HasPrefix(ct, "text/html") || !strings.Contains(body, "go-loadbalancer") {
		t.Fatalf("GET / on the data plane: got %d %s", code, ct)
	}
	code, _, body := get("/metrics")
	var doc map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &doc) != nil || doc["controls"] != false {
		t.Fatalf("GET /metrics on the data plane: got %d %.200s; want JSON with controls false", code, body)
	}
	if code, _, body := get("/prometheus"); code != 200 || !strings.Contains(body, "lb_requests_total") {
		t.Fatalf("GET /prometheus on the data plane: got %d", code)
	}
	for _, path := range []string{"/lb", "/api/backends/x/drain", "/ready", "/healthz"} {
		if code, _, body := get(path); code != 200 || body != "b1" {
			t.Fatalf("GET %s on the data plane: got %d %q; want it proxied to b1", path, code, body)
		}
	}
}
