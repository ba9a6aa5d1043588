package sticky

import (
	"fmt"
	"testing"
)

type fakeBackend struct {
	id      string
	healthy bool
}

func pick(key string, bs []fakeBackend) string {
	i := Rendezvous([]byte(key), bs, func(b fakeBackend) string { return b.id }, func(i int) bool { return bs[i].healthy })
	if i < 0 {
		return ""
	}
	return bs[i].id
}

func backends(ids ...string) []fakeBackend {
	bs := make([]fakeBackend, len(ids))
	for i, id := range ids {
		bs[i] = fakeBackend{id: id, healthy: true}
	}
	return bs
}

// TestScoreFixed pins the hash: every instance, and every version, must agree, so the score
// is a fixed function (no per-process seed). A change here moves header sessions in an
// outage on a mixed-version fleet.
func TestScoreFixed(t *testing.T) {
	f := func(key, id string, want uint64) {
		t.Helper()
		if got := Score([]byte(key), id); got != want {
			t.Fatalf("Score(%q, %q) = %#x; want %#x", key, id, got, want)
		}
	}
	f("user-42", "web-127.0.0.1_8081", 0xacd95c2ca1adbb80) // cross-checked with an independent Python implementation
	f("", "web-127.0.0.1_8082", 0x82b05cbb5dfa99c2)
}

// TestRendezvousAgrees: two "instances" with the backends in different orders place every
// key the same.
func TestRendezvousAgrees(t *testing.T) {
	a := backends("web-a_1", "web-b_2", "web-c_3", "web-d_4")
	b := backends("web-d_4", "web-b_2", "web-a_1", "web-c_3")
	for i := range 1000 {
		k := fmt.Sprintf("session-%d", i)
		if pa, pb := pick(k, a), pick(k, b); pa != pb {
			t.Fatalf("key %q: instance A picks %s, B picks %s", k, pa, pb)
		}
	}
}

// TestRendezvousStable: removing (or marking unhealthy) one backend moves only the keys that
// were on it; the others keep their backend. Keys spread over all backends.
func TestRendezvousStable(t *testing.T) {
	all := backends("web-a_1", "web-b_2", "web-c_3", "web-d_4")
	without := backends("web-a_1", "web-b_2", "web-d_4")
	down := backends("web-a_1", "web-b_2", "web-c_3", "web-d_4")
	down[2].healthy = false
	count := map[string]int{}
	for i := range 10000 {
		k := fmt.Sprintf("session-%d", i)
		before := pick(k, all)
		count[before]++
		for _, bs := range [][]fakeBackend{without, down} {
			after := pick(k, bs)
			if before != "web-c_3" && after != before {
				t.Fatalf("key %q moved from %s to %s when web-c_3 left", k, before, after)
			}
			if after == "web-c_3" {
				t.Fatalf("key %q placed on the removed backend", k)
			}
		}
	}
	for _, b := range all {
		if n := count[b.id]; n < 2000 || n > 3000 {
			t.Fatalf("backend %s got %d of 10000 keys; want about 2500 (%v)", b.id, n, count)
		}
	}
}

func TestRendezvousNoneUsable(t *testing.T) {
	bs := backends("web-a_1")
	bs[0].healthy = false
	if got := pick("k", bs); got != "" {
		t.Fatalf("got %q; want none", got)
	}
	if got := pick("k", nil); got != "" {
		t.Fatalf("got %q with no backends; want none", got)
	}
}
