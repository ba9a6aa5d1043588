package state

import "sync"

// subscribers are a Builder's OnSwap functions and what each has seen. They are called
// after the builder's lock is released, so they may call back into the Builder, and one
// at a time, so each needs no lock against itself: a goroutine that publishes a table
// while another is calling subscribers leaves the delivery to it (notify returns at once),
// and that one, after each call, looks at the current table again.
type subscribers struct {
	mu         sync.Mutex // guards the fields below; never held while a subscriber runs
	list       []*subscriber
	delivering bool // a goroutine is in notify's loop
}

type subscriber struct {
	f    func(*Table)
	seen uint64 // version of the last table given to f; 0: none yet
}

func (s *subscribers) add(f func(*Table)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, &subscriber{f: f})
}

// notify gives the current table of store to every subscriber that has not seen it, the
// one furthest behind first, until all have the newest table.
func (s *subscribers) notify(store *Store) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.delivering {
		return // the goroutine delivering will see the newer table after its current call
	}
	s.delivering = true
	defer func() { s.delivering = false }()
	for {
		t := store.Load()
		if t == nil {
			return
		}
		var next *subscriber
		for _, sub := range s.list {
			if sub.seen < t.Version && (next == nil || sub.seen < next.seen) {
				next = sub
			}
		}
		if next == nil {
			return
		}
		next.seen = t.Version
		s.call(next, t)
	}
}

// call runs sub with t, releasing the lock for the call (and taking it back even if sub
// panics, for notify's deferred unlock).
func (s *subscribers) call(sub *subscriber, t *Table) {
	s.mu.Unlock()
	defer s.mu.Lock()
	sub.f(t)
}
