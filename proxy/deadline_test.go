package proxy

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestLazyDeadline(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const slack = time.Second
	for _, c := range []struct {
		name      string
		armed, t  time.Time
		slack     time.Duration
		want      time.Time
		wantArmed bool
	}{
		{"none armed", time.Time{}, t0, slack, t0.Add(slack), true},
		{"armed covers t", t0.Add(slack), t0.Add(slack / 2), slack, t0.Add(slack), false},
		{"armed covers t exactly", t0.Add(slack), t0.Add(slack), slack, t0.Add(slack), false},
		{"armed fires early", t0.Add(slack), t0.Add(slack + 1), slack, t0.Add(2*slack + 1), true},
		{"armed fires too late", t0.Add(slack), t0.Add(-1), slack, t0.Add(slack - 1), true},
		{"clear", t0, time.Time{}, slack, time.Time{}, true},
		{"no slack", t0, t0, 0, t0, true},
	} {
		got, arm := lazyDeadline(c.armed, c.t, c.slack)
		if !got.Equal(c.want) || arm != c.wantArmed {
			t.Errorf("%s: lazyDeadline = %v, %v; want %v, %v", c.name, got, arm, c.want, c.wantArmed)
		}
		if arm && !c.t.IsZero() && (got.Before(c.t) || got.Sub(c.t) > c.slack) {
			t.Errorf("%s: armed %v for %v: must fire no earlier, and at most %v later", c.name, got, c.t, c.slack)
		}
	}
}

// TestLazyDeadlineAfterReadDeadline: a read deadline set on its own (the idle check clears
// one that passed while the connection was idle) makes the next SetDeadline arm again; a
// kept deadline would leave the read with none.
func TestLazyDeadlineAfterReadDeadline(t *testing.T) {
	ln := listenLoopback(t, "")
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if peer := <-accepted; peer != nil {
		defer peer.Close()
	}
	uc := newUpConn(raw)
	uc.slack = 50 * time.Millisecond
	_ = uc.SetDeadline(time.Now().Add(100 * time.Millisecond))
	_ = uc.SetReadDeadline(time.Time{})
	_ = uc.SetDeadline(time.Now().Add(100 * time.Millisecond))
	done := make(chan error, 1)
	go func() {
		_, err := uc.Read(make([]byte, 1))
		done <- err
	}()
	select {
	case err := <-done:
		if !isTimeout(err) {
			t.Fatalf("read error %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		uc.Close()
		t.Fatal("read still waiting 10 s after its 150 ms deadline: SetDeadline kept a deadline it no longer had")
	}
}

// TestResponseTimeoutOnBusyConnection: on a pooled connection whose deadline was last
// moved requests ago (lazily), a backend that stops answering still gets a 504 within the
// response timeout and its slack — the deadline kept is never the one of an earlier
// request.
func TestResponseTimeoutOnBusyConnection(t *testing.T) {
	var stalled atomic.Bool
	stall := make(chan struct{})
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if stalled.Load() {
			<-stall
		}
		ctx.SetBodyString("ok")
	})
	t.Cleanup(func() { close(stall) }) // before the backend's shutdown, which waits for it
	cfg := parseConfig(t, "pools:\n  - name: web\n    timeouts: { connect: 500ms, response: 300ms }\n    backends: [ { url: \""+be.url+"\" } ]\n")
	px := startProxy(t, cfg)
	c := px.client()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + px.addr + "/")
	// Sequential requests on one pooled backend connection for 100 ms, several times the
	// slack (300 ms / 16): the deadline must be moved on the way, not kept from the first.
	for first, i := time.Now(), 0; time.Since(first) < 100*time.Millisecond; i++ {
		if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("request %d: %v, status %d", i, err, resp.StatusCode())
		}
	}
	stalled.Store(true)
	start := time.Now()
	if err := c.Do(req, resp); err != nil || resp.StatusCode() != fasthttp.StatusGatewayTimeout {
		t.Fatalf("stalled backend: %v, status %d; want 504", err, resp.StatusCode())
	}
	// A deadline kept from an earlier request would fire before 300 ms. No upper bound: a
	// shared machine may delay the 504 by seconds.
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("504 after %v, before the response timeout", took)
	}
}

// BenchmarkUpstreamSetDeadline: the deadline move roundTrip makes before each request on a
// pooled connection, lazily (the default) and every time (slack 0).
func BenchmarkUpstreamSetDeadline(b *testing.B) {
	raw := idleLoopbackConn(b)
	uc := newUpConn(raw)
	for _, slack := range []time.Duration{deadlineSlack(30 * time.Second), 0} {
		name := "lazy"
		if slack == 0 {
			name = "every"
		}
		b.Run(name, func(b *testing.B) {
			uc.slack = slack
			b.ReportAllocs()
			for b.Loop() {
				_ = uc.SetDeadline(time.Now().Add(30 * time.Second))
			}
		})
	}
}

// deadlineCounter is a connection that records the write deadlines set on it.
type deadlineCounter struct {
	net.Conn
	writes []time.Time
}

func (c *deadlineCounter) SetWriteDeadline(t time.Time) error {
	c.writes = append(c.writes, t)
	return nil
}

func (c *deadlineCounter) SetDeadline(t time.Time) error { return nil }

// TestClientWriteDeadlineLazy: fasthttp's write deadline before each response is moved
// only when the armed one would fire early or too late; never early, at most 1/16 of the
// timeout late; a zero deadline and one after SetDeadline are always set.
func TestClientWriteDeadlineLazy(t *testing.T) {
	inner := &deadlineCounter{}
	c := &conn{Conn: inner}
	now := time.Now()
	const timeout = 16 * time.Second
	steps := []struct {
		name  string
		t     time.Time
		both  bool // SetDeadline first
		armed bool
	}{
		{"first", now.Add(timeout), false, true},
		{"a response later", now.Add(timeout + 10*time.Millisecond), false, false},
		{"past the slack", now.Add(timeout + 2*time.Second), false, true},
		{"earlier", now.Add(time.Second), false, true},
		{"after SetDeadline", now.Add(time.Second), true, true},
		{"cleared", time.Time{}, false, true},
		{"after clearing", now.Add(timeout), false, true},
	}
	for _, s := range steps {
		n := len(inner.writes)
		if s.both {
			_ = c.SetDeadline(s.t)
		}
		_ = c.SetWriteDeadline(s.t)
		if armed := len(inner.writes) > n; armed != s.armed {
			t.Fatalf("%s: armed %v, want %v", s.name, armed, s.armed)
		}
		got := inner.writes[len(inner.writes)-1]
		if s.t.IsZero() != got.IsZero() || !s.t.IsZero() && (got.Before(s.t) || got.Sub(s.t) > time.Until(s.t)/16+time.Millisecond) {
			t.Fatalf("%s: deadline %v for %v: want no earlier, at most 1/16 of the timeout later", s.name, got, s.t)
		}
	}
}

// BenchmarkClientSetWriteDeadline: the write deadline fasthttp moves before each response,
// through the admitted connection (lazy) and on the socket itself (every time).
func BenchmarkClientSetWriteDeadline(b *testing.B) {
	raw := idleLoopbackConn(b)
	for _, c := range []struct {
		name string
		conn net.Conn
	}{{"lazy", &conn{Conn: raw}}, {"every", raw}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = c.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
			}
		})
	}
}

// idleLoopbackConn is a real loopback TCP connection whose peer reads and never answers,
// closed when b ends: a socket to move deadlines on.
func idleLoopbackConn(b *testing.B) net.Conn {
	b.Helper()
	ln := listenLoopback(b, "")
	b.Cleanup(func() { ln.Close() })
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			_, _ = c.Read(make([]byte, 1))
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { raw.Close() })
	return raw
}
