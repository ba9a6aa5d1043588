package proxy

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/bits"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/internal/logring"
	"go-loadbalancer/metrics"
	"go-loadbalancer/state"
)

// AccessLog writes one JSON line per request without ever blocking the request path: the
// handler formats its line straight into a slot of a logring.Ring, whose goroutine writes
// it; when the ring is full the line is dropped and counted (Dropped), never waited for.
// Formatting allocates nothing.
//
// A line is at most accessSlotSize bytes: every variable field is cut to a fixed budget
// (a cut value ends in "…"), so every line fits a slot.
//
//	{"time":"2026-01-02T15:04:05.000Z","level":"info","message":"access","method":"GET",
//	 "host":"shop.example","path":"/api/items","query":"id=*","protocol":"HTTP/1.1",
//	 "status":200,"backend":"web-127.0.0.1_8081","upstream":"127.0.0.1:8081","tries":2,
//	 "upstream_ms":0.318,"duration_ms":1.412,"request_bytes":0,"response_bytes":512,
//	 "client":"10.0.0.7","user_agent":"curl/8.5.0","referer":"","request_id":"…",
//	 "trace_id":"0af7651916cd43dd8448eb211c80319c"}
//
// host and path are those forwarded. query follows log.query: "redact" (the default)
// keeps parameter names and replaces values by *, "full" logs it as sent, "off" leaves
// the field out. upstream is the address of the backend that answered (or failed last),
// tries how many backends were tried, upstream_ms the last try from sending to its
// response header, and cause (only when the last try got no response) why:
// connect_error, connect_timeout, busy, send_error, reset, timeout, bad_response or
// client_error — the access log of a 502 says which. duration_ms is the time from the
// request's arrival until its response was ready to be written; a streamed body goes on
// after it. request_bytes and response_bytes are body lengths, -1 when a streamed body's
// length is unknown. A request refused before any backend (400, 401, 408, 413, 429, 431)
// has backend and upstream "" and tries 0.
type AccessLog struct {
	ring *logring.Ring
}

const accessSlotSize = 2304

// Per-field budgets, in bytes of JSON output; with the fixed parts they stay under
// accessSlotSize (TestAccessLogLongestLineFits).
const (
	budgetMethod    = 24
	budgetHost      = 128
	budgetPath      = 512
	budgetQuery     = 256
	budgetProtocol  = 16
	budgetBackend   = 160
	budgetUpstream  = 64
	budgetUserAgent = 256
	budgetReferer   = 256
	budgetReqID     = 96
)

// NewAccessLog starts an access log writing to w; Close stops it. o.LineSize is set to
// the longest access-log line; the default ring of 2048 lines takes 4.5 MiB.
func NewAccessLog(w io.Writer, o logring.Options) *AccessLog {
	o.LineSize = accessSlotSize
	return &AccessLog{ring: logring.New(w, o)}
}

// Dropped returns how many lines were dropped: the ring was full, or w failed to write them.
func (a *AccessLog) Dropped() uint64 { return a.ring.Dropped() }

// Close writes the lines still queued and stops the writer. Lines logged after Close
// are dropped.
func (a *AccessLog) Close() error { return a.ring.Close() }

// servedBy is the RequestCtx user-value key under which forward keeps the request's
// *tryRecord, for the access log. A zero-size key and a pooled pointer value keep
// SetUserValue allocation-free.
type servedBy struct{}

// tryRecord is what the access log says of a request's upstream tries: the backend of
// the last one, how many there were, how long the last one took (sending to response
// header, or to its failure) and why it failed. Pooled (pools.go); finish returns it.
type tryRecord struct {
	backend  *state.Backend
	tries    int
	upstream int64 // ns
	cause    int8  // a metrics.Cause, -1 when the last try got a response
}

// noteBackend records, for the access log, that b is taking the request in ctx and
// returns the request's record (nil when there is no access log, or ext's table turns it
// off: then no record is taken and no try timed): the last backend noted answered it.
func (p *Proxy) noteBackend(ctx *fasthttp.RequestCtx, ext *tableData, b *state.Backend) *tryRecord {
	if p.alog == nil || !ext.accessLog {
		return nil
	}
	r, ok := ctx.UserValue(servedBy{}).(*tryRecord)
	if !ok || r == nil {
		r = getTryRecord()
		ctx.SetUserValue(servedBy{}, r)
	}
	r.backend = b
	r.tries++
	r.upstream, r.cause = 0, -1
	return r
}

// tried records the outcome of the try noted last: its duration and error.
func (r *tryRecord) tried(ns int64, err error) {
	r.upstream = ns
	if err != nil {
		r.cause = int8(failureCause(err))
	}
}

// releaseRecord gives the request's tryRecord back, once its line is written.
func releaseRecord(ctx *fasthttp.RequestCtx) {
	if r, ok := ctx.UserValue(servedBy{}).(*tryRecord); ok && r != nil {
		ctx.SetUserValue(servedBy{}, (*tryRecord)(nil))
		putTryRecord(r)
	}
}

// logMode is how a table's access log writes a line: its query mode (log.query).
type logMode uint8

const (
	logQueryRedact logMode = iota
	logQueryFull
	logQueryOff
)

func newLogMode(query string) logMode {
	switch query {
	case "full":
		return logQueryFull
	case "off":
		return logQueryOff
	}
	return logQueryRedact
}

// log formats and queues the line of the request in ctx, which started at start and is
// answered at now; id is the client's identity, nil (or unresolved) for a request refused
// before it was resolved: the peer is logged then.
func (a *AccessLog) log(ctx *fasthttp.RequestCtx, start, now time.Time, mode logMode, id *identity) {
	var client netip.Addr
	if id != nil && id.client.IsValid() {
		client = id.client
	} else {
		client = clientAddr(ctx) // the peer, only when there is no resolved client
	}
	if slot := a.ring.Reserve(); slot != nil {
		a.ring.Commit(slot, appendAccess(slot.Buf(), ctx, client, start, now, mode))
	}
}

func appendAccess(b []byte, ctx *fasthttp.RequestCtx, client netip.Addr, start, now time.Time, mode logMode) []byte {
	req, resp := &ctx.Request, &ctx.Response
	h := &req.Header
	b = append(b, `{"time":"`...)
	b = appendLogTime(b, now)
	b = append(b, `","level":"info","message":"access","method":`...)
	b = appendJSONString(b, ctx.Method(), budgetMethod)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, h.Host(), budgetHost)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, requestPath(req), budgetPath) // as forwarded
	if mode != logQueryOff {
		b = append(b, `,"query":`...)
		q := req.URI().QueryString()
		if mode == logQueryRedact {
			b = appendRedactedQuery(b, q, budgetQuery)
		} else {
			b = appendJSONString(b, q, budgetQuery)
		}
	}
	b = append(b, `,"protocol":`...)
	b = appendJSONString(b, h.Protocol(), budgetProtocol)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(resp.StatusCode()), 10)
	r, _ := ctx.UserValue(servedBy{}).(*tryRecord)
	b = append(b, `,"backend":`...)
	if r != nil && r.backend != nil {
		b = appendJSONString(b, s2b(r.backend.ID), budgetBackend)
		b = append(b, `,"upstream":`...)
		b = appendJSONString(b, s2b(r.backend.Addr), budgetUpstream)
		b = append(b, `,"tries":`...)
		b = strconv.AppendInt(b, int64(r.tries), 10)
		b = append(b, `,"upstream_ms":`...)
		b = appendMillis(b, r.upstream)
		if r.cause >= 0 {
			b = append(b, `,"cause":"`...)
			b = append(b, metrics.Cause(r.cause).String()...)
			b = append(b, '"')
		}
	} else {
		b = append(b, `"","upstream":"","tries":0`...)
	}
	b = append(b, `,"duration_ms":`...)
	b = appendMillis(b, int64(now.Sub(start)))
	b = append(b, `,"request_bytes":`...)
	b = strconv.AppendInt(b, requestBytes(req), 10)
	b = append(b, `,"response_bytes":`...)
	b = strconv.AppendInt(b, responseBytes(resp), 10)
	b = append(b, `,"client":"`...)
	if client.IsValid() {
		b = client.AppendTo(b)
	}
	b = append(b, `","user_agent":`...)
	b = appendJSONString(b, h.UserAgent(), budgetUserAgent)
	b = append(b, `,"referer":`...)
	b = appendJSONString(b, h.Referer(), budgetReferer)
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, h.PeekBytes(hXRequestID), budgetReqID)
	b = append(b, `,"trace_id":"`...)
	b = append(b, traceID(h.PeekBytes(hTraceparent))...)
	return append(b, "\"}\n"...)
}

// appendRedactedQuery appends query as a JSON string with every parameter's value
// replaced by "*" ("id=*&token=*"), within budget as appendJSONString.
func appendRedactedQuery(b, q []byte, budget int) []byte {
	limit := len(b) + budget - len(`"…"`)
	b = append(b, '"')
	for len(q) > 0 {
		// One pass: the name up to '=' or '&', then "=*" for a value, then the '&'.
		i := 0
		for i < len(q) && q[i] != '=' && q[i] != '&' {
			i++
		}
		var cut bool
		if b, cut = appendJSONText(b, q[:i], limit); cut {
			break
		}
		q = q[i:]
		if len(q) > 0 && q[0] == '=' {
			if b, cut = appendPlain(b, "=*", limit); cut {
				break
			}
			if j := bytes.IndexByte(q, '&'); j >= 0 {
				q = q[j:]
			} else {
				q = nil
			}
		}
		if len(q) > 0 { // q[0] == '&'
			if b, cut = appendPlain(b, "&", limit); cut {
				break
			}
			q = q[1:]
		}
	}
	return append(b, '"')
}

// appendPlain appends s, which needs no escaping, and reports false; when s does not fit
// before limit it appends "…" instead and reports the cut. Unlike appendJSONText it cuts s
// whole, so a value's "=*" is never logged half.
func appendPlain(b []byte, s string, limit int) ([]byte, bool) {
	if len(b)+len(s) > limit {
		return append(b, "…"...), true
	}
	return append(b, s...), false
}

// appendMillis appends ns as milliseconds with three decimals (1412345 → "1.412"),
// rounded to the microsecond, as strconv.AppendFloat(float64(ns)/1e6, 'f', 3) would
// up to exact half-microsecond ties, in a fifth of its time.
func appendMillis(b []byte, ns int64) []byte {
	if ns < 0 {
		b = append(b, '-')
		ns = -ns
	}
	us := (ns + 500) / 1000
	b = strconv.AppendInt(b, us/1000, 10)
	f := us % 1000
	return append(b, '.', byte('0'+f/100), byte('0'+f/10%10), byte('0'+f%10))
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
		if !lowerHex[c] {
			return nil
		}
	}
	return id
}

// lowerHex marks the bytes of a lowercase hex digit.
var lowerHex = func() (t [256]bool) {
	for _, c := range "0123456789abcdef" {
		t[c] = true
	}
	return t
}()

// appendJSONString appends s as a JSON string of at most budget bytes (quotes included):
// a longer one is cut at a character boundary and ends in "…". Invalid UTF-8 becomes
// U+FFFD.
func appendJSONString(b, s []byte, budget int) []byte {
	limit := len(b) + budget - len(`"…"`)
	b, _ = appendJSONText(append(b, '"'), s, limit)
	return append(b, '"')
}

// appendJSONText appends s escaped for a JSON string, stopping before b grows past limit:
// then it appends "…" and reports the cut.
func appendJSONText(b, s []byte, limit int) ([]byte, bool) {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); {
		// Fast path: a run of printable ASCII that needs no escaping, copied at once.
		j := i + plainRun(s[i:])
		if j > i {
			if room := limit - len(b); j-i > room {
				b = append(b, s[i:i+max(room, 0)]...)
				return append(b, "…"...), true
			}
			b = append(b, s[i:j]...)
			i = j
			continue
		}
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
			return append(b, "…"...), true
		}
		b = append(b, p...)
		i += size
	}
	return b, false
}

// s2b views a string as bytes without copying; the bytes must not be modified.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// plainRun returns the length of the run of printable ASCII at the start of s that a JSON
// string holds as it is: no control character, '"', '\\' or byte ≥ 0x80. It looks at eight
// bytes at a time (SWAR): a lane is flagged if it is below 0x20, has its high bit set, or
// equals '"' or '\\'. The subtractions' borrows can flag a lane above a true match, never
// one below it, so the lowest flagged lane is the first byte to stop at.
func plainRun(s []byte) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := binary.LittleEndian.Uint64(s[i:])
		q := w ^ ('"' * lo)
		bs := w ^ ('\\' * lo)
		m := ((w - 0x20*lo) &^ w) | w | ((q - lo) &^ q) | ((bs - lo) &^ bs)
		if m &= hi; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' {
			return i
		}
	}
	return i
}
