package metrics

import (
	"sync/atomic"
	"time"
)

// Front holds the client-facing handles of one pool and route: what clients were
// answered, whatever tries it took (lb_http_requests_total{pool,route,code}), how long the
// whole request took (lb_http_request_duration_seconds{pool,route}) and the body bytes
// both ways. route is the path_prefix of the route that matched ("" for none); requests
// answered before a pool was chosen (401, 429, malformed) count under pool="", route="".
// A Front belongs to its pool and route and outlives tables. A nil *Front records
// nothing. Safe for concurrent use.
type Front struct {
	Pool   string
	Route  string
	labels string

	codes    codeCounters
	hist     histogram
	bytesIn  atomic.Uint64
	bytesOut atomic.Uint64

	bytesInName, bytesOutName string
}

func newFront(pool, route string) *Front {
	f := &Front{Pool: pool, Route: route, labels: `pool=` + quoteLabel(pool) + `,route=` + quoteLabel(route)}
	f.codes.init("lb_http_requests_total", f.labels)
	f.hist.init("lb_http_request_duration_seconds", f.labels)
	f.bytesInName = `lb_http_request_bytes_total{` + f.labels + `}`
	f.bytesOutName = `lb_http_response_bytes_total{` + f.labels + `}`
	f.codes.counter(slotOf(200)) // a series from the start, for rate()
	return f
}

// Observe records one answered request: its status code, the time from its arrival until
// the response was ready, and its request and response body bytes (negative: unknown, not
// counted). A few atomic adds, no lock, no allocation — except the first time a code is
// seen, when its counter is made under codeCounters.mu.
func (f *Front) Observe(code int, d time.Duration, in, out int64) {
	if f == nil {
		return
	}
	f.codes.inc(slotOf(code))
	f.hist.observe(d)
	if in > 0 {
		f.bytesIn.Add(uint64(in))
	}
	if out > 0 {
		f.bytesOut.Add(uint64(out))
	}
}

// Front returns the client-facing handle of pool and route ("", "" for requests answered
// before a pool was chosen), creating it on first use. Called when a table is built, not
// per request.
func (r *Registry) Front(pool, route string) *Front {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := frontKey{pool, route}
	f := r.fronts[key]
	if f == nil {
		f = newFront(pool, route)
		r.fronts[key] = f
	}
	return f
}

type frontKey struct{ pool, route string }
