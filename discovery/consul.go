// Package discovery keeps pools' backends in step with Consul's catalog
// (discovery.consul in the config), through the state.Builder.
package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"go-loadbalancer/config"
	"go-loadbalancer/state"
)

// ConsulOptions configure Consul service discovery. The zero durations take the defaults.
type ConsulOptions struct {
	Builder *state.Builder // required
	Log     zerolog.Logger

	// Addr is the Consul agent's HTTP API: "host:port" or "http(s)://host:port"
	// (CONSUL_ADDR); empty means 127.0.0.1:8500. The ACL token and TLS settings come from
	// Consul's own variables (CONSUL_HTTP_TOKEN, CONSUL_CACERT, ...), as for the consul CLI.
	Addr string
	// WaitTime is how long one blocking query may wait for a change (Consul caps it at
	// 10 minutes and adds up to 1/16 of jitter). Default 1 minute: it bounds how long a
	// snapshot restore goes unseen, because Consul (1.16.3, tested) does not wake a blocked
	// HTTP query when it restores a snapshot — the restored state, with its lower index,
	// is answered when the wait runs out.
	WaitTime time.Duration
	// RetryMin and RetryMax bound the exponential backoff after a failed query: the first
	// retry waits about RetryMin, each next one twice as long, never more than RetryMax
	// (each with jitter). Defaults 1 s and 30 s.
	RetryMin, RetryMax time.Duration
}

// Validate checks o and fills in the defaults.
func (o *ConsulOptions) Validate() error {
	if o.Builder == nil {
		return errors.New("cannot start Consul discovery: ConsulOptions.Builder is nil")
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:8500"
	}
	if o.WaitTime <= 0 {
		o.WaitTime = time.Minute
	}
	if o.RetryMin <= 0 {
		o.RetryMin = time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 30 * time.Second
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = o.RetryMin
	}
	return nil
}

// Consul keeps the backends of each pool with discovery.consul.service set in step with
// the healthy instances of that Consul service: one watcher goroutine per such pool runs
// blocking queries on /v1/health/service/<service> and applies each changed set with
// Builder.SetDiscovered (added to the pool's configured backends), which swaps a new table.
//
// Each watcher's state machine:
//
//	querying --answer--> apply if the set changed, query again from the answer's index
//	querying --error---> failing: keep the last applied set; log once; retry from index
//	                     0 after a capped exponential backoff with jitter
//	failing  --answer--> querying (logged once: "reachable again")
//
// The set of watchers follows the current table: a reload that changes a pool's service,
// tag or passing_only restarts that pool's watcher, and one that removes them takes the
// pool's discovered backends out. Safe for concurrent use.
type Consul struct {
	opts   ConsulOptions
	client *api.Client

	// applyMu orders every SetDiscovered this Consul makes, so that a stopped watcher can
	// never apply after its successor. It is taken before mu.
	applyMu sync.Mutex

	mu      sync.Mutex
	watches map[string]*consulWatch // by pool name
	stopped bool
	wg      sync.WaitGroup
}

// NewConsul starts watching Consul for the pools of o.Builder's tables, now and after every
// swap. The first answer for a pool may take a moment: until then a pool with no configured
// backends has none and its requests get 503. Call Stop when done.
func NewConsul(o ConsulOptions) (*Consul, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	ac := api.DefaultConfig()
	ac.Address = o.Addr
	client, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("cannot create Consul client for %q: %w", o.Addr, err)
	}
	c := &Consul{opts: o, client: client, watches: map[string]*consulWatch{}}
	o.Builder.OnSwap(c.sync)
	return c, nil
}

// Stop ends every watcher and waits for them. The backends they found stay in the table.
// Consul does nothing after it.
func (c *Consul) Stop() {
	c.mu.Lock()
	c.stopped = true
	for pool, w := range c.watches {
		w.cancel()
		delete(c.watches, pool)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// consulQuery is what one watcher asks Consul.
type consulQuery struct {
	service, tag string
	passingOnly  bool
	scheme       string // discovery.consul.scheme: http or https
}

// sync makes the running watchers match t (a Builder.OnSwap subscriber); it only starts
// and cancels goroutines.
func (c *Consul) sync(t *state.Table) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	want := map[string]consulQuery{}
	for _, p := range t.Pools {
		if d := p.Settings.Discovery.Consul; d.Service != "" {
			want[p.Name] = consulQuery{service: d.Service, tag: d.Tag, passingOnly: d.PassingOnly == nil || *d.PassingOnly, scheme: cmp.Or(d.Scheme, "http")}
		}
	}
	for pool, w := range c.watches {
		q, ok := want[pool]
		if ok && q == w.q {
			continue
		}
		w.cancel()
		delete(c.watches, pool)
		if !ok {
			// Not from here: forget takes applyMu and mu; sync holds mu, and may run inside a
			// watcher's apply, which holds applyMu.
			c.wg.Add(1)
			go c.forget(pool)
		}
		// A changed query keeps the old service's backends until the new watcher's first
		// answer, which comes at once (it does not block).
	}
	for pool, q := range want {
		if c.watches[pool] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		w := &consulWatch{c: c, pool: pool, q: q, ctx: ctx, cancel: cancel, done: make(chan struct{}),
			log: c.opts.Log.With().Str("pool", pool).Str("consul_service", q.service).Str("consul_tag", q.tag).Logger()}
		c.watches[pool] = w
		c.wg.Add(1)
		go w.run()
	}
}

// forget takes out the backends discovered for pool, unless a watcher for it has started
// again meanwhile.
func (c *Consul) forget(pool string) {
	defer c.wg.Done()
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	c.mu.Lock()
	gone := !c.stopped && c.watches[pool] == nil
	c.mu.Unlock()
	if !gone {
		return
	}
	if _, err := c.opts.Builder.SetDiscovered(pool, nil); err != nil {
		c.opts.Log.Error().Str("pool", pool).Err(err).Msg("cannot remove the backends discovered in Consul")
	}
}

// consulWatch is one pool's watcher. Only its run goroutine touches it after the start.
type consulWatch struct {
	c      *Consul
	pool   string
	q      consulQuery
	ctx    context.Context // cancelled when the watcher is replaced or stopped
	cancel context.CancelFunc
	done   chan struct{} // closed when run has returned
	log    zerolog.Logger

	last    []config.Backend // the set applied last, sorted
	applied bool             // whether any set was applied yet
}

func (w *consulWatch) run() {
	defer w.c.wg.Done()
	defer close(w.done)
	var (
		index    uint64 // WaitIndex of the next query
		failures int    // failed attempts in a row
		since    time.Time
	)
	fail := func(err error, msg string) bool {
		failures++
		if failures == 1 {
			// Once per outage, not per retry.
			since = time.Now()
			w.log.Warn().Err(err).Msg(msg)
		} else {
			w.log.Debug().Err(err).Int("failures", failures).Msg(msg)
		}
		return w.sleep(backoff(failures, w.c.opts.RetryMin, w.c.opts.RetryMax))
	}
	for {
		opts := (&api.QueryOptions{WaitIndex: index, WaitTime: w.c.opts.WaitTime}).WithContext(w.ctx)
		entries, meta, err := w.c.client.Health().Service(w.q.service, w.q.tag, w.q.passingOnly, opts)
		if w.ctx.Err() != nil {
			return
		}
		if err != nil {
			// Start again from 0, as Consul's api/watch does after any error: the agent
			// that answers next may be a new one (restarted, rebuilt, restored) whose index
			// is below ours, and a query with ours would block until its wait ran out
			// while the set it should return had changed. Index 0 answers at once.
			index = 0
			if !fail(err, "cannot query Consul; keeping the last known backends and retrying") {
				return
			}
			continue
		}
		if failures > 0 {
			w.log.Info().Int("failures", failures).Dur("after_ms", time.Since(since)).Msg("Consul reachable again")
			failures = 0
		}
		backends, skipped := consulBackends(entries, w.q.scheme)
		if !w.applied || !slices.Equal(backends, w.last) {
			// Skip no-op updates: an answer is no proof of a change (a timeout, or a write
			// that does not touch this result, also answers).
			if err := w.apply(backends, skipped); err != nil {
				// The index is kept: the next query answers at once and the set is tried again.
				if !fail(err, "cannot apply the backends discovered in Consul; retrying") {
					return
				}
				continue
			}
		}
		index = nextIndex(index, meta.LastIndex)
	}
}

// apply swaps in backends as pool's discovered set, unless the watcher was replaced or
// stopped meanwhile (then its successor decides).
func (w *consulWatch) apply(backends []config.Backend, skipped int) error {
	w.c.applyMu.Lock()
	defer w.c.applyMu.Unlock()
	if w.ctx.Err() != nil {
		return nil
	}
	t, err := w.c.opts.Builder.SetDiscovered(w.pool, backends)
	if err != nil {
		return err
	}
	w.last, w.applied = backends, true
	ev := w.log.Info().Int("backends", len(backends)).Uint64("table", t.Version)
	if skipped > 0 {
		ev = ev.Int("skipped_without_address", skipped)
	}
	ev.Msg("Consul service backends changed")
	return nil
}

// sleep waits d and reports whether the watcher should go on.
func (w *consulWatch) sleep(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-w.ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// nextIndex is the WaitIndex to send after a query sent with prev was answered with
// X-Consul-Index got, by the rules of Consul's blocking queries (its API docs,
// "Implementation Details", and its api/watch package):
//   - an index that goes backwards (a snapshot restore, a new cluster) resets to 0, so that
//     the next query answers at once with the whole current state;
//   - an index below 1 is clamped to 1: 0 would never block and the loop would spin.
func nextIndex(prev, got uint64) uint64 {
	switch {
	case got < prev:
		return 0
	case got < 1:
		return 1
	}
	return got
}

// backoff is the pause before retry number failures (1, 2, ...): lo doubled for each
// failure, capped at hi, then a uniformly random point in its upper half (jitter, so that
// many instances do not retry in lockstep after a Consul restart).
func backoff(failures int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < failures && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}

// consulBackends converts Consul's answer into backends, sorted by URL so that two answers
// with the same instances compare equal: scheme://ServiceAddress:ServicePort (the node's
// address when the service registered none), region Meta["region"], and the weight Consul's
// own DNS gives it: Weights.Warning when its checks add up to warning, else Weights.Passing
// (each 1 when unset, at most 10000). An instance at warning with Weights.Warning 0 is left
// out: it asked for no traffic while warning. Instances with no address or port (a Unix
// socket) are skipped and counted.
func consulBackends(entries []*api.ServiceEntry, scheme string) (backends []config.Backend, skipped int) {
	backends = make([]config.Backend, 0, len(entries))
	for _, e := range entries {
		if e == nil || e.Service == nil {
			skipped++
			continue
		}
		s := e.Service
		host := s.Address
		if host == "" && e.Node != nil {
			host = e.Node.Address
		}
		if host == "" || s.Port < 1 || s.Port > 65535 {
			skipped++
			continue
		}
		weight := max(s.Weights.Passing, 1)
		if e.Checks.AggregatedStatus() == api.HealthWarning {
			if weight = s.Weights.Warning; weight < 1 {
				continue
			}
		}
		backends = append(backends, config.Backend{
			URL:    scheme + "://" + net.JoinHostPort(host, strconv.Itoa(s.Port)),
			Weight: min(weight, 10000),
			Region: s.Meta["region"],
		})
	}
	slices.SortFunc(backends, func(a, b config.Backend) int {
		return cmp.Or(cmp.Compare(a.URL, b.URL), cmp.Compare(a.Weight, b.Weight), cmp.Compare(a.Region, b.Region))
	})
	return backends, skipped
}
