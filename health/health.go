// Package health runs active health checks: a control loop that probes every backend of the
// current table and reports its verdicts to the state.Builder, which marks backends up and
// down by building and swapping a new table (never by work on the request path).
package health

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"go-loadbalancer/config"
	"go-loadbalancer/state"
)

// Checker runs one prober goroutine per backend of the current table (HAProxy's
// `check inter rise fall`): a backend starts healthy, is marked down after `fall`
// consecutive failed checks and up again after `rise` passing ones. Each change of verdict
// is logged once and applied with Builder.SetHealthy, which swaps a new table.
// Safe for concurrent use.
type Checker struct {
	builder *state.Builder
	log     zerolog.Logger

	mu      sync.Mutex
	probers map[string]*prober // by backend ID
	stopped bool
}

// NewChecker starts checking the backends of b's tables, now and after every swap.
func NewChecker(b *state.Builder, log zerolog.Logger) *Checker {
	h := &Checker{builder: b, log: log, probers: map[string]*prober{}}
	b.OnSwap(h.sync)
	return h
}

// Stop ends every prober. The checker does nothing after it.
func (h *Checker) Stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	for id, p := range h.probers {
		close(p.stop)
		delete(h.probers, id)
	}
}

// sync makes the running probers match t (a Builder.OnSwap subscriber); it only starts
// and stops goroutines.
func (h *Checker) sync(t *state.Table) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	seen := make(map[string]bool, len(h.probers))
	for _, pool := range t.Pools {
		hc := pool.Settings.HealthCheck
		for _, be := range pool.Backends {
			target := be.Upstream // state.Upstream.Check: the backend's own TLS settings
			if target == nil {
				continue // a builder without an Upstream hook
			}
			seen[be.ID] = true
			if p := h.probers[be.ID]; p != nil {
				if p.settings == hc && p.target == target {
					continue
				}
				close(p.stop)
			}
			ranges, err := config.ParseStatusRanges(hc.ExpectStatus)
			if err != nil {
				// Validate rejected this already; never probe with a broken rule.
				panic(fmt.Sprintf("BUG: invalid expect_status %q reached the health checker", hc.ExpectStatus))
			}
			p := &prober{
				h: h, id: be.ID, target: target, settings: hc, ranges: ranges,
				healthy: be.Healthy, stop: make(chan struct{}),
			}
			h.probers[be.ID] = p
			go p.run()
		}
	}
	for id, p := range h.probers {
		if !seen[id] {
			close(p.stop)
			delete(h.probers, id)
		}
	}
}

type prober struct {
	h        *Checker
	id       string
	target   state.Upstream
	settings config.HealthCheck
	ranges   [][2]int
	stop     chan struct{}

	healthy bool // the verdict in force; only run's goroutine touches the fields below
	passes  int
	fails   int
}

// run checks every interval, ±10 % jitter, starting at a random point in the first
// interval so that many backends are not checked in lockstep.
func (p *prober) run() {
	interval := p.settings.Interval
	timer := time.NewTimer(time.Duration(rand.Int64N(int64(interval) + 1)))
	defer timer.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-timer.C:
		}
		p.check()
		jitter := time.Duration(rand.Int64N(int64(interval)/5+1)) - interval/10
		timer.Reset(interval + jitter)
	}
}

func (p *prober) check() {
	status, err := p.target.Check(p.settings.Path, p.settings.Timeout)
	ok := err == nil && p.expected(status)
	// The verdict in force is the table's, not this prober's memory of what it last set:
	// a prober replaced by a reload may have applied its verdict after its successor
	// started, and the successor must still correct it.
	if be := p.h.builder.Store.Load().Backend(p.id); be != nil {
		p.healthy = be.Healthy
	}
	if ok {
		p.fails = 0
		p.passes++
		if !p.healthy && p.passes >= p.settings.Rise {
			p.set(true, fmt.Sprintf("%d checks passed", p.passes))
		}
		return
	}
	p.passes = 0
	p.fails++
	if p.healthy && p.fails >= p.settings.Fall {
		reason := fmt.Sprintf("status %d", status)
		if err != nil {
			reason = err.Error()
		}
		p.set(false, fmt.Sprintf("%d checks failed, last: %s", p.fails, reason))
	}
}

func (p *prober) expected(status int) bool {
	for _, r := range p.ranges {
		if status >= r[0] && status <= r[1] {
			return true
		}
	}
	return false
}

func (p *prober) set(healthy bool, reason string) {
	select {
	case <-p.stop:
		return // replaced or stopped meanwhile: its successor decides
	default:
	}
	if _, err := p.h.builder.SetHealthy(p.id, healthy); err != nil {
		p.h.log.Debug().Str("backend", p.id).Err(err).Msg("health change not applied")
		return
	}
	p.healthy = healthy
	ev := p.h.log.Warn()
	state := "down"
	if healthy {
		ev = p.h.log.Info()
		state = "up"
	}
	ev.Str("backend", p.id).Str("health", state).Str("reason", reason).Msg("backend health changed")
}
