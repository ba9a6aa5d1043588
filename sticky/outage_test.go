package sticky

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestRecoverLoop: probes every backoff until one succeeds, never sooner; stops when done.
func TestRecoverLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var at []time.Duration
		probe := func() error {
			at = append(at, time.Since(start))
			if len(at) < 4 {
				return errors.New("still down")
			}
			return nil
		}
		if !recoverLoop(make(chan struct{}), time.Second, probe) {
			t.Fatal("got false; want true after a successful probe")
		}
		want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second}
		if len(at) != len(want) {
			t.Fatalf("got probes at %v; want %v", at, want)
		}
		for i := range want {
			if at[i] != want[i] {
				t.Fatalf("got probes at %v; want %v", at, want)
			}
		}
	})
	synctest.Test(t, func(t *testing.T) {
		done := make(chan struct{})
		probes := 0
		go func() {
			time.Sleep(2500 * time.Millisecond)
			close(done)
		}()
		if recoverLoop(done, time.Second, func() error { probes++; return errors.New("down") }) {
			t.Fatal("got true; want false when done is closed")
		}
		if probes != 2 {
			t.Fatalf("got %d probes in 2.5 s; want 2", probes)
		}
	})
}

// TestDeadlines: shared contexts give each call between 3/4 of the timeout and the timeout,
// are reused until a quarter has passed, and expire on time.
func TestDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 40 * time.Millisecond
		d := deadlines{timeout: timeout}
		check := func() {
			t.Helper()
			now := time.Now()
			dl, ok := d.get(now.UnixNano()).Deadline()
			if left := dl.Sub(now); !ok || left < timeout*3/4 || left > timeout {
				t.Fatalf("got %v left; want between %v and %v", left, timeout*3/4, timeout)
			}
		}
		first := d.get(time.Now().UnixNano())
		time.Sleep(timeout/4 - time.Millisecond)
		if d.get(time.Now().UnixNano()) != first {
			t.Fatal("context renewed before a quarter of its timeout passed")
		}
		time.Sleep(time.Millisecond)
		if d.get(time.Now().UnixNano()) == first {
			t.Fatal("context not renewed after a quarter of its timeout")
		}
		for range 30 {
			check()
			time.Sleep(3 * time.Millisecond)
		}
		if first.Err() == nil {
			t.Fatal("first context still live after its deadline")
		}
	})
}

func TestPinQueue(t *testing.T) {
	q := pinQueue{max: 2}
	exp := time.Now().Add(time.Minute)
	if !q.add([]byte("a"), "web-1", exp) || !q.add([]byte("b"), "web-1", exp) {
		t.Fatal("queue refused pins below its bound")
	}
	if !q.add([]byte("a"), "web-2", exp) {
		t.Fatal("queue refused a newer pin of a queued key")
	}
	if q.add([]byte("c"), "web-1", exp) {
		t.Fatal("queue took a pin past its bound")
	}
	pins := q.take()
	if len(pins) != 2 || pins["a"].backendID != "web-2" || q.len() != 0 {
		t.Fatalf("got %v; want a→web-2, b→web-1 and an empty queue", pins)
	}
	q.add([]byte("a"), "web-3", exp) // newer than what is put back
	if dropped := q.putBack(pins); dropped != 0 {
		t.Fatalf("got %d dropped; want 0", dropped)
	}
	if pins := q.take(); pins["a"].backendID != "web-3" || pins["b"].backendID != "web-1" {
		t.Fatalf("got %v; want the newer pin of a kept", pins)
	}
}

func TestOptionsValidate(t *testing.T) {
	f := func(o Options, ok bool) {
		t.Helper()
		if err := o.Validate(); (err == nil) != ok {
			t.Fatalf("Validate(%+v) = %v; want ok=%v", o, err, ok)
		}
	}
	f(Options{}, true)
	f(Options{RedisURL: "redis://127.0.0.1:6379/0", HintKey: make([]byte, 16), TTL: time.Minute}, true)
	f(Options{TTL: -1}, false)
	f(Options{HintKey: make([]byte, 15)}, false)
	f(Options{MaxSessions: -1}, false)
	f(Options{ClientCacheTTL: -1}, false)
	f(Options{ClientCacheBytes: -1}, false)
	f(Options{Timeout: -1}, false)
	f(Options{Backoff: -1}, false)
	f(Options{MaxQueuedPins: -1}, false)
	f(Options{KeyPrefix: "has space"}, false)
	f(Options{RedisURL: "http://127.0.0.1"}, false)
	if _, err := NewRedis(Options{}); !errors.Is(err, ErrNoRedisURL) {
		t.Fatalf("got %v; want ErrNoRedisURL", err)
	}
	if _, err := NewMemory(Options{TTL: -1}); err == nil {
		t.Fatal("NewMemory accepted invalid options")
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{Miss: "miss", CacheHit: "cache_hit", RedisHit: "redis", Fallback: "fallback", 9: "unknown"} {
		if got := o.String(); got != want {
			t.Fatalf("got %q; want %q", got, want)
		}
	}
}
