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

	load(10) // 10 in flight on the one backend: over the target of 4
	steps(samplesKept)
	if n := len(b.Store.Load().Backends()); n != 2 {
		t.Fatalf("got %d backends under load; want the first standby in (2)", n)
	}
	load(10)
	steps(3) // within the cooldown: no second step yet
	if n := len(b.Store.Load().Backends()); n != 2 {
		t.Fatalf("got %d backends; want no step within the cooldown", n)
	}
	steps(10)
	if n := len(b.Store.Load().Backends()); n != 3 {
		t.Fatalf("got %d backends after the cooldown under load; want both standby in (3)", n)
	}
	load(0)
	steps(12)
	if n := len(b.Store.Load().Backends()); n != 2 {
		t.Fatalf("got %d backends when idle; want one standby out (2)", n)
	}
	steps(12)
	if n := len(b.Store.Load().Backends()); n != 1 {
		t.Fatalf("got %d backends when idle; want only the configured one (1)", n)
	}
	steps(12)
	if n := len(b.Store.Load().Backends()); n != 1 {
		t.Fatalf("got %d backends; never fewer than the configured ones", n)
	}
}
