package metrics

import (
	"math"
	"strconv"
	"time"

	"go-loadbalancer/state"
)

// Num is a float that encodes as JSON null when it is NaN (no data), rounded to 4
// significant decimals.
type Num float64

// MarshalJSON implements json.Marshaler.
func (n Num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, math.Round(f*1e4)/1e4, 'f', -1, 64), nil
}

// Latency is a pair of percentiles in milliseconds over the last 10 s up to the read
// (Snapshot.LatencyWindowS); null without traffic.
type Latency struct {
	P50 Num `json:"p50"`
	P99 Num `json:"p99"`
}

// History is one point per second, oldest first: requests per second, error ratio (0..1)
// and that second's p99 latency in ms (null without traffic).
type History struct {
	RPS       []Num `json:"rps"`
	ErrorRate []Num `json:"error_rate"`
	P99MS     []Num `json:"p99_ms"`
}

// BackendSnapshot is one backend as the admin JSON (/metrics) shows it.
type BackendSnapshot struct {
	ID      string `json:"id"`
	URL     string `json:"url"`
	Pool    string `json:"pool"`
	Region  string `json:"region,omitempty"`
	Weight  int    `json:"weight"`
	Healthy bool   `json:"healthy"`
	Drained bool   `json:"drained"`
	// State sums up whether it takes traffic: "up", "drained", "down" (failed health
	// checks) or "open" (breaker open).
	State   string `json:"state"`
	Breaker string `json:"breaker"` // closed | half_open | open
	// BreakerRecent is the worst state the breaker was in over the last 10 s (open, then
	// half_open, then closed), so that a short half-open or open shows for a while.
	BreakerRecent string `json:"breaker_recent"`
	// BreakerHistory is the breaker's transitions of the last 5 minutes (at most 16),
	// oldest first.
	BreakerHistory []BreakerTransition `json:"breaker_history"`
	BreakerForS    Num                 `json:"breaker_for_s"` // time in the current breaker state
	Inflight       int64               `json:"inflight"`      // requests being served now
	Requests       uint64              `json:"requests"`      // requests sent, retries included
	Failures       uint64              `json:"failures"`      // connection errors, timeouts, 5xx
	RPS            Num                 `json:"rps"`           // over the last second
	ErrorRate      Num                 `json:"error_rate"`    // failures/requests over the last second
	LatencyMS      Latency             `json:"latency_ms"`    // over the last 10 s
	Responses      Classes             `json:"responses"`     // answers by status class
	History        *History            `json:"history,omitempty"`
}

// PoolSnapshot is one pool's totals.
type PoolSnapshot struct {
	Name      string   `json:"name"`
	Balance   string   `json:"balance"`
	Backends  int      `json:"backends"`
	Usable    int      `json:"usable"` // healthy, not drained, breaker ready
	Panic     bool     `json:"panic"`  // no usable backend: traffic goes to all of them
	Inflight  int64    `json:"inflight"`
	Requests  uint64   `json:"requests"` // requests sent to its backends, retries included
	Failures  uint64   `json:"failures"`
	Retries   uint64   `json:"retries"`
	RPS       Num      `json:"rps"`
	ErrorRate Num      `json:"error_rate"`
	LatencyMS Latency  `json:"latency_ms"`
	Responses Classes  `json:"responses"`
	History   *History `json:"history,omitempty"`
}

// Snapshot is the state of the whole load balancer for the admin JSON.
type Snapshot struct {
	UptimeS      Num       `json:"uptime_s"`
	TableVersion uint64    `json:"table_version"`
	TableBuilt   time.Time `json:"table_built"`
	SampledAt    time.Time `json:"sampled_at"` // of rps and error_rate
	// LatencyWindowS is the span latency_ms covers: the last 10 s, in one-second slices,
	// the current one up to the moment of the read.
	LatencyWindowS int               `json:"latency_window_s"`
	Backends       []BackendSnapshot `json:"backends"`
	Pools          []PoolSnapshot    `json:"pools"`
	Retries        uint64            `json:"retries"`
	RateLimited    uint64            `json:"ratelimited"`
	Sticky         StickyCounts      `json:"sticky_lookups"`
	Counters       map[string]uint64 `json:"counters,omitempty"` // CounterFunc counters
}

// Snapshot returns the current state: counters and latency percentiles as of the call
// (every request completed before it is in them), and the last sample's rates.
// withHistory adds the sparkline history of every backend and pool.
func (r *Registry) Snapshot(withHistory bool) Snapshot {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	snap := Snapshot{
		UptimeS:        Num(now.Sub(r.start).Seconds()),
		SampledAt:      r.sampler.last,
		LatencyWindowS: percentileWindow,
		Backends:       []BackendSnapshot{},
		Pools:          []PoolSnapshot{},
	}
	if r.sticky != nil {
		snap.Sticky = r.sticky()
	}
	if len(r.funcs) > 0 {
		snap.Counters = map[string]uint64{}
		for _, cf := range r.funcs {
			snap.Counters[cf.name] = cf.f()
		}
	}
	snap.RateLimited = r.RateLimited.Get()
	t := r.store.Load()
	if t == nil {
		return snap
	}
	snap.TableVersion, snap.TableBuilt = t.Version, t.Built
	nowNs := now.UnixNano()
	for _, p := range t.Pools {
		ps := PoolSnapshot{Name: p.Name, Backends: len(p.Backends), Panic: p.Panic(nowNs),
			RPS: 0, ErrorRate: 0, LatencyMS: Latency{Num(math.NaN()), Num(math.NaN())}}
		if p.Settings != nil {
			ps.Balance = p.Settings.Balance
		}
		if p.Stats != nil {
			ps.Retries = p.Stats.Retries.Load()
			snap.Retries += ps.Retries
		}
		var poolLat, lat sketchCounts
		for _, b := range p.Backends {
			lat = sketchCounts{}
			if m := r.handle(b.ID); m != nil {
				m.lat.load(&lat)
			}
			poolLat.add(&lat)
			bs := r.backendSnapshot(b, now, withHistory)
			bs.LatencyMS = r.sampler.backends[b.ID].latency(&lat)
			if b.Healthy && !b.Drained && b.Stats.Breaker.Ready(nowNs) {
				ps.Usable++
			}
			ps.Inflight += bs.Inflight
			ps.Requests += bs.Requests
			ps.Failures += bs.Failures
			ps.Responses.add(bs.Responses)
			snap.Backends = append(snap.Backends, bs)
		}
		se := r.sampler.pools[p.Name]
		ps.LatencyMS = se.latency(&poolLat)
		if se != nil {
			ps.RPS, ps.ErrorRate = Num(se.rps), Num(se.errRate)
			if withHistory {
				ps.History = se.history()
			}
		}
		snap.Pools = append(snap.Pools, ps)
	}
	return snap
}

// backendSnapshot reads one backend. r.mu must be held.
func (r *Registry) backendSnapshot(b *state.Backend, now time.Time, withHistory bool) BackendSnapshot {
	st := b.Stats
	br := st.Breaker.State()
	since := st.Breaker.Since()
	if since.IsZero() || since.Before(r.start) {
		since = r.start
	}
	bs := BackendSnapshot{
		ID: b.ID, URL: b.URL, Pool: b.Pool, Region: b.Region, Weight: b.Weight,
		Healthy: b.Healthy, Drained: b.Drained,
		State:       backendState(b, br),
		Breaker:     br.String(),
		BreakerForS: Num(now.Sub(since).Seconds()),
		Inflight:    st.Inflight.Load(),
		Requests:    st.Requests.Load(),
		Failures:    st.Failures.Load(),
		LatencyMS:   Latency{Num(math.NaN()), Num(math.NaN())},
	}
	recent, hist := r.breakerView(b.ID, br, now)
	bs.BreakerRecent, bs.BreakerHistory = recent.String(), hist
	if bs.BreakerHistory == nil {
		bs.BreakerHistory = []BreakerTransition{}
	}
	if m := r.handle(b.ID); m != nil {
		bs.Responses = m.classes()
	}
	if se := r.sampler.backends[b.ID]; se != nil {
		bs.RPS, bs.ErrorRate = Num(se.rps), Num(se.errRate)
		if withHistory {
			bs.History = se.history()
		}
	}
	return bs
}

// backendState sums up whether b takes traffic, the most operator-relevant reason first.
func backendState(b *state.Backend, br state.BreakerState) string {
	switch {
	case b.Drained:
		return "drained"
	case !b.Healthy:
		return "down"
	case br == state.BreakerOpen:
		return "open"
	}
	return "up"
}
