package proxy

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/logbuf"
	"go-loadbalancer/internal/logring"
	"go-loadbalancer/internal/testtool"
	"go-loadbalancer/metrics"
	"go-loadbalancer/ratelimit"
	"go-loadbalancer/state"
)

func TestAccessLogLine(t *testing.T) {
	t.Parallel()
	be := startBackend(t, named("b1"))
	cfg := poolConfig(t, "", be.url)
	lp := accessLogged(t, cfg)
	addr, out := lp.addr, lp.out

	req := fasthttp.AcquireRequest()
	req.SetRequestURI("http://" + addr + "/items/7?secret=1")
	req.Header.Set("X-Request-Id", "req-42")
	req.Header.Set("User-Agent", "lb-test")
	req.Header.Set("Referer", "https://ref.example/")
	req.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	resp := &fasthttp.Response{}
	if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("GET: status %d, err %v", resp.StatusCode(), err)
	}
	testtool.WaitFor(t, 3*time.Second, "the access log line", func() bool { return strings.Contains(out.String(), "\n") })

	var line map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(out.String())), &line); err != nil {
		t.Fatalf("access log line %q is not JSON: %v", out.String(), err)
	}
	id := lp.b.Store.Load().Pools[0].Backends[0].ID
	for k, want := range map[string]any{
		"level": "info", "message": "access", "method": "GET", "path": "/items/7", "status": 200.0,
		"backend": id, "response_bytes": 2.0, "request_bytes": 0.0, "client": "127.0.0.1", "request_id": "req-42",
		"trace_id": "0af7651916cd43dd8448eb211c80319c", "query": "secret=*", "protocol": "HTTP/1.1",
		"user_agent": "lb-test", "referer": "https://ref.example/", "tries": 1.0,
		"upstream": strings.TrimPrefix(be.url, "http://"), "host": addr,
	} {
		if line[k] != want {
			t.Errorf("field %s: got %#v; want %#v", k, line[k], want)
		}
	}
	if d, ok := line["duration_ms"].(float64); !ok || d <= 0 || d > 5000 {
		t.Errorf("got duration_ms %v; want a positive number of ms", line["duration_ms"])
	}
	if ts, _ := line["time"].(string); !strings.HasSuffix(ts, "Z") || len(ts) != len("2006-01-02T15:04:05.000Z") {
		t.Errorf("got time %q; want RFC 3339 UTC with milliseconds", ts)
	}
	if _, ok := line["cause"]; ok {
		t.Errorf("got cause %v for a try that was answered; want none", line["cause"])
	}
	if u, ok := line["upstream_ms"].(float64); !ok || u <= 0 || u > line["duration_ms"].(float64) {
		t.Errorf("got upstream_ms %v; want a positive number of ms up to duration_ms", line["upstream_ms"])
	}
	if strings.Contains(out.String(), "=1") {
		t.Errorf("a query value was logged with log.query redact: %s", out.String())
	}
	// The same request was counted in the backend's metrics.
	lp.reg.Sample(time.Now())
	if snap := lp.reg.Snapshot(false); snap.Backends[0].Responses.C2xx != 1 {
		t.Errorf("got %d 2xx responses in the metrics; want 1", snap.Backends[0].Responses.C2xx)
	}
	if err := lp.al.Close(); err != nil {
		t.Fatal(err)
	}
}

func testCtx(method, path string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(path)
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 5000}, nil)
	return ctx
}

// TestAccessLogLongestLineFits: hostile input (every byte escaped six-fold, huge values)
// still gives one valid JSON line that fits a slot, with the long values cut.
func TestAccessLogLongestLineFits(t *testing.T) {
	t.Parallel()
	ctx := testCtx(strings.Repeat("M", 200), "/"+strings.Repeat("x", 5000))
	ctx.Request.Header.Set("X-Request-Id", strings.Repeat("\"", 3000))
	ctx.Request.Header.Set("traceparent", "00-"+strings.Repeat("z", 32)+"-b7ad6b7169203331-01")
	ctx.Request.SetRequestURI("/" + strings.Repeat("x", 5000) + "?" + strings.Repeat("\"", 3000))
	ctx.Request.Header.Set("Host", strings.Repeat("h", 1000))
	ctx.Request.Header.Set("User-Agent", strings.Repeat("\x03", 1000))
	ctx.Request.Header.Set("Referer", strings.Repeat("\x04", 1000))
	ctx.SetUserValue(servedBy{}, &tryRecord{backend: &state.Backend{ID: strings.Repeat("\\", 1000), Addr: strings.Repeat("\x05", 1000)},
		tries: 11, upstream: 1e15, cause: int8(metrics.CauseConnectTimeout)})
	ctx.Response.SetBodyString("hello")
	line := appendAccess(make([]byte, 0, accessSlotSize), ctx, clientAddr(ctx), time.Now().Add(-1e15), time.Now(), logQueryFull)
	if len(line) > accessSlotSize {
		t.Fatalf("got a %d-byte line; want at most %d", len(line), accessSlotSize)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("line is not JSON: %v\n%s", err, line)
	}
	for _, k := range []string{"method", "path", "request_id", "backend", "host", "query", "user_agent", "referer", "upstream"} {
		if s, _ := m[k].(string); !strings.HasSuffix(s, "…") {
			t.Errorf("field %s = %.40q…; want it cut with …", k, s)
		}
	}
	if m["trace_id"] != "" {
		t.Errorf("got trace_id %q from a malformed traceparent; want empty", m["trace_id"])
	}
	// Escaping counts against the budget: six bytes per control character.
	if got := appendJSONString(nil, bytes.Repeat([]byte{1}, 1000), budgetPath); len(got) > budgetPath {
		t.Errorf("got %d bytes for escaped control characters; want at most %d", len(got), budgetPath)
	}
	// Invalid UTF-8 is replaced, valid multi-byte text kept whole.
	got := appendJSONString(nil, []byte("é\xff"), 100)
	if string(got) != "\"é\ufffd\"" {
		t.Errorf("got %q; want \"é\\ufffd\"", got)
	}
}

func TestAppendLogTime(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"2026-11-26T13:05:09.007Z", "1999-12-31T23:59:59.999Z", "2026-01-01T00:00:00.000Z", "2026-11-26T13:05:09.120Z"} {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		for _, loc := range []*time.Location{time.UTC, time.FixedZone("x", 3600)} {
			got := string(appendLogTime(nil, tm.In(loc)))
			if want := tm.UTC().Format("2006-01-02T15:04:05.000Z07:00"); got != want {
				t.Fatalf("appendLogTime(%v) = %q; want %q", tm.In(loc), got, want)
			}
		}
	}
}

// loggedProxy is a running proxy with metrics hooks, an access log and a lingering
// listener.
type loggedProxy struct {
	addr string
	out  *logbuf.Buffer // the access log
	al   *AccessLog
	b    *state.Builder
	reg  *metrics.Registry
}

// accessLogged runs a loggedProxy for cfg until the test ends.
func accessLogged(t *testing.T, cfg *config.Config) *loggedProxy {
	t.Helper()
	b, ts, reg := meteredState(t, cfg)
	out := &logbuf.Buffer{}
	al := NewAccessLog(out, logring.Options{Idle: time.Millisecond})
	t.Cleanup(func() { _ = al.Close() })
	px := New(Options{Tables: ts, Log: zerolog.Nop(), AccessLog: al, Limiter: ratelimit.NewLocal(1024)})
	srv := px.NewServer(cfg.Server, zerolog.Nop())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(Listener(ln)) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return &loggedProxy{addr: ln.Addr().String(), out: out, al: al, b: b, reg: reg}
}

// lines returns the access log's lines, parsed.
func lines(t *testing.T, out *logbuf.Buffer) []map[string]any {
	t.Helper()
	var ls []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		ls = append(ls, m)
	}
	return ls
}

// TestAccessLogEveryAnswer: a request refused by fasthttp or the proxy (400, 408, 413,
// 429, 431) gets its line, and a request no backend answered says why.
func TestAccessLogEveryAnswer(t *testing.T) {
	t.Parallel()
	cfg := poolConfig(t, "server: { read_timeout: 300ms, max_body_bytes: 10 }\n"+
		"rate_limit: { enabled: true, key: \"header:X-Key\", rate: 0.001, burst: 1 }\n", "http://"+deadAddr(t))
	lp := accessLogged(t, cfg)
	addr, out := lp.addr, lp.out
	f := func(req string, wantStatus int, want map[string]any) {
		t.Helper()
		before := len(lines(t, out))
		resp := rawRequest(t, addr, req)
		if !strings.HasPrefix(resp, "HTTP/1.1 "+strconv.Itoa(wantStatus)) {
			t.Fatalf("%.60q: got %.60q; want %d", req, resp, wantStatus)
		}
		testtool.WaitFor(t, 3*time.Second, "the access log line", func() bool { return len(lines(t, out)) == before+1 })
		l := lines(t, out)[before]
		if l["status"] != float64(wantStatus) {
			t.Fatalf("%.60q: got a line with status %v; want %d", req, l["status"], wantStatus)
		}
		for k, v := range want {
			if l[k] != v {
				t.Errorf("%.60q: field %s = %#v; want %#v", req, k, l[k], v)
			}
		}
	}
	f("GARBAGE\r\n\r\n", 400, nil)
	f("GET / HTTP/1.1\r\nHost: x\r\nX-Key: a\r\nX-Half", 408, nil) // never finished: read_timeout
	f("POST / HTTP/1.1\r\nHost: x\r\nX-Key: b\r\nContent-Length: 11\r\n\r\nhello world", 413, map[string]any{"backend": "", "tries": 0.0})
	f("GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("b", 20000)+"\r\n\r\n", 431, nil)
	f("GET /x?token=s3cret HTTP/1.1\r\nHost: shop.example\r\nX-Key: c\r\nUser-Agent: ua/1\r\nConnection: close\r\n\r\n", 503,
		map[string]any{"cause": "connect_error", "tries": 1.0, "host": "shop.example", "query": "token=*", "user_agent": "ua/1"})
	f("GET / HTTP/1.1\r\nHost: x\r\nX-Key: c\r\nConnection: close\r\n\r\n", 429, map[string]any{"backend": ""})
}

// TestAccessLogSample2xx: with log.sample_2xx 0.25 one 2xx line in four is written; other
// statuses all are.
func TestAccessLogSample2xx(t *testing.T) {
	t.Parallel()
	be := startBackend(t, named("b"))
	cfg := poolConfig(t, "log: { sample_2xx: 0.25 }\n", be.url)
	lp := accessLogged(t, cfg)
	addr, out := lp.addr, lp.out
	for range 40 {
		rawRequest(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	}
	rawRequest(t, addr, "GARBAGE\r\n\r\n")
	testtool.WaitFor(t, 3*time.Second, "the 400's line", func() bool { return strings.Contains(out.String(), `"status":400`) })
	if n := strings.Count(out.String(), `"status":200`); n != 10 {
		t.Fatalf("got %d lines of 40 2xx answers at sample_2xx 0.25; want 10", n)
	}
}

// TestAppendJSONString: the exact escaping, by hand-written cases. Quote and backslash
// are backslash-escaped, control characters written \u00XX, each invalid UTF-8 byte
// replaced by U+FFFD, the rest copied; a value is cut at a character boundary, never
// inside an escape, and ends in "…".
func TestAppendJSONString(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in     string
		budget int
		want   string
	}{
		{"", 16, `""`},
		{"GET /a?b=c", 16, `"GET /a?b=c"`},
		{`a"b\c`, 16, `"a\"b\\c"`},
		{"\x00\n\x1f", 32, `"\u0000\u000a\u001f"`},
		{"\x7f ~", 16, "\"\x7f ~\""},
		{"é€😀", 32, `"é€😀"`},
		{"a\xffb\xe2\x82", 32, "\"a\ufffdb\ufffd\ufffd\""},
		{"\u2028\ufffd", 32, "\"\u2028\ufffd\""},
		// Cuts. The text kept, whole or cut, is at most budget-6 bytes: room for the quotes
		// and the 3-byte "…" and one byte to spare, so "abcde" is cut at 10 though its
		// 7 quoted bytes would fit.
		{"abcdefghij", 10, `"abcd…"`},
		{"abcd", 10, `"abcd"`},
		{"abcde", 10, `"abcd…"`},
		{"abc\"", 10, `"abc…"`},  // the escaped quote would go past the cut
		{"ab\x01", 12, `"ab…"`},  // so would \u0001
		{"ab€", 10, `"ab…"`},     // a character is not split
		{"ab\xff", 10, `"ab…"`},  // nor is its replacement
		{"abcdefghij", 5, `"…"`}, // the smallest cut value
		{strings.Repeat("x", 100), 16, `"` + strings.Repeat("x", 10) + `…"`},
	} {
		if got := string(appendJSONString([]byte("pre"), []byte(c.in), c.budget)); got != "pre"+c.want {
			t.Errorf("appendJSONString(%q, %d) = %q; want %q", c.in, c.budget, strings.TrimPrefix(got, "pre"), c.want)
		}
	}
}

// TestAppendJSONStringDecodes checks random values (long plain runs for the fast path,
// escapes, multi-byte and broken characters) against encoding/json: the output is one JSON
// string of at most budget bytes that decodes to the value, invalid bytes as U+FFFD, or to
// its longest prefix that fits followed by "…".
func TestAppendJSONStringDecodes(t *testing.T) {
	t.Parallel()
	// escapedSize is the bytes r takes inside the quotes, as TestAppendJSONString shows.
	escapedSize := func(r rune) int {
		switch {
		case r == '"' || r == '\\':
			return 2
		case r < 0x20:
			return 6
		}
		return utf8.RuneLen(r)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"a", "/items/42?q=", `"`, `\`, "\x01", "\n", "\x1f", "\x7f", " ", "é", "€", "😀",
		"\u2028", "\ufffd", "\xff", "\xe2\x82", "\xc3"}
	for range 20000 {
		var sb strings.Builder
		for range rng.IntN(12) {
			sb.WriteString(pieces[rng.IntN(len(pieces))])
		}
		s := sb.String()
		budget := 6 + rng.IntN(60)
		got := appendJSONString(nil, []byte(s), budget)
		var dec string
		if err := json.Unmarshal(got, &dec); err != nil || len(got) > budget {
			t.Fatalf("appendJSONString(%q, %d) = %q (%d bytes, %v); want a JSON string of at most %d bytes", s, budget, got, len(got), err, budget)
		}
		// The longest prefix of the value (invalid bytes as U+FFFD) whose escaped text is
		// at most budget-6 bytes (see TestAppendJSONString).
		want, size := "", 0
		for _, r := range s {
			if size += escapedSize(r); size > budget-6 {
				want += "…"
				break
			}
			want += string(r)
		}
		if dec != want {
			t.Fatalf("appendJSONString(%q, %d) = %q, decoding to %q; want %q", s, budget, got, dec, want)
		}
	}
}

func TestAppendRedactedQuery(t *testing.T) {
	t.Parallel()
	f := func(q, want string) {
		t.Helper()
		if got := string(appendRedactedQuery(nil, []byte(q), 40)); got != want {
			t.Fatalf("appendRedactedQuery(%q) = %s; want %s", q, got, want)
		}
	}
	f("", `""`)
	f("a=1&b=2", `"a=*&b=*"`)
	f("flag&x=&y=a=b", `"flag&x=*&y=*"`)
	f("a=1&&b", `"a=*&&b"`)
	f(`q="x"`, `"q=*"`)
	f(`"name"=v`, `"\"name\"=*"`)
	f(strings.Repeat("k", 50)+"=v", `"`+strings.Repeat("k", 34)+`…"`) // as appendJSONString cuts
}

// TestPlainRun: the eight-bytes-at-a-time scan stops where a byte-by-byte one does, for
// every byte value at every position of strings up to three words long, and with a
// second stop byte after the first (whose borrow must not move the answer).
func TestPlainRun(t *testing.T) {
	naive := func(s []byte) int {
		for i, c := range s {
			if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
				return i
			}
		}
		return len(s)
	}
	for n := 0; n <= 24; n++ {
		for p := 0; p < n; p++ {
			for c := 0; c < 256; c++ {
				for _, second := range []byte{'x', 0, '"', 0xff} {
					s := []byte(strings.Repeat("a", n))
					s[p] = byte(c)
					if p+1 < n {
						s[p+1] = second
					}
					if got, want := plainRun(s), naive(s); got != want {
						t.Fatalf("plainRun(%q) = %d; want %d", s, got, want)
					}
				}
			}
		}
	}
}

// TestAppendMillis: the same text as strconv.AppendFloat(ns/1e6, 'f', 3) for durations
// from nanoseconds to hours, except at exact half-microsecond ties (rounded up here).
func TestAppendMillis(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 200000 {
		ns := rng.Int64N(int64(1) << (10 + i%33))
		if ns%1000 == 500 {
			continue
		}
		want := strconv.AppendFloat(nil, float64(ns)/1e6, 'f', 3, 64)
		if got := appendMillis(nil, ns); string(got) != string(want) {
			t.Fatalf("appendMillis(%d) = %s; want %s", ns, got, want)
		}
	}
	if got := string(appendMillis(nil, 1500)); got != "0.002" {
		t.Fatalf("appendMillis(1500) = %s; want 0.002 (a tie rounds up)", got)
	}
}
