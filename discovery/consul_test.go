package discovery

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/logbuf"
	"go-loadbalancer/internal/testtool"
	"go-loadbalancer/state"
)

// consulConfig parses a config with the given pools, as the binary does with
// CONSUL_ENABLED=true.
func consulConfig(t *testing.T, pools string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("lb.yaml", []byte("pools:\n"+pools))
	if err != nil {
		t.Fatalf("cannot parse test config: %v", err)
	}
	if errs := cfg.ApplyEnv(func(name string) string {
		if name == "CONSUL_ENABLED" {
			return "true"
		}
		return ""
	}); errs != nil {
		t.Fatal(errs)
	}
	if errs := cfg.Validate(); errs != nil {
		t.Fatal(errs)
	}
	return cfg
}

const webPool = `  - name: web
    backends: [{url: "http://127.0.0.1:1"}]
    discovery: { consul: { service: web } }
`

// startConsul builds cfg with a real Builder (hooks h) and watches fake for it.
// Logs are kept at info, the production default: what an operator would see.
func startConsul(t *testing.T, fake *fakeConsul, cfg *config.Config, h state.Hooks) (*state.Builder, *Consul, *logbuf.Buffer) {
	t.Helper()
	return watchConsul(t, fake.addr(), 2*time.Second, cfg, h)
}

// watchConsul builds cfg with a real Builder (hooks h) and watches the Consul agent at addr
// for it, with blocking queries of wait and retries 10-40 ms apart.
func watchConsul(t *testing.T, addr string, wait time.Duration, cfg *config.Config, h state.Hooks) (*state.Builder, *Consul, *logbuf.Buffer) {
	t.Helper()
	b := state.NewBuilder(nil, h)
	if _, err := b.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	logs := &logbuf.Buffer{}
	c, err := NewConsul(ConsulOptions{Builder: b, Log: zerolog.New(logs).Level(zerolog.InfoLevel), Addr: addr,
		WaitTime: wait, RetryMin: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return b, c, logs
}

// members renders pool's backends as "URL/weight/region ..." in table order.
func members(b *state.Builder, pool string) string {
	var s []string
	for _, be := range b.Store.Load().Pool(pool).Backends {
		s = append(s, be.URL+"/"+strconv.Itoa(be.Weight)+"/"+be.Region)
	}
	return strings.Join(s, " ")
}

// waitMembers waits, at most 10 s (a loaded CI machine is slow), for pool's backends to be want.
func waitMembers(t *testing.T, b *state.Builder, pool, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for got := members(b, pool); got != want; got = members(b, pool) {
		if time.Now().After(deadline) {
			t.Fatalf("pool %s: got backends %q; want %q within 10s", pool, got, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitRequests waits until the fake has answered n more requests than it had at from.
func waitRequests(t *testing.T, fake *fakeConsul, from, n int) {
	t.Helper()
	testtool.WaitFor(t, 5*time.Second, strconv.Itoa(n)+" more Consul queries", func() bool { return len(fake.seen()) >= from+n })
}

func TestConsulSkipsNoOpUpdates(t *testing.T) {
	t.Parallel()
	fake := startFakeConsul(t)
	in := fakeInstance{Node: "n1", NodeAddress: "10.0.0.1", ID: "web-1", Port: 8080}
	fake.set("web", in)
	b, _, _ := startConsul(t, fake, consulConfig(t, webPool), state.Hooks{})
	waitMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.0.0.1:8080/1/")
	version := b.Store.Load().Version

	// Writes that do not change the set: another index, a changed check output, the same
	// instance under another ID, another non-region meta key.
	changes := []func(){
		fake.touch,
		func() { in.Output = "HTTP GET /health: 200 OK"; fake.set("web", in) },
		func() { in.ID = "web-1b"; fake.set("web", in) },
		func() { in.Meta = map[string]string{"version": "2"}; fake.set("web", in) },
	}
	for _, change := range changes {
		change()
		index := fake.currentIndex()
		// The watcher has seen the new index once it asks for what comes after it.
		testtool.WaitFor(t, 5*time.Second, "a query past the new index", func() bool {
			return slices.ContainsFunc(fake.seen(), func(r fakeRequest) bool { return r.Index == index })
		})
	}
	if got := b.Store.Load().Version; got != version {
		t.Fatalf("got table version %d after no-op updates; want %d (no swap)", got, version)
	}
}

func TestConsulIndexGoingBackwardsResets(t *testing.T) {
	t.Parallel()
	fake := startFakeConsul(t)
	fake.restore(100, "web", fakeInstance{Node: "n1", NodeAddress: "10.0.0.1", ID: "web-1", Port: 8080})
	b, _, _ := startConsul(t, fake, consulConfig(t, webPool), state.Hooks{})
	waitMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.0.0.1:8080/1/")
	testtool.WaitFor(t, 5*time.Second, "a query blocking at index 100", func() bool {
		return slices.ContainsFunc(fake.seen(), func(r fakeRequest) bool { return r.Index == 100 })
	})

	// A snapshot restore: the blocked query answers with index 7. The watcher must start
	// over with a non-blocking query (index 0), then block from 7 — not from 100, where it
	// would miss every change until the index passed 100 again.
	from := len(fake.seen())
	fake.restore(7, "web", fakeInstance{Node: "n2", NodeAddress: "10.0.0.2", ID: "web-2", Port: 8080})
	waitMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.0.0.2:8080/1/")
	testtool.WaitFor(t, 5*time.Second, "queries at index 0 and then 7", func() bool {
		seen := fake.seen()[from:]
		i := slices.IndexFunc(seen, func(r fakeRequest) bool { return r.Index == 0 })
		return i >= 0 && slices.ContainsFunc(seen[i+1:], func(r fakeRequest) bool { return r.Index == 7 })
	})
	// Blocking from 7 sees the next change (index 8) at once.
	fake.set("web", fakeInstance{Node: "n3", NodeAddress: "10.0.0.3", ID: "web-3", Port: 8080})
	waitMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.0.0.3:8080/1/")
}

func TestConsulNextIndex(t *testing.T) {
	t.Parallel()
	f := func(prev, got, want uint64) {
		t.Helper()
		if n := nextIndex(prev, got); n != want {
			t.Fatalf("nextIndex(%d, %d) = %d; want %d", prev, got, n, want)
		}
	}
	f(0, 5, 5) // first answer
	f(5, 5, 5) // timeout: block again from the same index
	f(5, 9, 9) // a change
	f(9, 3, 0) // backwards: reset, the next query does not block
	f(0, 0, 1) // 0 would never block: clamp to 1
	f(1, 0, 0) // backwards wins; the next 0 is clamped
	f(0, 1, 1) // at least 1 is fine
	f(30, 30, 30)
}

func TestConsulBackoff(t *testing.T) {
	t.Parallel()
	const lo, hi = 100 * time.Millisecond, 1600 * time.Millisecond
	f := func(failures int, base time.Duration) {
		t.Helper()
		for range 50 {
			if d := backoff(failures, lo, hi); d < base/2 || d > base {
				t.Fatalf("backoff(%d) = %s; want in [%s, %s]", failures, d, base/2, base)
			}
		}
	}
	f(1, lo)
	f(2, 2*lo)
	f(4, 8*lo)
	f(5, hi)
	f(6, hi)
	f(1000, hi) // capped, no overflow
}

func TestConsulOutageKeepsBackendsAndRecovers(t *testing.T) {
	t.Parallel()
	f := func(t *testing.T, status int, hangUp bool) {
		t.Helper()
		fake := startFakeConsul(t)
		fake.set("web", fakeInstance{Node: "n1", NodeAddress: "10.0.0.1", ID: "web-1", Port: 8080})
		b, _, logs := startConsul(t, fake, consulConfig(t, webPool), state.Hooks{})
		waitMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.0.0.1:8080/1/")
		version := b.Store.Load().Version

		from := len(fake.seen())
		fake.fail(status, hangUp)
		testtool.WaitFor(t, 5*time.Second, "5 failed queries", func() bool {
			n := 0
			for _, r := range fake.seen()[from:] {
				if r.Failed {
					n++
				}
			}
			return n >= 5
		})
		if got := b.Store.Load().Version; got != version {
			t.Fatalf("got table version %d during the outage; want %d (last backends kept)", got, version)
		}
		if got := members(b, "web"); got != "http://127.0.0.1:1/1/ http://10.0.0.1:8080/1/" {
			t.Fatalf("got backends %q during the outage; want the last known ones", got)
		}
		if n := logs.Count("cannot query Consul"); n != 1 {
			t.Fatalf("got %d outage log lines after 5 failures; want 1", n)
		}
		// Every retry starts from index 0 (the Consul that answers may be a new one, its
		// index below ours: TestConsulAgentRestartedWithNewState). The query that failed
		// may appear twice with its index: net/http sends a GET again, once, when a reused
		// connection closes before any answer.
		seen := fake.seen()[from:]
		lead := 0
		for lead < len(seen) && lead < 2 && seen[lead].Index != 0 {
			lead++
		}
		for i, r := range seen[lead:] {
			if r.Index != 0 {
				t.Fatalf("retry %d after a failed query sent index %d; want 0 (queries since the outage: %+v)", i+1, r.Index, seen)
			}
		}

		// Consul comes back with another set.
		fake.set("web", fakeInstance{Node: "n2", NodeAddress: "10.0.0.2", ID: "web-2", Port: 8080})
		fake.fail(0, false)
		waitMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.0.0.2:8080/1/")
		if n := logs.Count("Consul reachable again"); n != 1 {
			t.Fatalf("got %d recovery log lines; want 1", n)
		}

		// A second outage is logged again, once.
		fake.fail(status, hangUp)
		from = len(fake.seen())
		waitRequests(t, fake, from, 3)
		if n := logs.Count("cannot query Consul"); n != 2 {
			t.Fatalf("got %d outage log lines after two outages; want 2", n)
		}
	}
	t.Run("500", func(t *testing.T) { f(t, 500, false) })
	t.Run("connection closed", func(t *testing.T) { f(t, 0, true) })
}

func TestConsulFollowsReloads(t *testing.T) {
	t.Parallel()
	fake := startFakeConsul(t)
	fake.set("web", fakeInstance{Node: "n1", NodeAddress: "10.0.0.1", ID: "web-1", Port: 8080, Tags: []string{"blue"}})
	fake.set("web2", fakeInstance{Node: "n2", NodeAddress: "10.0.0.2", ID: "web2-1", Port: 8080, Tags: []string{"green"}})
	b, c, _ := startConsul(t, fake, consulConfig(t, webPool), state.Hooks{})
	waitMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.0.0.1:8080/1/")

	// Another service: the watcher restarts on it.
	if _, err := b.Apply(consulConfig(t, strings.Replace(webPool, "service: web", "service: web2", 1))); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.0.0.2:8080/1/")
	// A tag nothing has: none discovered.
	if _, err := b.Apply(consulConfig(t, strings.Replace(webPool, "service: web", "service: web2, tag: blue", 1))); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, b, "web", "http://127.0.0.1:1/1/")
	if _, err := b.Apply(consulConfig(t, strings.Replace(webPool, "service: web", "service: web2, tag: green", 1))); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.0.0.2:8080/1/")
	// Discovery switched off: the discovered backends leave with it.
	c.mu.Lock()
	last := c.watches["web"]
	c.mu.Unlock()
	if last == nil {
		t.Fatal("no watcher for the pool while it has discovery on")
	}
	if _, err := b.Apply(consulConfig(t, "  - name: web\n    backends: [{url: \"http://127.0.0.1:1\"}]\n")); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, b, "web", "http://127.0.0.1:1/1/")
	// ... and stay out: no watcher is left for the pool. The last one is cancelled at the
	// swap but may still have a query on the wire: wait for it to end first.
	select {
	case <-last.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the pool's watcher did not end after discovery was switched off")
	}
	from := len(fake.seen())
	fake.set("web2", fakeInstance{Node: "n3", NodeAddress: "10.0.0.3", ID: "web2-3", Port: 8080, Tags: []string{"green"}})
	time.Sleep(50 * time.Millisecond) // an absence: give a stray watcher a chance to show
	if n := len(fake.seen()) - from; n != 0 {
		t.Fatalf("got %d Consul queries after discovery was switched off; want 0", n)
	}
	if got := members(b, "web"); got != "http://127.0.0.1:1/1/" {
		t.Fatalf("got backends %q; want only the configured one", got)
	}
}
