package metrics

import (
	"io"
	"math"
	"math/bits"
	"strconv"
	"sync/atomic"
	"time"
)

// durationBounds are lb_request_duration_seconds' bucket upper bounds: 0.5 ms to 30 s,
// the range between a loopback hop and the default response timeout.
var durationBounds = [...]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// durationBoundsNs are durationBounds in nanoseconds, for comparisons without floats.
var durationBoundsNs = func() (ns [len(durationBounds)]int64) {
	for i, s := range durationBounds {
		ns[i] = int64(math.Round(s * 1e9))
	}
	return ns
}()

// histogram is a Prometheus histogram with fixed `le` buckets kept in atomics: Observe
// is two atomic adds, no lock. (VictoriaMetrics' PrometheusHistogram takes a mutex per
// update; its own Histogram exposes vmrange buckets, which Prometheus cannot aggregate.)
type histogram struct {
	counts [len(durationBounds) + 1]atomic.Uint64 // non-cumulative; the last is +Inf
	sumNs  atomic.Uint64

	// Exposition names, built with the handle: name{labels,le="…"}.
	bucketNames [len(durationBounds) + 1]string
	sumName     string
	countName   string
}

func (h *histogram) init(name, labels string) {
	for i, b := range durationBounds {
		h.bucketNames[i] = name + `_bucket{` + labels + `,le="` + strconv.FormatFloat(b, 'g', -1, 64) + `"}`
	}
	h.bucketNames[len(durationBounds)] = name + `_bucket{` + labels + `,le="+Inf"}`
	h.sumName = name + `_sum{` + labels + `}`
	h.countName = name + `_count{` + labels + `}`
}

func (h *histogram) observe(d time.Duration) {
	ns := int64(d)
	if ns < 0 {
		ns = 0
	}
	i := 0
	for i < len(durationBoundsNs) && ns > durationBoundsNs[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(ns))
}

// writeTo writes the _bucket (cumulative), _sum and _count lines. _count is the sum of
// the buckets read, so it always equals the +Inf bucket.
func (h *histogram) writeTo(w io.Writer, buf []byte) []byte {
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		buf = appendSample(buf[:0], h.bucketNames[i], cum)
		_, _ = w.Write(buf)
	}
	buf = append(buf[:0], h.sumName...)
	buf = append(buf, ' ')
	buf = strconv.AppendFloat(buf, float64(h.sumNs.Load())/1e9, 'g', -1, 64)
	buf = append(buf, '\n')
	_, _ = w.Write(buf)
	buf = appendSample(buf[:0], h.countName, cum)
	_, _ = w.Write(buf)
	return buf
}

func appendSample(buf []byte, name string, v uint64) []byte {
	buf = append(buf, name...)
	buf = append(buf, ' ')
	buf = strconv.AppendUint(buf, v, 10)
	return append(buf, '\n')
}

// Latency sketch: a log-linear histogram for the dashboard's percentiles. Each power of
// two from 2^10 ns (~1 µs) to 2^37 ns (~137 s) is split in four, so a percentile read from
// it is within 12.5% of the true value — much finer than the Prometheus buckets, at the
// cost of one more atomic add per request.
const (
	sketchMinExp  = 10
	sketchMaxExp  = 37
	sketchSub     = 4
	sketchBuckets = (sketchMaxExp - sketchMinExp) * sketchSub
)

type sketch [sketchBuckets]atomic.Uint64

// sketchCounts is a copy of a sketch, or a difference of two copies.
type sketchCounts [sketchBuckets]uint64

func sketchIndex(ns int64) int {
	if ns < 1<<sketchMinExp {
		return 0
	}
	e := bits.Len64(uint64(ns)) - 1 // floor(log2 ns) >= sketchMinExp
	if e >= sketchMaxExp {
		return sketchBuckets - 1
	}
	sub := int(uint64(ns)>>(e-2)) & (sketchSub - 1)
	return (e-sketchMinExp)*sketchSub + sub
}

// sketchBounds returns bucket i's range in nanoseconds.
func sketchBounds(i int) (lo, hi float64) {
	e := i/sketchSub + sketchMinExp
	sub := i % sketchSub
	unit := math.Ldexp(1, e-2)
	return float64(sketchSub+sub) * unit, float64(sketchSub+sub+1) * unit
}

func (s *sketch) observe(d time.Duration) { s[sketchIndex(int64(d))].Add(1) }

func (s *sketch) load(dst *sketchCounts) {
	for i := range s {
		dst[i] = s[i].Load()
	}
}

func (c *sketchCounts) add(a *sketchCounts) {
	for i := range c {
		c[i] += a[i]
	}
}

// quantile returns the q-quantile (0..1) in milliseconds, interpolated within its bucket,
// or NaN when c is empty.
func (c *sketchCounts) quantile(q float64) float64 {
	var total uint64
	for _, n := range c {
		total += n
	}
	if total == 0 {
		return math.NaN()
	}
	target := q * float64(total)
	var cum float64
	for i, n := range c {
		if n == 0 {
			continue
		}
		if cum+float64(n) >= target {
			lo, hi := sketchBounds(i)
			frac := (target - cum) / float64(n)
			return (lo + frac*(hi-lo)) / 1e6
		}
		cum += float64(n)
	}
	lo, _ := sketchBounds(sketchBuckets - 1)
	return lo / 1e6
}
