// Package testconsul runs a real Consul agent for tests: `consul agent -dev` (a single
// server, state in memory) on random loopback ports, killed when the test ends.
//
// The agent is Consul v1.16.3, the last release under the MPL-2.0, which
// scripts/install-deps.sh builds from its module source into its tools directory. When it
// is not built the test is skipped — except under CI=true, where it fails.
//
// Services are registered through the agent's HTTP API, each with a TTL check whose status
// the test sets (Pass, Warn, Fail), so that health changes happen exactly when the test
// says. Every method must be called from the test's goroutine (they may call t.Fatal).
package testconsul

import (
	"bytes"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"go-loadbalancer/internal/logbuf"
	"go-loadbalancer/internal/testtool"
)

// Version is the Consul release the tests run; see scripts/install-deps.sh.
const Version = "1.16.3"

// ManagementToken is the ACL token of an agent started WithACL: it may do anything.
const ManagementToken = "5d3f4c1e-0000-4000-8000-00000000c0de"

// Agent is one Consul dev agent on fixed loopback ports. Kill stops it like a crash; Start
// runs it again on the same ports with empty state (a dev agent keeps nothing), so its
// Raft index starts low again — as after a restore or a new cluster.
type Agent struct {
	t     testing.TB
	bin   string
	ports [4]int // http, serf_lan, serf_wan, server
	acl   bool

	cmd    *exec.Cmd
	out    *logbuf.Buffer
	client *api.Client
}

// Option changes how an agent runs.
type Option func(*Agent)

// WithACL turns ACLs on with default policy deny; ManagementToken manages them.
func WithACL() Option { return func(a *Agent) { a.acl = true } }

// New returns an agent on free loopback ports without starting it. It is killed in
// t.Cleanup.
func New(t testing.TB, opts ...Option) *Agent {
	t.Helper()
	a := &Agent{t: t, bin: testtool.Built(t, "consul-"+Version+"/consul", "consul")}
	for _, o := range opts {
		o(a)
	}
	for i := range a.ports {
		a.ports[i] = testtool.ServicePort(t)
	}
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = a.Addr()
	cfg.Token = ""
	if a.acl {
		cfg.Token = ManagementToken
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.client = c
	t.Cleanup(a.Kill)
	return a
}

// Start returns a running agent, killed in t.Cleanup.
func Start(t testing.TB, opts ...Option) *Agent {
	t.Helper()
	a := New(t, opts...)
	a.Start()
	return a
}

// Addr returns the HTTP API's "127.0.0.1:<port>", as CONSUL_ADDR takes it.
func (a *Agent) Addr() string { return "127.0.0.1:" + strconv.Itoa(a.ports[0]) }

// Client returns a consul/api client of the agent (with ManagementToken under WithACL).
func (a *Agent) Client() *api.Client { return a.client }

// Start runs the agent and waits (up to 60 s: a loaded 2-core machine is slow) until it has
// a leader and its node is in the catalog, so that registrations are visible at once.
func (a *Agent) Start() {
	a.t.Helper()
	if a.cmd != nil {
		a.t.Fatalf("consul agent on %s is already running", a.Addr())
	}
	args := []string{"agent", "-dev", "-node", "golb-test", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(a.ports[0]), "-serf-lan-port", strconv.Itoa(a.ports[1]),
		"-serf-wan-port", strconv.Itoa(a.ports[2]), "-server-port", strconv.Itoa(a.ports[3]),
		"-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1", "-log-level", "warn",
		"-disable-host-node-id"}
	if a.acl {
		args = append(args, "-hcl", `acl { enabled = true default_policy = "deny" `+
			`tokens { initial_management = "`+ManagementToken+`" agent = "`+ManagementToken+`" } }`)
	}
	cmd := exec.Command(a.bin, args...)
	out := &logbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		a.t.Fatalf("cannot start consul: %v", err)
	}
	a.cmd, a.out = cmd, out
	deadline := time.Now().Add(60 * time.Second)
	for {
		nodes, _, err := a.client.Catalog().Nodes(nil)
		if err == nil && len(nodes) > 0 {
			return
		}
		if time.Now().After(deadline) {
			a.Kill()
			a.t.Fatalf("consul agent on %s did not come up: %v\n%s", a.Addr(), err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the agent at once (SIGKILL), like a crash, and waits for it to exit. Killing a
// stopped agent does nothing.
func (a *Agent) Kill() {
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Kill()
	_ = a.cmd.Wait()
	a.cmd = nil
}

// Service is one instance to register.
type Service struct {
	ID, Name         string
	Address          string // "" means the node's address (127.0.0.1)
	Port             int
	Tags             []string
	Meta             map[string]string
	Passing, Warning int // Weights; 0 and 0 leave them unset (Consul then uses 1 and 1)
}

// Register registers s with a passing TTL check, "service:<ID>".
func (a *Agent) Register(s Service) {
	a.t.Helper()
	r := &api.AgentServiceRegistration{ID: s.ID, Name: s.Name, Address: s.Address, Port: s.Port, Tags: s.Tags,
		Meta: s.Meta, Check: &api.AgentServiceCheck{TTL: "1h", Status: api.HealthPassing}}
	if s.Passing != 0 || s.Warning != 0 {
		r.Weights = &api.AgentWeights{Passing: s.Passing, Warning: s.Warning}
	}
	if err := a.client.Agent().ServiceRegister(r); err != nil {
		a.t.Fatalf("cannot register %s: %v", s.ID, err)
	}
}

// Deregister removes the instance with id.
func (a *Agent) Deregister(id string) {
	a.t.Helper()
	if err := a.client.Agent().ServiceDeregister(id); err != nil {
		a.t.Fatalf("cannot deregister %s: %v", id, err)
	}
}

// Pass, Warn and Fail set the status of instance id's check.
func (a *Agent) Pass(id string) { a.t.Helper(); a.setCheck(id, api.HealthPassing) }
func (a *Agent) Warn(id string) { a.t.Helper(); a.setCheck(id, api.HealthWarning) }
func (a *Agent) Fail(id string) { a.t.Helper(); a.setCheck(id, api.HealthCritical) }

func (a *Agent) setCheck(id, status string) {
	a.t.Helper()
	if err := a.client.Agent().UpdateTTL("service:"+id, "set by the test", status); err != nil {
		a.t.Fatalf("cannot set %s's check to %s: %v", id, status, err)
	}
}

// RegisterExternal registers s in the catalog on node (an external node, which the agent's
// anti-entropy leaves alone: it only syncs its own node), with no checks: passing.
// s.Address "" means the node's address, 127.0.0.2.
func (a *Agent) RegisterExternal(node string, s Service) {
	a.t.Helper()
	svc := &api.AgentService{ID: s.ID, Service: s.Name, Address: s.Address, Port: s.Port, Tags: s.Tags, Meta: s.Meta}
	if s.Passing != 0 || s.Warning != 0 {
		svc.Weights = api.AgentWeights{Passing: s.Passing, Warning: s.Warning}
	}
	if _, err := a.client.Catalog().Register(&api.CatalogRegistration{Node: node, Address: "127.0.0.2", Service: svc}, nil); err != nil {
		a.t.Fatalf("cannot register %s on node %s: %v", s.ID, node, err)
	}
}

// DeregisterExternal removes instance id of node from the catalog.
func (a *Agent) DeregisterExternal(node, id string) {
	a.t.Helper()
	if _, err := a.client.Catalog().Deregister(&api.CatalogDeregistration{Node: node, ServiceID: id}, nil); err != nil {
		a.t.Fatalf("cannot deregister %s of node %s: %v", id, node, err)
	}
}

// Snapshot saves the agent's state (Consul's snapshot API) for Restore.
func (a *Agent) Snapshot() []byte {
	a.t.Helper()
	r, _, err := a.client.Snapshot().Save(nil)
	if err != nil {
		a.t.Fatalf("cannot save a snapshot: %v", err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		a.t.Fatalf("cannot read the snapshot: %v", err)
	}
	return b
}

// Restore replaces the agent's state with a snapshot: its indexes go back to the
// snapshot's, and blocked queries are woken.
func (a *Agent) Restore(snap []byte) {
	a.t.Helper()
	if err := a.client.Snapshot().Restore(nil, bytes.NewReader(snap)); err != nil {
		a.t.Fatalf("cannot restore the snapshot: %v", err)
	}
}

// Index returns the X-Consul-Index of /v1/health/service/<service>: where a blocking query
// on it stands.
func (a *Agent) Index(service string) uint64 {
	a.t.Helper()
	_, meta, err := a.client.Health().Service(service, "", false, nil)
	if err != nil {
		a.t.Fatalf("cannot query %s: %v", service, err)
	}
	return meta.LastIndex
}

// Token creates an ACL token allowed rules (Consul's ACL rule language) and returns its
// secret. The agent must run WithACL.
func (a *Agent) Token(name, rules string) string {
	a.t.Helper()
	p, _, err := a.client.ACL().PolicyCreate(&api.ACLPolicy{Name: name, Rules: rules}, nil)
	if err != nil {
		a.t.Fatalf("cannot create ACL policy %s: %v", name, err)
	}
	tok, _, err := a.client.ACL().TokenCreate(&api.ACLToken{Description: name,
		Policies: []*api.ACLTokenPolicyLink{{ID: p.ID}}}, nil)
	if err != nil {
		a.t.Fatalf("cannot create ACL token %s: %v", name, err)
	}
	return tok.SecretID
}

// Log returns what the agent printed (at warn and above).
func (a *Agent) Log() string {
	if a.out == nil {
		return ""
	}
	return strings.TrimSpace(a.out.String())
}
