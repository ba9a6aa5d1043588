package proxy

import (
	"bytes"
	"time"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/metrics"
	"go-loadbalancer/state"
)

// observed wraps a backend's RoundTripper to record each try; it adds two clock reads and
// one metrics.Backend.Observe (four atomic adds), no allocation.
type observed struct {
	rt fasthttp.RoundTripper
	m  *metrics.Backend
}

func (o *observed) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	start := time.Now()
	retry, err := o.rt.RoundTrip(hc, req, resp)
	if err != nil {
		o.m.ObserveError(failureCause(err), time.Since(start))
	} else {
		o.m.Observe(resp.StatusCode(), time.Since(start))
	}
	return retry, err
}

// failureCause names why a try got no response, for lb_requests_total{code} and the
// access log: never the status the client is answered with for it.
func failureCause(err error) metrics.Cause {
	switch err {
	case errConnect:
		return metrics.CauseConnect
	case errDialTimeout:
		return metrics.CauseConnectTimeout
	case errNoConns:
		return metrics.CauseBusy
	case errWrite:
		return metrics.CauseSend
	case errReset:
		return metrics.CauseReset
	case errRespTimeout:
		return metrics.CauseTimeout
	case errBodyLimit, errClientBody:
		return metrics.CauseClient
	}
	return metrics.CauseBadResponse
}

// frontMetrics gives a table's data the client-facing handles of its pools.
func frontMetrics(d *tableData, t *state.Table, reg *metrics.Registry) {
	d.unrouted = reg.Front("", "")
	d.fronts = make([]*metrics.Front, len(t.Pools))
	for i, p := range t.Pools {
		d.fronts[i] = reg.Front(p.Name, "")
	}
	if !t.HasRoutes() {
		return
	}
	for _, rc := range t.Config.Routes {
		if rc.Match.PathPrefix == "" {
			continue
		}
		pools := []string{rc.Pool}
		if rc.Pool == "" {
			pools = pools[:0]
			for _, sp := range rc.Split {
				pools = append(pools, sp.Pool)
			}
		}
		for _, name := range pools {
			if p := t.Pool(name); p != nil {
				d.routeFronts = append(d.routeFronts, routeFront{pool: p, prefix: []byte(rc.Match.PathPrefix), f: reg.Front(name, rc.Match.PathPrefix)})
			}
		}
	}
}

// routeFront is the client-facing handle of one pool behind one route's path_prefix.
type routeFront struct {
	pool   *state.Pool
	prefix []byte
	f      *metrics.Front
}

// front returns the handle of a request routed to pool by a route with path_prefix
// prefix (nil: none); nil without metrics. A scan of a few entries: no map, no
// allocation.
func (d *tableData) front(pool *state.Pool, prefix []byte) *metrics.Front {
	if d.fronts == nil || pool == nil {
		return nil
	}
	if len(prefix) > 0 {
		for i := range d.routeFronts {
			if rf := &d.routeFronts[i]; rf.pool == pool && bytes.Equal(rf.prefix, prefix) {
				return rf.f
			}
		}
	}
	return d.fronts[pool.Index]
}
