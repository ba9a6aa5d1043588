// Package state holds the load balancer's routing state: an immutable Table of pools and
// backends behind one atomic pointer (Store), and the per-backend runtime counters that
// survive table swaps (Stats).
//
// Every change — a config reload, a health change, a discovery update, an admin action —
// builds a whole new Table with a Builder and swaps it in with Store.Swap. The request path
// only ever does Store.Load and reads; it never takes the Builder's lock, nor any lock of
// this package. A Table and everything it
// points to, except the atomics in Stats, must not be modified after it is published.
//
// state imports no HTTP code: the per-backend upstream client is attached by the builder's
// caller (Hooks.Upstream), and state knows it only by the Upstream interface.
package state

import (
	"sync/atomic"
	"time"

	"go-loadbalancer/config"
	"go-loadbalancer/picker"
)

// Backend is one upstream server as of one Table. Its fields are read-only; the counters
// that must outlive the table are in Stats.
type Backend struct {
	ID     string // stable for the same pool and URL across reloads; safe in a URL path
	URL    string // as configured
	Addr   string // host:port dialled
	TLS    bool   // https backend
	Pool   string
	Region string
	Weight int // effective weight (config, or admin override)
	Index  int // position in Pool.Backends
	Slot   int // position in Table.Backends(): an index into the caller's per-table slices

	Drained bool // taken out by an operator: no new requests
	Healthy bool // as of this table (health changes build a new table)

	// Stats are the backend's runtime counters, shared by every table that has this ID.
	Stats *Stats

	// Upstream is the caller's client for this backend (Hooks.Upstream); nil without that
	// hook.
	Upstream Upstream
}

// Upstream is a backend's client, made by the builder's caller (the proxy's pooled
// connections to the backend). The request path reaches it through the caller's own typed
// data; the control plane needs only this of it.
type Upstream interface {
	// Check sends one health-check GET for path within timeout and returns the status
	// code. Safe for concurrent use.
	Check(path string, timeout time.Duration) (status int, err error)
	// Close is called once, when no table refers to the upstream any more (or the build
	// that made it failed). Requests of an older table may still be using it.
	Close()
}

// Pool is a named group of backends with one balancing algorithm.
type Pool struct {
	Index    int // position in Table.Pools
	Name     string
	Backends []*Backend
	Settings *config.Pool // the pool's configuration; read-only
	Stats    *PoolStats   // shared with every table that has a pool of this name

	leastInflight bool
	smooth        *picker.Smooth
	regions       map[string]*regionSet // backends by region, for geo.prefer_local
	load          func(i int) int64     // in-flight of backend i, built once per table
}

// Tried is the set of backends of one pool a request has already tried (bit i = Backends[i]).
// Backends past the 64th are not tracked: a retry may land on one of them twice.
type Tried uint64

// Has reports whether backend index i was tried.
func (t Tried) Has(i int) bool { return i < 64 && t&(1<<uint(i)) != 0 }

// With returns t with backend index i added.
func (t Tried) With(i int) Tried {
	if i >= 64 {
		return t
	}
	return t | 1<<uint(i)
}

// Pick returns the backend for a new request at now (UnixNano), with the breaker ticket
// the request must later pass to Breaker.Record, or nil when none can take it.
//
// Backends that are drained or in tried are never picked. Among the rest it prefers the
// usable ones (healthy, breaker ready). When none is usable the pool is in panic (Envoy's
// panic threshold): traffic spreads over every remaining backend regardless of health and
// breaker state, rather than failing everything. Safe for concurrent use; allocation-free.
func (p *Pool) Pick(tried Tried, now int64) (*Backend, Ticket) {
	bs := p.Backends
	for range 3 {
		i := p.pick(func(i int) bool {
			b := bs[i]
			return b.Healthy && !b.Drained && !tried.Has(i) && b.Stats.Breaker.Ready(now)
		})
		if i < 0 {
			break
		}
		if t := bs[i].Stats.Breaker.Acquire(now); t != TicketRejected {
			return bs[i], t
		}
		tried = tried.With(i) // lost a race for the last half-open probe slot
	}
	// Slow path: panic mode.
	i := p.pick(func(i int) bool { return !bs[i].Drained && !tried.Has(i) })
	if i < 0 {
		return nil, TicketRejected
	}
	return bs[i], TicketPanic
}

func (p *Pool) pick(avail func(i int) bool) int {
	if len(p.Backends) == 0 {
		return -1 // a discovered pool with nothing discovered yet
	}
	if p.leastInflight {
		return picker.LeastInflight(len(p.Backends), p.load, avail)
	}
	return p.smooth.Pick(avail)
}

// Panic reports whether no backend of the pool is usable (all unhealthy, open or drained).
func (p *Pool) Panic(now int64) bool {
	for _, b := range p.Backends {
		if b.Healthy && !b.Drained && b.Stats.Breaker.Ready(now) {
			return false
		}
	}
	return true
}

// Table is one immutable snapshot of the routing state.
type Table struct {
	Pools   []*Pool
	Config  *config.Config
	Version uint64    // increases by one with each table a Builder builds
	Built   time.Time // when the table was built

	// Geo maps clients to regions (config geo); never nil.
	Geo *Geo

	pools    map[string]*Pool
	backends map[string]*Backend
	routes   []Route
}

// DefaultPool is the pool requests go to when no route matches: the first one.
func (t *Table) DefaultPool() *Pool {
	if len(t.Pools) == 0 {
		return nil
	}
	return t.Pools[0]
}

// Pool returns the pool with the given name, or nil.
func (t *Table) Pool(name string) *Pool { return t.pools[name] }

// Backend returns the backend with the given ID, or nil.
func (t *Table) Backend(id string) *Backend { return t.backends[id] }

// Backends returns every backend of every pool, in pool order.
func (t *Table) Backends() []*Backend {
	var all []*Backend
	for _, p := range t.Pools {
		all = append(all, p.Backends...)
	}
	return all
}

// Store holds the current Table. The zero value holds no table (Load returns nil).
// Safe for concurrent use.
type Store struct {
	cur atomic.Pointer[Table]
}

// Load returns the current table, or nil before the first Swap.
func (s *Store) Load() *Table { return s.cur.Load() }

// Swap publishes t and returns the table it replaced (nil at first).
func (s *Store) Swap(t *Table) *Table { return s.cur.Swap(t) }
