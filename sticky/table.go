package sticky

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// table is a bounded, set-associative map from a byte-string key to a string value with an
// expiry, built so that reads take no lock at all.
//
// Why not a sharded map with an RWMutex per shard: RLock is an atomic add on the shard's
// reader count, so every core reading the same shard contends on one cache line; here a read
// is a hash plus up to `ways` plain atomic pointer loads and never writes shared memory.
//
// Layout: 2^k buckets of `ways` slots. A slot holds a pointer to an immutable entry; a write
// builds a new entry and stores the pointer (readers see the old or the new entry, never a
// torn one). Writers serialise per bucket on the bucket's mutex, so one key occupies at most
// one slot. A full bucket evicts its entry nearest to expiry, so the table never holds more
// than len(buckets)*ways entries: the bound is by construction, not by a sweeper. Expired
// entries are ignored by reads and reused by writes.
type table struct {
	seed      maphash.Seed
	mask      uint64
	buckets   []bucket
	evictions atomic.Uint64
}

const ways = 8

type bucket struct {
	mu    sync.Mutex // writers only
	slots [ways]atomic.Pointer[entry]
}

// entry is immutable once published.
type entry struct {
	hash uint64
	key  string
	val  string
	exp  int64 // unix nanoseconds; the entry is dead from exp on
}

// newTable returns a table holding at most about capacity entries (rounded up to a power of
// two times ways).
func newTable(capacity int) *table {
	n := 1
	for n*ways < capacity {
		n <<= 1
	}
	return &table{seed: maphash.MakeSeed(), mask: uint64(n - 1), buckets: make([]bucket, n)}
}

// capacity is the most entries the table holds.
func (t *table) capacity() int { return len(t.buckets) * ways }

// get returns the live entry for key, or nil. Lock-free; allocation-free.
func (t *table) get(key []byte, now int64) *entry {
	h := maphash.Bytes(t.seed, key)
	b := &t.buckets[h&t.mask]
	for i := range b.slots {
		e := b.slots[i].Load()
		if e != nil && e.hash == h && e.key == string(key) {
			if now >= e.exp {
				return nil
			}
			return e
		}
	}
	return nil
}

// put stores key → val until exp and returns the entry. keyStr, if not empty, is key as a
// string the caller already owns (saves a copy). It reports whether a live entry of another
// key was evicted to make room.
func (t *table) put(key []byte, keyStr, val string, exp, now int64) (e *entry, evicted bool) {
	h := maphash.Bytes(t.seed, key)
	b := &t.buckets[h&t.mask]
	b.mu.Lock()
	defer b.mu.Unlock()
	victim := -1
	var victimExp int64
	for i := range b.slots {
		old := b.slots[i].Load()
		switch {
		case old != nil && old.hash == h && old.key == string(key):
			e = &entry{hash: h, key: old.key, val: val, exp: exp}
			b.slots[i].Store(e)
			return e, false
		case old == nil || now >= old.exp:
			if victim < 0 || victimExp > 0 {
				victim, victimExp = i, 0 // a free slot beats any live one
			}
		case victim < 0 || (victimExp > 0 && old.exp < victimExp):
			victim, victimExp = i, old.exp
		}
	}
	if keyStr == "" {
		keyStr = string(key)
	}
	e = &entry{hash: h, key: keyStr, val: val, exp: exp}
	b.slots[victim].Store(e)
	if victimExp > 0 {
		t.evictions.Add(1)
		return e, true
	}
	return e, false
}

// len counts the live entries (for tests and stats; walks the whole table).
func (t *table) len(now int64) int {
	n := 0
	for i := range t.buckets {
		for j := range t.buckets[i].slots {
			if e := t.buckets[i].slots[j].Load(); e != nil && now < e.exp {
				n++
			}
		}
	}
	return n
}
