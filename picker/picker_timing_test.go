package picker

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// benchSink keeps the compiler from discarding picks.
var benchSink atomic.Int64

// benchWeights: 3 → 3:2:1; 100 → 1..10 (550 slots, stored); 10,000 → 1..100 (505,000
// reduced, scaled to 65,536 slots).
func benchWeights(n int) []int {
	if n == 3 {
		return []int{3, 2, 1}
	}
	spread := 10
	if n > 100 {
		spread = 100
	}
	w := make([]int, n)
	for i := range w {
		w[i] = 1 + i%spread
	}
	return w
}

var benchSizes = []int{3, 100, 10_000}

func BenchmarkSmoothNext(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			s := NewSmooth(benchWeights(n))
			b.ReportAllocs()
			b.ResetTimer() // exclude the setup: NewSmooth(10,000 backends) takes milliseconds
			b.RunParallel(func(pb *testing.PB) {
				var sum int
				for pb.Next() {
					sum += s.Next()
				}
				benchSink.Add(int64(sum))
			})
		})
	}
}

// BenchmarkSmoothPick has every 10th backend down (for 3 backends: none), read through a
// capturing closure as the proxy does.
func BenchmarkSmoothPick(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			s := NewSmooth(benchWeights(n))
			down := make([]atomic.Bool, n)
			for i := 9; i < n; i += 10 {
				down[i].Store(true)
			}
			b.ReportAllocs()
			b.ResetTimer() // exclude the setup: NewSmooth(10,000 backends) takes milliseconds
			b.RunParallel(func(pb *testing.PB) {
				var sum int
				for pb.Next() {
					sum += s.Pick(func(i int) bool { return !down[i].Load() })
				}
				benchSink.Add(int64(sum))
			})
		})
	}
}

func BenchmarkLeastInflight(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			inflight := make([]atomic.Int64, n)
			for i := range inflight {
				inflight[i].Store(int64(i % 7))
			}
			b.ReportAllocs()
			b.ResetTimer() // exclude the setup: NewSmooth(10,000 backends) takes milliseconds
			b.RunParallel(func(pb *testing.PB) {
				var sum int
				for pb.Next() {
					sum += LeastInflight(n, func(i int) int64 { return inflight[i].Load() }, func(int) bool { return true })
				}
				benchSink.Add(int64(sum))
			})
		})
	}
}

// mutexSmooth is the baseline: nginx's loop as nginx runs it, per pick under a lock.
type mutexSmooth struct {
	mu      sync.Mutex
	weights []int
	cur     []int
	total   int
}

func (m *mutexSmooth) next() int {
	m.mu.Lock()
	best := -1
	for i, w := range m.weights {
		m.cur[i] += w
		if best < 0 || m.cur[i] > m.cur[best] {
			best = i
		}
	}
	m.cur[best] -= m.total
	m.mu.Unlock()
	return best
}

func BenchmarkMutexSmooth(b *testing.B) {
	for _, n := range []int{3, 100} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			w := benchWeights(n)
			m := &mutexSmooth{weights: w, cur: make([]int, n)}
			for _, v := range w {
				m.total += v
			}
			b.ReportAllocs()
			b.ResetTimer() // exclude the setup: NewSmooth(10,000 backends) takes milliseconds
			b.RunParallel(func(pb *testing.PB) {
				var sum int
				for pb.Next() {
					sum += m.next()
				}
				benchSink.Add(int64(sum))
			})
		})
	}
}

// BenchmarkNewSmooth is the build cost, paid when a table is built. distinct=361 is the
// worst case for the build loop: 361 distinct weights summing to 65,341 slots.
func BenchmarkNewSmooth(b *testing.B) {
	distinct := make([]int, 361)
	for i := range distinct {
		distinct[i] = i + 1
	}
	for _, tc := range []struct {
		name    string
		weights []int
	}{
		{"n=3", benchWeights(3)},
		{"n=100", benchWeights(100)},
		{"n=10000", benchWeights(10_000)},
		{"distinct=361", distinct},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				NewSmooth(tc.weights)
			}
		})
	}
}

// BenchmarkSpaced puts about 200 cycles of local work between picks, as a proxy has far
// more between two picks of one worker. The tight loops above favour the mutex: its holder
// re-acquires the lock before the other CPU can, so the lock's cache line rarely moves,
// whereas every atomic add moves the cursor's line. With work in between both must move a
// line per pick, and the mutex also parks and wakes waiters. "none" is the work alone.
func BenchmarkSpaced(b *testing.B) {
	spin := func(k int) int {
		x := 1
		for i := range k {
			x = x*31 + i
		}
		return x
	}
	const work = 200
	b.Run("smooth", func(b *testing.B) {
		s := NewSmooth([]int{3, 2, 1})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var sum int
			for pb.Next() {
				sum += s.Next() + spin(work)
			}
			benchSink.Add(int64(sum))
		})
	})
	b.Run("mutex", func(b *testing.B) {
		m := &mutexSmooth{weights: []int{3, 2, 1}, cur: make([]int, 3), total: 6}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var sum int
			for pb.Next() {
				sum += m.next() + spin(work)
			}
			benchSink.Add(int64(sum))
		})
	})
	b.Run("none", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var sum int
			for pb.Next() {
				sum += spin(work)
			}
			benchSink.Add(int64(sum))
		})
	})
}
