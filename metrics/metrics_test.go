package metrics

import (
	"bytes"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go-loadbalancer/state"
)

func TestCodeSlots(t *testing.T) {
	f := func(code int, want string) {
		t.Helper()
		if got := slotLabel[slotOf(code)]; got != want {
			t.Fatalf("code %d: got label %q; want %q", code, got, want)
		}
	}
	f(200, "200")
	f(204, "204")
	f(299, "2xx")
	f(418, "4xx")
	f(503, "503")
	f(599, "5xx")
	f(101, "1xx")
	f(0, "other")
	f(-1, "other")
	f(600, "other")
	f(1000, "other")
}

func TestSketchQuantile(t *testing.T) {
	var s sketch
	for i := 1; i <= 1000; i++ {
		s.observe(time.Duration(i) * 100 * time.Microsecond) // 0.1 ms .. 100 ms, uniform
	}
	var c sketchCounts
	s.load(&c)
	f := func(q, want float64) {
		t.Helper()
		got := c.quantile(q)
		if math.Abs(got-want)/want > 0.125 {
			t.Fatalf("q%.2f: got %.3f ms; want %.3f ms ±12.5%%", q, got, want)
		}
	}
	f(0.5, 50)
	f(0.99, 99)
	f(0.01, 1)
	var empty sketchCounts
	if q := empty.quantile(0.5); !math.IsNaN(q) {
		t.Fatalf("got %v for an empty sketch; want NaN", q)
	}
	// Extremes land in the edge buckets instead of out of range.
	if i := sketchIndex(0); i != 0 {
		t.Fatalf("got index %d for 0; want 0", i)
	}
	if i := sketchIndex(math.MaxInt64); i != sketchBuckets-1 {
		t.Fatalf("got index %d for MaxInt64; want %d", i, sketchBuckets-1)
	}
}

func TestCountersSurviveReload(t *testing.T) {
	b, reg := newTestRegistry(t, poolYAML("127.0.0.1:1", "127.0.0.1:2"))
	m1 := handle(b, 0)
	m1.Observe(200, time.Millisecond)
	m1.Observe(503, time.Millisecond)

	// A reload that keeps backend 1 and replaces backend 2.
	apply(t, b, poolYAML("127.0.0.1:1", "127.0.0.1:3"))
	if m := handle(b, 0); m != m1 {
		t.Fatalf("got a new handle for an unchanged backend; want the same one")
	}
	reg.Sample(time.Now())
	var out bytes.Buffer
	reg.WritePrometheus(&out)
	text := out.String()
	for _, want := range []string{
		`lb_requests_total{pool="web",backend="web-127.0.0.1_1",code="200"} 1`,
		`lb_requests_total{pool="web",backend="web-127.0.0.1_1",code="503"} 1`,
		`lb_request_duration_seconds_count{pool="web",backend="web-127.0.0.1_1"} 2`,
		`lb_requests_total{pool="web",backend="web-127.0.0.1_3",code="200"} 0`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Fatalf("exposition lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "127.0.0.1_2") {
		t.Fatalf("exposition still has the removed backend:\n%s", text)
	}
	reg.mu.Lock()
	_, kept := reg.handles["web-127.0.0.1_2"]
	reg.mu.Unlock()
	if kept {
		t.Fatalf("the removed backend's handle was kept after its release")
	}
	// A nil handle records nothing.
	var nilHandle *Backend
	nilHandle.Observe(200, time.Second)
}

func TestHistogramBuckets(t *testing.T) {
	b, reg := newTestRegistry(t, poolYAML("127.0.0.1:1"))
	m := handle(b, 0)
	m.Observe(200, 300*time.Microsecond) // le 0.0005
	m.Observe(200, time.Millisecond)     // le 0.001 (bounds are inclusive)
	m.Observe(200, 2*time.Second)        // le 2.5
	m.Observe(200, time.Minute)          // +Inf only
	var out bytes.Buffer
	reg.WritePrometheus(&out)
	for _, want := range []string{
		`lb_request_duration_seconds_bucket{pool="web",backend="web-127.0.0.1_1",le="0.0005"} 1`,
		`lb_request_duration_seconds_bucket{pool="web",backend="web-127.0.0.1_1",le="0.001"} 2`,
		`lb_request_duration_seconds_bucket{pool="web",backend="web-127.0.0.1_1",le="1"} 2`,
		`lb_request_duration_seconds_bucket{pool="web",backend="web-127.0.0.1_1",le="2.5"} 3`,
		`lb_request_duration_seconds_bucket{pool="web",backend="web-127.0.0.1_1",le="30"} 3`,
		`lb_request_duration_seconds_bucket{pool="web",backend="web-127.0.0.1_1",le="+Inf"} 4`,
		`lb_request_duration_seconds_sum{pool="web",backend="web-127.0.0.1_1"} 62.0013`,
		`lb_request_duration_seconds_count{pool="web",backend="web-127.0.0.1_1"} 4`,
	} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Fatalf("exposition lacks %q:\n%s", want, out.String())
		}
	}
}

func TestSamplerRates(t *testing.T) {
	b, reg := newTestRegistry(t, poolYAML("127.0.0.1:1", "127.0.0.1:2"))
	tb := b.Store.Load()
	be := tb.Pools[0].Backends[0]
	m := handle(b, 0)
	t0 := time.Now()
	reg.Sample(t0)
	for i := 0; i < 100; i++ {
		be.Stats.Requests.Add(1)
		m.Observe(200, 2*time.Millisecond)
	}
	be.Stats.Failures.Add(10)
	reg.Sample(t0.Add(2 * time.Second))
	snap := reg.Snapshot(true)
	bs := snap.Backends[0]
	if bs.RPS != 50 || bs.ErrorRate != 0.1 {
		t.Fatalf("got rps %v, error rate %v; want 50, 0.1", bs.RPS, bs.ErrorRate)
	}
	if p := float64(bs.LatencyMS.P50); math.Abs(p-2)/2 > 0.125 {
		t.Fatalf("got p50 %v ms; want 2 ms ±12.5%%", p)
	}
	if len(bs.History.RPS) != 1 || bs.History.RPS[0] != 50 {
		t.Fatalf("got rps history %v; want [50]", bs.History.RPS)
	}
	if !math.IsNaN(float64(snap.Backends[1].LatencyMS.P99)) {
		t.Fatalf("got p99 %v for an idle backend; want NaN (null)", snap.Backends[1].LatencyMS.P99)
	}
	if ps := snap.Pools[0]; ps.RPS != 50 || ps.Requests != 100 || ps.Usable != 2 || ps.Responses.C2xx != 100 {
		t.Fatalf("got pool %+v; want rps 50, 100 requests, 2 usable, 100 2xx", ps)
	}
	// History keeps the last Options.History points.
	for i := 3; i < 400; i++ {
		reg.Sample(t0.Add(time.Duration(i) * time.Second))
	}
	if n := len(reg.Snapshot(true).Backends[0].History.RPS); n != 300 {
		t.Fatalf("got %d history points; want 300", n)
	}
}

// TestPromtool checks the whole exposition with `promtool check metrics`: valid, and no
// lint warning (HELP on every family, counters named _total, units in names).
func TestPromtool(t *testing.T) {
	promtool := needTool(t, "promtool", "prometheus")
	b, reg := newTestRegistry(t, poolYAML("127.0.0.1:1", "127.0.0.1:2"))
	reg.SetSticky(func() StickyCounts { return StickyCounts{CacheHit: 5, Miss: 1} })
	reg.CounterFunc("lb_access_log_dropped_total", "Access log lines dropped.", func() uint64 { return 3 })
	m := handle(b, 1)
	for _, c := range []int{200, 404, 418, 502, 0} {
		m.Observe(c, 3*time.Millisecond)
	}
	var out bytes.Buffer
	reg.WritePrometheus(&out)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(out.Bytes())
	res, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(res)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s\n--- exposition:\n%s", err, res, out.String())
	}
	for _, want := range []string{"lb_requests_total", "lb_request_duration_seconds_bucket", "lb_backend_up",
		"lb_backend_inflight", "lb_breaker_state", "lb_retries_total", "lb_ratelimited_total",
		`lb_sticky_lookups_total{result="cache_hit"} 5`, "lb_access_log_dropped_total 3", "process_cpu_seconds_total",
		"go_goroutines", `code="4xx"`, `code="other"`} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("exposition lacks %q", want)
		}
	}
}

// TestSnapshotIsLive: percentiles and counters read right after traffic include it, before
// any sample; traffic older than the 10 s window is left out.
func TestSnapshotIsLive(t *testing.T) {
	b, reg := newTestRegistry(t, poolYAML("127.0.0.1:1", "127.0.0.1:2"))
	be := b.Store.Load().Pools[0].Backends[0]
	m := handle(b, 0)
	t0 := time.Now()
	reg.Sample(t0)
	for range 100 {
		be.Stats.Requests.Add(1)
		m.Observe(200, 500*time.Millisecond)
	}
	snap := reg.Snapshot(false) // no sample since the traffic
	if snap.LatencyWindowS != 10 {
		t.Fatalf("got latency_window_s %d; want 10", snap.LatencyWindowS)
	}
	bs, ps := snap.Backends[0], snap.Pools[0]
	if p := float64(bs.LatencyMS.P50); math.IsNaN(p) || math.Abs(p-500)/500 > 0.125 {
		t.Fatalf("read right after traffic: got p50 %v ms; want 500 ms ±12.5%%", p)
	}
	if p := float64(ps.LatencyMS.P99); math.IsNaN(p) || math.Abs(p-500)/500 > 0.125 {
		t.Fatalf("read right after traffic: got pool p99 %v ms; want 500 ms ±12.5%%", p)
	}
	if bs.Requests != 100 || bs.Responses.C2xx != 100 {
		t.Fatalf("got %d requests, %d 2xx; want 100 and 100", bs.Requests, bs.Responses.C2xx)
	}

	// Ten one-second samples later the slow requests have left the window; a fast one
	// made since is all it holds.
	for i := 1; i <= 10; i++ {
		reg.Sample(t0.Add(time.Duration(i) * time.Second))
	}
	m.Observe(200, time.Millisecond)
	bs = reg.Snapshot(false).Backends[0]
	if p := float64(bs.LatencyMS.P99); math.IsNaN(p) || math.Abs(p-1)/1 > 0.125 {
		t.Fatalf("after the window moved on: got p99 %v ms; want 1 ms ±12.5%% (the 500 ms requests are older than 10 s)", p)
	}
}

// TestBreakerRecent: a breaker that went open and half-open and closed again within a
// second shows as open for 10 s, with its transitions.
func TestBreakerRecent(t *testing.T) {
	b, reg := newTestRegistry(t, poolYAML("127.0.0.1:1", "127.0.0.1:2"))
	be := b.Store.Load().Pools[0].Backends[0]
	reg.BreakerChanged(be, state.BreakerClosed, state.BreakerOpen, "test")
	reg.BreakerChanged(be, state.BreakerOpen, state.BreakerHalfOpen, "test")
	reg.BreakerChanged(be, state.BreakerHalfOpen, state.BreakerClosed, "test")
	snap := reg.Snapshot(false)
	bs := snap.Backends[0]
	if bs.Breaker != "closed" || bs.BreakerRecent != "open" {
		t.Fatalf("got breaker %q, recent %q; want closed, open", bs.Breaker, bs.BreakerRecent)
	}
	if len(bs.BreakerHistory) != 3 || bs.BreakerHistory[1].From != "open" || bs.BreakerHistory[1].To != "half_open" {
		t.Fatalf("got history %+v; want the three transitions, oldest first", bs.BreakerHistory)
	}
	if o := snap.Backends[1]; o.BreakerRecent != "closed" || len(o.BreakerHistory) != 0 {
		t.Fatalf("the other backend: got recent %q, history %+v; want closed, none", o.BreakerRecent, o.BreakerHistory)
	}
	// Older than 10 s: no longer "recent", still in the history.
	worst, hist := reg.breakerView(be.ID, state.BreakerClosed, time.Now().Add(11*time.Second))
	if worst != state.BreakerClosed || len(hist) != 3 {
		t.Fatalf("11 s later: got %v and %d transitions; want closed and 3", worst, len(hist))
	}
}
