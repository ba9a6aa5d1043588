package state

import (
	"errors"
	"fmt"
	"testing"

	"go-loadbalancer/config"
)

// webConfig is a valid config of one pool "web" with the given weights (backends
// 127.0.0.1:1, :2, …).
func webConfig(t *testing.T, weights ...int) *config.Config {
	t.Helper()
	cfg := config.Default()
	p := config.Pool{Name: "web"}
	for i, w := range weights {
		p.Backends = append(p.Backends, config.Backend{URL: fmt.Sprintf("http://127.0.0.1:%d", i+1), Weight: w})
	}
	cfg.Pools = []config.Pool{p}
	cfg.ApplyDefaults()
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	return cfg
}

// testTable builds a table of webConfig(weights).
func testTable(t *testing.T, weights ...int) (*Builder, *Table) {
	t.Helper()
	b := NewBuilder(nil, Hooks{})
	tb, err := b.Apply(webConfig(t, weights...))
	if err != nil {
		t.Fatal(err)
	}
	return b, tb
}

func picks(p *Pool, n int, tried Tried) string {
	s := ""
	for range n {
		b, tk := p.Pick(tried, 0)
		if b == nil {
			return s + "-"
		}
		b.Stats.Breaker.Release(tk)
		s += string(rune('a' + b.Index))
	}
	return s
}

func TestPickSmoothAndSkips(t *testing.T) {
	b, tb := testTable(t, 3, 2, 1)
	if got := picks(tb.DefaultPool(), 12, 0); got != "abacbaabacba" {
		t.Fatalf("got %s; want abacba twice", got)
	}
	if got := picks(tb.DefaultPool(), 6, Tried(0).With(0)); countOf(got, 'a') != 0 || len(got) != 6 {
		t.Fatalf("got %s with a tried; want six picks without a", got)
	}
	// Drained backends are skipped; the rest keep their smooth order.
	tb, err := b.Drain(tb.Backends()[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := picks(tb.DefaultPool(), 8, 0); countOf(got, 'b') != 0 || len(got) != 8 {
		t.Fatalf("got %s; want no b while it is drained", got)
	}
	// A tried backend is never picked again for that request.
	for i := range 3 {
		if be, _ := tb.DefaultPool().Pick(Tried(0).With(0).With(2), 0); be != nil {
			t.Fatalf("pick %d: got %s with a and c tried and b drained; want none", i, be.ID)
		}
	}
	if _, err := b.Drain("nope"); !errors.Is(err, ErrUnknownBackend) {
		t.Fatalf("got %v; want ErrUnknownBackend", err)
	}
}

func countOf(s string, c byte) int {
	n := 0
	for i := range len(s) {
		if s[i] == c {
			n++
		}
	}
	return n
}

func TestPanicModeSpreadsOverUnhealthy(t *testing.T) {
	b, tb := testTable(t, 1, 1, 1)
	for _, be := range tb.Backends()[:2] {
		var err error
		if tb, err = b.SetHealthy(be.ID, false); err != nil {
			t.Fatal(err)
		}
	}
	if got := picks(tb.DefaultPool(), 6, 0); got != "cccccc" {
		t.Fatalf("got %s with a and b down; want only c", got)
	}
	tb, _ = b.SetHealthy(tb.Backends()[2].ID, false)
	if !tb.DefaultPool().Panic(0) {
		t.Fatal("pool with every backend down is not in panic")
	}
	got := picks(tb.DefaultPool(), 6, 0)
	if countOf(got, 'a') != 2 || countOf(got, 'b') != 2 || countOf(got, 'c') != 2 {
		t.Fatalf("got %s in panic; want traffic spread over all three", got)
	}
	be, tk := tb.DefaultPool().Pick(0, 0)
	if tk != TicketPanic {
		t.Fatalf("got ticket %v for %s in panic; want TicketPanic", tk, be.ID)
	}
	// Drained backends stay out even in panic.
	for _, be := range tb.Backends() {
		tb, _ = b.Drain(be.ID)
	}
	if be, _ := tb.DefaultPool().Pick(0, 0); be != nil {
		t.Fatalf("got %s with every backend drained; want none", be.ID)
	}
}

func TestStatsSurviveReload(t *testing.T) {
	b, tb := testTable(t, 1, 1)
	st := tb.Backends()[0].Stats
	st.Requests.Add(7)
	cfg := *tb.Config
	cfg.Pools = append([]config.Pool(nil), cfg.Pools...)
	cfg.Pools[0].Backends = cfg.Pools[0].Backends[:1]
	tb2, err := b.Apply(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := tb2.Backends()[0].Stats; got != st || got.Requests.Load() != 7 {
		t.Fatalf("the kept backend's stats were replaced on reload")
	}
	if tb2.Version != tb.Version+1 {
		t.Fatalf("got version %d; want %d", tb2.Version, tb.Version+1)
	}
}

func TestBackendID(t *testing.T) {
	f := func(pool, addr string, tls bool, want string) {
		t.Helper()
		if got := BackendID(pool, addr, tls); got != want {
			t.Fatalf("BackendID(%q, %q, %v) = %q; want %q", pool, addr, tls, got, want)
		}
	}
	f("web", "127.0.0.1:8081", false, "web-127.0.0.1_8081")
	f("web", "[::1]:443", true, "web-___1__443-tls")
	f("api", "svc.local:80", false, "api-svc.local_80")
}

func TestDiscoveredAndStandbyBackends(t *testing.T) {
	b, tb := testTable(t, 1)
	cfg := *tb.Config
	cfg.Pools = append([]config.Pool(nil), cfg.Pools...)
	cfg.Pools[0].Standby = []config.Backend{{URL: "http://127.0.0.1:9001", Weight: 1}, {URL: "http://127.0.0.1:9002", Weight: 1}}
	if _, err := b.Apply(&cfg); err != nil {
		t.Fatal(err)
	}
	ids := func(tb *Table) string {
		s := ""
		for _, be := range tb.Backends() {
			s += be.ID + " "
		}
		return s
	}
	tb, err := b.SetDiscovered("web", []config.Backend{{URL: "http://127.0.0.1:1"}, {URL: "http://127.0.0.1:7000"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(tb), "web-127.0.0.1_1 web-127.0.0.1_7000 "; got != want {
		t.Fatalf("got %q; want the configured backend once plus the discovered one", got)
	}
	if tb, _ = b.SetStandby("web", 5); ids(tb) != "web-127.0.0.1_1 web-127.0.0.1_7000 web-127.0.0.1_9001 web-127.0.0.1_9002 " {
		t.Fatalf("got %q; want both standby backends in (n clamped to 2)", ids(tb))
	}
	if n := b.Standby("web"); n != 2 {
		t.Fatalf("Standby after SetStandby(5) with 2 standby backends: %d; want 2", n)
	}
	// A reload that shortens the list: the autoscaler, stepping down from Standby, must
	// start from the one in rotation, not from the 5 once asked.
	short := cfg
	short.Pools = append([]config.Pool(nil), cfg.Pools...)
	short.Pools[0].Standby = cfg.Pools[0].Standby[:1]
	if _, err := b.Apply(&short); err != nil {
		t.Fatal(err)
	}
	if n := b.Standby("web"); n != 1 {
		t.Fatalf("Standby after a reload down to 1 standby backend: %d; want 1", n)
	}
	if _, err := b.Apply(&cfg); err != nil {
		t.Fatal(err)
	}
	if tb, _ = b.SetStandby("web", 0); ids(tb) != "web-127.0.0.1_1 web-127.0.0.1_7000 " {
		t.Fatalf("got %q; want the standby backends out again", ids(tb))
	}
	if tb, _ = b.SetDiscovered("web", nil); ids(tb) != "web-127.0.0.1_1 " {
		t.Fatalf("got %q; want only the configured backend", ids(tb))
	}
}
