package state

import (
	"bytes"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"go-loadbalancer/config"
	"go-loadbalancer/geoip"
	"go-loadbalancer/internal/reqpath"
	"go-loadbalancer/picker"
)

// Route is one traffic policy (config routes[]): a match on the request and the pool, or
// weighted split of pools, that matching requests go to. Built with the table; read-only.
type Route struct {
	pathPrefix []byte
	host       []byte // lower case, no port
	method     []byte // upper case
	headers    []headerMatch
	regions    [][]byte
	pools      []*Pool
	split      *picker.Smooth // weighted split over pools; nil for a single pool
}

type headerMatch struct{ name, value []byte }

// RouteRequest is what routing reads of a request. Path is the canonical path
// (docs/behaviour.md#request-processing); a path_prefix matches it on whole segments. Header returns a header's value (nil
// when absent); it is called only while Route runs.
type RouteRequest struct {
	Path, Host, Method []byte
	Header             func(name []byte) []byte
	Region             []byte // the client's region (Geo.Region), nil if unknown
}

// Route returns the pool for r: the first route that matches, or the default pool; and
// the matching route's path_prefix (nil when none matched or it has none), by which
// tracing names the request's span. Safe for concurrent use; allocation-free.
func (t *Table) Route(r *RouteRequest) (*Pool, []byte) {
	for i := range t.routes {
		rt := &t.routes[i]
		if !rt.matches(r) {
			continue
		}
		if rt.split == nil {
			return rt.pools[0], rt.pathPrefix
		}
		return rt.pools[rt.split.Next()], rt.pathPrefix
	}
	return t.DefaultPool(), nil
}

// HasRoutes reports whether the table has traffic policies; without them every request
// goes to the default pool.
func (t *Table) HasRoutes() bool { return len(t.routes) > 0 }

func (rt *Route) matches(r *RouteRequest) bool {
	if len(rt.pathPrefix) > 0 && !reqpath.HasPrefix(r.Path, rt.pathPrefix) {
		return false
	}
	if len(rt.method) > 0 && !bytes.Equal(r.Method, rt.method) {
		return false
	}
	if len(rt.host) > 0 && !hostEqual(r.Host, rt.host) {
		return false
	}
	for _, h := range rt.headers {
		if !bytes.Equal(r.Header(h.name), h.value) {
			return false
		}
	}
	if len(rt.regions) > 0 {
		found := false
		for _, reg := range rt.regions {
			if bytes.Equal(reg, r.Region) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// hostEqual compares a Host header (any case, optional :port) with a lower-case name.
func hostEqual(host, want []byte) bool {
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && !bytes.HasSuffix(host, []byte("]")) {
		host = host[:i]
	}
	if len(host) != len(want) {
		return false
	}
	for i := range host {
		c := host[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

func buildRoutes(cfg *config.Config, pools map[string]*Pool) ([]Route, error) {
	if cfg.Env.TrafficPoliciesOff {
		return nil, nil // TRAFFIC_POLICIES_ENABLED=false: every request goes to the first pool
	}
	var routes []Route
	for i, rc := range cfg.Routes {
		rt := Route{
			pathPrefix: []byte(rc.Match.PathPrefix),
			host:       []byte(strings.ToLower(rc.Match.Host)),
			method:     []byte(strings.ToUpper(rc.Match.Method)),
		}
		names := make([]string, 0, len(rc.Match.Headers))
		for name := range rc.Match.Headers {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			rt.headers = append(rt.headers, headerMatch{name: []byte(name), value: []byte(rc.Match.Headers[name])})
		}
		for _, reg := range rc.Match.Regions {
			rt.regions = append(rt.regions, []byte(reg))
		}
		if rc.Pool != "" {
			p := pools[rc.Pool]
			if p == nil {
				return nil, fmt.Errorf("cannot build routes[%d]: unknown pool %q", i, rc.Pool)
			}
			rt.pools = []*Pool{p}
		} else {
			weights := make([]int, 0, len(rc.Split))
			for _, s := range rc.Split {
				p := pools[s.Pool]
				if p == nil {
					return nil, fmt.Errorf("cannot build routes[%d]: unknown pool %q", i, s.Pool)
				}
				rt.pools = append(rt.pools, p)
				weights = append(weights, s.Weight)
			}
			rt.split = picker.NewSmooth(weights)
		}
		routes = append(routes, rt)
	}
	return routes, nil
}

// Geo maps a client to a region (config geo): the geo.header value when the peer is a
// trusted proxy (a CDN or edge that sets it), else the longest geo.cidrs prefix holding the
// client address. Built with the table; read-only.
type Geo struct {
	header      []byte
	nets        []geoNet  // longest prefix first
	db          *geoip.DB // geo.mmdb_file, consulted after the CIDRs
	preferLocal bool
}

type geoNet struct {
	prefix netip.Prefix
	region []byte
}

func buildGeo(c config.Geo, db *geoip.DB) *Geo {
	g := &Geo{preferLocal: c.PreferLocal == nil || *c.PreferLocal, db: db}
	if c.Header != "" {
		g.header = []byte(c.Header)
	}
	for region, cidrs := range c.CIDRs {
		for _, s := range cidrs {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				a, aerr := netip.ParseAddr(s)
				if aerr != nil {
					continue // Validate rejected it already
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			g.nets = append(g.nets, geoNet{prefix: p.Masked(), region: []byte(region)})
		}
	}
	sort.SliceStable(g.nets, func(i, j int) bool { return g.nets[i].prefix.Bits() > g.nets[j].prefix.Bits() })
	return g
}

// Enabled reports whether any region source is configured.
func (g *Geo) Enabled() bool { return g != nil && (g.header != nil || len(g.nets) > 0 || g.db != nil) }

// HeaderName is the configured region header, or nil.
func (g *Geo) HeaderName() []byte { return g.header }

// PreferLocal reports whether picks prefer backends in the client's region.
func (g *Geo) PreferLocal() bool { return g != nil && g.preferLocal }

// Region returns the client's region: headerValue when it is non-empty (the caller passes
// it only from a trusted peer), else the region of the longest CIDR holding addr, else the
// GeoIP database's, else nil.
func (g *Geo) Region(addr netip.Addr, headerValue []byte) []byte {
	if len(headerValue) > 0 {
		return headerValue
	}
	for i := range g.nets {
		if g.nets[i].prefix.Contains(addr) {
			return g.nets[i].region
		}
	}
	if g.db != nil {
		return g.db.Region(addr)
	}
	return nil
}

// regionSet is the backends of one region of a pool, with their own smooth schedule.
type regionSet struct {
	idx    []int // indexes into Pool.Backends
	smooth *picker.Smooth
}

func buildRegions(p *Pool) map[string]*regionSet {
	var m map[string]*regionSet
	for i, b := range p.Backends {
		if b.Region == "" {
			continue
		}
		if m == nil {
			m = map[string]*regionSet{}
		}
		rs := m[b.Region]
		if rs == nil {
			rs = &regionSet{}
			m[b.Region] = rs
		}
		rs.idx = append(rs.idx, i)
	}
	for _, rs := range m {
		w := make([]int, len(rs.idx))
		for j, i := range rs.idx {
			w[j] = p.Backends[i].Weight
		}
		rs.smooth = picker.NewSmooth(w)
	}
	return m
}

// PickLocal is Pick restricted first to the backends in region (geo.prefer_local): when
// one of them is usable it is chosen; otherwise the whole pool is, as Pick does.
func (p *Pool) PickLocal(region []byte, tried Tried, now int64) (*Backend, Ticket) {
	if rs := p.regions[string(region)]; rs != nil && len(region) > 0 {
		bs := p.Backends
		for range 3 {
			j := rs.smooth.Pick(func(j int) bool {
				i := rs.idx[j]
				b := bs[i]
				return b.Healthy && !b.Drained && !tried.Has(i) && b.Stats.Breaker.Ready(now)
			})
			if j < 0 {
				break
			}
			i := rs.idx[j]
			if tk := bs[i].Stats.Breaker.Acquire(now); tk != TicketRejected {
				return bs[i], tk
			}
			tried = tried.With(i)
		}
	}
	return p.Pick(tried, now)
}
