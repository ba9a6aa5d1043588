package proxy

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/otlptest"
	"go-loadbalancer/tracing"
)

const (
	clientTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientParent  = "00f067aa0ba902b7"
	clientSampled = "00-" + clientTraceID + "-" + clientParent + "-01"
	clientNotSamp = "00-" + clientTraceID + "-" + clientParent + "-00"
)

// startTracer runs a tracer exporting to endpoint until the test ends.
func startTracer(t testing.TB, endpoint string, ratio float64) *tracing.Tracer {
	t.Helper()
	tr, err := tracing.New(tracing.Options{Config: config.Tracing{Enabled: true, OTLPEndpoint: endpoint,
		SampleRatio: ratio, ServiceName: "lb-test"}, Log: zerolog.Nop(), BatchTimeout: 20 * time.Millisecond,
		ShutdownTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func withTracer(tr *tracing.Tracer) proxyOption { return func(o *Options) { o.Tracer = tr } }

// traceRecorder is a backend handler that keeps the trace headers of each request.
type traceRecorder struct {
	mu     sync.Mutex
	parent []string
	state  []string
}

func (r *traceRecorder) handler(ctx *fasthttp.RequestCtx) {
	r.mu.Lock()
	r.parent = append(r.parent, string(ctx.Request.Header.Peek("traceparent")))
	r.state = append(r.state, string(ctx.Request.Header.Peek("tracestate")))
	r.mu.Unlock()
	ctx.SetBodyString("ok")
}

func (r *traceRecorder) last() (parent, state string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.parent) == 0 {
		return "", ""
	}
	return r.parent[len(r.parent)-1], r.state[len(r.state)-1]
}

// splitSpans returns the one server span and the try spans, failing on anything else.
func splitSpans(t *testing.T, spans []otlptest.Span, tries int) (otlptest.Span, []otlptest.Span) {
	t.Helper()
	var srv []otlptest.Span
	var up []otlptest.Span
	for _, s := range spans {
		switch {
		case s.Kind == tracepb.Span_SPAN_KIND_SERVER && s.Name == "GET":
			srv = append(srv, s)
		case s.Kind == tracepb.Span_SPAN_KIND_CLIENT && s.Name == "GET":
			up = append(up, s)
		default:
			t.Fatalf("unexpected span %q of kind %v", s.Name, s.Kind)
		}
	}
	if len(srv) != 1 || len(up) != tries {
		t.Fatalf("got %d server and %d try spans; want 1 and %d: %+v", len(srv), len(up), tries, spans)
	}
	return srv[0], up
}

func TestTracingSampledRequest(t *testing.T) {
	t.Parallel()
	col := otlptest.Start(t)
	var rec traceRecorder
	be := startBackend(t, rec.handler)
	px := startProxy(t, poolConfig(t, "", be.url), withTracer(startTracer(t, col.URL(), 0)))
	resp := px.get(t, "/items?id=1", "traceparent", clientSampled, "tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
	if resp.StatusCode() != 200 {
		t.Fatalf("status %d", resp.StatusCode())
	}
	srv, tries := splitSpans(t, col.WaitSpans(t, 2, 10*time.Second), 1)
	try := tries[0]
	if srv.TraceID != clientTraceID || try.TraceID != clientTraceID {
		t.Fatalf("trace ids %s, %s; want the client's %s", srv.TraceID, try.TraceID, clientTraceID)
	}
	if srv.ParentSpanID != clientParent {
		t.Fatalf("server span's parent %s; want the client's span %s", srv.ParentSpanID, clientParent)
	}
	if try.ParentSpanID != srv.SpanID {
		t.Fatalf("try span's parent %s; want the server span %s", try.ParentSpanID, srv.SpanID)
	}
	backendID := px.builder.Store.Load().Backends()[0].ID
	want := map[string]string{"http.request.method": "GET", "url.path": "/items", "server.address": "127.0.0.1",
		"http.response.status_code": "200", "lb.pool": "web", "lb.backend": backendID, "lb.retries": "0"}
	for k, v := range want {
		if srv.Attrs[k] != v {
			t.Errorf("server span %s = %q; want %q", k, srv.Attrs[k], v)
		}
	}
	if try.Attrs["lb.attempt"] != "1" || try.Attrs["lb.backend"] != backendID || try.Attrs["error.type"] != "" {
		t.Errorf("try span attributes %v", try.Attrs)
	}
	if srv.Service != "lb-test" {
		t.Errorf("service.name %q", srv.Service)
	}
	tp, ts := rec.last()
	if wantTP := "00-" + clientTraceID + "-" + try.SpanID + "-01"; tp != wantTP {
		t.Fatalf("backend got traceparent %q; want %q (the try span as parent)", tp, wantTP)
	}
	if ts != "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7" {
		t.Fatalf("backend got tracestate %q; want the client's", ts)
	}
}

func TestTracingRetryHasTwoTrySpans(t *testing.T) {
	t.Parallel()
	col := otlptest.Start(t)
	var rec traceRecorder
	be := startBackend(t, rec.handler)
	// Smooth 1:1 starts with the first backend: the dead one.
	px := startProxy(t, poolConfig(t, "", "http://"+deadAddr(t), be.url), withTracer(startTracer(t, col.URL(), 1)))
	if resp := px.get(t, "/"); resp.StatusCode() != 200 {
		t.Fatalf("status %d", resp.StatusCode())
	}
	srv, tries := splitSpans(t, col.WaitSpans(t, 3, 10*time.Second), 2)
	bs := px.builder.Store.Load().Backends()
	dead, live := bs[0].ID, bs[1].ID
	if srv.ParentSpanID != "" {
		t.Fatalf("a request without traceparent got parent %s; want a new trace", srv.ParentSpanID)
	}
	if srv.Attrs["lb.retries"] != "1" || srv.Attrs["lb.backend"] != live {
		t.Fatalf("server span %v; want lb.retries 1 and lb.backend %s", srv.Attrs, live)
	}
	for _, try := range tries {
		if try.ParentSpanID != srv.SpanID || try.TraceID != srv.TraceID {
			t.Fatalf("try %+v is not a child of the server span %s", try, srv.SpanID)
		}
		switch try.Attrs["lb.attempt"] {
		case "1":
			if try.Attrs["lb.backend"] != dead || try.Attrs["error.type"] != "connect" || !try.Error {
				t.Fatalf("first try %+v; want backend %s, error.type connect", try, dead)
			}
		case "2":
			if try.Attrs["lb.backend"] != live || try.Attrs["error.type"] != "" {
				t.Fatalf("second try %+v; want backend %s, no error", try, live)
			}
			if tp, _ := rec.last(); tp != "00-"+srv.TraceID+"-"+try.SpanID+"-01" {
				t.Fatalf("backend got traceparent %q; want the second try as parent", tp)
			}
		default:
			t.Fatalf("try %+v", try)
		}
	}
}

func TestTracingUnsampledPassesThrough(t *testing.T) {
	t.Parallel()
	col := otlptest.Start(t)
	var rec traceRecorder
	be := startBackend(t, rec.handler)
	for _, c := range []struct {
		name  string
		ratio float64
		tp    string
	}{
		{"ratio 0, no traceparent", 0, ""},
		{"ratio 1, unsampled parent", 1, clientNotSamp},
		{"ratio 0, unsampled parent", 0, clientNotSamp},
	} {
		tr := startTracer(t, col.URL(), c.ratio)
		px := startProxy(t, poolConfig(t, "", be.url), withTracer(tr))
		var headers []string
		if c.tp != "" {
			headers = []string{"traceparent", c.tp, "tracestate", "k=v"}
		}
		for range 5 {
			if resp := px.get(t, "/", headers...); resp.StatusCode() != 200 {
				t.Fatalf("%s: status %d", c.name, resp.StatusCode())
			}
			if tp, ts := rec.last(); tp != c.tp || (c.tp != "" && ts != "k=v") {
				t.Fatalf("%s: backend got traceparent %q tracestate %q; want the client's %q unchanged", c.name, tp, ts, c.tp)
			}
		}
		if err := tr.Close(); err != nil { // flushes whatever was queued
			t.Fatal(err)
		}
	}
	if n := len(col.Spans()); n != 0 || col.Requests() != 0 {
		t.Fatalf("collector got %d spans in %d exports; want none", n, col.Requests())
	}
}

func TestTracingCollectorDownLeavesRequestsAlone(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	var rec traceRecorder
	be := startBackend(t, rec.handler)
	tr := startTracer(t, dead, 1)
	px := startProxy(t, poolConfig(t, "", be.url), withTracer(tr))
	for i := range 50 {
		resp := px.get(t, "/", "traceparent", clientSampled)
		if resp.StatusCode() != 200 || string(resp.Body()) != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode(), resp.Body())
		}
		if tp, _ := rec.last(); len(tp) != 55 || tp[3:35] != clientTraceID || tp[36:52] == clientParent {
			t.Fatalf("request %d: backend got traceparent %q; want the client's trace with our try as parent", i, tp)
		}
	}
	// Close gives up on the export after ShutdownTimeout (2 s); the exporter's own timeout
	// and retries would take a minute. 20 s only bounds a hang.
	closed := make(chan error, 1)
	go func() { closed <- tr.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close with the collector down: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return with the collector down; want it bounded by ShutdownTimeout")
	}
}

// BenchmarkGETTracing is BenchmarkGET's proxied GET with tracing off, on but not sampled
// (the client's traceparent says 00), and on and sampled (exported to a fake collector).
func BenchmarkGETTracing(b *testing.B) {
	col := otlptest.Start(b)
	for _, bc := range []struct {
		name   string
		tracer *tracing.Tracer
		tp     string
	}{
		{"off", nil, clientNotSamp},
		{"unsampled", startTracer(b, col.URL(), 1), clientNotSamp},
		{"sampled", startTracer(b, col.URL(), 0), clientSampled},
	} {
		s := newInmemorySetupWith(b, "hello", inmemoryOptions{observed: true, tracer: bc.tracer})
		b.Run(bc.name, func(b *testing.B) {
			benchGETs(b, s.proxied, "traceparent", bc.tp)
		})
	}
}

// TestTracingRecordsTheForwardedTarget: a traced request's url.path and server.address
// are the canonical path and the Host it was forwarded with, not what it arrived with.
func TestTracingRecordsTheForwardedTarget(t *testing.T) {
	t.Parallel()
	col := otlptest.Start(t)
	rec := startTapBackend(t, answerOK)
	px := startProxy(t, poolConfig(t, "", "http://"+rec.addr), withTracer(startTracer(t, col.URL(), 0)))
	status, _, _ := exchange(t, px.addr, "GET http://Shop.Example/x/../it%65ms?id=1 HTTP/1.1\r\nHost: other.example\r\ntraceparent: "+clientSampled+"\r\n\r\n")
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	srv, _ := splitSpans(t, col.WaitSpans(t, 2, 10*time.Second), 1)
	if srv.Attrs["url.path"] != "/items" || srv.Attrs["server.address"] != "shop.example" {
		t.Fatalf("url.path %q, server.address %q; want /items and shop.example", srv.Attrs["url.path"], srv.Attrs["server.address"])
	}
}
