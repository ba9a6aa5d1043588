package metrics

import (
	"sync"
	"time"

	"go-loadbalancer/state"
)

// breakerRecent is how long a breaker that was open or half-open keeps showing as such
// (BackendSnapshot.BreakerRecent): half-open often lasts milliseconds, and the dashboard
// polls once a second.
const breakerRecent = 10 * time.Second

// breakerKeep is how many transitions, and for how long, a backend's history keeps.
const (
	breakerKeep    = 16
	breakerKeepFor = 5 * time.Minute
)

// BreakerTransition is one change of a backend's breaker, AgoS seconds before the
// snapshot.
type BreakerTransition struct {
	AgoS Num    `json:"ago_s"`
	From string `json:"from"`
	To   string `json:"to"`
}

type transition struct {
	at       time.Time
	from, to state.BreakerState
}

// breakerLog keeps the last transitions of each backend's breaker. Its own lock, not
// Registry.mu: a transition on the request path never waits for a scrape.
type breakerLog struct {
	mu   sync.Mutex
	byID map[string][]transition // oldest first, at most breakerKeep
}

// BreakerChanged records a breaker transition (a state.Hooks.BreakerChange). Safe for
// concurrent use; transitions are rare, so it may take a lock.
func (r *Registry) BreakerChanged(b *state.Backend, from, to state.BreakerState, _ string) {
	l := &r.breakers
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byID == nil {
		l.byID = map[string][]transition{}
	}
	ts := append(l.byID[b.ID], transition{at: time.Now(), from: from, to: to})
	if len(ts) > breakerKeep {
		ts = ts[len(ts)-breakerKeep:]
	}
	l.byID[b.ID] = ts
}

// breakerView returns the worst state b's breaker was in over the last breakerRecent
// (current included) and its transitions of the last breakerKeepFor, oldest first.
func (r *Registry) breakerView(id string, current state.BreakerState, now time.Time) (state.BreakerState, []BreakerTransition) {
	l := &r.breakers
	l.mu.Lock()
	defer l.mu.Unlock()
	worst := current
	var out []BreakerTransition
	for _, tr := range l.byID[id] {
		age := now.Sub(tr.at)
		if age > breakerKeepFor {
			continue
		}
		if age <= breakerRecent {
			worst = max(worst, tr.from, tr.to)
		}
		out = append(out, BreakerTransition{AgoS: Num(age.Seconds()), From: tr.from.String(), To: tr.to.String()})
	}
	return worst, out
}

// forget drops the history of backends no table has (called with the snapshot's IDs).
func (l *breakerLog) forget(keep map[string]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range l.byID {
		if !keep[id] {
			delete(l.byID, id)
		}
	}
}
