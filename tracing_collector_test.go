package main

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"go-loadbalancer/internal/otlptest"
	"go-loadbalancer/internal/testotel"
)

// Traffic through the real binary, spans through a real OpenTelemetry Collector: what a
// tracing backend would store. Names and kinds by the HTTP semantic conventions, the
// client's traceparent as the server span's parent, one client span per try as the child
// the backend is told about, the attributes, and nothing for an unsampled request.
func TestTracingThroughCollector(t *testing.T) {
	t.Parallel()
	col := testotel.Start(t)

	var mu sync.Mutex
	var seen []string // traceparent each backend request carried
	live := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" { // health checks go on until the process exits
			mu.Lock()
			seen = append(seen, r.Header.Get("traceparent"))
			mu.Unlock()
		}
		w.Write([]byte("ok"))
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go live.Serve(ln)
	t.Cleanup(func() { live.Close() })
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String()
	dead.Close() // nothing listens: connection refused
	liveURL := "http://" + ln.Addr().String()

	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	os.WriteFile(cfg, []byte(`listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0" }
server: { shutdown_timeout: 5s, drain_grace: 100ms }
tracing: { enabled: true, otlp_endpoint: "`+col.HTTPEndpoint()+`", sample_ratio: 1, service_name: lb-e2e }
routes:
  - match: { path_prefix: /api }
    pool: api
pools:
  - name: web
    backends: [{ url: "`+liveURL+`" }]
  - name: api
    backends: [{ url: "`+deadURL+`" }, { url: "`+liveURL+`" }]
`), 0o644)
	p := start(t, "-config", cfg)

	const (
		sampledTrace   = "4bf92f3577b34da6a3ce929d0e0e4736"
		clientSpan     = "00f067aa0ba902b7"
		unsampledTrace = "11111111111111111111111111111111"
	)
	get := func(path, traceparent string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+p.addr+path, nil)
		if traceparent != "" {
			req.Header.Set("traceparent", traceparent)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: status %d", path, resp.StatusCode)
		}
	}
	// The api pool's smooth 1:1 schedule starts with its first backend: the dead one, so
	// the first request there takes two tries.
	get("/api/items", "00-"+sampledTrace+"-"+clientSpan+"-01")
	get("/home", "")
	get("/api/items", "00-"+unsampledTrace+"-"+clientSpan+"-00")

	// A stop flushes the spans still queued.
	p.stop(t)
	spans := col.WaitSpans(5, 20*time.Second)
	if len(spans) != 5 {
		t.Fatalf("got %d spans; want 5 (2 requests traced, 3 tries; none for the unsampled one): %+v", len(spans), spans)
	}

	var apiSrv, homeSrv otlptest.Span
	var apiTries, homeTries []otlptest.Span
	for _, s := range spans {
		if s.Service != "lb-e2e" {
			t.Fatalf("span %q: service.name %q; want lb-e2e", s.Name, s.Service)
		}
		switch {
		case s.TraceID == sampledTrace && s.Kind == tracepb.Span_SPAN_KIND_SERVER:
			apiSrv = s
		case s.TraceID == sampledTrace && s.Kind == tracepb.Span_SPAN_KIND_CLIENT:
			apiTries = append(apiTries, s)
		case s.Kind == tracepb.Span_SPAN_KIND_SERVER:
			homeSrv = s
		case s.Kind == tracepb.Span_SPAN_KIND_CLIENT:
			homeTries = append(homeTries, s)
		}
	}
	if apiSrv.Name != "GET /api" || apiSrv.ParentSpanID != clientSpan {
		t.Fatalf("routed request's server span %+v; want \"GET /api\", parent %s", apiSrv, clientSpan)
	}
	want := map[string]string{"http.request.method": "GET", "http.route": "/api", "url.path": "/api/items",
		"server.address": "127.0.0.1", "http.response.status_code": "200", "lb.pool": "api", "lb.retries": "1"}
	for k, v := range want {
		if apiSrv.Attrs[k] != v {
			t.Errorf("server span %s = %q; want %q (all: %v)", k, apiSrv.Attrs[k], v, apiSrv.Attrs)
		}
	}
	if len(apiTries) != 2 {
		t.Fatalf("got %d try spans for the routed request; want 2: %+v", len(apiTries), apiTries)
	}
	for _, try := range apiTries {
		if try.Name != "GET" || try.ParentSpanID != apiSrv.SpanID {
			t.Fatalf("try span %+v; want \"GET\", child of %s", try, apiSrv.SpanID)
		}
		switch try.Attrs["lb.attempt"] {
		case "1":
			if try.Attrs["error.type"] != "connect" || !try.Error || try.Attrs["lb.backend"] == apiSrv.Attrs["lb.backend"] {
				t.Fatalf("first try %+v; want error.type connect on the dead backend", try)
			}
		case "2":
			if try.Attrs["error.type"] != "" || try.Attrs["http.response.status_code"] != "200" ||
				try.Attrs["lb.backend"] != apiSrv.Attrs["lb.backend"] {
				t.Fatalf("second try %+v; want 200 from the request's final backend", try)
			}
			mu.Lock()
			first := seen[0]
			mu.Unlock()
			if wantTP := "00-" + sampledTrace + "-" + try.SpanID + "-01"; first != wantTP {
				t.Fatalf("backend got traceparent %q; want %q (the second try as parent)", first, wantTP)
			}
		default:
			t.Fatalf("try %+v", try)
		}
	}
	if homeSrv.Name != "GET" || homeSrv.ParentSpanID != "" || homeSrv.Attrs["http.route"] != "" ||
		homeSrv.Attrs["lb.pool"] != "web" || len(homeTries) != 1 || homeTries[0].ParentSpanID != homeSrv.SpanID ||
		homeTries[0].TraceID != homeSrv.TraceID {
		t.Fatalf("unrouted request: server span %+v, tries %+v; want a new trace \"GET\" in pool web with one child try", homeSrv, homeTries)
	}
	// The unsampled request's traceparent reached the backend unchanged.
	mu.Lock()
	defer mu.Unlock()
	if last := seen[len(seen)-1]; !strings.Contains(last, unsampledTrace) || !strings.HasSuffix(last, "-"+clientSpan+"-00") {
		t.Fatalf("backend got traceparent %q for the unsampled request; want the client's unchanged", last)
	}
}
