// Package autoscale is the control loop that brings pools' standby backends into rotation
// under load and takes them out again, through the state.Builder.
package autoscale

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"go-loadbalancer/state"
)

// Scaler brings a pool's standby backends into rotation when its active backends are
// busier than autoscale.target_inflight_per_backend, and takes them out again when load
// falls, never more than one step per autoscale.cooldown. Load is the in-flight requests
// per usable backend, averaged over the last samples (one a second), so one burst does not
// flap the pool. Each step is a Builder.SetStandby, that is one table swap.
type Scaler struct {
	builder *state.Builder
	log     zerolog.Logger
	every   time.Duration
	now     func() time.Time

	pools map[string]*scaleState
}

type scaleState struct {
	samples    []float64
	lastChange time.Time
}

// samplesKept is how many one-second samples the average covers.
const samplesKept = 5

// New returns an autoscaler for b's tables; Run drives it.
func New(b *state.Builder, log zerolog.Logger) *Scaler {
	return &Scaler{builder: b, log: log, every: time.Second, now: time.Now, pools: map[string]*scaleState{}}
}

// Run samples every second until ctx is done.
func (a *Scaler) Run(ctx context.Context) {
	t := time.NewTicker(a.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.Step()
		}
	}
}

// Step takes one sample of every autoscaled pool and scales it if due.
func (a *Scaler) Step() {
	t := a.builder.Store.Load()
	if t == nil {
		return
	}
	now := a.now()
	for _, p := range t.Pools {
		as := p.Settings.Autoscale
		if as.TargetInflightPerBackend <= 0 || len(p.Settings.Standby) == 0 {
			continue
		}
		st := a.pools[p.Name]
		if st == nil {
			st = &scaleState{}
			a.pools[p.Name] = st
		}
		var inflight int64
		usable := 0
		for _, b := range p.Backends {
			inflight += b.Stats.Inflight.Load()
			if b.Healthy && !b.Drained {
				usable++
			}
		}
		st.samples = append(st.samples, float64(inflight)/float64(max(usable, 1)))
		if len(st.samples) > samplesKept {
			st.samples = st.samples[1:]
		}
		if len(st.samples) < samplesKept || now.Sub(st.lastChange) < as.Cooldown {
			continue
		}
		var avg float64
		for _, s := range st.samples {
			avg += s
		}
		avg /= float64(len(st.samples))
		active := a.builder.Standby(p.Name)
		target := float64(as.TargetInflightPerBackend)
		next := active
		switch {
		case avg > target && active < len(p.Settings.Standby):
			next = active + 1
		case avg < target/2 && active > 0 && len(p.Backends)-1 >= as.MinActive:
			next = active - 1
		}
		if next == active {
			continue
		}
		if _, err := a.builder.SetStandby(p.Name, next); err != nil {
			a.log.Error().Err(err).Str("pool", p.Name).Msg("autoscale step failed")
			continue
		}
		st.lastChange, st.samples = now, st.samples[:0]
		a.log.Info().Str("pool", p.Name).Int("standby_active", next).Float64("inflight_per_backend", avg).
			Int("target", as.TargetInflightPerBackend).Msg("autoscaled pool")
	}
}
