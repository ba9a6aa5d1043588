package state

import (
	"sync/atomic"
	"time"
)

// windowBuckets is how many slices a rolling window is cut into.
const windowBuckets = 10

// Window counts two quantities (e.g. requests and failures) over a rolling time window,
// in windowBuckets slices, with atomics only. A slice is recycled by the first writer that
// finds it stale; a few counts racing with that reset may be lost, which is fine for the
// ratios it serves (breaker trips, retry budgets). The zero value is unusable: call Init.
type Window struct {
	width   atomic.Int64 // nanoseconds per bucket
	buckets [windowBuckets]windowBucket
}

type windowBucket struct {
	epoch atomic.Int64 // now/width when the bucket was last reset
	a, b  atomic.Uint64
}

// Init sets the window's length; a change of length clears it.
func (w *Window) Init(length time.Duration) {
	width := int64(length) / windowBuckets
	if width < 1 {
		width = 1
	}
	if w.width.Swap(width) != width {
		for i := range w.buckets {
			w.buckets[i].epoch.Store(-1)
		}
	}
}

// Add counts a and b at time now (UnixNano).
func (w *Window) Add(now int64, a, b uint64) {
	epoch := now / w.width.Load()
	bk := &w.buckets[epoch%windowBuckets]
	if e := bk.epoch.Load(); e != epoch && bk.epoch.CompareAndSwap(e, epoch) {
		bk.a.Store(0)
		bk.b.Store(0)
	}
	if a != 0 {
		bk.a.Add(a)
	}
	if b != 0 {
		bk.b.Add(b)
	}
}

// Sum returns the totals of a and b over the window ending at now.
func (w *Window) Sum(now int64) (a, b uint64) {
	epoch := now / w.width.Load()
	for i := range w.buckets {
		bk := &w.buckets[i]
		if e := bk.epoch.Load(); e <= epoch && e > epoch-windowBuckets {
			a += bk.a.Load()
			b += bk.b.Load()
		}
	}
	return a, b
}

// Reset clears the window.
func (w *Window) Reset() {
	for i := range w.buckets {
		w.buckets[i].epoch.Store(-1)
	}
}
