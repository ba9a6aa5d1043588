package proxy

import (
	"time"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/config"
	"go-loadbalancer/metrics"
	"go-loadbalancer/state"
)

// HooksWithMetrics is Hooks whose upstream clients record every try in reg: status code
// (or the code its error is answered with) and the time to the response header, in the
// backend's handle (lb_requests_total, lb_request_duration_seconds). A backend keeps its
// handle, and so its counters, for as long as a table has it; reg nil is Hooks.
func HooksWithMetrics(dial Dialer, reg *metrics.Registry) state.Hooks {
	h := Hooks(dial)
	if reg == nil {
		return h
	}
	newUp, release := h.Upstream, h.Release
	h.Upstream = func(b *state.Backend, p *config.Pool, prev any) (any, error) {
		x, err := newUp(b, p, prev)
		if err != nil || x == prev {
			return x, err // a kept client keeps its handle
		}
		u := x.(*upstream)
		u.hc.Transport = &observed{rt: u.hc.Transport, m: reg.Acquire(b.ID, b.Pool)}
		return u, nil
	}
	h.Release = func(x any) {
		release(x)
		if o, ok := x.(*upstream).hc.Transport.(*observed); ok {
			reg.Release(o.m)
		}
	}
	return h
}

// observed wraps a backend's RoundTripper to record each try; it adds two clock reads
// and three atomic adds, no allocation.
type observed struct {
	rt fasthttp.RoundTripper
	m  *metrics.Backend
}

func (o *observed) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	start := time.Now()
	retry, err := o.rt.RoundTrip(hc, req, resp)
	code := resp.StatusCode()
	if err != nil {
		code = errorReply(err).status
	}
	o.m.Observe(code, time.Since(start))
	return retry, err
}
