package sticky

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func newMemory(t testing.TB, o Options) *Memory {
	t.Helper()
	m, err := NewMemory(o)
	if err != nil {
		t.Fatalf("NewMemory: %v", err)
	}
	return m
}

func TestMemoryPinLookup(t *testing.T) {
	m := newMemory(t, Options{})
	if id, o := m.Lookup([]byte("a"), time.Now().UnixNano()); id != "" || o != Miss {
		t.Fatalf("got %q, %v before a pin; want miss", id, o)
	}
	m.Pin([]byte("a"), "web-1", 0)
	if id, o := m.Lookup([]byte("a"), time.Now().UnixNano()); id != "web-1" || o != CacheHit {
		t.Fatalf("got %q, %v; want web-1, cache_hit", id, o)
	}
	m.Repin([]byte("a"), "web-2", 0)
	if id, _ := m.Lookup([]byte("a"), time.Now().UnixNano()); id != "web-2" {
		t.Fatalf("got %q after re-pin; want web-2", id)
	}
	if n := m.Len(); n != 1 {
		t.Fatalf("got %d sessions; want 1 (a re-pin replaces the pin)", n)
	}
	st := m.Stats()
	if st.Pins != 1 || st.Repins != 1 || st.CacheHits != 2 || st.Misses != 1 || st.RedisUp {
		t.Fatalf("got stats %+v", st)
	}
}

// TestMemoryExpiry runs under synctest: the clock is fake, so expiry is exact.
func TestMemoryExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemory(t, Options{TTL: time.Minute})
		m.Pin([]byte("default-ttl"), "web-1", 0)
		m.Pin([]byte("short"), "web-2", 10*time.Second)
		time.Sleep(10*time.Second - time.Nanosecond)
		if id, _ := m.Lookup([]byte("short"), time.Now().UnixNano()); id != "web-2" {
			t.Fatalf("got %q just before expiry; want web-2", id)
		}
		time.Sleep(time.Nanosecond)
		if id, o := m.Lookup([]byte("short"), time.Now().UnixNano()); id != "" || o != Miss {
			t.Fatalf("got %q, %v at expiry; want miss", id, o)
		}
		if id, _ := m.Lookup([]byte("default-ttl"), time.Now().UnixNano()); id != "web-1" {
			t.Fatalf("got %q at 10s; want web-1 (ttl 1m)", id)
		}
		time.Sleep(50 * time.Second)
		if id, _ := m.Lookup([]byte("default-ttl"), time.Now().UnixNano()); id != "" {
			t.Fatalf("got %q after Options.TTL; want none", id)
		}
		if n := m.Len(); n != 0 {
			t.Fatalf("got %d live sessions; want 0", n)
		}
	})
}

// TestMemoryBounded: the table never holds more than its capacity; the newest pins survive.
func TestMemoryBounded(t *testing.T) {
	m := newMemory(t, Options{MaxSessions: 100})
	if c := m.Capacity(); c < 100 || c > 256 {
		t.Fatalf("got capacity %d for MaxSessions 100; want 100..256", c)
	}
	for i := range 10000 {
		m.Pin([]byte("k"+strconv.Itoa(i)), "web-1", time.Duration(i+1)*time.Minute)
	}
	if n := m.Len(); n > m.Capacity() {
		t.Fatalf("got %d sessions; want at most %d", n, m.Capacity())
	}
	if ev := m.Stats().Evictions; ev < 10000-uint64(m.Capacity()) {
		t.Fatalf("got %d evictions; want at least %d", ev, 10000-m.Capacity())
	}
	// The evictee is the entry nearest to expiry, so the last pin (longest TTL) survives.
	if id, _ := m.Lookup([]byte("k9999"), time.Now().UnixNano()); id != "web-1" {
		t.Fatal("the newest pin was evicted")
	}
}

// TestMemoryExpiredSlotsReused: expired entries free their slots without counting as
// evictions.
func TestMemoryExpiredSlotsReused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemory(t, Options{MaxSessions: ways})
		for i := range ways {
			m.Pin([]byte{byte(i)}, "web-1", time.Second)
		}
		time.Sleep(time.Second)
		for i := range ways {
			m.Pin([]byte{byte(100 + i)}, "web-2", time.Second)
		}
		if ev := m.Stats().Evictions; ev != 0 {
			t.Fatalf("got %d evictions; want 0 (the slots had expired)", ev)
		}
		if n := m.Len(); n != ways {
			t.Fatalf("got %d sessions; want %d", n, ways)
		}
	})
}

// TestMemoryConcurrent hammers one store from many goroutines (run with -race).
func TestMemoryConcurrent(t *testing.T) {
	m := newMemory(t, Options{MaxSessions: 64})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				k := []byte(fmt.Sprintf("k%d", (i*7+g)%200))
				if i%3 == 0 {
					m.Pin(k, "web-"+strconv.Itoa(g), time.Minute)
				} else if id, o := m.Lookup(k, time.Now().UnixNano()); o == CacheHit && id == "" {
					t.Error("cache hit with an empty ID")
				}
			}
		}()
	}
	wg.Wait()
	if n := m.Len(); n > m.Capacity() {
		t.Fatalf("got %d sessions; want at most %d", n, m.Capacity())
	}
	// One key never occupies two slots.
	seen := map[string]bool{}
	for i := range m.t.buckets {
		for j := range m.t.buckets[i].slots {
			if e := m.t.buckets[i].slots[j].Load(); e != nil {
				if seen[e.key] {
					t.Fatalf("key %q held twice", e.key)
				}
				seen[e.key] = true
			}
		}
	}
}

func TestMemoryInvalidKeys(t *testing.T) {
	m := newMemory(t, Options{})
	long := make([]byte, MaxKeyLen+1)
	m.Pin(long, "web-1", 0)
	m.Pin(nil, "web-1", 0)
	for _, k := range [][]byte{nil, long} {
		if _, o := m.Lookup(k, time.Now().UnixNano()); o != Miss {
			t.Fatalf("got %v for a %d-byte key; want miss", o, len(k))
		}
	}
	if n := m.Len(); n != 0 {
		t.Fatalf("got %d sessions; want 0", n)
	}
}

func TestMemoryHintKey(t *testing.T) {
	key := []byte("0123456789abcdef")
	m := newMemory(t, Options{HintKey: key})
	c, _ := ParseCookie(m.Signer().AppendCookieValue(nil, AppendSessionID(nil), m.Signer().Ref(0, "web-1")))
	if !NewSigner(key).Verify(c) {
		t.Fatal("memory store does not sign with Options.HintKey")
	}
	// Without a key each store makes its own.
	a, b := newMemory(t, Options{}), newMemory(t, Options{})
	c, _ = ParseCookie(a.Signer().AppendCookieValue(nil, AppendSessionID(nil), a.Signer().Ref(0, "web-1")))
	if !a.Signer().Verify(c) || b.Signer().Verify(c) {
		t.Fatal("generated keys: want each store to verify its own hints only")
	}
	// Rotation: a store with a new key and the previous one accepts cookies of both, and
	// resolves references made with the previous key (Ref(1)).
	next := []byte("fedcba9876543210")
	r := newMemory(t, Options{HintKey: next, PreviousHintKey: key})
	c, _ = ParseCookie(NewSigner(key).AppendCookieValue(nil, AppendSessionID(nil), NewSigner(key).Ref(0, "web-1")))
	if !r.Signer().Verify(c) || r.Signer().Ref(1, "web-1") != string(c.Ref) || r.Signer().Ref(0, "web-1") == string(c.Ref) {
		t.Fatal("rotated store: want the previous key's cookie verified and its reference resolvable as Ref(1)")
	}
}
