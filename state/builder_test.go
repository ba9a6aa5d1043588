package state

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go-loadbalancer/config"
)

// countedUpstream is a state.Upstream that counts its Close calls.
type countedUpstream struct {
	id     string
	closed atomic.Int32
}

func (u *countedUpstream) Check(string, time.Duration) (int, error) { return 200, nil }
func (u *countedUpstream) Close()                                   { u.closed.Add(1) }

// upstreamHooks makes a countedUpstream per new backend ID (keeping prev) into made, and
// publishes by recording each table's version in published.
func upstreamHooks(made map[string][]*countedUpstream, published *[]uint64, failTable *bool) Hooks {
	return Hooks{
		Upstream: func(b *Backend, _ *config.Pool, prev Upstream) (Upstream, error) {
			if prev != nil {
				return prev, nil
			}
			u := &countedUpstream{id: b.ID}
			made[b.ID] = append(made[b.ID], u)
			return u, nil
		},
		Table: func(t *Table) (func(), error) {
			if *failTable {
				return nil, errors.New("no")
			}
			return func() { *published = append(*published, t.Version) }, nil
		},
	}
}

// The builder closes each upstream exactly once, when no table has it any more; a build
// that fails closes what it made and nothing the running table uses, and publishes
// nothing.
func TestBuilderClosesUpstreamsNoTableHas(t *testing.T) {
	made := map[string][]*countedUpstream{}
	var published []uint64
	failTable := false
	b := NewBuilder(nil, upstreamHooks(made, &published, &failTable))
	t1, err := b.Apply(webConfig(t, 1, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	for i, be := range t1.Backends() {
		if be.Slot != i || be.Upstream != made[be.ID][0] {
			t.Fatalf("backend %d: Slot %d, Upstream %v; want slot %d and the upstream made for it", i, be.Slot, be.Upstream, i)
		}
	}
	gone := t1.Backends()[2].ID
	if _, err := b.Apply(webConfig(t, 1, 1)); err != nil {
		t.Fatal(err)
	}
	if n := made[gone][0].closed.Load(); n != 1 {
		t.Fatalf("the dropped backend's upstream was closed %d times; want 1", n)
	}
	failTable = true
	if _, err := b.Apply(webConfig(t, 1, 1, 1, 1)); err == nil {
		t.Fatal("a failing Table hook was ignored")
	}
	for id, us := range made {
		last := us[len(us)-1]
		want := int32(0)
		if id == gone || b.Store.Load().Backend(id) == nil {
			want = 1 // dropped, or made by the failed build
		}
		if n := last.closed.Load(); n != want {
			t.Fatalf("upstream of %s closed %d times; want %d", id, n, want)
		}
	}
	if want := []uint64{1, 2}; len(published) != 2 || published[0] != want[0] || published[1] != want[1] {
		t.Fatalf("published versions %v; want %v (the failed build publishes nothing)", published, want)
	}
}

// A change whose build fails changes nothing: the override it asked for is not kept, so
// neither a later change nor a reload publishes it (an operator told "error" never sees
// the weight or drain applied later).
func TestBuilderFailedChangeLeavesNoOverride(t *testing.T) {
	failUpstream := false
	b := NewBuilder(nil, Hooks{
		Upstream: func(b *Backend, _ *config.Pool, prev Upstream) (Upstream, error) {
			if failUpstream {
				return nil, errors.New("upstream_tls unreadable")
			}
			if prev != nil {
				return prev, nil
			}
			return &countedUpstream{id: b.ID}, nil
		},
	})
	cfg := webConfig(t, 1, 1)
	cfg.Pools[0].Standby = []config.Backend{{URL: "http://127.0.0.1:9", Weight: 1}}
	t1, err := b.Apply(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, c := t1.Backends()[0].ID, t1.Backends()[1].ID
	failUpstream = true
	for name, change := range map[string]func() (*Table, error){
		"SetWeight":     func() (*Table, error) { return b.SetWeight(a, 7) },
		"Drain":         func() (*Table, error) { return b.Drain(a) },
		"SetHealthy":    func() (*Table, error) { return b.SetHealthy(a, false) },
		"SetDiscovered": func() (*Table, error) { return b.SetDiscovered("web", []config.Backend{{URL: "http://127.0.0.1:8"}}) },
		"SetStandby":    func() (*Table, error) { return b.SetStandby("web", 1) },
	} {
		if tb, err := change(); err == nil || tb != nil {
			t.Fatalf("%s with a failing Upstream hook: got table %v, err %v; want an error", name, tb, err)
		}
	}
	if got := b.Store.Load(); got != t1 {
		t.Fatalf("the failed changes published version %d; want the running table kept", got.Version)
	}
	if n := b.Standby("web"); n != 0 {
		t.Fatalf("Standby after a failed SetStandby: %d; want 0", n)
	}
	failUpstream = false
	check := func(tb *Table, after string) {
		t.Helper()
		if bs := tb.Backends(); len(bs) != 2 {
			t.Fatalf("after %s: %d backends; want the 2 configured (no discovered or standby one)", after, len(bs))
		}
		if be := tb.Backend(a); be.Weight != 1 || be.Drained || !be.Healthy {
			t.Fatalf("after %s: %s has weight %d, drained %v, healthy %v; want 1, false, true (the failed changes)", after, a, be.Weight, be.Drained, be.Healthy)
		}
	}
	t2, err := b.SetWeight(c, 5)
	if err != nil {
		t.Fatal(err)
	}
	check(t2, "a later change")
	if t2.Backend(c).Weight != 5 {
		t.Fatalf("the change that succeeded set weight %d; want 5", t2.Backend(c).Weight)
	}
	t3, err := b.Apply(cfg)
	if err != nil {
		t.Fatal(err)
	}
	check(t3, "a reload")
}
