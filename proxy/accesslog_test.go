package proxy

import (
	"bytes"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"go-loadbalancer/internal/logbuf"
	"go-loadbalancer/internal/testtool"
	"go-loadbalancer/metrics"
	"go-loadbalancer/state"
)

func TestAccessLogLine(t *testing.T) {
	be := startBackend(t, named("b1"))
	cfg := poolConfig(t, "", be.url)
	var b *state.Builder
	reg := metrics.New(metrics.Options{Current: func() *state.Table { return b.Store.Load() }})
	b = state.NewBuilder(HooksWithMetrics(nil, reg))
	if _, err := b.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	var out logbuf.Buffer
	al := NewAccessLog(&out, AccessLogOptions{Idle: time.Millisecond})
	px := New(Options{Store: &b.Store, Log: zerolog.Nop(), AccessLog: al})
	srv := px.NewServer(cfg.Server, zerolog.Nop())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })

	req := fasthttp.AcquireRequest()
	req.SetRequestURI("http://" + ln.Addr().String() + "/items/7?secret=1")
	req.Header.Set("X-Request-Id", "req-\"42\"")
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
	id := b.Store.Load().Pools[0].Backends[0].ID
	for k, want := range map[string]any{
		"level": "info", "message": "access", "method": "GET", "path": "/items/7", "status": 200.0,
		"backend": id, "bytes": 2.0, "client": "127.0.0.1", "request_id": `req-"42"`,
		"trace_id": "0af7651916cd43dd8448eb211c80319c",
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
	if strings.Contains(out.String(), "secret") {
		t.Errorf("the query string was logged: %s", out.String())
	}
	// The same request was counted in the backend's metrics.
	reg.Sample(time.Now())
	if snap := reg.Snapshot(false); snap.Backends[0].Responses.C2xx != 1 {
		t.Errorf("got %d 2xx responses in the metrics; want 1", snap.Backends[0].Responses.C2xx)
	}
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
}

// blockingWriter blocks every Write until release is closed.
type blockingWriter struct{ release chan struct{} }

func (w blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

func testCtx(method, path string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(path)
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 5000}, nil)
	return ctx
}

// TestAccessLogNeverBlocks: with the writer stuck, logging goes on at full speed and the
// lines that do not fit are dropped and counted.
func TestAccessLogNeverBlocks(t *testing.T) {
	w := blockingWriter{release: make(chan struct{})}
	al := NewAccessLog(w, AccessLogOptions{Lines: 8, Idle: time.Millisecond})
	ctx := testCtx("GET", "/x")
	done := make(chan struct{})
	go func() {
		for i := 0; i < 1000; i++ {
			al.log(ctx, time.Now(), time.Now())
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("logging blocked on a stuck writer")
	}
	// The writer holds at most one batch; the ring at most 8 lines.
	if d := al.Dropped(); d < 1000-8-64 || d > 1000 {
		t.Fatalf("got %d dropped lines; want most of 1000", d)
	}
	close(w.release)
	_ = al.Close()
}

// TestAccessLogCloseFlushes: every line logged before Close is written, in order.
func TestAccessLogCloseFlushes(t *testing.T) {
	var out logbuf.Buffer
	al := NewAccessLog(&out, AccessLogOptions{Lines: 4096, Idle: time.Hour})
	for i := 0; i < 3000; i++ {
		al.log(testCtx("GET", "/n"), time.Now(), time.Now())
	}
	_ = al.Close()
	if n := strings.Count(out.String(), "\n"); n != 3000 || al.Dropped() != 0 {
		t.Fatalf("got %d lines, %d dropped; want 3000, 0", n, al.Dropped())
	}
}

// TestAccessLogLongestLineFits: hostile input (every byte escaped six-fold, huge values)
// still gives one valid JSON line that fits a slot, with the long values cut.
func TestAccessLogLongestLineFits(t *testing.T) {
	ctx := testCtx(strings.Repeat("M", 200), "/"+strings.Repeat("x", 5000))
	ctx.Request.Header.Set("X-Request-Id", strings.Repeat("\"", 3000))
	ctx.Request.Header.Set("traceparent", "00-"+strings.Repeat("z", 32)+"-b7ad6b7169203331-01")
	ctx.SetUserValue(servedBy{}, &state.Backend{ID: strings.Repeat("\\", 1000)})
	ctx.Response.SetBodyString("hello")
	line := appendAccess(make([]byte, 0, accessSlotSize), ctx, time.Now(), time.Now())
	if len(line) > accessSlotSize {
		t.Fatalf("got a %d-byte line; want at most %d", len(line), accessSlotSize)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("line is not JSON: %v\n%s", err, line)
	}
	for _, k := range []string{"method", "path", "request_id", "backend"} {
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
