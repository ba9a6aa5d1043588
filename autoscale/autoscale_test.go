package autoscale

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"go-loadbalancer/config"
	"go-loadbalancer/state"
)

func TestAutoscaleBringsStandbyInAndOut(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte(`pools:
  - name: web
    backends: [ { url: "http://127.0.0.1:1" } ]
    standby: [ { url: "http://127.0.0.1:2" }, { url: "http://127.0.0.1:3" } ]
    autoscale: { target_inflight_per_backend: 4, min_active: 1, cooldown: 10s }
`))
	if err != nil {
		t.Fatal(err)
	}
	b := state.NewBuilder(nil, state.Hooks{})
	if _, err := b.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	a := New(b, zerolog.Nop())
	clock := time.Unix(1000, 0)
	a.now = func() time.Time { return clock }
	steps := func(n int) {
		for range n {
			clock = clock.Add(time.Second)
			a.Step()
		}
	}
	load := func(perBackend int64) {
		for _, be := range b.Store.Load().Backends() {
			be.Stats.Inflight.Store(perBackend)
		}
	}

	// Each phase holds the load for some steps, then checks the backends in the table.
	for _, ph := range []struct {
		load  int64 // in flight per backend
		steps int
		want  int
		why   string
	}{
		// 10 in flight on each backend: over the target of 4.
		{10, samplesKept, 2, "under load: the first standby in"},
		{10, 3, 2, "within the cooldown: no second step yet"},
		{10, 10, 3, "after the cooldown under load: both standby in"},
		{0, 12, 2, "idle: one standby out"},
		{0, 12, 1, "idle: only the configured one"},
		{0, 12, 1, "idle: never fewer than the configured ones"},
	} {
		load(ph.load)
		steps(ph.steps)
		if n := len(b.Store.Load().Backends()); n != ph.want {
			t.Fatalf("got %d backends; want %d (%s)", n, ph.want, ph.why)
		}
	}
}
