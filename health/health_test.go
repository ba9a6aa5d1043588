package health

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/testtool"
	"go-loadbalancer/proxy"
	"go-loadbalancer/state"
)

// healthBackend is a real backend whose /health answers the status in code.
type healthBackend struct {
	url    string
	code   atomic.Int64
	checks atomic.Int64
	ln     net.Listener
}

func startHealthBackend(t *testing.T) *healthBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hb := &healthBackend{url: "http://" + ln.Addr().String(), ln: ln}
	hb.code.Store(200)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/health" {
			hb.checks.Add(1)
			ctx.SetStatusCode(int(hb.code.Load()))
		}
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return hb
}

const (
	interval = 50 * time.Millisecond
	fall     = 3
	rise     = 2
)

// startChecker builds a table of the backends with fast health checks and starts checking.
func startChecker(t *testing.T, expect string, urls ...string) *state.Builder {
	t.Helper()
	yaml := fmt.Sprintf("pools:\n  - name: web\n    health_check: { interval: %s, timeout: 40ms, fall: %d, rise: %d, expect_status: %q }\n    backends:\n",
		interval, fall, rise, expect)
	for _, u := range urls {
		yaml += fmt.Sprintf("      - url: %q\n", u)
	}
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	b := state.NewBuilder(nil, proxy.NewTables(nil, nil).Hooks())
	if _, err := b.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	hc := NewChecker(b, zerolog.Nop())
	t.Cleanup(hc.Stop)
	return b
}

func healthy(b *state.Builder, i int) bool { return b.Store.Load().Backends()[i].Healthy }

// waitHealth polls until backend i's health is want; the deadline only bounds a checker
// that never decides.
func waitHealth(t *testing.T, b *state.Builder, i int, want bool) {
	t.Helper()
	testtool.WaitFor(t, 20*time.Second, fmt.Sprintf("backend %d healthy=%v", i, want), func() bool { return healthy(b, i) == want })
}

func TestHealthDownAndUp(t *testing.T) {
	t.Parallel()
	hb := startHealthBackend(t)
	other := startHealthBackend(t)
	b := startChecker(t, "200-399", hb.url, other.url)
	testtool.WaitFor(t, 10*time.Second, "first checks", func() bool { return hb.checks.Load() > 0 })
	if !healthy(b, 0) {
		t.Fatal("a backend passing its checks is down")
	}
	// The check in flight when the code changes may answer either, so a verdict may come
	// one check early; never sooner.
	n := hb.checks.Load()
	hb.code.Store(503)
	waitHealth(t, b, 0, false)
	if got := hb.checks.Load() - n; got < fall-1 {
		t.Fatalf("down after %d checks answered 503; want at least %d (fall)", got, fall-1)
	}
	if !healthy(b, 1) {
		t.Fatal("the other backend went down with it")
	}
	n = hb.checks.Load()
	hb.code.Store(200)
	waitHealth(t, b, 0, true)
	if got := hb.checks.Load() - n; got < rise-1 {
		t.Fatalf("up after %d checks answered 200; want at least %d (rise)", got, rise-1)
	}
}

func TestHealthListenerClosed(t *testing.T) {
	t.Parallel()
	hb := startHealthBackend(t)
	b := startChecker(t, "200", hb.url)
	testtool.WaitFor(t, 10*time.Second, "first checks", func() bool { return hb.checks.Load() > 0 })
	hb.ln.Close()
	waitHealth(t, b, 0, false)
}

func TestHealthExpectStatusRanges(t *testing.T) {
	t.Parallel()
	f := func(expect string, code int, wantHealthy bool) {
		t.Helper()
		hb := startHealthBackend(t)
		hb.code.Store(int64(code))
		b := startChecker(t, expect, hb.url)
		// Wait for well over fall checks, then the verdict must be settled.
		testtool.WaitFor(t, 10*time.Second, "checks", func() bool { return hb.checks.Load() >= fall+2 })
		if got := healthy(b, 0); got != wantHealthy {
			t.Fatalf("expect_status %q with %d: got healthy=%v; want %v", expect, code, got, wantHealthy)
		}
	}
	f("200-299", 204, true)
	f("200-299", 302, false)
	f("200,204,301-302", 302, true)
	f("200", 404, false)
}

func TestHealthFlappingDoesNotFlip(t *testing.T) {
	t.Parallel()
	hb := startHealthBackend(t)
	srvFlip := atomic.Int64{}
	b := startChecker(t, "200", hb.url)
	// Alternate: never `fall` failures in a row, so it must stay up.
	deadline := time.Now().Add(20 * interval)
	for time.Now().Before(deadline) {
		n := hb.checks.Load()
		if n != srvFlip.Load() {
			srvFlip.Store(n)
			if n%2 == 0 {
				hb.code.Store(500)
			} else {
				hb.code.Store(200)
			}
		}
		if !healthy(b, 0) {
			t.Fatalf("a backend failing every other check was marked down (fall is %d in a row)", fall)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestHealthFollowsReload(t *testing.T) {
	t.Parallel()
	a, c := startHealthBackend(t), startHealthBackend(t)
	b := startChecker(t, "200", a.url)
	testtool.WaitFor(t, 10*time.Second, "checks of a", func() bool { return a.checks.Load() > 0 })
	cfg := *b.Store.Load().Config
	cfg.Pools = append([]config.Pool(nil), cfg.Pools...)
	cfg.Pools[0].Backends = []config.Backend{{URL: c.url, Weight: 1}}
	if _, err := b.Apply(&cfg); err != nil {
		t.Fatal(err)
	}
	testtool.WaitFor(t, 10*time.Second, "checks of the new backend", func() bool { return c.checks.Load() > 0 })
	// The removed backend's prober stops.
	n := a.checks.Load()
	testtool.WaitFor(t, 10*time.Second, "no more checks of the removed backend", func() bool {
		time.Sleep(3 * interval)
		m := a.checks.Load()
		stopped := m == n
		n = m
		return stopped
	})
}

// TestHealthCorrectsAStaleVerdict: a verdict written by someone else — a prober replaced by
// a reload that applied its "down" after its successor started — is corrected by the
// running prober, which reconciles with the table rather than its own memory (found in
// review: the backend stayed down for good).
func TestHealthCorrectsAStaleVerdict(t *testing.T) {
	t.Parallel()
	hb := startHealthBackend(t)
	b := startChecker(t, "200", hb.url)
	testtool.WaitFor(t, 10*time.Second, "first checks", func() bool { return hb.checks.Load() > 0 })
	id := b.Store.Load().Backends()[0].ID
	if _, err := b.SetHealthy(id, false); err != nil { // the stale verdict
		t.Fatal(err)
	}
	waitHealth(t, b, 0, true)
}
