// Package metrics keeps the load balancer's metrics: per-backend handles the request path
// records into (Backend.Observe), the Prometheus text exposition (WritePrometheus), and a
// once-per-second sampler that turns counters into rates, error ratios, latency
// percentiles and a few minutes of history for the admin JSON and the dashboard.
//
// Handles belong to a backend ID, not to a table: the proxy Acquires one with each
// backend's upstream client and Releases it when the builder drops that client, so a
// reload never resets the counters of an unchanged backend. Label values are baked into
// metric names when a handle is created; nothing is formatted per request.
//
// Everything else is read at scrape or sample time from the current state.Table (health,
// drain, weight, in-flight, breaker state, retries), so it costs the request path nothing.
package metrics

import (
	"context"
	"sync"
	"time"

	vm "github.com/VictoriaMetrics/metrics"

	"go-loadbalancer/state"
)

// Options configure a Registry.
type Options struct {
	// Store holds the table in use, read at scrape and sample time (nothing before the
	// first table); required. It is the Store the state.Builder publishes to.
	Store *state.Store
	// Start is when the process started (uptime_s); zero means when New was called.
	Start time.Time
	// History is how many one-second samples are kept for sparklines; 0 means 300 (5 min).
	History int
}

// StickyCounts are the sticky-session lookups by result, as counted by the session store.
type StickyCounts struct {
	CacheHit uint64 `json:"cache_hit"` // answered from rueidis' client-side cache
	Redis    uint64 `json:"redis"`     // needed a Redis round trip
	Miss     uint64 `json:"miss"`      // no session: placed by the picker
	Fallback uint64 `json:"fallback"`  // Redis unreachable: cookie hint or consistent hash
}

// Registry is the set of metrics of one load balancer. Safe for concurrent use; the
// request path touches only the Backend handles and the exported counters.
type Registry struct {
	store   *state.Store
	start   time.Time
	history int

	// RateLimited counts requests refused by the rate limiter (lb_ratelimited_total).
	RateLimited *vm.Counter

	global *vm.Set // holds RateLimited

	mu      sync.Mutex
	handles map[string]*Backend // by backend ID
	fronts  map[frontKey]*Front // by pool and route; "", "" before a pool is chosen
	gauges  []counterFunc
	sticky  func() StickyCounts
	funcs   []counterFunc
	// breakers is each backend's recent breaker transitions (BreakerChanged).
	breakers breakerLog
	sampler  sampler
}

type counterFunc struct {
	name, help string
	f          func() uint64
}

// New returns a Registry reading tables from o.Store.
func New(o Options) *Registry {
	if o.Store == nil {
		panic("BUG: metrics.Options.Store is nil")
	}
	if o.Start.IsZero() {
		o.Start = time.Now()
	}
	if o.History <= 0 {
		o.History = 300
	}
	r := &Registry{
		store:   o.Store,
		start:   o.Start,
		history: o.History,
		global:  vm.NewSet(),
		handles: map[string]*Backend{},
		fronts:  map[frontKey]*Front{},
	}
	r.RateLimited = r.global.NewCounter("lb_ratelimited_total")
	r.sampler.init()
	return r
}

// Acquire returns the handle of backend id of pool, creating it on first use; call
// Release when the caller (the backend's upstream client) is dropped. Handles are
// counted: a reload that keeps a backend, or rebuilds its client, gets the same handle and
// so keeps its counters. Safe for concurrent use; not for the request path.
func (r *Registry) Acquire(id, pool string) *Backend {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.handles[id]
	if m == nil {
		m = newBackend(id, pool)
		r.handles[id] = m
	}
	m.refs++
	return m
}

// Release gives back a handle from Acquire; the last release drops it (its backend is
// gone from the configuration). A nil m is ignored.
func (r *Registry) Release(m *Backend) {
	if m == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.refs--; m.refs <= 0 && r.handles[m.ID] == m {
		delete(r.handles, m.ID)
	}
}

// SetSticky sets where lb_sticky_lookups_total is read from (the session store's own
// counters). Until it is called the counts are zero.
func (r *Registry) SetSticky(f func() StickyCounts) {
	r.mu.Lock()
	r.sticky = f
	r.mu.Unlock()
}

// CounterFunc exposes a counter that another package keeps itself (name must end in
// _total; it may carry labels: register a family's series one after another). f is called
// at scrape time and must be safe for concurrent use.
func (r *Registry) CounterFunc(name, help string, f func() uint64) {
	r.mu.Lock()
	r.funcs = append(r.funcs, counterFunc{name: name, help: help, f: f})
	r.mu.Unlock()
}

// GaugeFunc exposes a gauge that another package keeps itself, as CounterFunc does.
func (r *Registry) GaugeFunc(name, help string, f func() uint64) {
	r.mu.Lock()
	r.gauges = append(r.gauges, counterFunc{name: name, help: help, f: f})
	r.mu.Unlock()
}

// handle returns the handle of id, or nil. r.mu must be held.
func (r *Registry) handle(id string) *Backend { return r.handles[id] }

// Run samples the counters once per second until ctx is done.
func (r *Registry) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	r.Sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			r.Sample(now)
		}
	}
}

// Sample takes one sample at now: rates since the last sample, percentiles over the
// last window, one history point. Run calls it every second; tests may call it.
func (r *Registry) Sample(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.store.Load()
	r.sampler.sample(r, t, now)
}
