package proxy

import (
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"go-loadbalancer/config"
)

// Server is the data-plane server: fasthttp's, with a handler that contains panics and
// drains (drain.go). Serve it on a listener made by its Listener method (listener.go),
// which survives accept errors and caps connections. Its embedded fasthttp.Server's fields
// (TLSConfig) and methods (Serve, ShutdownWithContext) are used as they are.
type Server struct {
	*fasthttp.Server
	// Stats are the counters main exposes as metrics. Safe to read at any time.
	Stats ServerStats

	handler  fasthttp.RequestHandler
	expect   func(*fasthttp.RequestCtx) int
	log      zerolog.Logger
	limits   ConnLimits
	draining atomic.Bool
	panicLog atomic.Int64 // UnixNano of the last panic logged with its stack

	mu  sync.Mutex
	lns []*listener // for Stop
}

// ServerStats counts what the data-plane server refused or survived.
type ServerStats struct {
	Panics           atomic.Uint64 // handler panics answered with 500 (lb_panics_total)
	AcceptErrors     atomic.Uint64 // failed accepts, retried (lb_accept_errors_total)
	ConnsOverLimit   atomic.Uint64 // connections closed at once over server.max_conns
	ConnsOverPerIP   atomic.Uint64 // connections closed at once over server.max_conns_per_ip
	Conns            atomic.Int64  // client connections open now, tunnels included
	Tunnels          atomic.Int64  // WebSocket tunnels and streamed uploads open now
	TunnelsOverLimit atomic.Uint64 // upgrades and streamed uploads refused over server.max_tunnels
}

// NewServer returns the data-plane server for p with the limits of s. These limits are
// fixed for the server's life: a reload that changes them takes effect after a restart
// (main logs a warning).
func (p *Proxy) NewServer(s config.Server, log zerolog.Logger) *Server {
	srv := newServer(p.ServeHTTP, s, log)
	p.edge, p.maxTunnels = &srv.Stats, int64(s.MaxTunnels)
	srv.Server.ErrorHandler = p.serverError
	srv.Server.HeaderReceived = p.headerReceived
	// Expect: 100-continue is answered only once the request passed every check
	// (admit): a refused client gets the final status and its body is never read.
	srv.expect = p.expect
	srv.Server.ExpectHandler = srv.serveExpect
	return srv
}

// headerReceived bounds the part of a request body fasthttp reads itself, before the
// handler runs (readAhead), by server.min_request_body_rate: without it, only
// read_timeout (30 s by default) would bound a client trickling those first bytes, and
// takeBody's rate check would start only after them. The read deadline set here is the
// end of the last request_body_grace period a client keeping to the minimum rate needs
// for them (one period with the defaults), capped at read_timeout; the handler then sets
// its own. A client that misses it gets 408 (serverError).
func (p *Proxy) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	cl := h.ContentLength()
	if cl <= 0 {
		return fasthttp.RequestConfig{} // no body, or chunked: fasthttp reads none of it ahead
	}
	ctx := requestCtxOf(h)
	if sc := scanned(ctx.Conn()); sc != nil {
		sc.noteHead(ctx, h) // for serverError, should reading the body fail
	}
	ext := p.tables.cur.Load()
	if ext == nil {
		return fasthttp.RequestConfig{}
	}
	return fasthttp.RequestConfig{ReadTimeout: prefetchTimeout(int64(min(cl, readAhead)), ext.minBodyRate, ext.bodyGrace, ext.readTimeout)}
}

// requestCtxOf returns the RequestCtx whose request's header h is: fasthttp's server
// calls HeaderReceived with &ctx.Request.Header and nothing else
// (TestSlowBodyIsLoggedWithItsHead fails if that changes).
func requestCtxOf(h *fasthttp.RequestHeader) *fasthttp.RequestCtx {
	var ctx *fasthttp.RequestCtx
	return (*fasthttp.RequestCtx)(unsafe.Add(unsafe.Pointer(h), -int(unsafe.Offsetof(ctx.Request)+unsafe.Offsetof(ctx.Request.Header))))
}

// prefetchTimeout is how long a client keeping to rate bytes/s, judged over periods of
// grace, may take to send n bytes: as many whole periods as n needs at rate × grace bytes
// a period, but at most readTimeout. Zero (fasthttp's own deadline stays) when the
// minimum is off.
func prefetchTimeout(n, rate int64, grace, readTimeout time.Duration) time.Duration {
	need := int64(float64(rate) * grace.Seconds())
	if need <= 0 || grace <= 0 {
		return 0
	}
	d := time.Duration((n+need-1)/need) * grace
	if readTimeout > 0 && d > readTimeout {
		d = readTimeout
	}
	return d
}

// newServer returns a Server for handler alone (tests), with p.NewServer's settings.
func newServer(handler fasthttp.RequestHandler, s config.Server, log zerolog.Logger) *Server {
	srv := &Server{handler: handler, log: log, limits: ConnLimits{Max: s.MaxConns, PerIP: s.MaxConnsPerIP}}
	srv.Server = &fasthttp.Server{
		Handler: srv.serve,
		Name:    "go-loadbalancer",
		// fasthttp rejects a header block larger than its read buffer with ErrSmallBuffer,
		// which serverError answers with 431.
		ReadBufferSize: s.MaxHeaderBytes,
		ReadTimeout:    s.ReadTimeout,
		WriteTimeout:   s.WriteTimeout,
		IdleTimeout:    s.IdleTimeout,
		// Bodies up to bufferLimit are read before the handler (and can be retried); larger
		// ones stream through. max_body_bytes is enforced by the handler.
		MaxRequestBodySize:           bufferLimit,
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		NoDefaultDate:                true,
		CloseOnShutdown:              true,
		SecureErrorLogMessage:        true,
		ReduceMemoryUsage:            true,
		Logger:                       fasthttpLogger{log},
	}
	return srv
}

// serve runs the handler for one request. Fast path: one open-coded defer (no allocation)
// and one atomic load.
func (s *Server) serve(ctx *fasthttp.RequestCtx) {
	defer s.recoverPanic(ctx)
	s.handler(ctx)
	if s.draining.Load() {
		ctx.SetConnectionClose() // drain.go: the client reconnects elsewhere, or after the restart
	}
}

// serveExpect runs the Expect: 100-continue check with the same panic containment.
func (s *Server) serveExpect(ctx *fasthttp.RequestCtx) (status int) {
	defer s.recoverExpect(ctx, &status)
	return s.expect(ctx)
}

// recoverPanic contains a panic of the request handler: see contain.
func (s *Server) recoverPanic(ctx *fasthttp.RequestCtx) {
	if r := recover(); r != nil {
		s.contain(ctx, r)
	}
}

func (s *Server) recoverExpect(ctx *fasthttp.RequestCtx, status *int) {
	if r := recover(); r != nil {
		s.contain(ctx, r)
		*status = fasthttp.StatusInternalServerError
	}
}

// contain answers a recovered panic r: the client gets a 500 and its connection is closed
// (its request may be half read), the panic is counted, and its value and stack are logged
// at most once a minute, so that a panic every request cannot flood the log. fasthttp
// itself does not recover handler panics: without this, one would end the process.
func (s *Server) contain(ctx *fasthttp.RequestCtx, r any) {
	n := s.Stats.Panics.Add(1)
	now := time.Now().UnixNano()
	if last := s.panicLog.Load(); now-last >= int64(time.Minute) && s.panicLog.CompareAndSwap(last, now) {
		s.log.Error().Str("panic", fmt.Sprint(r)).Str("stack", string(debug.Stack())).Uint64("panics", n).
			Msg("request handler panicked: answered 500 and closed the connection (the next stack is logged a minute from now at the earliest; lb_panics_total counts them all)")
	}
	ctx.Hijack(nil)  // a tunnel that was about to start must not,
	abortTunnel(ctx) // and what it holds goes back
	ctx.HijackSetNoResponse(false)
	writeReply(ctx, &replyInternal)
	ctx.SetConnectionClose()
}

// admission is what expect found of a request it let through, for serve.
type admission struct {
	flags int
	local fasthttp.RequestHandler
	id    identity
}

type admissionKey struct{}

// expect is the server's ExpectHandler, run for a request with Expect: 100-continue
// before its body is read: admit's checks (framing, target, size, JWT, rate limit) run
// now, and only a request that passes them is told 100 Continue. A refused one gets its
// final status (fasthttp then closes the connection) without the body being read.
func (p *Proxy) expect(ctx *fasthttp.RequestCtx) int {
	ext := p.tables.cur.Load()
	if ext == nil {
		writeError(ctx, errNoConfig)
		return ctx.Response.StatusCode()
	}
	var id identity
	flags, local, r := p.admit(ctx, ext, &id)
	if r != nil {
		if r != &answered {
			p.reject(ctx, r)
		}
		lingerOnClose(ctx.Conn())           // the client may have started sending its body
		p.finish(ctx, ext, time.Now(), &id) // serve never runs for it
		return ctx.Response.StatusCode()
	}
	ctx.SetUserValue(admissionKey{}, admission{flags: flags, local: local, id: id})
	// The 100 is ours; the backend gets the body without being asked to confirm.
	ctx.Request.Header.Del("Expect")
	return fasthttp.StatusContinue
}

// admittedEarly returns what expect admitted this request with, if it did. A plain
// request has at most a user value or two to look through.
func admittedEarly(ctx *fasthttp.RequestCtx) (admission, bool) {
	a, ok := ctx.UserValue(admissionKey{}).(admission)
	return a, ok
}

type fasthttpLogger struct{ log zerolog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug().Msg(fmt.Sprintf(format, args...))
}
