// Package tracing is the proxy's OpenTelemetry tracing: a server span per traced request,
// a child span per upstream try, W3C Trace Context propagation to the backend, and a
// batching OTLP/HTTP exporter.
//
// The sampling decision is made here, before the OpenTelemetry SDK is touched, so that a
// request that is not traced costs a header parse and nothing else — no span, no context,
// no allocation:
//   - a request whose traceparent is valid follows its parent's sampled flag (parent-based
//     sampling);
//   - any other request is a new trace, kept at sample_ratio. The trace id is drawn here
//     and the decision taken on it exactly as the SDK's TraceIDRatioBased does; the SDK
//     (configured ParentBased(AlwaysSample)) records every span it is handed, so a reload
//     that changes sample_ratio (SetSampleRatio) needs no new SDK.
//
// Only sampled requests reach the SDK; they allocate (spans, attributes, the export).
package tracing

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"go-loadbalancer/config"
)

// Options configure a Tracer.
type Options struct {
	// Config is the tracing section of the config; Config.Enabled is not looked at.
	Config config.Tracing
	// Log receives export failures (once per outage) and recoveries.
	Log zerolog.Logger
	// BatchTimeout is the longest a finished span waits before it is exported; 0 means 5 s
	// (the SDK's default).
	BatchTimeout time.Duration
	// ShutdownTimeout bounds Close's final flush; 0 means 5 s.
	ShutdownTimeout time.Duration
}

// Tracer starts request spans. Safe for concurrent use; a nil *Tracer is not valid (the
// proxy keeps a nil one to mean "tracing off").
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	exporter *exporter
	// A new trace is sampled when its trace id's low 63 bits are below bound (1<<63 for
	// sample_ratio 1).
	bound    atomic.Uint64
	shutdown time.Duration
}

// New starts a tracer exporting to o.Config.OTLPEndpoint. The collector need not be up:
// spans that cannot be sent are dropped and the failure is logged, once per outage.
func New(o Options) (*Tracer, error) {
	c := o.Config
	opts, err := endpointOptions(c.OTLPEndpoint)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		otlptracehttp.WithTimeout(5*time.Second),
		// A short retry: while the collector is down the batch queue fills and newer spans
		// are dropped rather than queued without bound.
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: true, InitialInterval: 500 * time.Millisecond,
			MaxInterval: 2 * time.Second, MaxElapsedTime: 10 * time.Second}))
	inner, err := otlptracehttp.New(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	exp := &exporter{inner: inner, log: o.Log, endpoint: c.OTLPEndpoint}
	res, err := resource.Merge(resource.Default(),
		resource.NewSchemaless(attribute.String("service.name", c.ServiceName)))
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	bsp := []sdktrace.BatchSpanProcessorOption{}
	if o.BatchTimeout > 0 {
		bsp = append(bsp, sdktrace.WithBatchTimeout(o.BatchTimeout))
	}
	provider := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, bsp...),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
		sdktrace.WithIDGenerator(idGenerator{}),
	)
	t := &Tracer{
		provider: provider,
		tracer:   provider.Tracer("go-loadbalancer/proxy"),
		exporter: exp,
		shutdown: o.ShutdownTimeout,
	}
	t.SetSampleRatio(c.SampleRatio)
	if t.shutdown <= 0 {
		t.shutdown = 5 * time.Second
	}
	return t, nil
}

// SetSampleRatio changes the share of new traces kept (tracing.sample_ratio, 0..1), as a
// reload does. Safe for concurrent use with Start.
func (t *Tracer) SetSampleRatio(r float64) {
	var bound uint64
	switch {
	case r >= 1:
		bound = 1 << 63 // every 63-bit value is below it
	case r > 0:
		bound = uint64(r * (1 << 63)) // as sdktrace.TraceIDRatioBased
	}
	t.bound.Store(bound)
}

// endpointOptions turns otlp_endpoint (http://host:port, optionally with a path; the
// default path is /v1/traces) into exporter options.
func endpointOptions(endpoint string) ([]otlptracehttp.Option, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tracing: otlp_endpoint %q must be an http:// or https:// URL with a host", endpoint)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(u.Host)}
	if u.Scheme == "http" {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	path := "/v1/traces"
	if u.Path != "" && u.Path != "/" {
		path = u.Path
	}
	return append(opts, otlptracehttp.WithURLPath(path)), nil
}

// Close flushes the spans still queued, waiting at most ShutdownTimeout, and stops the
// exporter. Call it once the server has stopped taking requests.
func (t *Tracer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), t.shutdown)
	defer cancel()
	return t.provider.Shutdown(ctx)
}

// ForceFlush exports the spans ended so far (tests, and a caller that cannot wait for the
// batch timeout).
func (t *Tracer) ForceFlush(ctx context.Context) error { return t.provider.ForceFlush(ctx) }

// Incoming is what Start needs of a request; byte slices may be fasthttp's own buffers,
// they are copied before Start returns.
type Incoming struct {
	Traceparent, Tracestate []byte
	Method, Path, Host      []byte
	Start                   time.Time // when the request arrived
}

// Start decides whether the request is traced. It returns nil — having allocated nothing —
// when it is not, else the request's server span, named by the HTTP semantic conventions
// (https://opentelemetry.io/docs/specs/semconv/http/http-spans/): the method ("GET"), or
// "HTTP" for a method the conventions do not know; Route adds the route.
func (t *Tracer) Start(in *Incoming) *Request {
	var parent trace.SpanContext
	var root trace.TraceID
	if tid, sid, flags, ok := parseTraceparent(in.Traceparent); ok {
		if flags&byte(trace.FlagsSampled) == 0 {
			return nil // the parent's decision: not sampled
		}
		ts, _ := trace.ParseTraceState(string(in.Tracestate)) // invalid: dropped from our spans only
		parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid,
			TraceFlags: trace.TraceFlags(flags), TraceState: ts, Remote: true})
	} else {
		bound := t.bound.Load()
		if bound == 0 {
			return nil // sample_ratio 0
		}
		root = newTraceID()
		if binary.BigEndian.Uint64(root[8:16])>>1 >= bound {
			return nil
		}
	}
	ctx := context.Background()
	if parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	} else {
		ctx = context.WithValue(ctx, rootIDKey{}, root)
	}
	method, known := knownMethod(in.Method)
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", method),
		attribute.String("url.path", string(in.Path)),
		attribute.String("server.address", hostOnly(string(in.Host))),
	}
	name := method
	if !known {
		name = "HTTP"
		attrs = append(attrs, attribute.String("http.request.method_original", string(in.Method)))
	}
	ctx, span := t.tracer.Start(ctx, name,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(in.Start),
		trace.WithAttributes(attrs...))
	return &Request{ctx: ctx, span: span, tracer: t.tracer, name: name, method: method}
}

// knownMethod returns the http.request.method of a request method: itself when it is one
// of the conventions' known methods (RFC 9110's and PATCH, RFC 5789), else "_OTHER".
func knownMethod(m []byte) (string, bool) {
	switch string(m) {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH":
		return string(m), true
	}
	return "_OTHER", false
}

// Request is a traced request's server span. Its methods are called by the goroutine
// serving the request, in order: Traceparent/Pool/StartTry ..., then End.
type Request struct {
	ctx     context.Context
	span    trace.Span
	tracer  trace.Tracer
	name    string // the span's name so far: the method, or "HTTP"
	method  string // http.request.method
	pool    string
	backend string
	tries   int
}

// Traceparent returns the W3C traceparent naming the server span as the parent.
func (r *Request) Traceparent() []byte { return appendTraceparent(nil, r.span.SpanContext()) }

// Route notes the path_prefix of the route the request matched (nothing when empty): the
// span's http.route, and its name becomes "GET /prefix".
func (r *Request) Route(prefix []byte) {
	if len(prefix) == 0 {
		return
	}
	route := string(prefix)
	r.span.SetName(r.name + " " + route)
	r.span.SetAttributes(attribute.String("http.route", route))
}

// Target notes the path and Host the request was decided on and forwarded with (its
// canonical target, docs/behaviour.md#request-processing), in place of those it arrived with.
func (r *Request) Target(path, host []byte) {
	r.span.SetAttributes(attribute.String("url.path", string(path)),
		attribute.String("server.address", hostOnly(string(host))))
}

// Pool notes the pool the request was routed to.
func (r *Request) Pool(name string) { r.pool = name }

// StartTry starts the span of the next upstream try, to backend; the try's Traceparent is
// what the backend must receive. A client span is named by the method, as the server span
// before its route.
func (r *Request) StartTry(backend string) *Try {
	r.tries++
	r.backend = backend
	_, span := r.tracer.Start(r.ctx, r.name,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("http.request.method", r.method),
			attribute.Int("lb.attempt", r.tries),
			attribute.String("lb.backend", backend),
		))
	return &Try{span: span}
}

// End ends the server span with the response status the client gets.
func (r *Request) End(status int) {
	attrs := []attribute.KeyValue{attribute.Int("http.response.status_code", status)}
	if r.pool != "" {
		attrs = append(attrs, attribute.String("lb.pool", r.pool))
	}
	if r.backend != "" {
		attrs = append(attrs, attribute.String("lb.backend", r.backend))
	}
	attrs = append(attrs, attribute.Int("lb.retries", max(r.tries-1, 0)))
	r.span.SetAttributes(attrs...)
	if status >= 500 {
		r.span.SetStatus(codes.Error, "")
	}
	r.span.End()
}

// Try is the span of one upstream try.
type Try struct {
	span trace.Span
}

// Traceparent returns the W3C traceparent naming the try span as the parent.
func (t *Try) Traceparent() []byte { return appendTraceparent(nil, t.span.SpanContext()) }

// End ends the try. status is the backend's status code (0 when it gave none); errKind,
// when not empty, is why the try failed ("connect", "timeout", "502", ...).
func (t *Try) End(status int, errKind string) {
	if status > 0 {
		t.span.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	if errKind != "" {
		t.span.SetAttributes(attribute.String("error.type", errKind))
		t.span.SetStatus(codes.Error, errKind)
	}
	t.span.End()
}

// hostOnly strips the port from a Host header value.
func hostOnly(h string) string {
	if len(h) > 0 && h[0] == '[' { // [::1]:8080
		for i := 1; i < len(h); i++ {
			if h[i] == ']' {
				return h[1:i]
			}
		}
		return h
	}
	for i := len(h) - 1; i >= 0; i-- {
		if h[i] == ':' {
			return h[:i]
		}
	}
	return h
}

// rootIDKey is the context key under which Start hands the SDK the trace id of a new
// trace, whose sampling it has already decided.
type rootIDKey struct{}

// idGenerator is sdktrace.IDGenerator with the trace id of a new trace taken from the
// context (rootIDKey) when there.
type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	tid, ok := ctx.Value(rootIDKey{}).(trace.TraceID)
	if !ok {
		tid = newTraceID()
	}
	return tid, newSpanID()
}

func (idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return newSpanID() }

// newTraceID returns a random, valid (non-zero) trace id. math/rand/v2's top-level source
// is the runtime's per-thread ChaCha8: no lock, no allocation.
func newTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:8], rand.Uint64())
		binary.BigEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

func newSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}

// exporter wraps the OTLP exporter so that a failing collector is logged once per outage
// (and its recovery once), and never reaches the SDK's global error handler, which would
// log every failed batch.
type exporter struct {
	inner    sdktrace.SpanExporter
	log      zerolog.Logger
	endpoint string
	failing  atomic.Bool
	dropped  atomic.Uint64 // spans lost in the current outage
}

func (e *exporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.inner.ExportSpans(ctx, spans)
	if err != nil {
		if !e.failing.Swap(true) {
			e.dropped.Store(0)
			e.log.Warn().Err(err).Str("otlp_endpoint", e.endpoint).
				Msg("trace export failing; spans are dropped until the collector answers again")
		}
		e.dropped.Add(uint64(len(spans)))
		return nil
	}
	if e.failing.Swap(false) {
		e.log.Info().Str("otlp_endpoint", e.endpoint).Uint64("spans_dropped", e.dropped.Load()).
			Msg("trace export recovered")
	}
	return nil
}

func (e *exporter) Shutdown(ctx context.Context) error {
	err := e.inner.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		e.log.Warn().Err(err).Msg("trace export: spans still queued at shutdown were dropped")
		return nil
	}
	return err
}
