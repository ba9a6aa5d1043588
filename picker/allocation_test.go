//go:build !race

package picker

import (
	"sync/atomic"
	"testing"
)

// The race detector instruments closures and atomics with allocations, so these run without it.

func TestAllocsSmooth(t *testing.T) {
	s := NewSmooth([]int{3, 2, 1})
	if n := testing.AllocsPerRun(1000, func() { s.Next() }); n != 0 {
		t.Fatalf("Smooth.Next: got %v allocs/op; want 0", n)
	}
	// The closure captures a local of the test and is built on every run; it allocates
	// unless Pick's avail parameter does not escape.
	down := 1
	if n := testing.AllocsPerRun(1000, func() {
		s.Pick(func(i int) bool { return i != down })
	}); n != 0 {
		t.Fatalf("Smooth.Pick with a capturing closure: got %v allocs/op; want 0", n)
	}
	// The slow paths too: everything down.
	if n := testing.AllocsPerRun(100, func() {
		s.Pick(func(i int) bool { return i > down+10 })
	}); n != 0 {
		t.Fatalf("Smooth.Pick with nothing available: got %v allocs/op; want 0", n)
	}
}

func TestAllocsLeastInflight(t *testing.T) {
	inflight := make([]atomic.Int64, 100)
	up := make([]bool, 100)
	for i := range up {
		up[i] = i%3 != 0
	}
	if n := testing.AllocsPerRun(1000, func() {
		LeastInflight(len(inflight), func(i int) int64 { return inflight[i].Load() }, func(i int) bool { return up[i] })
	}); n != 0 {
		t.Fatalf("LeastInflight with capturing closures: got %v allocs/op; want 0", n)
	}
}
