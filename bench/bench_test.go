package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/internal/testtool"
)

// TestMain lets the test binary serve as the harness's backends process too: the harness
// re-executes its own binary (here, bench.test) with GOLB_BENCH_ROLE=backends.
func TestMain(m *testing.M) {
	maybeServeBackends()
	os.Exit(m.Run())
}

// TestHarness runs the whole harness in a tiny mode against direct and go-loadbalancer:
// start, 3:2:1 check, a closed-loop and an open-loop run each, the report. It proves that
// the harness works; its numbers mean nothing. Without wrk it is skipped, except under
// CI=true, where a missing wrk fails it (scripts/install-deps.sh bench installs it).
func TestHarness(t *testing.T) {
	testtool.Need(t, "wrk", "wrk")
	if testing.Short() {
		t.Skip("starts processes and sends load for ~10 s")
	}
	o, err := parseFlags([]string{"-quick", "-targets", "direct,golb", "-aa", "", "-c", "8",
		"-rates", "300", "-split-check", "60", "-out", t.TempDir(), "-timeout", "2m"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o.ctx = context.Background()
	start := time.Now()
	rep, err := run(o)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("harness ran in %v", time.Since(start).Round(time.Millisecond))

	if len(rep.splits) != 1 || rep.splits[0].target != "golb" {
		t.Fatalf("got split checks %+v; want one, of golb", rep.splits)
	}
	if got := rep.splits[0].counts; got[0] != 30 || got[1] != 20 || got[2] != 10 {
		t.Fatalf("got golb split %v; want [30 20 10]", got)
	}
	if len(rep.closed) != 2 {
		t.Fatalf("got %d closed-loop runs; want 2", len(rep.closed))
	}
	for _, r := range rep.closed {
		if r.wrk.requests < 100 || r.wrk.errors != 0 {
			t.Errorf("%s: got %d requests, %d errors; want ≥ 100 and 0", r.target, r.wrk.requests, r.wrk.errors)
		}
		if r.cpuPerReq() <= 0 {
			t.Errorf("%s: got CPU/request %.2f µs; want > 0", r.target, r.cpuPerReq())
		}
	}
	if len(rep.open) != 2 {
		t.Fatalf("got %d open-loop runs; want 2", len(rep.open))
	}
	for _, r := range rep.open {
		if r.res.ok < 100 || r.res.p99 <= 0 {
			t.Errorf("%s: got %d ok responses, p99 %v; want ≥ 100 and > 0", r.target, r.res.ok, r.res.p99)
		}
	}
	var md bytes.Buffer
	rep.markdown(&md)
	for _, want := range []string{"### Closed loop, c=8", "| golb ÷ direct |", "### Open loop", "| 300 | golb"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, md.String())
		}
	}
	if _, err := os.Stat(o.plot); err != nil {
		t.Errorf("no latency plot: %v", err)
	}
}

func TestParseWrk(t *testing.T) {
	out := `Running 4s test @ http://127.0.0.1:40000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms  310.15us   9.87ms   85.01%
    Req/Sec    48.91k     1.27k   51.02k    75.00%
  Latency Distribution
     50%  0.97ms
     75%    1.12ms
     90%    1.31ms
     99%    2.01ms
  194700 requests in 4.00s, 32.68MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  48672.30
Transfer/sec:      8.17MB
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{requests: 194700, elapsed: 4 * time.Second, rps: 48672.30,
		p50: 970 * time.Microsecond, p99: 2010 * time.Microsecond, errors: 7}
	if r != want {
		t.Fatalf("got %+v; want %+v", r, want)
	}
	if _, err := parseWrk("wrk: connection refused\n"); err == nil {
		t.Fatal("got no error for output without a request count")
	}
}

func TestSummarize(t *testing.T) {
	f := func(xs []float64, want summary) {
		t.Helper()
		if got := summarize(xs); got != want {
			t.Fatalf("summarize(%v): got %+v; want %+v", xs, got, want)
		}
	}
	f(nil, summary{})
	f([]float64{3}, summary{med: 3, min: 3, max: 3, n: 1})
	f([]float64{5, 1, 3}, summary{med: 3, min: 1, max: 5, n: 3})
	f([]float64{4, 1, 3, 2}, summary{med: 2.5, min: 1, max: 4, n: 4})
}

func TestTreeCPU(t *testing.T) {
	c, err := treeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if c.total() < 0 {
		t.Fatalf("got negative CPU time %v", c)
	}
	// A millisecond of CPU counts: a smoke run on a busy machine uses a few, which clock
	// ticks (10 ms) mostly round to none.
	for start := time.Now(); time.Since(start) < time.Millisecond; {
	}
	c2, err := treeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := c2.sub(c).total(); d <= 0 {
		t.Fatalf("got %v of CPU time for a millisecond of spinning; want > 0", d)
	}
	if _, err := treeCPU(1 << 30); err == nil {
		t.Fatal("got no error for a pid that does not exist")
	}
}

// TestLoggingTargetsLogTheFields: haproxy-log and nginx-log write one JSON line per request
// with the fields of go-loadbalancer's access log, so that golb-log is compared like for
// like.
func TestLoggingTargetsLogTheFields(t *testing.T) {
	testtool.Need(t, "haproxy", "haproxy")
	testtool.Need(t, "nginx", "nginx")
	if testing.Short() {
		t.Skip("starts HAProxy, nginx and a backend")
	}
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ps := &procs{}
	t.Cleanup(ps.stopAll)
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	be := "127.0.0.1:" + strconv.Itoa(port)
	if _, err := ps.start("backends", "", []string{roleEnv + "=" + roleBackends, listenEnv + "=" + be, controlEnv + "=", "GOMAXPROCS=1"}, dir, "", self); err != nil {
		t.Fatal(err)
	}
	e := &env{procs: ps, dir: dir, proxyCPU: 1, loadCPU: 0, backends: []string{be, be, be}, parity: true}
	const trace = "0af7651916cd43dd8448eb211c80319c"
	for _, kind := range []string{"haproxy-log", "nginx-log"} {
		tg, err := e.startTarget(kind, kind)
		if err != nil {
			t.Fatal(err)
		}
		c := tg.client(1)
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + tg.addr + "/items/7?id=3&x=y")
		req.Header.SetUserAgent("bench-test/1.0")
		req.Header.SetReferer("https://ref.example/")
		req.Header.Set("traceparent", "00-"+trace+"-b7ad6b7169203331-01")
		if err := c.DoTimeout(req, resp, 2*time.Second); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("%s: status %d, err %v", kind, resp.StatusCode(), err)
		}
		var line map[string]any
		deadline := time.Now().Add(5 * time.Second) // nginx flushes its buffer every second
		for line == nil {
			b, _ := os.ReadFile(tg.logFile)
			for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil && l != "" {
					t.Fatalf("%s: log line is not JSON: %v\n%s", kind, err, l)
				}
				if m["user_agent"] == "bench-test/1.0" {
					line = m
				}
			}
			if line == nil && time.Now().After(deadline) {
				t.Fatalf("%s: no line for the request in %s:\n%s", kind, tg.logFile, b)
			}
			time.Sleep(50 * time.Millisecond)
		}
		want := map[string]any{"method": "GET", "host": tg.addr, "path": "/items/7", "protocol": "HTTP/1.1",
			"status": float64(200), "upstream": be, "client": "127.0.0.1", "user_agent": "bench-test/1.0",
			"referer": "https://ref.example/"}
		for k, v := range want {
			if line[k] != v {
				t.Errorf("%s: %s is %#v; want %#v", kind, k, line[k], v)
			}
		}
		for _, k := range []string{"time", "query", "duration_ms", "upstream_ms", "request_bytes", "response_bytes", "request_id", "trace_id"} {
			if s, ok := line[k]; !ok || s == "" {
				t.Errorf("%s: field %s missing or empty in %v", kind, k, line)
			}
		}
		if q, _ := line["query"].(string); !strings.Contains(q, "id=3&x=y") {
			t.Errorf("%s: query is %q; want id=3&x=y", kind, q)
		}
		if id, _ := line["trace_id"].(string); !strings.Contains(id, trace) {
			t.Errorf("%s: trace_id is %q; want it to hold %s", kind, id, trace)
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
		tg.proc.stop()
	}
}

// TestHandshakeLoad: the handshake pass's clients make only full handshakes without
// -hs-resume, and resume all but each client's first with it.
func TestHandshakeLoad(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "https://")
	const clients = 4
	full, resumed := handshakeLoad(context.Background(), addr, clients, 300*time.Millisecond, false)
	if full.requests < clients || full.errors != 0 || resumed != 0 {
		t.Fatalf("full handshakes: got %d exchanges, %d errors, %d resumed; want ≥ %d, 0, 0", full.requests, full.errors, resumed, clients)
	}
	res, resumed := handshakeLoad(context.Background(), addr, clients, 300*time.Millisecond, true)
	if res.requests < 2*clients || res.errors != 0 || resumed < res.requests-clients {
		t.Fatalf("resumed handshakes: got %d exchanges, %d errors, %d resumed; want ≥ %d, 0, all but %d", res.requests, res.errors, resumed, 2*clients, clients)
	}
}
