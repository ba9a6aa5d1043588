package proxy

import (
	"bytes"
	"io"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/state"
)

// AccessLog writes one JSON line per request without ever blocking the request path:
// the handler formats its line straight into a slot of a bounded lock-free ring (Dmitry
// Vyukov's MPMC queue: one CAS to claim a slot, one atomic store to publish it) and a
// single writer goroutine copies whole lines to the io.Writer in batches. When the ring
// is full — the writer is slower than the traffic — the line is dropped and counted
// (Dropped), never waited for. Formatting allocates nothing.
//
// A line is at most accessSlotSize bytes: the path, method, request id and backend id
// are cut to fixed budgets (a cut value ends in "…"), so every line fits a slot.
//
//	{"time":"2026-01-02T15:04:05.000Z","level":"info","message":"access","method":"GET",
//	 "path":"/api/items","status":200,"backend":"web-127.0.0.1_8081","duration_ms":0.412,
//	 "bytes":512,"client":"10.0.0.7","request_id":"…","trace_id":"0af7651916cd43dd8448eb211c80319c"}
//
// duration_ms is the time the proxy spent until the response was ready to be written; a
// streamed body goes on after it. bytes is the response body length, or -1 when a
// streamed body's length is unknown. The query string is not logged (it may hold secrets).
type AccessLog struct {
	enq  atomic.Uint64
	_    [56]byte // keep producers' cursor off the writer's cache line
	deq  uint64   // writer goroutine only
	mask uint64

	slots   []accessSlot
	dropped atomic.Uint64
	w       io.Writer
	idle    time.Duration
	stop    chan struct{}
	done    chan struct{}
}

const accessSlotSize = 1280

// Per-field budgets, in bytes of JSON output; with the fixed parts they stay under
// accessSlotSize (TestAccessLogLongestLineFits).
const (
	budgetMethod  = 24
	budgetPath    = 640
	budgetBackend = 160
	budgetReqID   = 96
)

type accessSlot struct {
	seq atomic.Uint64
	n   int
	buf [accessSlotSize]byte
}

// AccessLogOptions configure an AccessLog.
type AccessLogOptions struct {
	// Lines is the ring's capacity in lines, rounded up to a power of two; 0 means 2048
	// (2.5 MiB).
	Lines int
	// Idle is how long the writer sleeps when the ring is empty; 0 means 10 ms.
	Idle time.Duration
}

// NewAccessLog starts an access log writing to w; Close stops it. w is written by one
// goroutine, one or more whole lines per Write.
func NewAccessLog(w io.Writer, o AccessLogOptions) *AccessLog {
	n := 2048
	if o.Lines > 0 {
		n = 1
		for n < o.Lines {
			n <<= 1
		}
	}
	if o.Idle <= 0 {
		o.Idle = 10 * time.Millisecond
	}
	a := &AccessLog{slots: make([]accessSlot, n), mask: uint64(n - 1), w: w, idle: o.Idle,
		stop: make(chan struct{}), done: make(chan struct{})}
	for i := range a.slots {
		a.slots[i].seq.Store(uint64(i))
	}
	go a.run()
	return a
}

// Dropped returns how many lines were dropped: the ring was full, or w failed to write them.
func (a *AccessLog) Dropped() uint64 { return a.dropped.Load() }

// Close writes the lines still queued and stops the writer. Lines logged after Close
// are dropped.
func (a *AccessLog) Close() error {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	<-a.done
	return nil
}

// servedBy is the RequestCtx user-value key under which forward notes the backend that
// answered (a *state.Backend), for the access log. A zero-size key and a pointer value
// keep SetUserValue allocation-free.
type servedBy struct{}

// noteBackend records, for the access log, that b is taking the request in ctx (the last
// one noted answered it). A no-op when access logging is off.
func (p *Proxy) noteBackend(ctx *fasthttp.RequestCtx, b *state.Backend) {
	if p.alog != nil {
		ctx.SetUserValue(servedBy{}, b)
	}
}

// log formats and queues the line of the request in ctx, which started at start and is
// answered at now.
func (a *AccessLog) log(ctx *fasthttp.RequestCtx, start, now time.Time) {
	pos := a.enq.Load()
	var s *accessSlot
	for {
		s = &a.slots[pos&a.mask]
		seq := s.seq.Load()
		switch dif := int64(seq - pos); {
		case dif == 0:
			if a.enq.CompareAndSwap(pos, pos+1) {
				s.n = len(appendAccess(s.buf[:0], ctx, start, now))
				s.seq.Store(pos + 1) // publish
				return
			}
			pos = a.enq.Load()
		case dif < 0:
			a.dropped.Add(1) // full: the writer is behind; never wait for it
			return
		default:
			pos = a.enq.Load()
		}
	}
}

func appendAccess(b []byte, ctx *fasthttp.RequestCtx, start, now time.Time) []byte {
	b = append(b, `{"time":"`...)
	b = appendLogTime(b, now)
	b = append(b, `","level":"info","message":"access","method":`...)
	b = appendJSONString(b, ctx.Method(), budgetMethod)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, requestPath(&ctx.Request), budgetPath) // as forwarded
	b = append(b, `,"status":`...)
	resp := &ctx.Response
	b = strconv.AppendInt(b, int64(resp.StatusCode()), 10)
	b = append(b, `,"backend":`...)
	if be, ok := ctx.UserValue(servedBy{}).(*state.Backend); ok && be != nil {
		b = appendJSONString(b, s2b(be.ID), budgetBackend)
	} else {
		b = append(b, `""`...)
	}
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(now.Sub(start))/1e6, 'f', 3, 64)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, responseBytes(resp), 10)
	b = append(b, `,"client":"`...)
	if ip := clientAddr(ctx); ip.IsValid() {
		b = ip.AppendTo(b)
	}
	b = append(b, `","request_id":`...)
	b = appendJSONString(b, ctx.Request.Header.PeekBytes(hXRequestID), budgetReqID)
	b = append(b, `,"trace_id":"`...)
	b = append(b, traceID(ctx.Request.Header.PeekBytes(hTraceparent))...)
	return append(b, "\"}\n"...)
}

var hTraceparent = []byte("traceparent")

// logSecond caches the formatted second of the last access-log time ("2006-01-02T15:04:05"),
// so a line formats only its milliseconds: time.Time.AppendFormat was ~2 % of CPU with the
// access log on (PERF.md).
type logSecond struct {
	unix int64
	text [19]byte
}

var lastLogSecond atomic.Pointer[logSecond]

// appendLogTime appends t in UTC as "2006-01-02T15:04:05.000Z", as AppendFormat would.
func appendLogTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	sec := t.Unix()
	ls := lastLogSecond.Load()
	if ls == nil || ls.unix != sec {
		// Slow path: once a second.
		ls = &logSecond{unix: sec}
		t.AppendFormat(ls.text[:0], "2006-01-02T15:04:05")
		lastLogSecond.Store(ls)
	}
	ms := t.Nanosecond() / 1e6
	return append(append(b, ls.text[:]...), '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// traceID returns the trace-id of a W3C traceparent (version-traceid-parentid-flags,
// https://www.w3.org/TR/trace-context/#traceparent-header), or nothing if it is malformed.
func traceID(tp []byte) []byte {
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' {
		return nil
	}
	id := tp[3:35]
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return nil
		}
	}
	return id
}

// appendJSONString appends s as a JSON string of at most budget bytes (quotes included):
// a longer one is cut at a character boundary and ends in "…". Invalid UTF-8 becomes
// U+FFFD.
func appendJSONString(b, s []byte, budget int) []byte {
	const hex = "0123456789abcdef"
	limit := len(b) + budget - len(`"…"`)
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		var piece [6]byte
		p := piece[:0]
		size := 1
		switch {
		case c == '"' || c == '\\':
			p = append(p, '\\', c)
		case c < 0x20:
			p = append(p, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		case c < utf8.RuneSelf:
			p = append(p, c)
		default:
			r, n := utf8.DecodeRune(s[i:])
			size = n
			if r == utf8.RuneError && n == 1 {
				p = append(p, "\ufffd"...)
			} else {
				p = append(p, s[i:i+n]...)
			}
		}
		if len(b)+len(p) > limit {
			b = append(b, "…"...)
			break
		}
		b = append(b, p...)
		i += size
	}
	return append(b, '"')
}

// run is the writer goroutine: it copies published lines into a batch and writes the
// batch when it is full or the ring is empty.
func (a *AccessLog) run() {
	defer close(a.done)
	batch := make([]byte, 0, 64<<10)
	flush := func() {
		if len(batch) > 0 {
			if n, err := a.w.Write(batch); err != nil {
				// A closed pipe or a full disk: the lines not written are lost, and counted
				// as dropped (the writer reports the error itself).
				a.dropped.Add(uint64(bytes.Count(batch[n:], newline)))
			}
			batch = batch[:0]
		}
	}
	timer := time.NewTimer(a.idle)
	defer timer.Stop()
	for {
		s := &a.slots[a.deq&a.mask]
		if s.seq.Load() == a.deq+1 {
			if len(batch)+s.n > cap(batch) {
				flush()
			}
			batch = append(batch, s.buf[:s.n]...)
			s.seq.Store(a.deq + a.mask + 1) // free the slot for the next lap
			a.deq++
			continue
		}
		flush()
		select {
		case <-a.stop:
			// Drain what was published before Close, then stop.
			for s := &a.slots[a.deq&a.mask]; s.seq.Load() == a.deq+1; s = &a.slots[a.deq&a.mask] {
				batch = append(batch, s.buf[:s.n]...)
				s.seq.Store(a.deq + a.mask + 1)
				a.deq++
				if len(batch) > cap(batch)-accessSlotSize {
					flush()
				}
			}
			flush()
			return
		default:
		}
		timer.Reset(a.idle)
		select {
		case <-timer.C:
		case <-a.stop:
		}
	}
}

var newline = []byte{'\n'}

// s2b views a string as bytes without copying; the bytes must not be modified.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
