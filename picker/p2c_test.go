package picker

import (
	"math/rand/v2"
	"testing"
)

func TestLeastInflightTwo(t *testing.T) {
	f := func(loads []int64, want int) {
		t.Helper()
		for range 200 {
			got := LeastInflight(len(loads), func(i int) int64 { return loads[i] }, func(int) bool { return true })
			if got != want {
				t.Fatalf("LeastInflight(loads %v): got %d; want %d", loads, got, want)
			}
		}
	}
	f([]int64{5, 3}, 1)
	f([]int64{3, 5}, 0)
	f([]int64{0, 1}, 0)
	f([]int64{7}, 0)
}

func TestLeastInflightAvailability(t *testing.T) {
	f := func(loads []int64, up []bool, want int) {
		t.Helper()
		for range 200 {
			got := LeastInflight(len(loads), func(i int) int64 { return loads[i] }, func(i int) bool { return up[i] })
			if got != want {
				t.Fatalf("LeastInflight(loads %v, up %v): got %d; want %d", loads, up, got, want)
			}
		}
	}
	f(nil, nil, -1)
	f([]int64{0}, []bool{false}, -1)
	f([]int64{0, 0, 0}, []bool{false, false, false}, -1)
	f([]int64{0, 0, 9}, []bool{false, false, true}, 2)
	f([]int64{1, 9, 5}, []bool{false, true, true}, 2) // the fallback compares the two found
	f([]int64{5, 9, 1}, []bool{true, false, true}, 2) // also when the scan wraps around

	r := rand.New(rand.NewPCG(11, 12))
	for range 2000 {
		n := 1 + r.IntN(20)
		loads, up := make([]int64, n), make([]bool, n)
		anyUp := false
		for i := range n {
			loads[i] = r.Int64N(10)
			up[i] = r.IntN(3) != 0
			anyUp = anyUp || up[i]
		}
		calls := 0
		got := LeastInflight(n, func(i int) int64 { return loads[i] }, func(i int) bool {
			calls++
			if i < 0 || i >= n {
				t.Fatalf("avail(%d): index out of range [0, %d)", i, n)
			}
			return up[i]
		})
		switch {
		case !anyUp && got != -1:
			t.Fatalf("LeastInflight(up %v): got %d; want -1", up, got)
		case anyUp && (got < 0 || !up[got]):
			t.Fatalf("LeastInflight(up %v): got %d; want an available index", up, got)
		case calls > n+2:
			t.Fatalf("LeastInflight(n=%d) called avail %d times; want <= %d", n, calls, n+2)
		}
	}
}

func TestLeastInflightChoices(t *testing.T) {
	// Two distinct candidates, the lower load wins: the most loaded backend never wins.
	loads := []int64{4, 8, 1, 3, 6, 5, 9, 2, 7, 0}
	for range 10_000 {
		if got := LeastInflight(len(loads), func(i int) int64 { return loads[i] }, nil); got == 6 {
			t.Fatalf("LeastInflight(loads %v): got %d, the most loaded; want any other", loads, got)
		}
	}

	// Equal loads: every backend about equally often.
	const n, picks = 5, 100_000
	counts := make([]int, n)
	for range picks {
		counts[LeastInflight(n, func(int) int64 { return 0 }, func(int) bool { return true })]++
	}
	for _, c := range counts {
		if want := picks / n; c < want*95/100 || c > want*105/100 {
			t.Fatalf("LeastInflight with equal loads: got counts %v; want about %d each", counts, want)
		}
	}
}
