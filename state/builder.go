package state

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"go-loadbalancer/config"
	"go-loadbalancer/geoip"
	"go-loadbalancer/picker"
)

// Hooks connect a Builder to the code that owns the upstream clients. Upstream and Table
// are steps of a build: they run with the builder's lock held and must not call back into
// the Builder.
type Hooks struct {
	// Upstream returns the client for backend b of pool p. prev is what Upstream returned
	// for the same ID in the previous table (nil for a new backend); returning prev keeps
	// its pooled connections. The builder closes each client no table refers to any more,
	// after releasing its lock.
	Upstream func(b *Backend, p *config.Pool, prev Upstream) (Upstream, error)
	// Table prepares the caller's own data for a fully built table t (the proxy's settings
	// and clients for it) and returns how to publish it; an error keeps the running table.
	// publish is called when t is swapped into Store, under the same lock, so the caller's
	// data is published in the order of the tables; it must only store a pointer.
	Table func(t *Table) (publish func(), err error)
	// BreakerChange, if set, is called once for each breaker transition (on the request
	// path that causes it, never with the builder's lock held).
	BreakerChange func(b *Backend, from, to BreakerState, reason string)
}

// ErrUnknownBackend is returned by the runtime controls for an ID that no pool has.
var ErrUnknownBackend = errors.New("unknown backend id")

// Builder builds Tables from a config plus runtime overrides (drain, weight, health) and
// publishes them to its Store. Every method is safe for concurrent use; builds are
// serialised by a lock that the request path never takes. Subscribers (OnSwap) run after
// that lock is released, so they may call back into the Builder.
type Builder struct {
	Store *Store // where the tables are published; set by NewBuilder

	mu        sync.Mutex // serialises builds; guards the fields below it
	hooks     Hooks
	cfg       *config.Config
	version   uint64
	stats     map[string]*Stats
	poolStats map[string]*PoolStats
	geoip     geoip.Cache
	upstreams map[string]Upstream
	overrides
	now func() time.Time

	subs subscribers // OnSwap's; under their own lock (notify.go)
}

// NewBuilder returns a Builder that publishes its tables to s; nil s means a new, empty
// Store. Passing the Store in lets its readers (the metrics registry) be made before the
// hooks that need them, and so before the Builder.
func NewBuilder(s *Store, h Hooks) *Builder {
	if s == nil {
		s = new(Store)
	}
	return &Builder{
		Store:     s,
		hooks:     h,
		stats:     map[string]*Stats{},
		poolStats: map[string]*PoolStats{},
		upstreams: map[string]Upstream{},
		overrides: overrides{
			drained: map[string]bool{},
			weights: map[string]int{},
			down:    map[string]bool{},
			found:   map[string][]config.Backend{},
			standby: map[string]int{},
		},
		now: time.Now,
	}
}

// OnSwap registers f to be called with the current table, if there is one, and then with
// the tables the builder publishes from now on. f runs with no builder lock held and may
// call back into the Builder, but must not wait for another goroutine that does: calls
// to every f are made one at a time (notify.go). f sees tables in version order, never
// one older than a table it has seen; when tables are published faster than f returns it
// skips to the newest, and it always ends on the newest. A change method (Apply, Drain,
// ...) may return before f has seen its table when f is running on another goroutine.
func (b *Builder) OnSwap(f func(*Table)) {
	b.subs.add(f)
	b.subs.notify(b.Store)
}

// Apply builds a table from cfg (which must be valid) with the current overrides and swaps
// it in. On error the running table is kept.
func (b *Builder) Apply(cfg *config.Config) (*Table, error) {
	return b.change(func() (*config.Config, error) { return cfg, nil })
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
	return b.change(func() (*config.Config, error) {
		if b.cfg == nil {
			return nil, fmt.Errorf("cannot set discovered backends of pool %q: no configuration yet", pool)
		}
		b.found[pool] = append([]config.Backend(nil), backends...)
		return b.cfg, nil
	})
}

// SetStandby brings the first n of pool's standby backends into rotation (autoscaling)
// and swaps a new table; n is clamped to the standby list.
func (b *Builder) SetStandby(pool string, n int) (*Table, error) {
	return b.change(func() (*config.Config, error) {
		if b.cfg == nil {
			return nil, fmt.Errorf("cannot scale pool %q: no configuration yet", pool)
		}
		b.standby[pool] = max(n, 0)
		return b.cfg, nil
	})
}

// Standby returns how many standby backends of pool are in rotation: what SetStandby
// asked, clamped to the pool's standby list (which a reload may have shortened).
func (b *Builder) Standby(pool string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cfg == nil {
		return 0
	}
	for i := range b.cfg.Pools {
		if pc := &b.cfg.Pools[i]; pc.Name == pool {
			return min(b.standby[pool], len(pc.Standby))
		}
	}
	return 0
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
	return b.change(func() (*config.Config, error) {
		t := b.Store.Load()
		if t == nil || t.Backend(id) == nil {
			return nil, fmt.Errorf("cannot change backend %q: %w", id, ErrUnknownBackend)
		}
		set()
		return b.cfg, nil
	})
}

// change is every change: under the builder's lock, set records the change and returns
// the config to build from (or an error, having changed nothing), and the table is built
// and published; if the build fails the recorded change is undone, so a refused change
// changes nothing. Then, with the lock released, the clients no table has are closed and
// the subscribers are told.
func (b *Builder) change(set func() (*config.Config, error)) (*Table, error) {
	t, unused, err := b.locked(set)
	for _, u := range unused {
		u.Close()
	}
	if err == nil {
		b.subs.notify(b.Store)
	}
	return t, err
}

func (b *Builder) locked(set func() (*config.Config, error)) (*Table, []Upstream, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	saved := b.saveOverrides()
	cfg, err := set()
	if err != nil {
		return nil, nil, err
	}
	t, unused, err := b.rebuild(cfg)
	if err != nil {
		b.overrides = saved
	}
	return t, unused, err
}

// overrides is what the change methods record, kept between builds.
type overrides struct {
	drained map[string]bool
	weights map[string]int
	down    map[string]bool
	found   map[string][]config.Backend // discovered backends, by pool
	standby map[string]int              // standby backends brought in, by pool
}

// saveOverrides returns a copy of b's overrides, to put back if a change's build fails.
// The slices in found are shared: SetDiscovered replaces them, never changes them.
func (b *Builder) saveOverrides() overrides {
	return overrides{
		drained: maps.Clone(b.drained),
		weights: maps.Clone(b.weights),
		down:    maps.Clone(b.down),
		found:   maps.Clone(b.found),
		standby: maps.Clone(b.standby),
	}
}

// build is one table in the making.
type build struct {
	t         *Table
	ups       map[string]Upstream // every backend's client, by ID
	configure []func()            // breaker settings, applied only if the table is published
}

// rebuild builds a table from cfg and the overrides and publishes it. It returns the
// clients to close: those no table has any more, or, when the build fails, those it made.
func (b *Builder) rebuild(cfg *config.Config) (*Table, []Upstream, error) {
	nb := &build{
		t: &Table{
			Config:   cfg,
			Version:  b.version + 1,
			Built:    b.now(),
			pools:    map[string]*Pool{},
			backends: map[string]*Backend{},
		},
		ups: make(map[string]Upstream, len(b.upstreams)),
	}
	publish, err := b.assemble(nb, cfg)
	if err != nil {
		var made []Upstream // and so their metric handles
		for id, u := range nb.ups {
			if b.upstreams[id] != u {
				made = append(made, u)
			}
		}
		return nil, made, err
	}
	return nb.t, b.commit(nb, cfg, publish), nil
}

// assemble fills nb.t from cfg: pools, backends and their clients, routes, geo, and the
// caller's data (Hooks.Table), whose publish step it returns.
func (b *Builder) assemble(nb *build, cfg *config.Config) (publish func(), err error) {
	t := nb.t
	for pi := range cfg.Pools {
		if err := b.addPool(nb, &cfg.Pools[pi], pi); err != nil {
			return nil, err
		}
	}
	if t.routes, err = buildRoutes(cfg, t.pools); err != nil {
		return nil, err
	}
	db, err := b.geoip.Open(cfg.Geo.MMDBFile)
	if err != nil {
		return nil, err
	}
	t.Geo = buildGeo(cfg.Geo, db)
	if b.hooks.Table == nil {
		return func() {}, nil
	}
	return b.hooks.Table(t)
}

// addPool adds pool pc (position pi in the config) and its backends to nb.
func (b *Builder) addPool(nb *build, pc *config.Pool, pi int) error {
	t := nb.t
	p := &Pool{Index: pi, Name: pc.Name, Settings: pc, leastInflight: pc.Balance == config.BalanceLeastInflight}
	p.Stats = b.poolStats[pc.Name]
	if p.Stats == nil {
		p.Stats = &PoolStats{}
		p.Stats.Budget.Init(RetryBudgetWindow)
	}
	members := b.members(pc)
	weights := make([]int, 0, len(members))
	for i, bc := range members {
		be, err := b.addBackend(nb, pc, bc, i)
		if err != nil {
			return err
		}
		weights = append(weights, be.Weight)
		p.Backends = append(p.Backends, be)
	}
	if len(p.Backends) == 0 && pc.Discovery.Consul.Service == "" {
		return fmt.Errorf("cannot build pool %q: it has no backends", pc.Name)
	}
	bs := p.Backends
	if len(bs) > 0 {
		// A discovered pool may be empty until Consul answers: it has no schedule and
		// Pick returns nil (503).
		p.smooth = picker.NewSmooth(weights)
	}
	for _, be := range bs {
		// Applied after the swap: a build that fails must leave live breakers alone.
		nb.configure = append(nb.configure, func() {
			be.Stats.Breaker.configure(&pc.CircuitBreaker, &p.Stats.Ejection, b.breakerChange(be))
		})
	}
	p.load = func(i int) int64 { return bs[i].Stats.Inflight.Load() }
	p.regions = buildRegions(p)
	t.Pools = append(t.Pools, p)
	t.pools[p.Name] = p
	return nil
}

// addBackend adds backend bc, position i of pool pc, to nb's table, with its overrides,
// counters and client.
func (b *Builder) addBackend(nb *build, pc *config.Pool, bc config.Backend, i int) (*Backend, error) {
	t := nb.t
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
		nb.ups[be.ID] = u
	}
	t.backends[be.ID] = be
	return be, nil
}

// commit publishes nb's table, built from cfg, and makes the builder's state its: the
// counters and clients it kept, and the overrides of backends it still has. It returns
// the clients no table has any more.
func (b *Builder) commit(nb *build, cfg *config.Config, publish func()) []Upstream {
	t := nb.t
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
	for _, f := range nb.configure {
		f()
	}
	poolStats := make(map[string]*PoolStats, len(t.Pools))
	for _, p := range t.Pools {
		poolStats[p.Name] = p.Stats
		p.Stats.Ejection.size.Store(int32(len(p.Backends)))
		p.Stats.Ejection.percent.Store(int32(p.Settings.CircuitBreaker.MaxEjectionPercent))
	}
	b.poolStats = poolStats
	var unused []Upstream
	for id, u := range b.upstreams {
		if nu, ok := nb.ups[id]; !ok || nu != u {
			unused = append(unused, u)
		}
	}
	b.upstreams = nb.ups
	b.forgetGone(t)
	return unused
}

// forgetGone drops the overrides of backends t does not have: they do not come back with
// a later config.
func (b *Builder) forgetGone(t *Table) {
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
