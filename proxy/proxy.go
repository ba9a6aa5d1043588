// Package proxy is the data plane: a fasthttp request handler that picks a backend from the
// current state.Table and forwards the request to it through the backend's pooled
// fasthttp.HostClient.
//
// The request path (Proxy.ServeHTTP) takes no lock of its own and, for a plain proxied
// request, makes no allocation: the table is one atomic load, the picker an atomic add, the
// headers are rewritten in place in fasthttp's reused buffers, and errors are sentinel
// values mapped to prebuilt JSON bodies. Locks are still taken below it: fasthttp's
// HostClient takes its pool mutex twice per proxied request (AcquireConn and ReleaseConn,
// transport.go), and a first sighting takes one — a status code's counter (metrics), a
// GeoIP record, a new sticky pin, a newly verified JWT (docs/behaviour.md#where-locks-are-taken).
package proxy

import (
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"go-loadbalancer/auth"
	"go-loadbalancer/metrics"
	"go-loadbalancer/ratelimit"
	"go-loadbalancer/state"
	"go-loadbalancer/sticky"
	"go-loadbalancer/tracing"
)

// Options configure a Proxy.
type Options struct {
	// Tables is where the current table and the proxy's data for it are read from (the
	// builder publishes them through Tables.Hooks); required.
	Tables *Tables
	// Log receives errors and state changes (never a line per request from here).
	Log zerolog.Logger
	// Local, if set, is asked for each request's path: a non-nil handler answers the
	// request instead of proxying it — the demo's admin paths on the data-plane port.
	Local func(path []byte) fasthttp.RequestHandler
	// Sticky, if set, is the session store used when the table's sticky.enabled is true.
	Sticky sticky.Store
	// Auth, if set, verifies JWT bearer tokens (auth.jwt) before anything else is done;
	// SetAuth replaces it (a reload).
	Auth *auth.Verifier
	// Limiter, if set, is the rate limiter used when the table's rate_limit.enabled is true
	// (ratelimit.Local or ratelimit.Redis); OnRateLimited is called for each refusal.
	Limiter       Limiter
	OnRateLimited func()
	// AccessLog, if set, gets one line per request while the table's log.access_log is on.
	AccessLog *AccessLog
	// Tracer, if set, traces sampled requests (tracing.enabled); nil costs one nil check.
	Tracer *tracing.Tracer
}

// Proxy is the data-plane handler. Safe for concurrent use.
type Proxy struct {
	tables *Tables
	log    zerolog.Logger
	local  func(path []byte) fasthttp.RequestHandler
	alog   *AccessLog

	tracer *tracing.Tracer

	sticky sticky.Store

	limiter       Limiter
	onRateLimited func()
	auth          atomic.Pointer[auth.Verifier]

	// edge and maxTunnels are set by NewServer: tunnels are counted in its Stats under
	// server.max_tunnels. nil and 0 without a Server (tests).
	edge       *ServerStats
	maxTunnels int64

	errLogs    atomic.Uint64 // sampled error logging
	sampled    atomic.Uint64 // 2xx responses seen while log.sample_2xx < 1
	xfcc       xfccCache     // X-Forwarded-Client-Cert values of recent client certificates
	clientErrs [numClientReasons]atomic.Uint64
	// newSessions is the budget of sticky.new_header_sessions_per_second (kept across
	// reloads: the bound is per instance).
	newSessions perSecond
}

// New returns a Proxy reading tables from o.Tables.
func New(o Options) *Proxy {
	if o.Tables == nil {
		panic("BUG: proxy.Options.Tables is nil")
	}
	p := &Proxy{tables: o.Tables, log: o.Log, local: o.Local, alog: o.AccessLog, sticky: o.Sticky,
		limiter: o.Limiter, onRateLimited: o.OnRateLimited, tracer: o.Tracer}
	p.auth.Store(o.Auth)
	return p
}

// SetAuth makes v (nil: none) verify the requests that start from now on and returns the
// verifier it replaces, for the caller to Close once no request can be using it.
func (p *Proxy) SetAuth(v *auth.Verifier) (old *auth.Verifier) { return p.auth.Swap(v) }

// ServeHTTP proxies one request. It is a fasthttp.RequestHandler.
func (p *Proxy) ServeHTTP(ctx *fasthttp.RequestCtx) {
	if p.tracer != nil {
		p.serveTraced(ctx) // tracing.go
		return
	}
	p.serve(ctx)
}

func (p *Proxy) serve(ctx *fasthttp.RequestCtx) {
	ext := p.tables.cur.Load()
	var id identity                           // resolved by admit
	defer p.finish(ctx, ext, ctx.Time(), &id) // the arrival time fasthttp already read
	if ext == nil {
		writeError(ctx, errNoConfig)
		return
	}
	t := ext.table
	req := &ctx.Request
	var flags int
	var local fasthttp.RequestHandler
	if a, ok := admittedEarly(ctx); ok {
		// Slow path: Expect: 100-continue, admitted by expect before the body was read.
		flags, local, id = a.flags, a.local, a.id
	} else {
		var r *reply
		if flags, local, r = p.admit(ctx, ext, &id); r != nil {
			if r != &answered {
				p.reject(ctx, r)
			} else if bodyUnread(req) {
				closeUnread(ctx) // a 401 or 429 with the body still on the wire
			}
			return
		}
	}
	if local != nil {
		local(ctx)
		return
	}
	if req.IsBodyStream() {
		// Slow path: a body over the 8 KiB fasthttp reads ahead; buffered or streamed under
		// the minimum rate (body.go).
		r, up := p.takeBody(ctx, ext)
		if r != nil {
			if r != &answered {
				p.reject(ctx, r)
			}
			return
		}
		if up != nil {
			defer p.endStream(ctx, up)
		}
	}
	pool, region, prefix := route(ctx, t, &id)
	if f := ext.front(pool, prefix); f != nil {
		ctx.SetUserValue(routedTo{}, f) // for finish
	}
	if p.tracer != nil {
		if rt := p.requestTrace(ctx); rt != nil {
			rt.Target(requestPath(req), req.Header.Host())
			rt.Route(prefix)
		}
	}
	upgrade := flags&hdrUpgrade != 0 && isWebSocket(req)
	if upgrade && len(req.Header.Host()) == 0 {
		p.reject(ctx, &replyBadHost) // an HTTP/1.0 upgrade: nothing to tunnel to
		return
	}
	prepareRequest(ctx, flags, ext, &id, upgrade)
	if ext.clientCerts {
		p.setClientCert(ctx)
	}

	now := ctx.Time().UnixNano() // read once by fasthttp when the request arrived
	if upgrade {
		p.upgrade(ctx, pool, region, ext, now)
		return
	}
	p.forward(ctx, pool, region, ext, now)
}

// admit runs every check a request must pass before its body is read or a backend is
// chosen, cheapest first: strict framing (scanRequestHeaders), the canonical target and
// Host (canonicalize), the client's identity (resolveIdentity, into id), then — unless a
// local handler claims the path — the body-size limit, the rate limit, and JWT. The rate
// limit runs before JWT verification, so a flood of bad tokens is refused for the price of
// a limiter lookup; with rate_limit.key claim:NAME (known only after verification) each
// token that must be verified (not in the verification cache) is charged to the client
// address first, and the claim's limit applies after. It returns the header flags and the
// local handler, or the reply to refuse the request with: &answered for a 401 or 429
// already written.
func (p *Proxy) admit(ctx *fasthttp.RequestCtx, ext *tableData, id *identity) (int, fasthttp.RequestHandler, *reply) {
	req := &ctx.Request
	dropTrailers(&req.Header) // of a chunked body read before the handler, and the Trailer field
	flags := scanRequestHeaders(req.Header.RawHeaders(), ext.maxHeaders)
	switch {
	case flags&hdrTooMany != 0:
		return flags, nil, &replyTooManyHeaders
	case flags&hdrBad != 0:
		// RFC 9112 §6.3: ambiguous framing must be rejected and the connection closed, or a
		// request could be smuggled past us inside another's body.
		return flags, nil, &replyBadFraming
	}
	if flags&hdrConnection != 0 {
		// Slow path. Before any decision and before the proxy sets a field.
		removeConnectionTokens(&req.Header, flags&hdrUpgrade != 0 && isWebSocket(req))
	}
	if proto := req.Header.Protocol(); string(proto) != "HTTP/1.1" && string(proto) != "HTTP/1.0" {
		return flags, nil, &replyBadVersion // fasthttp takes "HTTP/2.0" and "HTTP/1.2" too
	}
	if r := canonicalize(req, ext.escaped); r != nil {
		return flags, nil, r
	}
	*id = resolveIdentity(ctx, flags, ext)
	removeUntrusted(&req.Header, flags, ext, id.trusted)
	if p.local != nil {
		if h := p.local(requestPath(req)); h != nil {
			return flags, h, nil
		}
	}
	if cl := req.Header.ContentLength(); cl > 0 && int64(cl) > ext.maxBody {
		return flags, nil, &replyBodyTooLarge
	}
	limit := ext.rateLimit.on && p.limiter != nil
	byClaim := limit && ext.rateLimit.claim != ""
	if limit && !byClaim && !p.allow(ctx, ext, id, nil) {
		return flags, nil, &answered
	}
	var claims map[string]any
	if v := p.auth.Load(); v != nil {
		var r *reply
		if claims, r = p.authenticate(ctx, v, func() bool { return !byClaim || p.allow(ctx, ext, id, nil) }); r != nil {
			return flags, nil, r
		}
	}
	if byClaim && !p.allow(ctx, ext, id, claims) {
		return flags, nil, &answered
	}
	return flags, nil, nil
}

// routedTo is the RequestCtx user-value key of the client-facing *metrics.Front (pool and
// route) of the request.
type routedTo struct{}

// finish records the answered request in ctx: the client-facing metrics of its pool and
// the access log line (2xx lines sampled per log.sample_2xx). start is when it arrived;
// ext the proxy's data of the table it was served with (nil: none yet); id the client's
// identity (nil or unresolved: the peer).
func (p *Proxy) finish(ctx *fasthttp.RequestCtx, ext *tableData, start time.Time, id *identity) {
	now := time.Now()
	if ext == nil {
		if p.alog != nil {
			p.alog.log(ctx, start, now, logQueryRedact, id)
			releaseRecord(ctx)
		}
		return
	}
	code := ctx.Response.StatusCode()
	if ext.fronts != nil {
		f := ext.unrouted
		if rf, ok := ctx.UserValue(routedTo{}).(*metrics.Front); ok && rf != nil {
			f = rf
		}
		f.Observe(code, now.Sub(start), requestBytes(&ctx.Request), responseBytes(&ctx.Response))
	}
	if p.alog == nil {
		return
	}
	if ext.accessLog && (code < 200 || code > 299 || ext.logEvery == 1 || ext.logEvery > 1 && p.sampled.Add(1)%ext.logEvery == 0) {
		p.alog.log(ctx, start, now, ext.logMode, id)
	}
	releaseRecord(ctx)
}

// requestBytes is the request body's length: what was read, or a streamed body's
// Content-Length; -1 when unknown.
func requestBytes(req *fasthttp.Request) int64 {
	if !req.IsBodyStream() {
		return int64(len(req.Body()))
	}
	return int64(req.Header.ContentLength())
}

// responseBytes is the response body's length, or a streamed body's Content-Length; -1
// when unknown.
func responseBytes(resp *fasthttp.Response) int64 {
	if !resp.IsBodyStream() {
		return int64(len(resp.Body()))
	}
	if cl := resp.Header.ContentLength(); cl >= 0 {
		return int64(cl)
	}
	return -1
}

// upgrade sends a WebSocket upgrade to a backend chosen as for any request (choose: the
// sticky session's, else a pick that honours geo.prefer_local for the client's region) and
// tunnels it. The session is pinned, and its cookie set on the 101, like any request.
func (p *Proxy) upgrade(ctx *fasthttp.RequestCtx, pool *state.Pool, region []byte, ext *tableData, now int64) {
	t := ext.table
	sess := p.session(ctx, t, pool, ext, now)
	defer putSession(sess)
	b, ticket := choose(sess, t.Geo, pool, region, now)
	if b == nil {
		writeError(ctx, errNoBackend)
		return
	}
	b.Stats.Breaker.Release(ticket) // a tunnel's fate is not a request outcome
	tunnelled(ctx.Conn())           // its bytes are not HTTP heads
	p.noteBackend(ctx, ext, b)
	p.tunnel(ctx, b, ext.upstream(b), pool.Settings.Timeouts.TunnelIdle, func() {
		if sess != nil && sess.active {
			p.stickyEnd(ctx, &ext.sticky, sess, b)
		}
	})
}

// answered is what admit returns for a refusal it has already written.
var answered reply

// Limiter is a rate limiter (package ratelimit).
type Limiter interface {
	Allow(key []byte, now int64, l ratelimit.Limit) (ok bool, retryAfter time.Duration)
}

// allow applies rate_limit to the request; a refused one gets 429 with Retry-After (whole
// seconds, at least 1) and false. A request without the key's header or claim (claims nil:
// not known yet) is keyed by the client's address (its identity). Rejections the proxy
// makes never count against a backend.
func (p *Proxy) allow(ctx *fasthttp.RequestCtx, ext *tableData, id *identity, claims map[string]any) bool {
	var buf [64]byte
	var key []byte
	switch {
	case ext.rateLimit.header != nil:
		key = ctx.Request.Header.PeekBytes(ext.rateLimit.header)
	case ext.rateLimit.claim != "" && claims != nil:
		if s, ok := claims[ext.rateLimit.claim].(string); ok {
			key = s2b(s) // the usual case (sub): no copy
		} else {
			key = []byte(auth.ClaimString(claims[ext.rateLimit.claim]))
		}
	}
	sc := getScratch() // the key escapes into the Limiter interface: not a stack buffer
	defer putScratch(sc)
	if len(key) == 0 {
		sc.b = id.client.AppendTo(sc.b[:0])
		key = sc.b
	}
	ok, wait := p.limiter.Allow(key, time.Now().UnixNano(), ext.rateLimit.limit)
	if ok {
		return true
	}
	writeReply(ctx, &replyRateLimited)
	secs := int64((wait + time.Second - 1) / time.Second)
	ctx.Response.Header.SetCanonical(retryAfterName, strconv.AppendInt(buf[:0], max(secs, 1), 10))
	if p.onRateLimited != nil {
		p.onRateLimited()
	}
	return false
}

// authenticate verifies the request's bearer token (auth.jwt) and copies the configured
// claims into request headers; the client's own values of those headers are always
// dropped, so they cannot be forged. A token in the verification cache costs a lookup;
// any other is verified only if charge (the pre-verification rate limit) lets it, or the
// 429 charge wrote is the answer. A bad or missing token gets 401 with an RFC 6750
// WWW-Authenticate, more than one Authorization header 400. skip_paths need no token.
// With auth.jwt.forward_token false the Authorization header is removed.
func (p *Proxy) authenticate(ctx *fasthttp.RequestCtx, v *auth.Verifier, charge func() bool) (map[string]any, *reply) {
	h := &ctx.Request.Header
	for _, f := range v.Forward() {
		h.Del(f.Header)
	}
	if len(h.PeekAll(hAuthorization)) > 1 {
		return nil, &replyTwoAuthorizations
	}
	if v.Skip(requestPath(&ctx.Request)) {
		if !v.ForwardToken() {
			h.Del(hAuthorization)
		}
		return nil, nil
	}
	authz := h.Peek(hAuthorization)
	now := time.Now()
	claims, ok := v.Cached(authz, now)
	if !ok {
		// Slow path: a token to verify (parsing and a signature check allocate).
		if !charge() {
			return nil, &answered
		}
		var err error
		if claims, err = v.Verify(authz, now); err != nil {
			writeReply(ctx, &replyUnauthorized)
			challenge := `Bearer realm="go-loadbalancer"`
			if err != auth.ErrMissing {
				challenge += `, error="invalid_token", error_description="` + err.Error() + `"`
			}
			ctx.Response.Header.Set("WWW-Authenticate", challenge)
			return nil, &answered
		}
	}
	if !v.ForwardToken() {
		h.Del(hAuthorization)
	}
	for _, f := range v.Forward() {
		if c, ok := claims[f.Claim]; ok {
			h.Set(f.Header, auth.ClaimString(c))
		}
	}
	return claims, nil
}

const hAuthorization = "Authorization"

// route returns the pool for the request (traffic policies, first match wins), the
// client's region (geo: of the client's identity), nil when geo is off or the region
// unknown, and the matching route's path_prefix, nil when none. After removeUntrusted and
// before prepareRequest: policies see the client's fields that will be forwarded, not the
// ones the proxy sets.
func route(ctx *fasthttp.RequestCtx, t *state.Table, id *identity) (pool *state.Pool, region, prefix []byte) {
	if t.Geo.Enabled() {
		h := &ctx.Request.Header
		var hv []byte
		if name := t.Geo.HeaderName(); name != nil && id.trusted {
			hv = h.PeekBytes(name) // set by a trusted edge in front of us
		}
		region = t.Geo.Region(id.client, hv)
	}
	if !t.HasRoutes() {
		return t.DefaultPool(), region, nil
	}
	h := &ctx.Request.Header
	rr := state.RouteRequest{Path: requestPath(&ctx.Request), Host: h.Host(), Method: h.Method(), Header: h.PeekBytes, Region: region}
	pool, prefix = t.Route(&rr)
	return pool, region, prefix
}

// logUpstreamError logs the first error and then one in 100, so an outage does not flood
// the log (the metrics count every one).
func (p *Proxy) logUpstreamError(b *state.Backend, u *upstream, err error) {
	if n := p.errLogs.Add(1); n == 1 || n%100 == 0 {
		ev := p.log.Warn().Str("backend", b.ID).Err(err).Uint64("errors_seen", n)
		if err == errConnect || err == errDialTimeout || err == errWrite {
			// What the sentinel leaves out: connection refused, x509: ..., i/o timeout.
			// The backend's last such failure, which under concurrency may be another
			// request's: the log is sampled anyway.
			ev = ev.Str("cause", u.tr.lastCause())
		}
		ev.Msg("upstream request failed")
	}
}

// clientAddr returns the peer's address as a netip.Addr without allocating.
func clientAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	switch a := ctx.RemoteAddr().(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// uploadReader streams a request body: it fails the upload once more than n bytes were
// read, and reads under the minimum rate, or with read_timeout per read (bodyRate).
type uploadReader struct {
	r    io.Reader
	n    int64 // bytes left under max_body_bytes
	size int64 // the Content-Length, -1 for chunked
	read int64
	eof  bool // the body's end was read
	rate bodyRate
	// h is the request's header: trailer fields read with the last chunk are dropped.
	h *fasthttp.RequestHeader
}

// complete reports whether the whole body was read.
func (u *uploadReader) complete() bool {
	return u.eof || u.size >= 0 && u.read >= u.size
}

func (u *uploadReader) Read(p []byte) (int, error) {
	if u.n < 0 {
		return 0, errBodyLimit
	}
	if err := u.rate.before(); err != nil {
		return 0, errClientBody // too slow: cut like a stalled client
	}
	if int64(len(p)) > u.n+1 {
		p = p[:u.n+1]
	}
	n, err := u.r.Read(p)
	err = u.rate.after(n, err)
	u.n -= int64(n)
	u.read += int64(n)
	if u.n < 0 {
		return n, errBodyLimit
	}
	if err == io.EOF && u.size >= 0 && u.read < u.size {
		err = io.ErrUnexpectedEOF // the client went away before the end of its body
	}
	if err == io.EOF && u.size < 0 {
		dropTrailers(u.h) // read with the last chunk, written after it: never forwarded
	}
	u.eof = u.eof || err == io.EOF
	if err != nil && err != io.EOF {
		return n, errClientBody // a stalled or vanished client must not count against the backend
	}
	return n, err
}

// refreshDeadline moves a connection deadline to now+timeout, at most every 250 ms (each
// move is a syscall); last is when it last moved.
func refreshDeadline(last *time.Time, timeout time.Duration, set func(time.Time) error) {
	if now := time.Now(); now.Sub(*last) > 250*time.Millisecond {
		*last = now
		_ = set(now.Add(timeout))
	}
}
