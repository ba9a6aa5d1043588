package proxy

import (
	"strconv"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/tracing"
)

// traceKey is the RequestCtx user-value key of a traced request's *tracing.Request. A
// zero-size key and a pointer value keep SetUserValue allocation-free.
type traceKey struct{}

// serveTraced is ServeHTTP with tracing on: it asks the tracer whether the request is
// traced (no allocation when it is not) and, if it is, wraps serve in the request's
// server span. The backend is told the server span is the parent until forward replaces
// it with each try's span (a WebSocket tunnel has no try span).
func (p *Proxy) serveTraced(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	in := tracing.Incoming{Traceparent: h.PeekBytes(hTraceparent), Tracestate: h.PeekBytes(hTracestate),
		Method: h.Method(), Path: ctx.Path(), Host: h.Host(), Start: ctx.Time()}
	rt := p.tracer.Start(&in)
	if rt == nil {
		p.serve(ctx) // not traced: the client's traceparent, if any, goes on unchanged
		return
	}
	defer func() { rt.End(ctx.Response.StatusCode()) }()
	ctx.SetUserValue(traceKey{}, rt)
	h.SetBytesKV(hTraceparent, rt.Traceparent())
	p.serve(ctx)
}

// requestTrace returns the request's server span, nil when it is not traced.
func (p *Proxy) requestTrace(ctx *fasthttp.RequestCtx) *tracing.Request {
	if p.tracer == nil {
		return nil
	}
	rt, _ := ctx.UserValue(traceKey{}).(*tracing.Request)
	return rt
}

// startTry starts the span of an upstream try to b and names it as the backend's parent.
func startTry(rt *tracing.Request, req *fasthttp.Request, backendID string) *tracing.Try {
	try := rt.StartTry(backendID)
	req.Header.SetBytesKV(hTraceparent, try.Traceparent())
	return try
}

// endTry ends a try's span with the backend's status and, for a failed try, its kind of
// failure: connect, connect_timeout, timeout, busy (connection limit), client (the
// client's body failed), reset (failed after the request was sent), or the 5xx status.
func endTry(try *tracing.Try, err error, resp *fasthttp.Response) {
	status, kind := 0, ""
	switch err {
	case nil:
		if status = resp.StatusCode(); status >= 500 {
			kind = strconv.Itoa(status)
		}
	case errConnect:
		kind = "connect"
	case errDialTimeout:
		kind = "connect_timeout"
	case errRespTimeout:
		kind = "timeout"
	case errNoConns:
		kind = "busy"
	case errBodyLimit, errClientBody:
		kind = "client"
	default:
		kind = "reset"
	}
	try.End(status, kind)
}

var hTracestate = []byte("tracestate")
