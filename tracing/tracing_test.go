package tracing

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/logbuf"
	"go-loadbalancer/internal/otlptest"
)

const (
	traceIDHex = "0af7651916cd43dd8448eb211c80319c"
	parentHex  = "b7ad6b7169203331"
	sampledTP  = "00-" + traceIDHex + "-" + parentHex + "-01"
	unsampled  = "00-" + traceIDHex + "-" + parentHex + "-00"
)

func TestParseTraceparent(t *testing.T) {
	f := func(tp string, wantOK bool, wantFlags byte) {
		t.Helper()
		tid, sid, flags, ok := parseTraceparent([]byte(tp))
		if ok != wantOK {
			t.Fatalf("parseTraceparent(%q): ok %v; want %v", tp, ok, wantOK)
		}
		if !ok {
			return
		}
		if tid.String() != traceIDHex || sid.String() != parentHex || flags != wantFlags {
			t.Fatalf("parseTraceparent(%q) = %s %s %02x; want %s %s %02x", tp, tid, sid, flags, traceIDHex, parentHex, wantFlags)
		}
	}
	f(sampledTP, true, 1)
	f(unsampled, true, 0)
	f("00-"+traceIDHex+"-"+parentHex+"-03", true, 3)
	f("01-"+traceIDHex+"-"+parentHex+"-01-extra", true, 1) // a later version: read as 00
	f("01-"+traceIDHex+"-"+parentHex+"-01", true, 1)
	f("00-"+traceIDHex+"-"+parentHex+"-01-extra", false, 0) // version 00 has exactly 4 fields
	f("01-"+traceIDHex+"-"+parentHex+"-01x", false, 0)
	f("ff-"+traceIDHex+"-"+parentHex+"-01", false, 0)
	f("00-"+strings.ToUpper(traceIDHex)+"-"+parentHex+"-01", false, 0)
	f("00-00000000000000000000000000000000-"+parentHex+"-01", false, 0)
	f("00-"+traceIDHex+"-0000000000000000-01", false, 0)
	f("00-"+traceIDHex+"-"+parentHex+"-0g", false, 0)
	f("00-"+traceIDHex+"_"+parentHex+"-01", false, 0)
	f(sampledTP[:54], false, 0)
	f("", false, 0)

	tid, sid, _, _ := parseTraceparent([]byte(sampledTP))
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	if got := string(appendTraceparent(nil, sc)); got != sampledTP {
		t.Fatalf("appendTraceparent = %q; want %q", got, sampledTP)
	}
}

func newTracer(t *testing.T, endpoint string, ratio float64, log zerolog.Logger) *Tracer {
	t.Helper()
	tr, err := New(Options{Config: config.Tracing{Enabled: true, OTLPEndpoint: endpoint, SampleRatio: ratio,
		ServiceName: "lb-test"}, Log: log, BatchTimeout: 20 * time.Millisecond, ShutdownTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func TestSamplingDecision(t *testing.T) {
	col := otlptest.Start(t)
	start := func(tr *Tracer, tp string) *Request {
		return tr.Start(&Incoming{Traceparent: []byte(tp), Method: []byte("GET"), Path: []byte("/"), Start: time.Now()})
	}
	never := newTracer(t, col.URL(), 0, zerolog.Nop())
	if r := start(never, ""); r != nil {
		t.Fatal("sample_ratio 0 traced a request without traceparent")
	}
	if r := start(never, "garbage"); r != nil {
		t.Fatal("sample_ratio 0 traced a request with a malformed traceparent")
	}
	if r := start(never, sampledTP); r == nil {
		t.Fatal("a sampled parent was not followed at sample_ratio 0")
	} else {
		r.End(200)
	}
	always := newTracer(t, col.URL(), 1, zerolog.Nop())
	if r := start(always, unsampled); r != nil {
		t.Fatal("an unsampled parent was traced at sample_ratio 1")
	}
	if r := start(always, ""); r == nil {
		t.Fatal("sample_ratio 1 did not trace a request without traceparent")
	} else {
		r.End(200)
	}

	// At 0.5 about half the new traces are kept, and the SDK agrees with every decision
	// (a span it would drop is not recording).
	half := newTracer(t, col.URL(), 0.5, zerolog.Nop())
	const n = 10000
	kept := 0
	for range n {
		if r := start(half, ""); r != nil {
			kept++
			if !r.span.IsRecording() || !r.span.SpanContext().IsSampled() {
				t.Fatal("the SDK dropped a trace that Start sampled")
			}
			r.End(200)
		}
	}
	if kept < n*45/100 || kept > n*55/100 {
		t.Fatalf("sample_ratio 0.5 kept %d of %d new traces", kept, n)
	}

	// A reload's new ratio applies to the next request.
	never.SetSampleRatio(1)
	if r := start(never, ""); r == nil {
		t.Fatal("after SetSampleRatio(1) a new trace was not sampled")
	} else {
		r.End(200)
	}
	always.SetSampleRatio(0)
	if r := start(always, ""); r != nil {
		t.Fatal("after SetSampleRatio(0) a new trace was sampled")
	}
}

func TestUnsampledAllocatesNothing(t *testing.T) {
	col := otlptest.Start(t)
	f := func(name string, ratio float64, tp string) {
		tr := newTracer(t, col.URL(), ratio, zerolog.Nop())
		in := &Incoming{Traceparent: []byte(tp), Method: []byte("GET"), Path: []byte("/x"), Host: []byte("h"), Start: time.Now()}
		if n := testing.AllocsPerRun(1000, func() {
			if tr.Start(in) != nil {
				t.Fatal("traced")
			}
		}); n != 0 {
			t.Fatalf("%s: %.2f allocs per unsampled Start; want 0", name, n)
		}
	}
	f("unsampled parent", 1, unsampled)
	f("no parent, sample_ratio 0", 0, "")
}

func TestSpansReachTheCollector(t *testing.T) {
	col := otlptest.Start(t)
	tr := newTracer(t, col.URL(), 0, zerolog.Nop())
	r := tr.Start(&Incoming{Traceparent: []byte(sampledTP), Tracestate: []byte("vendor=abc"), Method: []byte("GET"),
		Path: []byte("/items"), Host: []byte("shop.example:8080"), Start: time.Now()})
	if r == nil {
		t.Fatal("not traced")
	}
	r.Route([]byte("/items"))
	r.Pool("web")
	try := r.StartTry("web-a")
	tp := string(try.Traceparent())
	try.End(0, "connect")
	try = r.StartTry("web-b")
	try.End(200, "")
	r.End(200)
	spans := col.WaitSpans(t, 3, 10*time.Second)
	byName := map[string][]otlptest.Span{}
	for _, s := range spans {
		if s.TraceID != traceIDHex {
			t.Fatalf("span %s has trace id %s; want the client's %s", s.Name, s.TraceID, traceIDHex)
		}
		if s.Service != "lb-test" {
			t.Fatalf("service.name %q; want lb-test", s.Service)
		}
		byName[s.Name] = append(byName[s.Name], s)
	}
	srv, tries := byName["GET /items"], byName["GET"]
	if len(srv) != 1 || len(tries) != 2 || srv[0].Kind != tracepb.Span_SPAN_KIND_SERVER ||
		tries[0].Kind != tracepb.Span_SPAN_KIND_CLIENT || tries[1].Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Fatalf("got %+v; want a server span \"GET /items\" and two client spans \"GET\"", spans)
	}
	s := srv[0]
	if s.ParentSpanID != parentHex || s.TraceState != "vendor=abc" {
		t.Fatalf("server span parent %s tracestate %q; want %s and vendor=abc", s.ParentSpanID, s.TraceState, parentHex)
	}
	want := map[string]string{"http.request.method": "GET", "url.path": "/items", "server.address": "shop.example",
		"http.response.status_code": "200", "lb.pool": "web", "lb.backend": "web-b", "lb.retries": "1",
		"http.route": "/items"}
	for k, v := range want {
		if s.Attrs[k] != v {
			t.Fatalf("server span %s = %q; want %q (all: %v)", k, s.Attrs[k], v, s.Attrs)
		}
	}
	for _, try := range tries {
		if try.ParentSpanID != s.SpanID {
			t.Fatalf("try span's parent %s; want the server span %s", try.ParentSpanID, s.SpanID)
		}
		switch try.Attrs["lb.attempt"] {
		case "1":
			if try.Attrs["lb.backend"] != "web-a" || try.Attrs["error.type"] != "connect" || !try.Error {
				t.Fatalf("first try: %+v", try)
			}
			if wantTP := "00-" + traceIDHex + "-" + try.SpanID + "-01"; tp != wantTP {
				t.Fatalf("first try's traceparent %q; want %q", tp, wantTP)
			}
		case "2":
			if try.Attrs["lb.backend"] != "web-b" || try.Attrs["error.type"] != "" || try.Attrs["http.response.status_code"] != "200" {
				t.Fatalf("second try: %+v", try)
			}
		default:
			t.Fatalf("try with attempt %q", try.Attrs["lb.attempt"])
		}
	}
}

// TestCollectorOutageIsLoggedOnce: while the collector is down, every export fails but
// one warning is logged; when it comes back, one recovery line.
func TestCollectorOutageIsLoggedOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	var logs logbuf.Buffer
	tr := newTracer(t, "http://"+addr, 1, zerolog.New(&logs))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		tr.Start(&Incoming{Start: time.Now()}).End(200)
		if err := tr.ForceFlush(ctx); err != nil {
			t.Fatalf("ForceFlush during an outage: %v (want the failure kept from the caller)", err)
		}
	}
	if n := strings.Count(logs.String(), "trace export failing"); n != 1 {
		t.Fatalf("logged %d export failures in one outage; want 1:\n%s", n, logs.String())
	}

	// The collector comes back on the same address.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again (%v): recovery not checked", addr, err)
	}
	col := otlptest.Serve(t, ln)
	tr.Start(&Incoming{Start: time.Now()}).End(200)
	if err := tr.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	col.WaitSpans(t, 1, 10*time.Second)
	if n := strings.Count(logs.String(), "trace export recovered"); n != 1 {
		t.Fatalf("logged %d recoveries; want 1:\n%s", n, logs.String())
	}
}

// BenchmarkStartUnsampled is the whole per-request cost of tracing for an untraced request.
func BenchmarkStartUnsampled(b *testing.B) {
	col := otlptest.Start(b)
	tr, err := New(Options{Config: config.Tracing{OTLPEndpoint: col.URL(), SampleRatio: 1, ServiceName: "x"}})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	in := &Incoming{Traceparent: []byte(unsampled)}
	b.ReportAllocs()
	for b.Loop() {
		if tr.Start(in) != nil {
			b.Fatal("traced")
		}
	}
}

// Span names follow the HTTP semantic conventions: "METHOD /route" for the server span of
// a request that matched a route with a path_prefix, the method alone otherwise, "HTTP"
// (with http.request.method "_OTHER") for a method the conventions do not know.
func TestSpanNames(t *testing.T) {
	col := otlptest.Start(t)
	tr := newTracer(t, col.URL(), 1, zerolog.Nop())
	for _, c := range []struct{ method, route string }{{"GET", "/api"}, {"POST", ""}, {"PURGE", "/cache"}} {
		r := tr.Start(&Incoming{Method: []byte(c.method), Path: []byte("/x"), Host: []byte("h"), Start: time.Now()})
		r.Route([]byte(c.route))
		r.StartTry("b").End(200, "")
		r.End(200)
	}
	want := map[string]string{ // name → kind/http.request.method/http.request.method_original/http.route
		"GET /api":    "SPAN_KIND_SERVER/GET///api",
		"POST":        "SPAN_KIND_SERVER/POST//",
		"HTTP /cache": "SPAN_KIND_SERVER/_OTHER/PURGE//cache",
		"GET":         "SPAN_KIND_CLIENT/GET//",
		"HTTP":        "SPAN_KIND_CLIENT/_OTHER//",
	}
	got := map[string]string{}
	for _, s := range col.WaitSpans(t, 6, 10*time.Second) {
		if s.Kind == tracepb.Span_SPAN_KIND_CLIENT && s.Attrs["http.request.method"] == "POST" {
			s.Name = "POST (client)"
		}
		got[s.Name] = s.Kind.String() + "/" + s.Attrs["http.request.method"] + "/" + s.Attrs["http.request.method_original"] + "/" + s.Attrs["http.route"]
	}
	want["POST (client)"] = "SPAN_KIND_CLIENT/POST//"
	for name, w := range want {
		if got[name] != w {
			t.Errorf("span %q: got %q; want %q (all: %v)", name, got[name], w, got)
		}
	}
}
