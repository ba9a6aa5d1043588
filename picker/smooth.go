package picker

import (
	"fmt"
	"math/bits"
	"slices"
	"sync/atomic"
)

// maxSchedule caps the schedule length: a longer period is scaled down to this many slots,
// or to n slots when there are more than maxSchedule backends. It is also the largest n for
// which indices fit the uint16 schedule.
const maxSchedule = 1 << 16

// Smooth is nginx's smooth weighted round-robin, precomputed into a schedule when built and
// walked with an atomic cursor: wait-free, safe for concurrent use, 0 allocs per pick.
//
// Build one with [NewSmooth]; the zero Smooth is not usable. A Smooth must not be copied.
type Smooth struct {
	cursor atomic.Uint64 // next slot to hand out; only ever grows (wraps after 2^64 picks)

	// Read-only after NewSmooth.
	period uint64   // schedule length: len(seq), or n when seq is nil
	n      int      // number of backends
	seq    []uint16 // one period of backend indices; nil means round-robin 0, 1, ..., n-1

	// Pad to one 64-byte cache line (the allocator's 64-byte size class is line-aligned),
	// so the cursor, which every pick writes, shares its line with nothing but the
	// read-only fields every pick reads right after the write.
	_ [64 - 8 - 8 - 8 - 24]byte
}

// NewSmooth builds the smooth weighted round-robin schedule for backends 0..len(weights)-1
// with the given weights (see the package doc for the algorithm and the length cap).
//
// Every weight must be >= 1 and weights must not be empty; callers validate their input,
// so anything else panics. NewSmooth keeps no reference to weights. Building costs
// O(period × distinct weights) time, paid once per table: measured 4 ms for 10,000 backends
// of weights 1..100 and 45 ms for the worst case, 361 distinct weights.
func NewSmooth(weights []int) *Smooth {
	n := len(weights)
	if n == 0 {
		panic("BUG: picker.NewSmooth: no weights")
	}
	w := make([]uint64, n)
	for i, v := range weights {
		if v < 1 {
			panic(fmt.Sprintf("BUG: picker.NewSmooth: weights[%d] = %d; want >= 1", i, v))
		}
		w[i] = uint64(v)
	}
	sum := reduce(w)
	if limit := uint64(max(maxSchedule, n)); sum > limit {
		apportion(w, sum, limit)
		sum = reduce(w)
	}
	s := &Smooth{period: sum, n: n}
	if sum != uint64(n) { // else every reduced weight is 1: plain round-robin
		s.seq = schedule(w, sum)
	}
	return s
}

// Next claims the next slot of the schedule and returns its backend index, in [0, n).
// It is one atomic add and never fails.
func (s *Smooth) Next() int {
	c := s.cursor.Add(1) - 1
	return s.at(c % s.period)
}

// Pick returns the backend of the next schedule slot whose backend is available, claiming
// the unavailable slots it skips, or -1 if avail reports no backend available. avail is
// called with indices in [0, n) at most 2n times and is not retained; a nil avail means
// every backend is available (Pick is then Next).
func (s *Smooth) Pick(avail func(i int) bool) int {
	// Fast path: the claimed slot's backend is available.
	c := s.cursor.Add(1) - 1
	i := s.at(c % s.period)
	if avail == nil || avail(i) {
		return i
	}
	return s.pickSlow(c, avail)
}

// pickSlow is Pick after the slot c named an unavailable backend.
func (s *Smooth) pickSlow(c uint64, avail func(i int) bool) int {
	// Slow path: claim the following slots, one at a time so that concurrent picks never
	// share a slot, until n slots in a row have missed.
	for range s.n - 1 {
		c = s.cursor.Add(1) - 1
		if i := s.at(c % s.period); avail(i) {
			return i
		}
	}
	// Slowest path: the few available backends, if any, have small shares of the schedule.
	// Scan all backends once from a rotating offset.
	start := int(c % uint64(s.n))
	for k := range s.n {
		i := start + k
		if i >= s.n {
			i -= s.n
		}
		if avail(i) {
			return i
		}
	}
	return -1
}

// Len returns the schedule length: the period after which Next repeats itself.
func (s *Smooth) Len() int { return int(s.period) }

// Sequence returns a copy of one period of the schedule, starting at its first slot
// (not at the cursor). It allocates; it is meant for tests and debugging.
func (s *Smooth) Sequence() []int {
	out := make([]int, s.period)
	for pos := range out {
		out[pos] = s.at(uint64(pos))
	}
	return out
}

// at returns the backend at schedule position pos < s.period.
func (s *Smooth) at(pos uint64) int {
	if s.seq == nil {
		return int(pos)
	}
	return int(s.seq[pos])
}

// reduce divides w by the gcd of its elements and returns the reduced sum. When the sum
// would overflow 64 bits (weights near MaxInt), it first shifts every weight right, which
// keeps the ratios to within a part in 2^(63-log2 n).
func reduce(w []uint64) uint64 {
	var g, sum, overflow uint64
	for _, v := range w {
		var carry uint64
		g = gcd(g, v)
		sum, carry = bits.Add64(sum, v, 0)
		overflow |= carry
	}
	if overflow != 0 {
		shift := bits.Len(uint(len(w)))
		for i, v := range w {
			w[i] = max(1, v>>shift)
		}
		return reduce(w)
	}
	if g > 1 {
		for i := range w {
			w[i] /= g
		}
		sum /= g
	}
	return sum
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// apportion scales w, whose sum is sum, to integers >= 1 summing to exactly limit, where
// len(w) <= limit < sum, by largest-remainder (Hamilton) apportionment: each weight gets
// the integer part of its exact quota and the leftover slots go to the largest fractions.
// Weights whose quota is below one slot get one slot, and the others share what is left.
func apportion(w []uint64, sum, limit uint64) {
	order := make([]int, len(w))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmpUint(w[a], w[b]) })

	// The weights forced up to one slot are a prefix of the ascending order: forcing a
	// weight below the average per slot only lowers the slots-per-weight ratio of the rest.
	budget, rest := limit, sum
	k := 0
	for ; k < len(order); k++ {
		hi, lo := bits.Mul64(w[order[k]], budget)
		if hi != 0 || lo >= rest { // quota = w*budget/rest >= 1
			break
		}
		budget--
		rest -= w[order[k]]
		w[order[k]] = 1
	}
	free := order[k:]
	if len(free) == 0 {
		return
	}
	rem := make([]uint64, len(w))
	left := budget
	for _, i := range free {
		hi, lo := bits.Mul64(w[i], budget)
		q, r := bits.Div64(hi, lo, rest) // q <= budget, so hi < rest
		w[i], rem[i] = q, r
		left -= q
	}
	// left < len(free): each quota lost less than one slot to its integer part.
	slices.SortStableFunc(free, func(a, b int) int { return cmpUint(rem[b], rem[a]) })
	for _, i := range free[:left] {
		w[i]++
	}
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// schedule runs nginx's smooth weighted round-robin over weights w (all >= 1, n <= 65536)
// for one period of total = sum(w) picks and returns the picked indices.
//
// Backends of equal weight are picked round-robin in index order: they gain weight alike,
// so among them the one picked least often this round, lowest index first, has the largest
// current weight. So the loop keeps one current weight per distinct weight — the current
// weight of the group's members not yet picked this round — which makes the build
// O(total × distinct weights) rather than O(total × n); distinct weights are at most
// sqrt(2 × total), so at most 362 for a capped schedule.
func schedule(w []uint64, total uint64) []uint16 {
	if len(w) > maxSchedule {
		panic(fmt.Sprintf("BUG: picker.schedule: %d backends do not fit uint16 indices", len(w)))
	}
	// Groups of equal weight, in order of their lowest index, as parallel slices for a
	// tight inner loop: weight, current weight, next member to pick.
	byWeight := make(map[uint64]int)
	var (
		weight, cur []int64
		head        []uint16   // head[g] = members[g][next[g]], the group's next pick
		members     [][]uint16 // backend indices, ascending
		next        []int
	)
	for i, v := range w {
		g, ok := byWeight[v]
		if !ok {
			g = len(weight)
			byWeight[v] = g
			weight, cur, head = append(weight, int64(v)), append(cur, 0), append(head, uint16(i))
			members, next = append(members, nil), append(next, 0)
		}
		members[g] = append(members[g], uint16(i))
	}

	seq := make([]uint16, total)
	for pos := range seq {
		best := 0
		for g := range cur {
			cur[g] += weight[g]
			if cur[g] > cur[best] || cur[g] == cur[best] && head[g] < head[best] {
				best = g
			}
		}
		seq[pos] = head[best]
		next[best]++
		if next[best] == len(members[best]) { // every member was picked this round
			next[best] = 0
			cur[best] -= int64(total)
		}
		head[best] = members[best][next[best]]
	}
	return seq
}
