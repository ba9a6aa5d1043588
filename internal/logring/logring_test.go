package logring

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go-loadbalancer/internal/logbuf"
)

// put queues one line through Reserve and Commit, as a producer does.
func put(r *Ring, line string) {
	if s := r.Reserve(); s != nil {
		r.Commit(s, append(s.Buf(), line...))
	}
}

// stuckWriter tells entered when a Write starts, and finishes it (into out) only once
// release is closed.
type stuckWriter struct {
	entered chan struct{}
	release chan struct{}
	out     logbuf.Buffer
}

func (w *stuckWriter) Write(p []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	<-w.release
	return w.out.Write(p)
}

// TestNeverBlocks: with the writer stuck in a Write, producers go on at full speed; the
// ring holds what fits and the rest is dropped and counted.
func TestNeverBlocks(t *testing.T) {
	t.Parallel()
	w := &stuckWriter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	r := New(w, Options{Lines: 8, LineSize: 64, Idle: time.Millisecond})
	put(r, "first\n")
	<-w.entered // the writer holds "first" and is stuck
	done := make(chan struct{})
	go func() {
		for range 1000 {
			put(r, "line\n")
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("queueing blocked on a stuck writer")
	}
	if d := r.Dropped(); d != 1000-8 {
		t.Fatalf("got %d dropped lines; want %d (1000 minus the ring's 8)", d, 1000-8)
	}
	close(w.release)
	_ = r.Close()
	if got, want := w.out.String(), "first\n"+strings.Repeat("line\n", 8); got != want {
		t.Fatalf("wrote %q; want %q", got, want)
	}
}

// TestCloseFlushes: every line queued before Close is written, in order, also when it
// is more than one batch.
func TestCloseFlushes(t *testing.T) {
	t.Parallel()
	var out logbuf.Buffer
	r := New(&out, Options{Lines: 4096, LineSize: 64, Idle: time.Hour})
	var want strings.Builder
	for i := range 3000 {
		line := fmt.Sprintf("line %d of a few dozen bytes, to need more than one batch\n", i)
		want.WriteString(line)
		put(r, line)
	}
	_ = r.Close()
	if got := out.String(); got != want.String() || r.Dropped() != 0 {
		t.Fatalf("got %d bytes, %d dropped; want the %d bytes queued, 0 dropped", len(got), r.Dropped(), want.Len())
	}
}

// TestProducersConcurrent: lines of several producers at once all arrive whole, each
// producer's in its order.
func TestProducersConcurrent(t *testing.T) {
	t.Parallel()
	var out logbuf.Buffer
	r := New(&out, Options{Lines: 1 << 14, LineSize: 32, Idle: time.Millisecond})
	const producers, each = 4, 2000
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				put(r, fmt.Sprintf("%d %d\n", p, i))
			}
		})
	}
	wg.Wait()
	_ = r.Close()
	if r.Dropped() != 0 {
		t.Fatalf("got %d dropped; want 0 (the ring holds every line)", r.Dropped())
	}
	next := make([]int, producers)
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var p, i int
		if _, err := fmt.Sscanf(l, "%d %d", &p, &i); err != nil || p < 0 || p >= producers {
			t.Fatalf("line %q is not one that was queued", l)
		}
		if i != next[p] {
			t.Fatalf("producer %d: got line %d; want %d", p, i, next[p])
		}
		next[p]++
	}
	for p, n := range next {
		if n != each {
			t.Errorf("producer %d: got %d lines; want %d", p, n, each)
		}
	}
}

// TestTooLongDropped: a line longer than LineSize is dropped and counted; the lines
// around it are written.
func TestTooLongDropped(t *testing.T) {
	t.Parallel()
	var out logbuf.Buffer
	r := New(&out, Options{Lines: 4, LineSize: 8, Idle: time.Millisecond})
	put(r, "short\n")
	put(r, "far too long\n")
	put(r, "after\n")
	_ = r.Close()
	if got := out.String(); got != "short\nafter\n" || r.Dropped() != 1 {
		t.Fatalf("wrote %q, %d dropped; want \"short\\nafter\\n\", 1 dropped", got, r.Dropped())
	}
}

type failingWriter struct{}

func (failingWriter) Write(p []byte) (int, error) { return 0, errors.New("disk full") }

// TestWriteErrorCounted: the lines a failed Write did not write are counted as dropped.
func TestWriteErrorCounted(t *testing.T) {
	t.Parallel()
	r := New(failingWriter{}, Options{Lines: 4, LineSize: 8, Idle: time.Millisecond})
	for range 4 {
		put(r, "1234\n")
	}
	_ = r.Close()
	if d := r.Dropped(); d != 4 {
		t.Fatalf("got %d dropped; want 4", d)
	}
}
