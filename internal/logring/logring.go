// Package logring queues log lines from many goroutines without ever blocking them, and
// writes them to an io.Writer from one goroutine of its own.
//
// A Ring is a bounded lock-free ring of fixed-size slots (Dmitry Vyukov's bounded MPMC
// queue, https://www.1024cores.net/home/lock-free-algorithms/queues/bounded-mpmc-queue: one
// CAS to claim a slot, one atomic store to publish it). A producer formats its line straight
// into the slot it claimed, so queueing a line copies and allocates nothing; the writer
// goroutine copies whole lines into a batch and writes the batch when it is full or the ring
// is empty. When the ring is full — the writer is slower than the producers — a line is
// dropped and counted (Dropped), never waited for.
package logring

import (
	"bytes"
	"io"
	"sync/atomic"
	"time"
)

// Options configure a Ring. The zero Options are valid.
type Options struct {
	// Lines is the ring's capacity in lines, rounded up to a power of two; 0 means 2048.
	Lines int
	// LineSize is the longest line, in bytes, that a slot holds; 0 means 2048. The ring
	// takes Lines × LineSize bytes.
	LineSize int
	// Idle is how long the writer sleeps when the ring is empty; 0 means 10 ms.
	Idle time.Duration
}

// Ring is a bounded queue of lines written to an io.Writer by one goroutine. Safe for
// concurrent use; Reserve and Commit never block and never allocate.
type Ring struct {
	enq  atomic.Uint64
	_    [56]byte // keep producers' cursor off the writer's cache line
	deq  uint64   // writer goroutine only
	mask uint64

	slots   []Slot
	dropped atomic.Uint64
	w       io.Writer
	idle    time.Duration
	stop    chan struct{}
	done    chan struct{}
}

// Slot is one line of the ring, claimed by Reserve and published by Commit.
type Slot struct {
	seq atomic.Uint64
	pos uint64 // the position Reserve claimed; the claiming producer's until Commit
	n   int
	buf []byte
	_   [16]byte // one slot a cache line: producers of neighbouring slots do not share one
}

// New starts a ring writing to w; Close stops it. w is written by one goroutine, one or
// more whole lines per Write.
func New(w io.Writer, o Options) *Ring {
	n := 2048
	if o.Lines > 0 {
		n = 1
		for n < o.Lines {
			n <<= 1
		}
	}
	if o.LineSize <= 0 {
		o.LineSize = 2048
	}
	if o.Idle <= 0 {
		o.Idle = 10 * time.Millisecond
	}
	r := &Ring{slots: make([]Slot, n), mask: uint64(n - 1), w: w, idle: o.Idle,
		stop: make(chan struct{}), done: make(chan struct{})}
	mem := make([]byte, n*o.LineSize)
	for i := range r.slots {
		r.slots[i].seq.Store(uint64(i))
		r.slots[i].buf = mem[i*o.LineSize : (i+1)*o.LineSize : (i+1)*o.LineSize]
	}
	go r.run()
	return r
}

// Reserve claims the next free slot for one line, or returns nil when the ring is full:
// the line is then dropped and counted, never waited for. The caller appends its line to
// the slot's Buf and must hand the slot back with Commit, soon: the writer waits for it.
func (r *Ring) Reserve() *Slot {
	pos := r.enq.Load()
	for {
		s := &r.slots[pos&r.mask]
		switch dif := int64(s.seq.Load() - pos); {
		case dif == 0:
			if r.enq.CompareAndSwap(pos, pos+1) {
				s.pos = pos
				return s
			}
			pos = r.enq.Load()
		case dif < 0:
			r.dropped.Add(1) // full: the writer is behind
			return nil
		default:
			pos = r.enq.Load()
		}
	}
}

// Buf returns the slot's empty buffer; a line appended to it within its capacity
// (Options.LineSize) is written without a copy.
func (s *Slot) Buf() []byte { return s.buf[:0] }

// Commit publishes line, s.Buf() with the line appended, for the writer. A line longer
// than Options.LineSize is dropped and counted.
func (r *Ring) Commit(s *Slot, line []byte) {
	s.n = len(line)
	if s.n > len(s.buf) {
		s.n = 0
		r.dropped.Add(1)
	}
	s.seq.Store(s.pos + 1)
}

// Dropped returns how many lines were dropped: the ring was full, a line was too long,
// or w failed to write it.
func (r *Ring) Dropped() uint64 { return r.dropped.Load() }

// Close writes the lines still queued and stops the writer. Lines queued after Close are
// dropped once the ring is full. Close may be called more than once, but not concurrently.
func (r *Ring) Close() error {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
	return nil
}

// run is the writer goroutine: it copies published lines into a batch and writes the
// batch when it is full or the ring is empty.
func (r *Ring) run() {
	defer close(r.done)
	lineSize := cap(r.slots[0].buf)
	batch := make([]byte, 0, max(64<<10, lineSize))
	flush := func() {
		if len(batch) > 0 {
			if n, err := r.w.Write(batch); err != nil {
				// A closed pipe or a full disk: the lines not written are lost, and counted
				// as dropped (the writer reports the error itself).
				r.dropped.Add(uint64(bytes.Count(batch[n:], newline)))
			}
			batch = batch[:0]
		}
	}
	timer := time.NewTimer(r.idle)
	defer timer.Stop()
	for {
		s := &r.slots[r.deq&r.mask]
		if s.seq.Load() == r.deq+1 {
			if len(batch)+s.n > cap(batch) {
				flush()
			}
			batch = append(batch, s.buf[:s.n]...)
			s.seq.Store(r.deq + r.mask + 1) // free the slot for the next lap
			r.deq++
			continue
		}
		flush()
		select {
		case <-r.stop:
			// Drain what was published before Close, then stop.
			for s := &r.slots[r.deq&r.mask]; s.seq.Load() == r.deq+1; s = &r.slots[r.deq&r.mask] {
				batch = append(batch, s.buf[:s.n]...)
				s.seq.Store(r.deq + r.mask + 1)
				r.deq++
				if len(batch) > cap(batch)-lineSize {
					flush()
				}
			}
			flush()
			return
		default:
		}
		timer.Reset(r.idle)
		select {
		case <-timer.C:
		case <-r.stop:
		}
	}
}

var newline = []byte{'\n'}
