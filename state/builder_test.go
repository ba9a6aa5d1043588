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
