package state

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// A subscriber may call back into the Builder from its own call: it runs with no builder
// lock held. (It ran under the lock, and such a call deadlocked.) The table its call
// publishes reaches it once its current call returns.
func TestSubscriberMayCallBack(t *testing.T) {
	b, tb := testTable(t, 1, 1)
	id := tb.Backends()[0].ID
	var weights []int
	var errs []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.OnSwap(func(t *Table) {
			w := t.Backend(id).Weight
			weights = append(weights, w)
			if w == 1 {
				_, err := b.SetWeight(id, 2) // synchronously, from the subscriber
				errs = append(errs, err)
			}
		})
		if _, err := b.Drain(tb.Backends()[1].ID); err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // a hang detector, not a timing assertion
		t.Fatal("a subscriber calling back into the Builder deadlocked")
	}
	if len(errs) != 1 || errs[0] != nil {
		t.Fatalf("the subscriber's SetWeight calls returned %v; want one nil", errs)
	}
	if want := "[1 2 2]"; fmt.Sprint(weights) != want {
		t.Fatalf("the subscriber saw weights %v; want %v (the first table, its own, Drain's)", weights, want)
	}
	if v := b.Store.Load().Version; v != 3 {
		t.Fatalf("got table version %d; want 3 (Apply, the subscriber's SetWeight, Drain)", v)
	}
}

// Concurrent changes: every subscriber, including one added while they run, sees versions
// only in increasing order and ends on the newest table. Run with -race: the subscribers'
// own slices are unguarded, which is safe only because each is called one call at a time.
func TestSubscribersEndOnNewest(t *testing.T) {
	b, tb := testTable(t, 1, 1, 1)
	const n = 3
	seen := make([][]uint64, n)
	subscribe := func(i int) {
		b.OnSwap(func(t *Table) {
			seen[i] = append(seen[i], t.Version)
			b.Standby("web") // a read that takes the builder's lock
		})
	}
	subscribe(0)
	subscribe(1)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				id := tb.Backends()[(g+i)%3].ID
				if _, err := b.SetWeight(id, 1+i); err != nil {
					t.Error(err)
				}
				if g == 0 && i == 10 {
					subscribe(2)
				}
			}
		}()
	}
	wg.Wait()
	newest := b.Store.Load().Version
	if newest != 101 {
		t.Fatalf("got version %d; want 101 (one Apply and 100 changes)", newest)
	}
	for i, vs := range seen {
		if len(vs) == 0 || vs[len(vs)-1] != newest {
			t.Fatalf("subscriber %d saw %v; want it to end on version %d", i, vs, newest)
		}
		for j := 1; j < len(vs); j++ {
			if vs[j] <= vs[j-1] {
				t.Fatalf("subscriber %d saw version %d after %d", i, vs[j], vs[j-1])
			}
		}
	}
}

// A subscriber that panics (say, in an admin request that net/http recovers) does not stop
// the others from being told of later tables.
func TestSubscriberPanicLeavesDeliveryWorking(t *testing.T) {
	b, tb := testTable(t, 1, 1)
	id := tb.Backends()[0].ID
	panicked := false
	b.OnSwap(func(t *Table) {
		if t.Version == 2 && !panicked {
			panicked = true
			panic("subscriber bug")
		}
	})
	var last uint64
	b.OnSwap(func(t *Table) { last = t.Version })
	func() {
		defer func() { _ = recover() }()
		_, _ = b.SetWeight(id, 5)
	}()
	if !panicked {
		t.Fatal("the first subscriber never saw version 2")
	}
	if _, err := b.SetWeight(id, 6); err != nil {
		t.Fatal(err)
	}
	if last != 3 {
		t.Fatalf("the second subscriber ended on version %d; want 3", last)
	}
}
