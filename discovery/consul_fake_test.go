package discovery

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go-loadbalancer/internal/testtool"
)

// Discovery is tested against a real Consul agent (consul_agent_test.go). fakeConsul is
// kept for what a real agent cannot do on demand: answer every query with an error status
// or a closed connection, send a restored snapshot's lower index to a blocked query, and
// show the test each query the watcher sent (its index, wait, passing and tag parameters),
// which is how the no-op, reload and outage tests see what went over the wire. It is an
// httptest server that implements, faithfully to Consul's documented HTTP API, the one
// endpoint the watcher uses — GET /v1/health/service/:service
// (https://developer.hashicorp.com/consul/api-docs/health#list-service-instances-for-service)
// with blocking queries (https://developer.hashicorp.com/consul/api-docs/features/blocking):
//
//   - X-Consul-Index on every answer (never 0: Consul's setIndex raises 0 to 1), plus
//     X-Consul-KnownLeader and X-Consul-LastContact, which consul/api parses;
//   - ?index=N blocks while the index is <= N, until a change or ?wait elapses (Go duration,
//     default 5m, at most 10m, plus up to wait/16 of jitter); a timeout answers 200 with the
//     unchanged result and index;
//   - ?passing (empty or a boolean) keeps only instances whose every check — the node's
//     serfHealth too — is passing; each ?tag=T (repeatable) keeps only instances with tag T,
//     compared case-insensitively as Consul's state store does;
//   - an unknown service is 200 with [], not 404;
//   - the body is Consul's CheckServiceNode JSON: [{Node, Service, Checks}].
//
// Test controls: set (register/replace a service's instances: the index moves), touch (a
// write that changes nothing visible: the index moves, the result does not), restore (a
// snapshot restore: blocked queries wake and the index may go backwards), fail (answer every
// request with a status, or close the connection, as a Consul that is down does).
type fakeConsul struct {
	srv  *httptest.Server
	quit chan struct{}

	mu       sync.Mutex
	index    uint64
	services map[string][]fakeInstance
	changed  chan struct{} // closed and replaced at every change
	abandon  chan struct{} // closed and replaced at a snapshot restore
	status   int           // non-zero: answer every request with it
	hangUp   bool          // close every connection without an answer
	requests []fakeRequest
}

// fakeInstance is one registered service instance and its health.
type fakeInstance struct {
	Node, NodeAddress string
	ID, Address       string // Address "" means the node's address
	Port              int
	Tags              []string
	Passing, Warning  int // Weights; 0 means unset (Consul then uses 1 and 1)
	Meta              map[string]string
	Status            string // the service check's status; "" means passing
	Output            string // the service check's output
}

// fakeRequest is what the fake saw of one request, recorded when it arrived.
type fakeRequest struct {
	Service string
	Index   uint64
	Wait    string
	Passing bool
	Tags    []string
	Failed  bool // answered with an error or a closed connection
}

func startFakeConsul(t *testing.T) *fakeConsul {
	t.Helper()
	f := &fakeConsul{quit: make(chan struct{}), index: 1, services: map[string][]fakeInstance{},
		changed: make(chan struct{}), abandon: make(chan struct{})}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		close(f.quit) // wake blocked queries, or Close would wait for them
		f.srv.Close()
	})
	return f
}

// bump moves the index on and wakes blocked queries. f.mu must be held.
func (f *fakeConsul) bump(to uint64) {
	f.index = to
	close(f.changed)
	f.changed = make(chan struct{})
}

// set registers service's instances, replacing the previous ones.
func (f *fakeConsul) set(service string, instances ...fakeInstance) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.services[service] = instances
	f.bump(f.index + 1)
}

// touch moves the index without changing any result.
func (f *fakeConsul) touch() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bump(f.index + 1)
}

// restore replaces service's instances and sets the index to index, as a snapshot restore
// does; like Consul's abandoned state store, it wakes every blocked query, which answers
// with the new (possibly lower) index.
func (f *fakeConsul) restore(index uint64, service string, instances ...fakeInstance) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.services[service] = instances
	f.bump(index)
	close(f.abandon)
	f.abandon = make(chan struct{})
}

// fail makes every request get status (0: answer normally again), or a closed connection
// with hangUp. Blocked queries are woken to fail too.
func (f *fakeConsul) fail(status int, hangUp bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.hangUp = status, hangUp
	close(f.changed)
	f.changed = make(chan struct{})
}

// currentIndex is the index the fake is at.
func (f *fakeConsul) currentIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.index
}

// seen returns a copy of the requests so far.
func (f *fakeConsul) seen() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *fakeConsul) serve(w http.ResponseWriter, r *http.Request) {
	service, ok := strings.CutPrefix(r.URL.Path, "/v1/health/service/")
	if !ok || service == "" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	req := fakeRequest{Service: service, Wait: q.Get("wait"), Tags: q["tag"]}
	var err error
	if s := q.Get("index"); s != "" {
		if req.Index, err = strconv.ParseUint(s, 10, 64); err != nil {
			http.Error(w, "Invalid index", http.StatusBadRequest)
			return
		}
	}
	wait := 5 * time.Minute
	if req.Wait != "" {
		if wait, err = time.ParseDuration(req.Wait); err != nil {
			http.Error(w, "Invalid wait time", http.StatusBadRequest)
			return
		}
		wait = min(wait, 10*time.Minute)
	}
	if _, ok := q["passing"]; ok {
		req.Passing = true
		if s := q.Get("passing"); s != "" {
			if req.Passing, err = strconv.ParseBool(s); err != nil {
				http.Error(w, "Invalid value for ?passing", http.StatusBadRequest)
				return
			}
		}
	}

	timeout := time.NewTimer(wait + rand.N(wait/16+1))
	defer timeout.Stop()
	f.mu.Lock()
	abandon := f.abandon
	seq := len(f.requests)
	f.requests = append(f.requests, req) // at arrival: a test can tell a query is blocking
	for done := false; !done && req.Index > 0 && f.index <= req.Index && f.status == 0 && !f.hangUp; {
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case <-timeout.C:
			done = true // the wait elapsed: answer with the unchanged result
		case <-r.Context().Done():
			done = true
		case <-f.quit:
			done = true
		case <-abandon:
			done = true
		}
		f.mu.Lock()
	}
	status, hangUp := f.status, f.hangUp
	f.requests[seq].Failed = status != 0 || hangUp
	index := f.index
	body := fakeEntries(f.services[service], req.Passing, req.Tags)
	f.mu.Unlock()

	switch {
	case hangUp:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	case status != 0:
		// Consul's errors are plain text, e.g. "No cluster leader".
		http.Error(w, "No cluster leader", status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Consul-Index", strconv.FormatUint(max(index, 1), 10))
	w.Header().Set("X-Consul-KnownLeader", "true")
	w.Header().Set("X-Consul-LastContact", "0")
	_ = json.NewEncoder(w).Encode(body)
}

// Consul's JSON for /v1/health/service (structs.CheckServiceNode), field for field.
type (
	fakeEntry struct {
		Node    fakeNode
		Service fakeService
		Checks  []fakeCheck
	}
	fakeNode struct {
		ID              string
		Node            string
		Address         string
		Datacenter      string
		TaggedAddresses map[string]string
		Meta            map[string]string
		CreateIndex     uint64
		ModifyIndex     uint64
	}
	fakeService struct {
		Kind              string
		ID                string
		Service           string
		Tags              []string
		Address           string
		TaggedAddresses   map[string]any
		Meta              map[string]string
		Port              int
		Weights           struct{ Passing, Warning int }
		EnableTagOverride bool
		Proxy             struct{}
		Connect           struct{}
		Namespace         string
		CreateIndex       uint64
		ModifyIndex       uint64
	}
	fakeCheck struct {
		Node        string
		CheckID     string
		Name        string
		Status      string
		Notes       string
		Output      string
		ServiceID   string
		ServiceName string
		ServiceTags []string
		Type        string
		Namespace   string
		CreateIndex uint64
		ModifyIndex uint64
	}
)

// fakeEntries renders instances as Consul does, filtered by ?passing and ?tag.
func fakeEntries(instances []fakeInstance, passingOnly bool, tags []string) []fakeEntry {
	out := []fakeEntry{} // "[]", never "null"
	for i, in := range instances {
		status := cmp.Or(in.Status, "passing")
		if passingOnly && status != "passing" {
			continue
		}
		if !hasTags(in.Tags, tags) {
			continue
		}
		e := fakeEntry{
			Node: fakeNode{ID: fmt.Sprintf("00000000-0000-0000-0000-%012d", i), Node: in.Node, Address: in.NodeAddress,
				Datacenter: "dc1", TaggedAddresses: map[string]string{"lan": in.NodeAddress, "wan": in.NodeAddress},
				Meta: map[string]string{"consul-network-segment": ""}, CreateIndex: 5, ModifyIndex: 5},
			Service: fakeService{ID: in.ID, Service: in.ID, Tags: orEmpty(in.Tags, []string{}), Address: in.Address,
				Meta: orEmpty(in.Meta, map[string]string{}), Port: in.Port, Namespace: "default", CreateIndex: 7, ModifyIndex: 7},
			Checks: []fakeCheck{
				{Node: in.Node, CheckID: "serfHealth", Name: "Serf Health Status", Status: "passing",
					Output: "Agent alive and reachable", ServiceTags: []string{}, Type: "", Namespace: "default", CreateIndex: 5, ModifyIndex: 5},
				{Node: in.Node, CheckID: "service:" + in.ID, Name: "Service '" + in.ID + "' check", Status: status,
					Output: in.Output, ServiceID: in.ID, ServiceName: in.ID, ServiceTags: orEmpty(in.Tags, []string{}),
					Type: "http", Namespace: "default", CreateIndex: 7, ModifyIndex: 7},
			},
		}
		// Consul stores the weights it was given, defaulting each unset one to 1.
		e.Service.Weights.Passing, e.Service.Weights.Warning = cmp.Or(in.Passing, 1), cmp.Or(in.Warning, 1)
		out = append(out, e)
	}
	return out
}

func hasTags(have, want []string) bool {
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h string) bool { return strings.EqualFold(h, w) }) {
			return false
		}
	}
	return true
}

// orEmpty is v, or an empty (not nil) value: Consul encodes [] and {}, never null.
func orEmpty[T ~[]string | ~map[string]string](v, empty T) T {
	if v == nil {
		return empty
	}
	return v
}

// addr is the fake's address as CONSUL_ADDR would give it.
func (f *fakeConsul) addr() string {
	u, _ := url.Parse(f.srv.URL)
	return u.Host
}

// TestMain runs up to 8 tests at once (testtool.Main): they wait on Consul agents and
// blocking queries. TestConsulAgentACLToken sets CONSUL_HTTP_TOKEN, so it is not parallel.
func TestMain(m *testing.M) { os.Exit(testtool.Main(m, 8)) }
