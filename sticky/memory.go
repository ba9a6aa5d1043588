package sticky

import (
	"crypto/rand"
	"fmt"
	"time"
)

// Memory is the single-process store: a bounded table in process memory. Use it when Redis
// is off; sessions are not shared between instances and are lost on restart.
//
// Lookup is lock-free and allocation-free (see table). Pin allocates one entry (and a copy
// of a new key) and takes the mutex of the key's bucket. Every successful Lookup is a CacheHit. Safe for concurrent use.
type Memory struct {
	t      *table
	ttl    time.Duration
	signer *Signer
	c      counters
}

var _ Store = (*Memory)(nil)

// NewMemory returns a memory store. o.Redis* fields are ignored.
func NewMemory(o Options) (*Memory, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	key, prev := o.HintKey, o.PreviousHintKey
	if key == nil {
		prev = nil
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("cannot generate sticky hint key: %w", err)
		}
	}
	return &Memory{t: newTable(o.MaxSessions), ttl: o.TTL, signer: NewSigner(key, prev)}, nil
}

// Lookup implements Store. Outcomes: CacheHit or Miss.
func (m *Memory) Lookup(key []byte, now int64) (string, Outcome) {
	if len(key) == 0 || len(key) > MaxKeyLen {
		m.c.misses.inc()
		return "", Miss
	}
	e := m.t.get(key, now)
	if e == nil {
		m.c.misses.inc()
		return "", Miss
	}
	m.c.cacheHits.inc()
	return e.val, CacheHit
}

// Pin implements Store.
func (m *Memory) Pin(key []byte, backendID string, ttl time.Duration) {
	m.c.pins.inc()
	m.pin(key, backendID, ttl)
}

// Repin implements Store.
func (m *Memory) Repin(key []byte, backendID string, ttl time.Duration) {
	m.c.repins.inc()
	m.pin(key, backendID, ttl)
}

func (m *Memory) pin(key []byte, backendID string, ttl time.Duration) {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return
	}
	if ttl <= 0 {
		ttl = m.ttl
	}
	now := time.Now().UnixNano()
	m.t.put(key, "", backendID, now+int64(ttl), now)
}

// Signer implements Store.
func (m *Memory) Signer() *Signer { return m.signer }

// Stats implements Store.
func (m *Memory) Stats() Stats {
	s := m.c.snapshot()
	s.Evictions = m.t.evictions.Load()
	return s
}

// Close implements Store; the memory store holds nothing to release.
func (m *Memory) Close() {}

// Len returns the number of live sessions (walks the table: for tests and the admin page,
// not the request path).
func (m *Memory) Len() int { return m.t.len(time.Now().UnixNano()) }

// Capacity returns the most sessions the store holds.
func (m *Memory) Capacity() int { return m.t.capacity() }
