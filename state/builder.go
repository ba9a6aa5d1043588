package state

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go-loadbalancer/config"
	"go-loadbalancer/geoip"
	"go-loadbalancer/picker"
)

// Hooks connect a Builder to the code that owns the upstream clients.
type Hooks struct {
	// Upstream returns the client for backend b of pool p. prev is what Upstream returned
	// for the same ID in the previous table (nil for a new backend); returning prev keeps
	// its pooled connections. The builder closes each client no table refers to any more.
	// Called with the builder's lock held.
	Upstream func(b *Backend, p *config.Pool, prev Upstream) (Upstream, error)
	// Table prepares the caller's own data for a fully built table t (the proxy's settings
	// and clients for it) and returns how to publish it; an error keeps the running table.
	// publish is called with the builder's lock held, when t is swapped into Store, so
	// the caller's data is published in the order of the tables; it must only store a
	// pointer.
	Table func(t *Table) (publish func(), err error)
	// BreakerChange, if set, is called once for each breaker transition.
	BreakerChange func(b *Backend, from, to BreakerState, reason string)
}

// ErrUnknownBackend is returned by the runtime controls for an ID that no pool has.
var ErrUnknownBackend = errors.New("unknown backend id")

// Builder builds Tables from a config plus runtime overrides (drain, weight, health) and
// publishes them to its Store. Every method is safe for concurrent use; builds are
// serialised by a lock that the request path never takes.
type Builder struct {
	Store Store

	mu        sync.Mutex
	hooks     Hooks
	cfg       *config.Config
	version   uint64
	stats     map[string]*Stats
	poolStats map[string]*PoolStats
	watchers  []func(*Table)
	geoip     geoip.Cache
	upstreams map[string]Upstream
	drained   map[string]bool
	weights   map[string]int
	down      map[string]bool
	found     map[string][]config.Backend // discovered backends, by pool
	standby   map[string]int              // standby backends brought in, by pool
	now       func() time.Time
}

// NewBuilder returns a Builder with an empty Store.
func NewBuilder(h Hooks) *Builder {
	return &Builder{
		hooks:     h,
		stats:     map[string]*Stats{},
		poolStats: map[string]*PoolStats{},
		upstreams: map[string]Upstream{},
		drained:   map[string]bool{},
		weights:   map[string]int{},
		down:      map[string]bool{},
		found:     map[string][]config.Backend{},
		standby:   map[string]int{},
		now:       time.Now,
	}
}

// OnSwap registers f to be called with every table the builder publishes from now on, and
// at once with the current one if there is one. f runs with the builder's lock held: it
// must be quick and must not call back into the Builder (start a goroutine for that).
func (b *Builder) OnSwap(f func(*Table)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.watchers = append(b.watchers, f)
	if t := b.Store.Load(); t != nil {
		f(t)
	}
}

// Apply builds a table from cfg (which must be valid) with the current overrides and swaps
// it in. On error the running table is kept.
func (b *Builder) Apply(cfg *config.Config) (*Table, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rebuild(cfg)
}

// Drain takes backend id out of rotation (in-flight requests finish) and swaps a new table.
func (b *Builder) Drain(id string) (*Table, error) {
	return b.override(id, func() { b.drained[id] = true })
}

// Enable undoes Drain.
func (b *Builder) Enable(id string) (*Table, error) {
	return b.override(id, func() { delete(b.drained, id) })
}

// SetWeight overrides backend id's configured weight (1..10000) until the next reload that
// drops the backend.
func (b *Builder) SetWeight(id string, w int) (*Table, error) {
	if w < 1 || w > 10000 {
		return nil, fmt.Errorf("cannot set weight %d: must be between 1 and 10000", w)
	}
	return b.override(id, func() { b.weights[id] = w })
}

// SetHealthy records a health-check verdict for backend id; a change swaps a new table.
func (b *Builder) SetHealthy(id string, healthy bool) (*Table, error) {
	return b.override(id, func() {
		if healthy {
			delete(b.down, id)
		} else {
			b.down[id] = true
		}
	})
}

// SetDiscovered replaces the backends service discovery found for pool (added to the
// configured ones; one already configured is not added twice) and swaps a new table.
func (b *Builder) SetDiscovered(pool string, backends []config.Backend) (*Table, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cfg == nil {
		return nil, fmt.Errorf("cannot set discovered backends of pool %q: no configuration yet", pool)
	}
	b.found[pool] = append([]config.Backend(nil), backends...)
	return b.rebuild(b.cfg)
}

// SetStandby brings the first n of pool's standby backends into rotation (autoscaling)
// and swaps a new table; n is clamped to the standby list.
func (b *Builder) SetStandby(pool string, n int) (*Table, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cfg == nil {
		return nil, fmt.Errorf("cannot scale pool %q: no configuration yet", pool)
	}
	b.standby[pool] = max(n, 0)
	return b.rebuild(b.cfg)
}

// Standby returns how many standby backends of pool are in rotation.
func (b *Builder) Standby(pool string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.standby[pool]
}

// members is pool pc's backends in this build: configured, then discovered, then the
// standby ones brought in, each address once.
func (b *Builder) members(pc *config.Pool) []config.Backend {
	found, n := b.found[pc.Name], min(b.standby[pc.Name], len(pc.Standby))
	if len(found) == 0 && n == 0 {
		return pc.Backends
	}
	all := append([]config.Backend(nil), pc.Backends...)
	seen := make(map[string]bool, len(all))
	for _, bc := range all {
		addr, tls := bc.Addr()
		seen[BackendID(pc.Name, addr, tls)] = true
	}
	for _, bc := range append(append([]config.Backend(nil), found...), pc.Standby[:n]...) {
		addr, tls := bc.Addr()
		if id := BackendID(pc.Name, addr, tls); !seen[id] {
			seen[id] = true
			if bc.Weight == 0 {
				bc.Weight = 1
			}
			all = append(all, bc)
		}
	}
	return all
}

func (b *Builder) override(id string, set func()) (*Table, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.Store.Load()
	if t == nil || t.Backend(id) == nil {
		return nil, fmt.Errorf("cannot change backend %q: %w", id, ErrUnknownBackend)
	}
	set()
	return b.rebuild(b.cfg)
}

func (b *Builder) rebuild(cfg *config.Config) (*Table, error) {
	t := &Table{
		Config:   cfg,
		Version:  b.version + 1,
		Built:    b.now(),
		pools:    map[string]*Pool{},
		backends: map[string]*Backend{},
	}
	ups := make(map[string]Upstream, len(b.upstreams))
	var configure []func()
	committed := false
	defer func() {
		if committed {
			return
		}
		// A failed build closes the clients it made (and so their metric handles).
		for id, u := range ups {
			if b.upstreams[id] != u {
				u.Close()
			}
		}
	}()
	for pi := range cfg.Pools {
		pc := &cfg.Pools[pi]
		p := &Pool{Index: pi, Name: pc.Name, Settings: pc, leastInflight: pc.Balance == config.BalanceLeastInflight}
		p.Stats = b.poolStats[pc.Name]
		if p.Stats == nil {
			p.Stats = &PoolStats{}
			p.Stats.Budget.Init(RetryBudgetWindow)
		}
		members := b.members(pc)
		weights := make([]int, 0, len(members))
		for i, bc := range members {
			addr, tls := bc.Addr()
			be := &Backend{
				ID:      BackendID(pc.Name, addr, tls),
				URL:     bc.URL,
				Addr:    addr,
				TLS:     tls,
				Pool:    pc.Name,
				Region:  bc.Region,
				Weight:  bc.Weight,
				Index:   i,
				Slot:    len(t.backends),
				Healthy: true,
			}
			if _, dup := t.backends[be.ID]; dup {
				return nil, fmt.Errorf("cannot build pool %q: backend %s appears twice", pc.Name, bc.URL)
			}
			if w, ok := b.weights[be.ID]; ok {
				be.Weight = w
			}
			be.Drained = b.drained[be.ID]
			be.Healthy = !b.down[be.ID]
			be.Stats = b.stats[be.ID]
			if be.Stats == nil {
				be.Stats = &Stats{}
			}
			if b.hooks.Upstream != nil {
				u, err := b.hooks.Upstream(be, pc, b.upstreams[be.ID])
				if err != nil {
					return nil, fmt.Errorf("cannot build backend %s of pool %q: %w", bc.URL, pc.Name, err)
				}
				be.Upstream = u
				ups[be.ID] = u
			}
			weights = append(weights, be.Weight)
			p.Backends = append(p.Backends, be)
			t.backends[be.ID] = be
		}
		if len(p.Backends) == 0 && pc.Discovery.Consul.Service == "" {
			return nil, fmt.Errorf("cannot build pool %q: it has no backends", pc.Name)
		}
		bs := p.Backends
		if len(bs) > 0 {
			// A discovered pool may be empty until Consul answers: it has no schedule and
			// Pick returns nil (503).
			p.smooth = picker.NewSmooth(weights)
		}
		for _, be := range bs {
			// Applied after the swap: a build that fails must leave live breakers alone.
			configure = append(configure, func() {
				be.Stats.Breaker.configure(&pc.CircuitBreaker, &p.Stats.Ejection, b.breakerChange(be))
			})
		}
		p.load = func(i int) int64 { return bs[i].Stats.Inflight.Load() }
		p.regions = buildRegions(p)
		t.Pools = append(t.Pools, p)
		t.pools[p.Name] = p
	}
	routes, err := buildRoutes(cfg, t.pools)
	if err != nil {
		return nil, err
	}
	t.routes = routes
	db, err := b.geoip.Open(cfg.Geo.MMDBFile)
	if err != nil {
		return nil, err
	}
	t.Geo = buildGeo(cfg.Geo, db)

	publish := func() {}
	if b.hooks.Table != nil {
		if publish, err = b.hooks.Table(t); err != nil {
			return nil, err
		}
	}

	// Commit: only now does the new table replace anything.
	b.version = t.Version
	b.cfg = cfg
	b.Store.Swap(t)
	publish()
	stats := make(map[string]*Stats, len(t.backends))
	for id, be := range t.backends {
		stats[id] = be.Stats
	}
	for id, st := range b.stats {
		// A backend that leaves while ejected gives its ejection slot back (adjusted, not
		// recounted, so concurrent trips are not overwritten).
		if _, kept := stats[id]; !kept && st.Breaker.State() != BreakerClosed {
			st.Breaker.guard.Load().unreserve()
		}
	}
	b.stats = stats
	committed = true
	for _, f := range configure {
		f()
	}
	poolStats := make(map[string]*PoolStats, len(t.Pools))
	for _, p := range t.Pools {
		poolStats[p.Name] = p.Stats
		p.Stats.Ejection.size.Store(int32(len(p.Backends)))
		p.Stats.Ejection.percent.Store(int32(p.Settings.CircuitBreaker.MaxEjectionPercent))
	}
	b.poolStats = poolStats
	for _, f := range b.watchers {
		f(t)
	}
	for id, u := range b.upstreams {
		if nu, ok := ups[id]; !ok || nu != u {
			u.Close()
		}
	}
	b.upstreams = ups
	// Overrides of backends that are gone do not come back with a later config.
	for _, m := range []map[string]bool{b.drained, b.down} {
		for id := range m {
			if t.backends[id] == nil {
				delete(m, id)
			}
		}
	}
	for id := range b.weights {
		if t.backends[id] == nil {
			delete(b.weights, id)
		}
	}
	return t, nil
}

// BackendID is the stable ID of the backend at addr (host:port) in pool: the pool name,
// then the address with every byte outside [A-Za-z0-9._-] replaced by '_', and "-tls" for
// https backends. "web" + "127.0.0.1:8081" gives "web-127.0.0.1_8081".
func BackendID(pool, addr string, tls bool) string {
	var sb strings.Builder
	sb.WriteString(pool)
	sb.WriteByte('-')
	for i := 0; i < len(addr); i++ {
		c := addr[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-':
			sb.WriteByte(c)
		default:
			sb.WriteByte('_')
		}
	}
	if tls {
		sb.WriteString("-tls")
	}
	return sb.String()
}

// breakerChange returns the transition callback of backend be's breaker, or nil.
func (b *Builder) breakerChange(be *Backend) func(from, to BreakerState, reason string) {
	if b.hooks.BreakerChange == nil {
		return nil
	}
	id := *be
	return func(from, to BreakerState, reason string) { b.hooks.BreakerChange(&id, from, to, reason) }
}
