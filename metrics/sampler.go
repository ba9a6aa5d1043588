package metrics

import (
	"math"
	"time"

	"go-loadbalancer/state"
)

// percentileWindow is how many seconds the JSON's latency percentiles cover: the last
// percentileWindow-1 whole one-second slices between samples and the current, partial one
// up to the read (Registry.Snapshot).
const percentileWindow = 10

// sampler turns counters into per-second rates and windowed percentiles. It is only used
// with Registry.mu held.
type sampler struct {
	backends map[string]*series // by backend ID
	pools    map[string]*series // by pool name
	last     time.Time
}

func (s *sampler) init() {
	s.backends = map[string]*series{}
	s.pools = map[string]*series{}
}

// series is the sampled view of one backend or pool.
type series struct {
	seen              bool
	at                time.Time
	lastReq, lastFail uint64

	snaps [percentileWindow + 1]sketchCounts // ring of latency snapshots, one per sample
	head  int                                // newest snapshot
	n     int                                // snapshots held

	rps, errRate float64

	// History, one point per sample, oldest first from hHead.
	hRPS, hErr, hP99 []float64
	hHead, hLen      int
}

func newSeries(history int) *series {
	return &series{
		hRPS: make([]float64, history), hErr: make([]float64, history), hP99: make([]float64, history),
	}
}

func (s *sampler) sample(r *Registry, t *state.Table, now time.Time) {
	s.last = now
	if t == nil {
		return
	}
	seenB := map[string]bool{}
	seenP := map[string]bool{}
	var sk, psk sketchCounts
	for _, p := range t.Pools {
		var preq, pfail uint64
		psk = sketchCounts{}
		for _, b := range p.Backends {
			req, fail := b.Stats.Requests.Load(), b.Stats.Failures.Load()
			sk = sketchCounts{}
			if m := r.handle(b.ID); m != nil {
				m.lat.load(&sk)
			}
			se := s.backends[b.ID]
			if se == nil {
				se = newSeries(r.history)
				s.backends[b.ID] = se
			}
			se.update(now, req, fail, &sk)
			seenB[b.ID] = true
			preq += req
			pfail += fail
			psk.add(&sk)
		}
		se := s.pools[p.Name]
		if se == nil {
			se = newSeries(r.history)
			s.pools[p.Name] = se
		}
		se.update(now, preq, pfail, &psk)
		seenP[p.Name] = true
	}
	for id := range s.backends {
		if !seenB[id] {
			delete(s.backends, id)
		}
	}
	r.breakers.forget(seenB)
	for name := range s.pools {
		if !seenP[name] {
			delete(s.pools, name)
		}
	}
}

// update folds one sample in. Counters that went backwards (a pool that lost a backend)
// count as no traffic rather than a negative rate.
func (se *series) update(now time.Time, req, fail uint64, sk *sketchCounts) {
	if !se.seen {
		se.seen, se.at, se.lastReq, se.lastFail = true, now, req, fail
		se.snaps[0], se.head, se.n = *sk, 0, 1
		return
	}
	dt := now.Sub(se.at).Seconds()
	if dt <= 0 {
		return
	}
	dReq, dFail := since(req, se.lastReq), since(fail, se.lastFail)
	se.at, se.lastReq, se.lastFail = now, req, fail
	se.rps = float64(dReq) / dt
	se.errRate = 0
	if dReq > 0 {
		se.errRate = math.Min(1, float64(dFail)/float64(dReq))
	}

	var d sketchCounts
	d.subSat(sk, &se.snaps[se.head])
	p99now := d.quantile(0.99)

	const ring = percentileWindow + 1
	se.head = (se.head + 1) % ring
	se.snaps[se.head] = *sk
	if se.n < ring {
		se.n++
	}

	i := (se.hHead + se.hLen) % len(se.hRPS)
	if se.hLen == len(se.hRPS) {
		se.hHead = (se.hHead + 1) % len(se.hRPS)
	} else {
		se.hLen++
	}
	se.hRPS[i], se.hErr[i], se.hP99[i] = se.rps, se.errRate, p99now
}

// windowBase returns the snapshot the latency window starts from: the one taken
// percentileWindow-1 samples ago (the oldest held, if fewer), so that the live counts
// minus it cover at most percentileWindow seconds up to now. Nil for a nil series (no
// sample yet): the window is then everything since the start.
func (se *series) windowBase() *sketchCounts {
	if se == nil || se.n == 0 {
		return nil
	}
	const ring = percentileWindow + 1
	back := min(se.n, percentileWindow) - 1
	return &se.snaps[(se.head-back+ring)%ring]
}

// latency returns the p50 and p99 of live minus the window's base (NaN without traffic).
func (se *series) latency(live *sketchCounts) Latency {
	var d sketchCounts
	if base := se.windowBase(); base != nil {
		d.subSat(live, base)
	} else {
		d = *live
	}
	return Latency{Num(d.quantile(0.5)), Num(d.quantile(0.99))}
}

func since(cur, last uint64) uint64 {
	if cur < last {
		return 0
	}
	return cur - last
}

// subSat sets c to a-b, bucket by bucket, with 0 where b is ahead (a backend left a pool).
func (c *sketchCounts) subSat(a, b *sketchCounts) {
	for i := range c {
		c[i] = since(a[i], b[i])
	}
}

// history returns the series' history, oldest first.
func (se *series) history() *History {
	h := &History{RPS: make([]Num, se.hLen), ErrorRate: make([]Num, se.hLen), P99MS: make([]Num, se.hLen)}
	for k := 0; k < se.hLen; k++ {
		i := (se.hHead + k) % len(se.hRPS)
		h.RPS[k], h.ErrorRate[k], h.P99MS[k] = Num(se.hRPS[i]), Num(se.hErr[i]), Num(se.hP99[i])
	}
	return h
}
