package picker

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"unsafe"
)

// nginxSequence is the reference: ngx_http_upstream_get_peer's loop run steps times over
// the unreduced weights, exactly as nginx runs it per request.
func nginxSequence(weights []int, steps int) []int {
	cur := make([]int, len(weights))
	total := 0
	for _, w := range weights {
		total += w
	}
	out := make([]int, 0, steps)
	for range steps {
		best := -1
		for i, w := range weights {
			cur[i] += w
			if best < 0 || cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		out = append(out, best)
	}
	return out
}

func randomWeights(r *rand.Rand, n, maxWeight int) []int {
	w := make([]int, n)
	for i := range w {
		w[i] = 1 + r.IntN(maxWeight)
	}
	return w
}

func weightsGCD(weights []int) int {
	g := uint64(0)
	for _, w := range weights {
		g = gcd(g, uint64(w))
	}
	return int(g)
}

func TestSmoothSequence(t *testing.T) {
	f := func(weights []int, want []int) {
		t.Helper()
		s := NewSmooth(weights)
		if got := s.Sequence(); !slices.Equal(got, want) {
			t.Fatalf("NewSmooth(%v).Sequence(): got %v; want %v", weights, got, want)
		}
		if got := s.Len(); got != len(want) {
			t.Fatalf("NewSmooth(%v).Len(): got %d; want %d", weights, got, len(want))
		}
		// Next walks the same schedule, period after period.
		for pos := range 3 * len(want) {
			if got := s.Next(); got != want[pos%len(want)] {
				t.Fatalf("NewSmooth(%v): Next() #%d: got %d; want %d", weights, pos, got, want[pos%len(want)])
			}
		}
	}
	f([]int{3, 2, 1}, []int{0, 1, 0, 2, 1, 0})    // a b a c b a, the README's example
	f([]int{5, 1, 1}, []int{0, 0, 1, 0, 2, 0, 0}) // a a b a c a a, nginx's example (commit 52327e0627f4)
	f([]int{1, 1, 1}, []int{0, 1, 2})
	f([]int{2, 2}, []int{0, 1})
	f([]int{1}, []int{0})
	f([]int{7}, []int{0})
	f([]int{300, 200, 100}, []int{0, 1, 0, 2, 1, 0})
	f([]int{4, 2}, []int{0, 1, 0})
	f([]int{1, 2, 3}, []int{2, 1, 0, 2, 1, 2}) // ties go to the lowest index
	f([]int{1000000, 1000000, 1000000, 2000000}, []int{3, 0, 1, 2, 3})
}

func TestSmoothMatchesNginx(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		weights := randomWeights(r, 1+r.IntN(20), 1+r.IntN(60))
		if r.IntN(4) == 0 { // common divisors
			k := 2 + r.IntN(9)
			for i := range weights {
				weights[i] *= k
			}
		}
		total := 0
		for _, w := range weights {
			total += w
		}
		want := nginxSequence(weights, total)
		seq := NewSmooth(weights).Sequence()
		// Scaling every weight by g scales every current weight by g, so nginx's sequence
		// over the unreduced weights is the reduced schedule repeated g times.
		if len(seq)*weightsGCD(weights) != total {
			t.Fatalf("NewSmooth(%v).Len(): got %d; want %d", weights, len(seq), total/weightsGCD(weights))
		}
		for pos, w := range want {
			if got := seq[pos%len(seq)]; got != w {
				t.Fatalf("NewSmooth(%v) slot %d: got %d; want %d (nginx %v)", weights, pos, got, w, want)
			}
		}
	}
}

func TestSmoothSmoothness(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		weights := randomWeights(r, 1+r.IntN(50), 1+r.IntN(200))
		s := NewSmooth(weights)
		seq := s.Sequence()
		g, total := weightsGCD(weights), 0
		for _, w := range weights {
			total += w
		}
		if total/g > maxSchedule {
			t.Fatalf("test weights %v are scaled; want unscaled", weights)
		}
		counts := make([]int, len(weights))
		for _, i := range seq {
			counts[i]++
		}
		for i, w := range weights {
			if counts[i] != w/g {
				t.Fatalf("NewSmooth(%v): backend %d appears %d times per period; want %d", weights, i, counts[i], w/g)
			}
		}
		// No burst: a backend of at most average weight (share <= 1/n) never follows itself,
		// also across the end of a period. For two backends that is share <= 1/2. Heavier
		// backends may repeat, as in nginx, whose loop this is: the period ends and starts
		// with the heaviest backend (3:2:1 runs a b a c b a a b a ...), and 143:106:13:34:77
		// picks backend 0 (38%) twice in a row at slots 140-141 of 373.
		for pos, i := range seq {
			prev := seq[(pos+len(seq)-1)%len(seq)]
			if prev == i && len(weights)*weights[i] <= total && len(seq) > 1 {
				t.Fatalf("NewSmooth(%v): backend %d (share %d/%d, n=%d) twice in a row at slot %d of %v",
					weights, i, weights[i], total, len(weights), pos, seq)
			}
		}
	}
}

// checkShares picks count times with next and checks that each backend's share is within
// 1% (relative) of weights[i]/sum(weights).
func checkShares(t *testing.T, weights []int, count int, next func() int) {
	t.Helper()
	total := 0
	for _, w := range weights {
		total += w
	}
	counts := make([]int, len(weights))
	for range count {
		counts[next()]++
	}
	for i, w := range weights {
		want := float64(count) * float64(w) / float64(total)
		if got := float64(counts[i]); math.Abs(got-want) > 0.01*want {
			t.Fatalf("weights %v: backend %d picked %d times in %d; want %.0f ± 1%%", weights, i, counts[i], count, want)
		}
	}
}

func TestSmoothDistribution(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 20 {
		// Unscaled, over a pick count that is not a whole number of periods.
		weights := randomWeights(r, 2+r.IntN(30), 1+r.IntN(100))
		s := NewSmooth(weights)
		checkShares(t, weights, 100*s.Len()+s.Len()/3, s.Next)
	}

	// Scaled: 300 backends of weight 1000..1999 sum to ~450,000 > 1<<16; every backend keeps
	// over 100 slots, so rounding to whole slots costs under 1%.
	weights := randomWeights(r, 300, 1000)
	for i := range weights {
		weights[i] += 999
	}
	s := NewSmooth(weights)
	if got := s.Len(); got != maxSchedule {
		t.Fatalf("300 backends of weight 1000..1999: Len(): got %d; want %d", got, maxSchedule)
	}
	checkShares(t, weights, 3*s.Len()+12345, s.Next)

	// 1,000 backends of weight 100: the gcd makes it plain round-robin, stored as nothing.
	weights = slices.Repeat([]int{100}, 1000)
	s = NewSmooth(weights)
	if got := s.Len(); got != 1000 {
		t.Fatalf("1000 × weight 100: Len(): got %d; want 1000", got)
	}
	if s.seq != nil {
		t.Fatalf("1000 × weight 100: got a stored schedule of %d entries; want none (round-robin)", len(s.seq))
	}
	checkShares(t, weights, 10*s.Len(), s.Next)

	// 1,000 backends of weight 100 and one of 101: gcd 1, sum 100,101 > 1<<16, scaled to ~65.5
	// slots each.
	weights = append(weights, 101)
	s = NewSmooth(weights)
	if got := s.Len(); got != maxSchedule {
		t.Fatalf("1000 × weight 100 + 101: Len(): got %d; want %d", got, maxSchedule)
	}
	checkShares(t, weights, 10*s.Len(), s.Next)
}

func TestSmoothBoundedMemory(t *testing.T) {
	f := func(name string, weights []int, wantLen int, wantStored bool) {
		t.Helper()
		s := NewSmooth(weights)
		if got := s.Len(); got != wantLen {
			t.Fatalf("%s: Len(): got %d; want %d", name, got, wantLen)
		}
		if stored := s.seq != nil; stored != wantStored {
			t.Fatalf("%s: stored schedule: got %v; want %v", name, stored, wantStored)
		}
		if got := cap(s.seq) * 2; got > 128<<10 {
			t.Fatalf("%s: schedule takes %d bytes; want <= 128 KiB", name, got)
		}
		// Every backend keeps at least one slot, and one period picks it that often.
		counts := make([]int, len(weights))
		for _, i := range s.Sequence() {
			counts[i]++
		}
		for i, c := range counts {
			if c < 1 {
				t.Fatalf("%s: backend %d (weight %d) has no slot", name, i, weights[i])
			}
		}
	}
	r := rand.New(rand.NewPCG(7, 8))
	f("1000 × 100", slices.Repeat([]int{100}, 1000), 1000, false)
	f("10,000 × 1..100", randomWeights(r, 10_000, 100), maxSchedule, true)
	f("10,000 × 1..1,000,000", randomWeights(r, 10_000, 1_000_000), maxSchedule, true)
	f("65,536 × 1..10", randomWeights(r, 65_536, 10), maxSchedule, false)
	f("70,000 × 1..10", randomWeights(r, 70_000, 10), 70_000, false)
	f("one heavy, 999 light", append([]int{1 << 40}, slices.Repeat([]int{1}, 999)...), maxSchedule, true)
	f("near MaxInt", []int{math.MaxInt, math.MaxInt, math.MaxInt - 1, 1}, maxSchedule, true)

	// Beyond 1<<16 backends the schedule is round-robin in index order.
	if got := NewSmooth(randomWeights(r, 70_000, 10)).Sequence(); got[0] != 0 || got[69_999] != 69_999 {
		t.Fatalf("70,000 backends: got schedule starting %v; want 0, 1, 2, ...", got[:5])
	}
}

func TestSmoothSize(t *testing.T) {
	// One cache line: see the padding in Smooth.
	if got := unsafe.Sizeof(Smooth{}); got != 64 {
		t.Fatalf("unsafe.Sizeof(Smooth{}): got %d; want 64", got)
	}
}

func TestApportion(t *testing.T) {
	f := func(weights []int, limit uint64) {
		t.Helper()
		w := make([]uint64, len(weights))
		var sum uint64
		for i, v := range weights {
			w[i] = uint64(v)
			sum += uint64(v)
		}
		apportion(w, sum, limit)

		// The weights forced up to one slot, by the naive fixed point: force every weight
		// whose quota is below one slot, recompute the others' quotas, until none changes.
		forced := make([]bool, len(weights))
		budget, rest := float64(limit), float64(sum)
		for changed := true; changed; {
			changed = false
			for i, v := range weights {
				if !forced[i] && float64(v)*budget < rest {
					forced[i], changed = true, true
					budget--
					rest -= float64(v)
				}
			}
		}
		var got uint64
		for i, v := range w {
			got += v
			want := float64(weights[i]) * budget / rest // quota among the free weights
			if forced[i] {
				want = 1
			}
			if math.Abs(float64(v)-want) >= 1 {
				t.Fatalf("apportion(%v, %d): weight %d got %d slots; want %.3f ± <1", weights, limit, i, v, want)
			}
		}
		if got != limit {
			t.Fatalf("apportion(%v, %d): got %d slots in all; want %d", weights, limit, got, limit)
		}
	}
	f([]int{5, 3, 2}, 5)                // quotas 2.5 1.5 1
	f([]int{100, 1, 1, 1}, 10)          // the 1s are forced up; 100 gets the other 7
	f([]int{1, 1, 1, 1, 1, 1, 1, 2}, 8) // all forced
	f([]int{7, 7, 7, 7, 7, 8}, 20)      // remainders decide
	f([]int{1, 2, 3, 50, 50}, 6)        // forcing 1 and 2 pushes 3 below one slot too
	r := rand.New(rand.NewPCG(9, 10))
	for range 300 {
		weights := randomWeights(r, 1+r.IntN(100), 1+r.IntN(10_000))
		if r.IntN(2) == 0 { // skewed: many light, few heavy
			for i := range weights {
				weights[i] = 1 + weights[i]*weights[i]*weights[i]/(1+r.IntN(1_000_000))
			}
		}
		total := 0
		for _, w := range weights {
			total += w
		}
		if limit := len(weights) + r.IntN(total); limit < total {
			f(weights, uint64(limit))
		}
	}
}

func TestNewSmoothPanics(t *testing.T) {
	f := func(weights []int, want string) {
		t.Helper()
		defer func() {
			t.Helper()
			if got := fmt.Sprint(recover()); got != want {
				t.Fatalf("NewSmooth(%v) panic: got %q; want %q", weights, got, want)
			}
		}()
		NewSmooth(weights)
	}
	f(nil, "BUG: picker.NewSmooth: no weights")
	f([]int{}, "BUG: picker.NewSmooth: no weights")
	f([]int{1, 0}, "BUG: picker.NewSmooth: weights[1] = 0; want >= 1")
	f([]int{-3}, "BUG: picker.NewSmooth: weights[0] = -3; want >= 1")
}

func TestSmoothPickSkips(t *testing.T) {
	f := func(weights []int, up []bool, picks int, want []int) {
		t.Helper()
		s := NewSmooth(weights)
		var got []int
		for range picks {
			got = append(got, s.Pick(func(i int) bool { return up[i] }))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("NewSmooth(%v).Pick with up=%v: got %v; want %v", weights, up, got, want)
		}
	}
	// The schedule a b a c b a minus b, in order, period after period.
	f([]int{3, 2, 1}, []bool{true, false, true}, 8, []int{0, 0, 2, 0, 0, 0, 2, 0})
	f([]int{3, 2, 1}, []bool{false, true, true}, 6, []int{1, 2, 1, 1, 2, 1})
	f([]int{3, 2, 1}, []bool{false, false, true}, 3, []int{2, 2, 2})
	f([]int{3, 2, 1}, []bool{true, true, true}, 6, []int{0, 1, 0, 2, 1, 0})
	f([]int{3, 2, 1}, []bool{false, false, false}, 2, []int{-1, -1})
	f([]int{1}, []bool{false}, 2, []int{-1, -1})
	f([]int{1}, []bool{true}, 2, []int{0, 0})

	// A nil avail means all available.
	s := NewSmooth([]int{3, 2, 1})
	for pos, want := range []int{0, 1, 0, 2, 1, 0} {
		if got := s.Pick(nil); got != want {
			t.Fatalf("Pick(nil) #%d: got %d; want %d", pos, got, want)
		}
	}
}

func TestSmoothPickBounded(t *testing.T) {
	f := func(name string, weights []int, up int, want int) {
		t.Helper()
		s := NewSmooth(weights)
		for range 3 {
			calls := 0
			got := s.Pick(func(i int) bool {
				calls++
				if i < 0 || i >= len(weights) {
					t.Fatalf("%s: avail(%d): index out of range [0, %d)", name, i, len(weights))
				}
				return i == up
			})
			if got != want {
				t.Fatalf("%s: Pick: got %d; want %d", name, got, want)
			}
			if calls > 2*len(weights) {
				t.Fatalf("%s: Pick called avail %d times; want <= %d", name, calls, 2*len(weights))
			}
		}
	}
	weights := slices.Repeat([]int{100}, 1000)
	weights[617] = 1 // one slot in 1<<16 after scaling
	f("1000 backends, only the lightest up", weights, 617, 617)
	f("1000 backends, none up", weights, -1, -1)
	f("3 backends, none up", []int{3, 2, 1}, -1, -1)
	f("70,000 backends, one up", slices.Repeat([]int{1}, 70_000), 69_999, 69_999)
}

func TestSmoothConcurrent(t *testing.T) {
	// Every slot is handed out once, so whole periods of picks give exact counts. With
	// backend 3 down, Pick returns every available slot it claims and claims slots in
	// order, so 22 picks per period (29 slots minus backend 3's 7) also add up exactly.
	const goroutines, periods = 8, 500
	weights := []int{5, 1, 3, 7, 2, 2, 9}
	f := func(name string, perPeriod int, pick func(s *Smooth) int, want []int) {
		t.Helper()
		s := NewSmooth(weights)
		counts := make([][]int, goroutines)
		var wg sync.WaitGroup
		for g := range goroutines {
			picks := periods * perPeriod / goroutines
			if g == 0 { // 500 periods need not split evenly
				picks += periods*perPeriod - picks*goroutines
			}
			counts[g] = make([]int, len(weights))
			wg.Go(func() {
				for range picks {
					counts[g][pick(s)]++
				}
			})
		}
		wg.Wait()
		got := make([]int, len(weights))
		for _, c := range counts {
			for i, n := range c {
				got[i] += n
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s from %d goroutines: got counts %v; want %v", name, goroutines, got, want)
		}
	}
	want := make([]int, len(weights))
	for i, w := range weights {
		want[i] = periods * w
	}
	f("Next", 29, (*Smooth).Next, want)
	want[3] = 0
	f("Pick", 29-7, func(s *Smooth) int { return s.Pick(func(i int) bool { return i != 3 }) }, want)
}
