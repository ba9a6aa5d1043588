package state

import (
	"sync/atomic"
	"time"

	"go-loadbalancer/config"
)

// BreakerState is a circuit breaker's state. The numbers are lb_breaker_state's values.
type BreakerState uint32

const (
	BreakerClosed   BreakerState = 0 // requests flow; failures are counted
	BreakerHalfOpen BreakerState = 1 // a few probe requests test the backend
	BreakerOpen     BreakerState = 2 // no requests until open_for has passed
)

func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerHalfOpen:
		return "half_open"
	case BreakerOpen:
		return "open"
	}
	return "unknown"
}

// Ticket is what Breaker.Acquire grants a request; pass it back to Record.
type Ticket uint8

const (
	TicketRejected Ticket = iota // the breaker refused the request: try another backend
	TicketPass                   // closed: a normal request
	TicketProbe                  // half-open: one of the limited probe requests
	TicketPanic                  // the pool is in panic: sent past health and breaker
)

// maxOpenDoublings caps how often open_for doubles on repeated trips (5 s → 160 s).
const maxOpenDoublings = 5

// Breaker is a per-backend circuit breaker kept entirely in atomics: no lock, no
// allocation on the request path.
//
// State machine (a Hystrix-style breaker with Envoy's ejection cap;
// docs/behaviour.md#circuit-breakers):
//
//	closed ──(consecutive_failures in a row, or failure_ratio over window with at
//	          least min_requests; and the pool's ejection cap allows it)──▶ open
//	open ──(open_for elapsed; the first request to notice moves it)──▶ half_open
//	half_open ──(half_open_probes probes all succeed)──▶ closed
//	half_open ──(any probe fails)──▶ open, with open_for doubled (up to 2^5 ×)
//
// Half-open admits exactly half_open_probes concurrent requests; the rest are rejected
// (TicketRejected) and go to another backend. A failure is a connection error, a timeout
// or a 5xx response; the caller decides, and never records rejections the proxy makes
// itself. Every transition is won by exactly one goroutine (compare-and-swap), which
// reports it once through the change callback.
type Breaker struct {
	state     atomic.Uint32
	since     atomic.Int64 // UnixNano of the last transition
	openUntil atomic.Int64
	trips     atomic.Int32 // trips since the breaker last closed: open_for doubles with each
	consec    atomic.Int32 // consecutive failures while closed
	probes    atomic.Int32 // probes admitted in this half-open period
	probeOK   atomic.Int32 // probes that succeeded in this half-open period
	window    Window
	cfg       atomic.Pointer[config.CircuitBreaker]
	guard     atomic.Pointer[EjectionGuard]
	onChange  atomic.Pointer[func(from, to BreakerState, reason string)]
}

// EjectionGuard counts a pool's backends whose breakers are not closed, so that no more
// than max_ejection_percent of the pool is ever ejected (at least one always may be).
type EjectionGuard struct {
	ejected atomic.Int32
	size    atomic.Int32
	percent atomic.Int32
}

// reserve claims one ejection slot if the cap allows it; the caller gives it back with
// unreserve if it then does not eject. A CAS loop, so that when a whole pool fails at once
// the cap still holds.
func (g *EjectionGuard) reserve() bool {
	if g == nil {
		return true
	}
	for {
		cur := g.ejected.Load()
		ejected := max(cur, 0)
		if ejected > 0 && (ejected+1)*100 > g.size.Load()*g.percent.Load() {
			return false
		}
		if g.ejected.CompareAndSwap(cur, ejected+1) {
			return true
		}
	}
}

func (g *EjectionGuard) unreserve() {
	if g != nil {
		g.ejected.Add(-1)
	}
}

// configure sets the breaker's settings (on each table build); zero-value safe. Requests
// may already be recording on this breaker (a backend added by a reload, Consul or the
// autoscaler is in the table before this runs), and Record does nothing until cfg is set:
// so cfg is published last, after the window and guard it implies are ready.
func (b *Breaker) configure(c *config.CircuitBreaker, g *EjectionGuard, onChange func(from, to BreakerState, reason string)) {
	b.window.Init(c.Window)
	b.guard.Store(g)
	if onChange != nil {
		b.onChange.Store(&onChange)
	}
	b.cfg.Store(c)
}

// State returns the current state.
func (b *Breaker) State() BreakerState { return BreakerState(b.state.Load()) }

// Since returns when the breaker entered its current state (zero if it never changed).
func (b *Breaker) Since() time.Time {
	if ns := b.since.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Ready reports, without changing anything, whether Acquire could admit a request at now
// (UnixNano). Pickers use it to skip open backends.
func (b *Breaker) Ready(now int64) bool {
	switch BreakerState(b.state.Load()) {
	case BreakerClosed:
		return true
	case BreakerOpen:
		return now >= b.openUntil.Load()
	default:
		return b.probes.Load() < b.probeLimit()
	}
}

func (b *Breaker) probeLimit() int32 {
	if c := b.cfg.Load(); c != nil {
		return int32(c.HalfOpenProbes)
	}
	return 1
}

// Acquire admits a request at now (UnixNano) or rejects it. A granted ticket must be
// passed to Record exactly once.
func (b *Breaker) Acquire(now int64) Ticket {
	for {
		switch s := BreakerState(b.state.Load()); s {
		case BreakerClosed:
			return TicketPass
		case BreakerOpen:
			if now < b.openUntil.Load() {
				return TicketRejected
			}
			// probes and probeOK were zeroed when the breaker opened; only the winner of
			// this CAS announces half-open.
			if b.state.CompareAndSwap(uint32(BreakerOpen), uint32(BreakerHalfOpen)) {
				b.changed(now, BreakerOpen, BreakerHalfOpen, "open_for elapsed")
			}
		case BreakerHalfOpen:
			if b.probes.Add(1) <= b.probeLimit() {
				return TicketProbe
			}
			b.probes.Add(-1)
			return TicketRejected
		}
	}
}

// Release hands back a ticket whose request never reached the backend (e.g. the
// connection limit was hit), so it counts neither way.
func (b *Breaker) Release(t Ticket) {
	if t == TicketProbe && b.state.Load() == uint32(BreakerHalfOpen) {
		b.probes.Add(-1)
	}
}

// Record reports the outcome of a request admitted with t at now (UnixNano).
func (b *Breaker) Record(now int64, t Ticket, failed bool) {
	c := b.cfg.Load()
	if c == nil {
		return
	}
	switch t {
	case TicketPanic:
		// In panic the backend was picked regardless of its breaker; outcomes still feed
		// a closed breaker, and a success of an open one's backend changes nothing until
		// its half-open probes say so.
		if b.state.Load() == uint32(BreakerClosed) {
			b.Record(now, TicketPass, failed)
		}
	case TicketProbe:
		if b.state.Load() != uint32(BreakerHalfOpen) {
			return // a probe from an earlier half-open period
		}
		if failed {
			b.trip(now, c, BreakerHalfOpen, "half-open probe failed")
			return
		}
		if b.probeOK.Add(1) >= int32(c.HalfOpenProbes) &&
			b.state.CompareAndSwap(uint32(BreakerHalfOpen), uint32(BreakerClosed)) {
			b.consec.Store(0)
			b.trips.Store(0)
			b.window.Reset()
			if g := b.guard.Load(); g != nil {
				g.ejected.Add(-1)
			}
			b.changed(now, BreakerHalfOpen, BreakerClosed, "half-open probes succeeded")
		}
	case TicketPass:
		if !failed {
			b.window.Add(now, 1, 0)
			if b.consec.Load() != 0 {
				b.consec.Store(0)
			}
			return
		}
		b.window.Add(now, 1, 1)
		if b.consec.Add(1) >= int32(c.ConsecutiveFailures) {
			b.trip(now, c, BreakerClosed, "consecutive failures")
			return
		}
		if reqs, fails := b.window.Sum(now); reqs >= uint64(c.MinRequests) && float64(fails) >= c.FailureRatio*float64(reqs) {
			b.trip(now, c, BreakerClosed, "failure ratio over window")
		}
	}
}

// trip opens the breaker from state from, unless another goroutine moved it first or the
// pool's ejection cap forbids it.
func (b *Breaker) trip(now int64, c *config.CircuitBreaker, from BreakerState, reason string) {
	if BreakerState(b.state.Load()) != from {
		return // a late outcome: another goroutine moved the breaker already
	}
	g := b.guard.Load()
	if from == BreakerClosed && !g.reserve() {
		return // too much of the pool is already ejected: keep serving (Envoy's cap)
	}
	// openUntil is read only in the open state, so setting it before the CAS that
	// publishes that state is safe; the probe counters are reset by the winner alone.
	open := c.OpenFor << min(b.trips.Load(), maxOpenDoublings)
	b.openUntil.Store(now + int64(open))
	if !b.state.CompareAndSwap(uint32(from), uint32(BreakerOpen)) {
		if from == BreakerClosed {
			g.unreserve()
		}
		return
	}
	b.probes.Store(0)
	b.probeOK.Store(0)
	b.trips.Add(1)
	b.changed(now, from, BreakerOpen, reason)
}

func (b *Breaker) changed(now int64, from, to BreakerState, reason string) {
	b.since.Store(now)
	if f := b.onChange.Load(); f != nil {
		(*f)(from, to, reason)
	}
}
