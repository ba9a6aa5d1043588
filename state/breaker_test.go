package state

import (
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go-loadbalancer/config"
)

func breakerConfig() *config.CircuitBreaker {
	return &config.CircuitBreaker{
		ConsecutiveFailures: 3, FailureRatio: 0.5, MinRequests: 10, Window: 10 * time.Second,
		OpenFor: 5 * time.Second, HalfOpenProbes: 2, MaxEjectionPercent: 100,
	}
}

// newBreaker returns a configured breaker and a log of its transitions.
func newBreaker(c *config.CircuitBreaker, g *EjectionGuard) (*Breaker, *[]string) {
	var mu sync.Mutex
	var log []string
	b := &Breaker{}
	b.configure(c, g, func(from, to BreakerState, reason string) {
		mu.Lock()
		log = append(log, from.String()+">"+to.String())
		mu.Unlock()
	})
	return b, &log
}

func now() int64 { return time.Now().UnixNano() }

func fail(b *Breaker, n int) {
	for range n {
		b.Record(now(), b.Acquire(now()), true)
	}
}

func TestBreakerTransitions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, log := newBreaker(breakerConfig(), nil)
		fail(b, 2)
		b.Record(now(), b.Acquire(now()), false) // a success resets the run of failures
		fail(b, 2)
		if s := b.State(); s != BreakerClosed {
			t.Fatalf("got %v after 2+2 failures split by a success; want closed", s)
		}
		fail(b, 1)
		if s := b.State(); s != BreakerOpen {
			t.Fatalf("got %v after 3 consecutive failures; want open", s)
		}
		if tk := b.Acquire(now()); tk != TicketRejected || b.Ready(now()) {
			t.Fatalf("open breaker admitted a request (ticket %v)", tk)
		}
		time.Sleep(5*time.Second - time.Millisecond)
		if b.Ready(now()) {
			t.Fatal("breaker ready before open_for elapsed")
		}
		time.Sleep(time.Millisecond)
		t1, t2, t3 := b.Acquire(now()), b.Acquire(now()), b.Acquire(now())
		if t1 != TicketProbe || t2 != TicketProbe || t3 != TicketRejected {
			t.Fatalf("got tickets %v %v %v in half-open; want probe probe rejected", t1, t2, t3)
		}
		b.Record(now(), t1, false)
		if s := b.State(); s != BreakerHalfOpen {
			t.Fatalf("got %v after 1 of 2 probes succeeded; want half_open", s)
		}
		b.Record(now(), t2, false)
		if s := b.State(); s != BreakerClosed {
			t.Fatalf("got %v after every probe succeeded; want closed", s)
		}
		want := []string{"closed>open", "open>half_open", "half_open>closed"}
		if got := *log; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Fatalf("got transitions %v; want %v", got, want)
		}
	})
}

func TestBreakerOpenTimeDoubles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newBreaker(breakerConfig(), nil)
		fail(b, 3)
		start := time.Now()
		for i, want := range []time.Duration{5, 10, 20, 40, 80, 160, 160} {
			want *= time.Second
			// Wait until half-open admits a probe, then fail it.
			for b.Acquire(now()) != TicketProbe {
				time.Sleep(100 * time.Millisecond)
			}
			if got := time.Since(start); got < want || got > want+100*time.Millisecond {
				t.Fatalf("trip %d: open for %v; want %v", i+1, got, want)
			}
			b.Record(now(), TicketProbe, true)
			if b.State() != BreakerOpen {
				t.Fatalf("a failed probe left the breaker %v; want open", b.State())
			}
			start = time.Now()
		}
	})
}

func TestBreakerProbeAdmissionUnderConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := breakerConfig()
		c.HalfOpenProbes = 3
		b, _ := newBreaker(c, nil)
		fail(b, 3)
		time.Sleep(c.OpenFor)
		var admitted atomic.Int32
		var wg sync.WaitGroup
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if b.Acquire(now()) == TicketProbe {
					admitted.Add(1)
				}
			}()
		}
		wg.Wait()
		if n := admitted.Load(); n != 3 {
			t.Fatalf("half-open admitted %d of 64 concurrent requests; want exactly 3", n)
		}
	})
}

func TestBreakerFailureRatio(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := breakerConfig()
		c.ConsecutiveFailures = 1000 // only the ratio can trip it
		b, _ := newBreaker(c, nil)
		// Alternating success/failure: 50 % failures, but below min_requests nothing trips.
		for i := range 9 {
			b.Record(now(), b.Acquire(now()), i%2 == 0)
		}
		if b.State() != BreakerClosed {
			t.Fatalf("tripped with 9 requests; want min_requests (10) first")
		}
		b.Record(now(), b.Acquire(now()), true) // 10th request: 6 failures of 10
		if b.State() != BreakerOpen {
			t.Fatalf("got %v at 60%% failures over 10 requests; want open", b.State())
		}

		// Failures older than the window do not count.
		b2, _ := newBreaker(c, nil)
		for range 9 {
			b2.Record(now(), b2.Acquire(now()), true)
		}
		time.Sleep(11 * time.Second)
		for range 9 {
			b2.Record(now(), b2.Acquire(now()), false)
		}
		b2.Record(now(), b2.Acquire(now()), true)
		if b2.State() != BreakerClosed {
			t.Fatalf("got %v: failures from before the window counted; want closed", b2.State())
		}
	})
}

func TestEjectionCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := breakerConfig()
		c.MaxEjectionPercent = 50
		g := &EjectionGuard{}
		g.size.Store(4)
		g.percent.Store(50)
		var bs []*Breaker
		for range 4 {
			b, _ := newBreaker(c, g)
			fail(b, 3)
			bs = append(bs, b)
		}
		open := 0
		for _, b := range bs {
			if b.State() == BreakerOpen {
				open++
			}
		}
		if open != 2 {
			t.Fatalf("got %d of 4 breakers open with max_ejection_percent 50; want 2", open)
		}
		// With a cap below one backend, one may still be ejected.
		g1 := &EjectionGuard{}
		g1.size.Store(3)
		g1.percent.Store(10)
		b1, _ := newBreaker(c, g1)
		b2, _ := newBreaker(c, g1)
		fail(b1, 3)
		fail(b2, 3)
		if b1.State() != BreakerOpen || b2.State() != BreakerClosed {
			t.Fatalf("got %v, %v; want the first ejected and the second kept", b1.State(), b2.State())
		}
	})
}

func TestRetryBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ps := &PoolStats{}
		ps.Budget.Init(RetryBudgetWindow)
		// 1,000 requests at ratio 0.2 allow 200 retries.
		for range 1000 {
			ps.CountRequest(now())
		}
		n := 0
		for ps.AllowRetry(now(), 0.2) {
			n++
		}
		if n != 200 {
			t.Fatalf("got %d retries allowed; want 200 (0.2 × 1000)", n)
		}
		// With little traffic the floor is 3 per second over the window: 30.
		time.Sleep(11 * time.Second)
		ps.CountRequest(now())
		n = 0
		for ps.AllowRetry(now(), 0.2) {
			n++
		}
		if n != 30 {
			t.Fatalf("got %d retries allowed at low traffic; want the floor of 30 (3/s over 10 s)", n)
		}
	})
}

// TestBreakerLateFailureKeepsProbeCount: a request admitted while closed that fails after
// the breaker went half-open must not reset the probe count and let an extra probe in
// (found in review).
func TestBreakerLateFailureKeepsProbeCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := breakerConfig()
		c.HalfOpenProbes = 1
		b, _ := newBreaker(c, nil)
		slow := b.Acquire(now()) // admitted while closed, answers late
		fail(b, 3)
		time.Sleep(c.OpenFor)
		if tk := b.Acquire(now()); tk != TicketProbe {
			t.Fatalf("got %v; want the one probe", tk)
		}
		b.Record(now(), slow, true) // the late failure
		if tk := b.Acquire(now()); tk != TicketRejected {
			t.Fatalf("a second probe was admitted after a late failure (ticket %v); want exactly half_open_probes", tk)
		}
		if s := b.State(); s != BreakerHalfOpen {
			t.Fatalf("a late failure moved a half-open breaker to %v", s)
		}
	})
}

// TestEjectionCapUnderConcurrentTrips: when a whole pool fails at once the cap still
// holds (found in review: every breaker passed the check before any counted).
func TestEjectionCapUnderConcurrentTrips(t *testing.T) {
	c := breakerConfig()
	c.ConsecutiveFailures = 1
	for range 50 {
		g := &EjectionGuard{}
		g.size.Store(10)
		g.percent.Store(30)
		var bs []*Breaker
		for range 10 {
			b, _ := newBreaker(c, g)
			bs = append(bs, b)
		}
		var wg sync.WaitGroup
		for _, b := range bs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b.Record(now(), b.Acquire(now()), true)
			}()
		}
		wg.Wait()
		open := 0
		for _, b := range bs {
			if b.State() == BreakerOpen {
				open++
			}
		}
		if open != 3 || g.ejected.Load() != 3 {
			t.Fatalf("got %d open (ejected count %d) of 10 with max_ejection_percent 30; want 3", open, g.ejected.Load())
		}
	}
}

// TestBreakerConfigureRacesRecord: a backend is in the table, taking requests, before its
// breaker is configured. Record racing configure used to see the settings before the
// window was initialised and divide by zero.
func TestBreakerConfigureRacesRecord(t *testing.T) {
	var cur atomic.Pointer[Breaker]
	cur.Store(&Breaker{})
	var done atomic.Bool
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for !done.Load() {
				cur.Load().Record(now(), TicketPass, true)
			}
		})
	}
	c := breakerConfig()
	c.ConsecutiveFailures = 1 << 30 // keep it closed: every Record reaches the window
	for range 50_000 {
		b := &Breaker{}
		cur.Store(b)
		b.configure(c, nil, nil)
	}
	done.Store(true)
	wg.Wait()
}
