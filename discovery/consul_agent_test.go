package discovery

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"go-loadbalancer/internal/testconsul"
	"go-loadbalancer/internal/testtool"
	"go-loadbalancer/proxy"
	"go-loadbalancer/state"
)

// These tests run against a real Consul agent (internal/testconsul). The blocking queries
// wait up to longWait, so a change that shows within agentDeadline was delivered by the
// blocking query it woke, not by a query that timed out.
const (
	longWait      = 10 * time.Minute
	agentDeadline = 20 * time.Second
)

// waitAgentMembers waits, at most agentDeadline, for pool's backends to be want.
func waitAgentMembers(t *testing.T, b *state.Builder, pool, want string) {
	t.Helper()
	deadline := time.Now().Add(agentDeadline)
	for got := members(b, pool); got != want; got = members(b, pool) {
		if time.Now().After(deadline) {
			t.Fatalf("pool %s: got backends %q; want %q within %v", pool, got, want, agentDeadline)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConsulAgentDiscoversWeightsTagsRegions(t *testing.T) {
	t.Parallel()
	agent := testconsul.Start(t)
	agent.Register(testconsul.Service{ID: "web-1", Name: "web", Port: 8081})
	agent.Register(testconsul.Service{ID: "web-2", Name: "web", Address: "10.1.0.2", Port: 9000, Passing: 5, Warning: 2,
		Meta: map[string]string{"region": "eu", "version": "2"}, Tags: []string{"blue"}})
	agent.Register(testconsul.Service{ID: "web-3", Name: "web", Address: "10.1.0.3", Port: 9000, Passing: 3, Warning: 0,
		Tags: []string{"Blue", "canary"}})
	agent.Register(testconsul.Service{ID: "other-1", Name: "other", Address: "10.2.0.1", Port: 1})
	cfg := consulConfig(t, webPool+`  - name: blue
    discovery: { consul: { service: web, tag: blue } }
  - name: loose
    discovery: { consul: { service: web, passing_only: false } }
`)
	b, _, _ := watchConsul(t, agent.Addr(), longWait, cfg, state.Hooks{})
	// Configured first, then discovered, sorted; the node's address (the agent binds
	// 127.0.0.1) stands in for a missing service address; Weights.Passing is the weight;
	// Meta.region the region. Tags match case-insensitively, as in Consul.
	waitAgentMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.1.0.2:9000/5/eu http://10.1.0.3:9000/3/ http://127.0.0.1:8081/1/")
	waitAgentMembers(t, b, "blue", "http://10.1.0.2:9000/5/eu http://10.1.0.3:9000/3/")
	waitAgentMembers(t, b, "loose", "http://10.1.0.2:9000/5/eu http://10.1.0.3:9000/3/ http://127.0.0.1:8081/1/")

	// At warning: out of the passing-only pools; in the loose pool with Weights.Warning, or
	// left out when that is 0.
	agent.Warn("web-2")
	agent.Warn("web-3")
	waitAgentMembers(t, b, "web", "http://127.0.0.1:1/1/ http://127.0.0.1:8081/1/")
	waitAgentMembers(t, b, "blue", "")
	waitAgentMembers(t, b, "loose", "http://10.1.0.2:9000/2/eu http://127.0.0.1:8081/1/")
	agent.Pass("web-2")
	agent.Pass("web-3")
	waitAgentMembers(t, b, "blue", "http://10.1.0.2:9000/5/eu http://10.1.0.3:9000/3/")
	waitAgentMembers(t, b, "loose", "http://10.1.0.2:9000/5/eu http://10.1.0.3:9000/3/ http://127.0.0.1:8081/1/")

	// Re-registered with new weights and region.
	agent.Register(testconsul.Service{ID: "web-2", Name: "web", Address: "10.1.0.2", Port: 9000, Passing: 7,
		Meta: map[string]string{"region": "us"}, Tags: []string{"blue"}})
	waitAgentMembers(t, b, "blue", "http://10.1.0.2:9000/7/us http://10.1.0.3:9000/3/")
	// Deregistered.
	agent.Deregister("web-3")
	waitAgentMembers(t, b, "blue", "http://10.1.0.2:9000/7/us")
	waitAgentMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.1.0.2:9000/7/us http://127.0.0.1:8081/1/")
}

// A failing check takes the instance out at once: the watcher's blocking query (which
// would otherwise wait longWait) wakes on the change.
func TestConsulAgentFailingCheckRemovesInstance(t *testing.T) {
	t.Parallel()
	agent := testconsul.Start(t)
	agent.Register(testconsul.Service{ID: "web-1", Name: "web", Address: "10.0.0.1", Port: 80})
	agent.Register(testconsul.Service{ID: "web-2", Name: "web", Address: "10.0.0.2", Port: 80})
	b, _, _ := watchConsul(t, agent.Addr(), longWait, consulConfig(t, webPool), state.Hooks{})
	waitAgentMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.0.0.1:80/1/ http://10.0.0.2:80/1/")
	version := b.Store.Load().Version

	agent.Fail("web-2")
	waitAgentMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.0.0.1:80/1/")
	if got := b.Store.Load().Version; got != version+1 {
		t.Fatalf("got table version %d; want %d: one swap for one change", got, version+1)
	}
	agent.Pass("web-2")
	waitAgentMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.0.0.1:80/1/ http://10.0.0.2:80/1/")
}

// The defect a fake with an ever-rising index cannot show: Consul stopped and started again
// (a dev agent, or a cluster rebuilt) counts its index from low again. A watcher that kept
// its old index after the failed queries would send it to the new agent, whose index is
// lower, and block until the wait ran out — minutes of a deregistered backend taking
// traffic and a new one getting none. After any error the next query starts from index 0,
// as Consul's api/watch does.
func TestConsulAgentRestartedWithNewState(t *testing.T) {
	t.Parallel()
	agent := testconsul.Start(t)
	agent.Register(testconsul.Service{ID: "web-1", Name: "web", Address: "10.0.0.1", Port: 80})
	// Move web's index well past where a new agent starts.
	for i := range 60 {
		agent.Register(testconsul.Service{ID: "web-2", Name: "web", Address: "10.0.0.2", Port: 80, Passing: i + 1})
	}
	b, _, logs := watchConsul(t, agent.Addr(), longWait, consulConfig(t, webPool), state.Hooks{})
	waitAgentMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.0.0.1:80/1/ http://10.0.0.2:80/60/")
	old := agent.Index("web")

	agent.Kill()
	testtool.WaitFor(t, agentDeadline, "the watcher to notice the agent is gone", func() bool {
		return strings.Contains(logs.String(), "cannot query Consul")
	})
	agent.Start()
	agent.Register(testconsul.Service{ID: "web-3", Name: "web", Address: "10.0.0.3", Port: 80})
	if now := agent.Index("web"); now >= old {
		t.Fatalf("the restarted agent's index %d is not below the old %d: the test proves nothing", now, old)
	}
	// The old instances are gone, the new one is in, without waiting out longWait.
	waitAgentMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.0.0.3:80/1/")
	if !strings.Contains(logs.String(), "Consul reachable again") {
		t.Fatalf("the recovery was not logged:\n%s", logs)
	}
}

// With ACLs on (default deny), the watcher sends Consul's own CONSUL_HTTP_TOKEN: a token
// that may read the service discovers it, an unknown one is refused (and retried), no
// token sees nothing.
func TestConsulAgentACLToken(t *testing.T) {
	agent := testconsul.Start(t, testconsul.WithACL())
	agent.Register(testconsul.Service{ID: "web-1", Name: "web", Address: "10.0.0.1", Port: 80})
	reader := agent.Token("web-reader", `service "web" { policy = "read" }
node_prefix "" { policy = "read" }`)

	t.Setenv("CONSUL_HTTP_TOKEN", reader)
	b, _, _ := watchConsul(t, agent.Addr(), longWait, consulConfig(t, webPool), state.Hooks{})
	waitAgentMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.0.0.1:80/1/")

	t.Setenv("CONSUL_HTTP_TOKEN", "00000000-0000-4000-8000-000000000bad")
	b, _, logs := watchConsul(t, agent.Addr(), longWait, consulConfig(t, webPool), state.Hooks{})
	testtool.WaitFor(t, agentDeadline, "the refused token to be logged", func() bool {
		return strings.Contains(logs.String(), "ACL not found")
	})
	if got := members(b, "web"); got != "http://127.0.0.1:1/1/" {
		t.Fatalf("got backends %q with an unknown token; want only the configured one", got)
	}

	// No token: Consul answers, with every instance filtered out by the ACLs.
	t.Setenv("CONSUL_HTTP_TOKEN", "")
	b, _, logs = watchConsul(t, agent.Addr(), longWait, consulConfig(t, webPool), state.Hooks{})
	testtool.WaitFor(t, agentDeadline, "the first answer", func() bool {
		return strings.Contains(logs.String(), "Consul service backends changed")
	})
	if got := members(b, "web"); got != "http://127.0.0.1:1/1/" {
		t.Fatalf("got backends %q with no token; want only the configured one", got)
	}
}

// End to end: a real backend, registered in Consul only, receives proxied traffic through a
// pool that has no configured backends.
func TestConsulAgentEndToEnd(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("from consul backend") }}
	go func() { _ = backend.Serve(ln) }()
	t.Cleanup(func() { _ = backend.Shutdown() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	portN, _ := strconv.Atoi(port)

	agent := testconsul.Start(t)
	tables := proxy.NewTables(nil, nil)
	b, _, logs := watchConsul(t, agent.Addr(), longWait, consulConfig(t, `  - name: web
    discovery: { consul: { service: web } }
    timeouts: { connect: 500ms, response: 2s }
`), tables.Hooks())

	px := proxy.New(proxy.Options{Tables: tables, Log: zerolog.Nop()})
	srv := px.NewServer(b.Store.Load().Config.Server, zerolog.Nop())
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(pln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	get := func() (int, string) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://" + pln.Addr().String() + "/hello")
		if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
			t.Fatalf("GET through the proxy: %v", err)
		}
		return resp.StatusCode(), string(resp.Body())
	}

	// Nothing registered yet: the empty pool answers 503.
	testtool.WaitFor(t, agentDeadline, "the first Consul answer", func() bool {
		return strings.Contains(logs.String(), "Consul service backends changed")
	})
	if code, _ := get(); code != fasthttp.StatusServiceUnavailable {
		t.Fatalf("got status %d with nothing discovered; want 503", code)
	}
	agent.Register(testconsul.Service{ID: "web-1", Name: "web", Port: portN})
	waitAgentMembers(t, b, "web", "http://"+ln.Addr().String()+"/1/")
	for range 5 {
		if code, body := get(); code != 200 || body != "from consul backend" {
			t.Fatalf("got %d %q; want 200 from the discovered backend", code, body)
		}
	}
	// Its check fails: out of the pool, 503 again.
	agent.Fail("web-1")
	waitAgentMembers(t, b, "web", "")
	if code, _ := get(); code != fasthttp.StatusServiceUnavailable {
		t.Fatalf("got status %d after the only instance failed; want 503", code)
	}
}

// A snapshot restore puts back an older state with its lower index. Consul 1.16.3 does
// not wake a blocked HTTP query for it (the fake's restore does, as Consul's server-side
// blocking query does for an abandoned state store; TestConsulIndexGoingBackwardsResets
// covers that): the query answers the
// restored state only when its wait runs out, and the watcher applies it then. So the wait
// bounds how long a restore goes unseen: 3 s here, 1 minute by default.
func TestConsulAgentSnapshotRestore(t *testing.T) {
	t.Parallel()
	agent := testconsul.Start(t)
	agent.RegisterExternal("ext-1", testconsul.Service{ID: "web-1", Name: "web", Address: "10.0.0.1", Port: 80})
	snap := agent.Snapshot()
	for i := range 60 {
		agent.RegisterExternal("ext-2", testconsul.Service{ID: "web-2", Name: "web", Address: "10.0.0.2", Port: 80, Passing: i + 1})
	}
	agent.DeregisterExternal("ext-1", "web-1")
	b, _, _ := watchConsul(t, agent.Addr(), 3*time.Second, consulConfig(t, webPool), state.Hooks{})
	waitAgentMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.0.0.2:80/60/")
	old := agent.Index("web")

	agent.Restore(snap)
	if now := agent.Index("web"); now >= old {
		t.Fatalf("the restored index %d is not below the old %d: the test proves nothing", now, old)
	}
	waitAgentMembers(t, b, "web", "http://127.0.0.1:1/1/ http://10.0.0.1:80/1/")
}
