package proxy

import (
	"crypto/tls"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/reqpath"
	"go-loadbalancer/metrics"
	"go-loadbalancer/ratelimit"
	"go-loadbalancer/state"
	"go-loadbalancer/tlsconf"
)

// upstream is a backend's client: one pooled fasthttp.HostClient and its transport. It is
// kept across table swaps while the backend's connection settings stay the same, so a
// reload does not drop a single keep-alive connection.
type upstream struct {
	hc     *fasthttp.HostClient
	tr     *transport
	scheme []byte
	key    string // connection settings; a different key needs a new client
	dial   Dialer
	check  *fasthttp.HostClient // health checks
	host   string
	tls    *tls.Config
	// release gives back the backend's metrics handle (Tables with a registry); nil
	// without metrics.
	release func()

	tunnels atomic.Int64 // WebSocket tunnels open to this backend
}

// bufferLimit is the largest response body with a known length read whole; larger ones
// stream. It also bounds the request body fasthttp reads ahead before the handler runs.
const bufferLimit = 64 << 10

// Dialer opens a connection to a backend address; nil means TCP with the pool's connect
// timeout. Tests and benchmarks pass in-memory listeners' Dial.
type Dialer func(addr string) (net.Conn, error)

// Tables is the proxy's side of a state.Builder: its Hooks give each backend its client
// (an upstream) and each table the proxy's data for it (a tableData: the settings built
// from the config and every backend's client), and publish that data when the builder
// swaps the table in. A Proxy reads the table and its data together, with one atomic load
// per request. Safe for concurrent use.
type Tables struct {
	dial Dialer
	reg  *metrics.Registry
	cur  atomic.Pointer[tableData] // nil before the first table
}

// NewTables returns Tables whose clients dial with dial (nil: TCP with the pool's connect
// timeout). With reg non-nil, the clients record every try in reg: status code (or the
// cause of its failure) and the time to the response header, in the backend's handle
// (lb_requests_total, lb_request_duration_seconds); and each table's data carries each
// pool's client-facing handle (lb_http_requests_total, ...), recorded once per request. A
// backend keeps its handle, and so its counters, for as long as a table has it.
func NewTables(dial Dialer, reg *metrics.Registry) *Tables {
	return &Tables{dial: dial, reg: reg}
}

// Hooks returns the hooks to build a state.Builder with, for these Tables.
func (ts *Tables) Hooks() state.Hooks {
	h := state.Hooks{Upstream: ts.upstream, Table: ts.table}
	if ts.reg != nil {
		h.BreakerChange = ts.reg.BreakerChanged // for the dashboard's recent breaker states
	}
	return h
}

// upstream is the builder's Upstream hook.
func (ts *Tables) upstream(b *state.Backend, p *config.Pool, prev state.Upstream) (state.Upstream, error) {
	old, _ := prev.(*upstream) // the builder hands back what this hook made
	u, err := newUpstream(b, p, old, ts.dial)
	if err != nil || u == old || ts.reg == nil {
		return u, err // a kept client keeps its metrics handle
	}
	m := ts.reg.Acquire(b.ID, b.Pool)
	u.hc.Transport = &observed{rt: u.hc.Transport, m: m}
	u.release = func() { ts.reg.Release(m) }
	return u, nil
}

// table is the builder's Table hook: the proxy's data for t, published by storing it.
func (ts *Tables) table(t *state.Table) (func(), error) {
	d := newTableData(t)
	if ts.reg != nil {
		frontMetrics(d, t, ts.reg)
	}
	return func() { ts.cur.Store(d) }, nil
}

// newUpstream returns the client for backend b of pool p: old when its connection
// settings are the same, else a new one.
func newUpstream(b *state.Backend, p *config.Pool, old *upstream, dial Dialer) (*upstream, error) {
	key := fmt.Sprintf("%s|%t|%v|%v|%d|%d|%+v|%s", b.Addr, b.TLS, p.Timeouts.Connect, p.Timeouts.Response,
		p.MaxConnsPerBackend, p.ResponseHeaderBytes, p.UpstreamTLS, fileStamps(p.UpstreamTLS.CAFile, p.UpstreamTLS.CertFile, p.UpstreamTLS.KeyFile))
	if old != nil && old.key == key {
		return old, nil
	}
	u := &upstream{key: key, scheme: vHTTP}
	if b.TLS {
		u.scheme = vHTTPS
		tc, err := tlsconf.Upstream(p.UpstreamTLS)
		if err != nil {
			return nil, err
		}
		u.tls = tc
	}
	u.tr = &transport{
		writeTimeout:    p.Timeouts.Response,
		responseTimeout: p.Timeouts.Response,
		bufferLimit:     bufferLimit,
	}
	u.hc = &fasthttp.HostClient{
		Addr:                          b.Addr,
		Name:                          "",
		NoDefaultUserAgentHeader:      true,
		IsTLS:                         b.TLS,
		TLSConfig:                     u.tls,
		MaxConns:                      p.MaxConnsPerBackend,
		MaxIdleConnDuration:           60 * time.Second,
		MaxIdemponentCallAttempts:     1, // the proxy retries, on another backend
		DisableHeaderNamesNormalizing: false,
		DisablePathNormalizing:        true,
		// A response head must fit in the read buffer (else errHeadTooLarge): as large as
		// the request heads the proxy accepts, since backends echo request fields.
		ReadBufferSize: p.ResponseHeaderBytes,
		Transport:      u.tr,
	}
	if dial == nil {
		dialTimeout := p.Timeouts.Connect
		dial = func(addr string) (net.Conn, error) { return fasthttp.DialTimeout(addr, dialTimeout) }
	}
	u.dial = dial
	u.hc.Dial = u.guardDial(func(addr string) (net.Conn, error) {
		c, err := dial(addr)
		if err != nil {
			return nil, err
		}
		return newUpConn(c), nil
	})
	u.tr.bind(u.hc)
	// Health checks get their own small client: a pool saturated by traffic must not make
	// its backend look down.
	u.check = &fasthttp.HostClient{
		Addr: b.Addr, IsTLS: b.TLS, TLSConfig: u.tls, MaxConns: 2, Dial: fasthttp.DialFunc(dial),
		NoDefaultUserAgentHeader: true, MaxIdemponentCallAttempts: 1, DisablePathNormalizing: true,
		ReadBufferSize: p.ResponseHeaderBytes, // a big Set-Cookie or CSP must not fail a check
	}
	u.host = b.Addr
	return u, nil
}

// guardDial returns dial for the pooled client, refusing (ErrNoFreeConns, a 503 "at
// capacity" or a retry elsewhere) a new connection while the backend's open tunnels and
// pooled connections together fill max_conns_per_backend: tunnels dial themselves
// (websocket.go), so the pool's own MaxConns does not see them.
func (u *upstream) guardDial(dial Dialer) fasthttp.DialFunc {
	return func(addr string) (net.Conn, error) {
		if t := u.tunnels.Load(); t > 0 && u.full(t) {
			return nil, fasthttp.ErrNoFreeConns
		}
		return dial(addr)
	}
}

// full reports whether tunnels open to the backend and its pooled connections together
// exceed max_conns_per_backend.
func (u *upstream) full(tunnels int64) bool {
	return tunnels+int64(u.hc.ConnsCount()) > int64(u.hc.MaxConns)
}

// Check sends one health-check GET for path and returns the status code (state.Upstream).
// Safe for concurrent use.
func (u *upstream) Check(path string, timeout time.Duration) (int, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(string(u.scheme) + "://" + u.host + path)
	// A fresh connection each time, as HAProxy checks do: a backend that stopped accepting
	// must fail its check even while an old keep-alive connection still answers.
	req.SetConnectionClose()
	req.Header.Set("User-Agent", "go-loadbalancer-health-check")
	if err := u.check.DoTimeout(req, resp, timeout); err != nil {
		return 0, err
	}
	return resp.StatusCode(), nil
}

// Close lets the upstream go once no table has it (state.Upstream): idle connections are
// closed and the metrics handle given back; requests of an older table may still finish
// on it.
func (u *upstream) Close() {
	u.hc.CloseIdleConnections()
	if u.release != nil {
		u.release()
	}
}

// fileStamps identifies the current contents of files (size and modification time), so
// that a certificate rotated in place makes a reload build a new client.
func fileStamps(paths ...string) string {
	var sb strings.Builder
	for _, p := range paths {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(&sb, "%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return sb.String()
}

// tableData is the proxy's data for one table, built once with it and published with it
// (Tables): what a request reads, from the table to each backend's client.
type tableData struct {
	table *state.Table
	ups   []*upstream // every backend's client, by state.Backend.Slot

	nets      []netip.Prefix
	maxBody   int64
	pools     []retryPolicy // by state.Pool.Index
	sticky    stickyConf
	refs      atomic.Pointer[stickyRefs] // cookie references, built on first use
	rateLimit rateLimitConf
	accessLog bool    // log.access_log
	logMode   logMode // log.query
	// logEvery: one 2xx line in logEvery is written (log.sample_2xx); 1 every one, 0 none.
	logEvery uint64
	// geoHeader is geo.header, removed from requests of untrusted peers; nil when unset.
	geoHeader []byte
	// clientCerts: front mTLS verifies client certificates (tls.client_ca_file), which
	// are forwarded in X-Forwarded-Client-Cert.
	clientCerts bool

	// Client-facing metrics (NewTables with a registry), by state.Pool.Index, and for requests
	// answered before a pool was chosen; nil without metrics.
	fronts      []*metrics.Front
	routeFronts []routeFront // by route path_prefix and pool
	unrouted    *metrics.Front

	readTimeout, writeTimeout time.Duration   // server.read_timeout / write_timeout
	bufferBytes               int64           // server.request_buffer_bytes
	minBodyRate               int64           // server.min_request_body_rate
	bodyGrace                 time.Duration   // server.request_body_grace
	maxHeaders                int             // server.max_headers
	escaped                   reqpath.Escaped // server.escaped_slashes
}

func newTableData(t *state.Table) *tableData {
	d := &tableData{
		table:     t,
		nets:      t.Config.Server.TrustedNets(),
		maxBody:   t.Config.Server.MaxBodyBytes,
		sticky:    newStickyConf(t.Config),
		rateLimit: newRateLimitConf(t.Config.RateLimit),
		accessLog: t.Config.Log.AccessLogOn(),
		logMode:   newLogMode(t.Config.Log.Query),
		logEvery:  sampleEvery(t.Config.Log.Sample2xxRatio()),

		clientCerts: t.Config.TLS.ClientCAFile != "",

		readTimeout:  t.Config.Server.ReadTimeout,
		writeTimeout: t.Config.Server.WriteTimeout,
		bufferBytes:  t.Config.Server.RequestBufferBytes,
		minBodyRate:  t.Config.Server.MinRequestBodyRate,
		bodyGrace:    t.Config.Server.RequestBodyGrace,
		maxHeaders:   t.Config.Server.MaxHeaders,
	}
	d.escaped, _ = reqpath.ParseEscaped(t.Config.Server.EscapedSlashes) // validated
	if g := t.Config.Geo.Header; g != "" {
		d.geoHeader = []byte(g)
	}
	for _, p := range t.Pools {
		d.pools = append(d.pools, newRetryPolicy(p.Settings.Retry))
		for _, b := range p.Backends {
			// The one place the proxy asserts its own type back: Tables.upstream made it.
			u, ok := b.Upstream.(*upstream)
			if !ok {
				panic("BUG: a table built without Tables.Hooks' Upstream reached Tables.table")
			}
			d.ups = append(d.ups, u)
		}
	}
	return d
}

// sampleEvery turns a sample ratio (0..1) into "one in n": 1 for every one, 0 for none.
func sampleEvery(ratio float64) uint64 {
	if ratio <= 0 {
		return 0
	}
	return uint64(math.Round(1 / min(ratio, 1)))
}

// upstream returns backend b's client; b must be of this table.
func (d *tableData) upstream(b *state.Backend) *upstream { return d.ups[b.Slot] }

// trusted reports whether forwarded headers from peer are believed (server.trusted_proxies).
func (d *tableData) trusted(peer netip.Addr) bool {
	for _, n := range d.nets {
		if n.Contains(peer) {
			return true
		}
	}
	return false
}

// rateLimitConf is a table's rate_limit settings, built once with the table.
type rateLimitConf struct {
	on     bool
	limit  ratelimit.Limit
	header []byte // key: header:NAME
	claim  string // key: claim:NAME (a verified JWT's claim)
}

func newRateLimitConf(c config.RateLimit) rateLimitConf {
	r := rateLimitConf{on: c.Enabled}
	if !c.Enabled {
		return r
	}
	r.limit = ratelimit.NewLimit(c.Rate, c.Burst)
	if name, ok := strings.CutPrefix(c.Key, "header:"); ok {
		r.header = []byte(name)
	}
	r.claim, _ = strings.CutPrefix(c.Key, "claim:")
	return r
}
