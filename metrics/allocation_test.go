//go:build !race

package metrics

import (
	"testing"
	"time"
)

// TestObserveAllocatesNothing checks the request path's one metrics call.
func TestObserveAllocatesNothing(t *testing.T) {
	b, _ := newTestRegistry(t, poolYAML("127.0.0.1:1"))
	m := handle(b, 0)
	m.Observe(404, time.Millisecond) // first use of a code creates its counter
	if n := testing.AllocsPerRun(1000, func() {
		m.Observe(200, 3*time.Millisecond)
		m.Observe(404, time.Millisecond)
		m.Observe(299, time.Millisecond)
	}); n != 0 {
		t.Fatalf("got %.2f allocs per Observe; want 0", n)
	}
}
