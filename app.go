package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"go-loadbalancer/admin"
	"go-loadbalancer/auth"
	"go-loadbalancer/autoscale"
	"go-loadbalancer/config"
	"go-loadbalancer/demo"
	"go-loadbalancer/discovery"
	"go-loadbalancer/health"
	"go-loadbalancer/internal/logring"
	"go-loadbalancer/metrics"
	"go-loadbalancer/proxy"
	"go-loadbalancer/ratelimit"
	"go-loadbalancer/state"
	"go-loadbalancer/sticky"
	"go-loadbalancer/tlsconf"
	"go-loadbalancer/tracing"
)

// app is the running load balancer. newApp builds it in dependency order — store, metrics,
// builder (with the first table), admin, proxy, control loops, listeners — then run serves
// until a signal, reload applies the config file again (SIGHUP, POST /api/reload) and
// shutdown drains. close releases what newApp built, in reverse order.
type app struct {
	f      *flags
	getenv func(string) string
	log    zerolog.Logger

	reg     *metrics.Registry
	tables  *proxy.Tables
	builder *state.Builder
	admin   *admin.Server
	px      *proxy.Proxy
	tracer  *tracing.Tracer // nil with tracing.enabled off
	srv     *proxy.Server
	conns   *proxy.ConnStats
	tlsConf *tls.Config   // nil without tls.cert_file
	cert    *tlsconf.Cert // the front certificate, reloaded with the config

	ln, adminLn net.Listener
	adminSrv    *http.Server

	draining atomic.Bool // readiness off: set by shutdown
	reloadMu sync.Mutex  // one reload at a time (SIGHUP and the admin API)
	closers  []func()    // run in reverse by close
}

// newApp builds the load balancer for cfg and opens its listeners; nothing is served until
// run. On error, what was built is closed again.
func newApp(f *flags, cfg *config.Config, getenv func(string) string, out *logOutputs, log zerolog.Logger) (a *app, err error) {
	a = &app{f: f, getenv: getenv, log: log}
	defer func() {
		if err != nil {
			a.close()
			a = nil
		}
	}()
	start := time.Now()
	nofile := survive(log) // limits.go: SIGPIPE, RLIMIT_NOFILE
	if f.demo {
		bs, err := demo.Start([]string{"127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"})
		if err != nil {
			return nil, err
		}
		a.onClose(func() { demo.Stop(bs) })
		log.Info().Msg("demo backends listening on 127.0.0.1:8081, :8082, :8083 (weights 3:2:1)")
	}
	if err := a.buildState(cfg, start); err != nil {
		return nil, err
	}
	adminHost, _, _ := net.SplitHostPort(cfg.Admin.Listen)
	a.admin = admin.New(admin.Options{Builder: a.builder, Metrics: a.reg, Ready: func() bool { return !a.draining.Load() },
		ListenHost: adminHost, Reload: a.reload, Pprof: cfg.Admin.Pprof, Log: log})
	// The admin handler comes first: in demo mode the proxy answers its paths too.
	if err := a.buildProxy(cfg, out, nofile); err != nil {
		return nil, err
	}
	if err := a.startLoops(cfg); err != nil {
		return nil, err
	}
	return a, a.listen(cfg)
}

// onClose adds f to what close runs, before everything added earlier.
func (a *app) onClose(f func()) { a.closers = append(a.closers, f) }

// close releases what newApp built, last built first: after shutdown has drained the
// requests, so the tracer flushes their spans and the access log their lines.
func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// buildState makes the Store, the metrics registry that reads it, the proxy's Tables (whose
// hooks record into the registry) and the builder that publishes to the Store, and applies
// cfg: the first table.
func (a *app) buildState(cfg *config.Config, start time.Time) error {
	store := new(state.Store)
	a.reg = metrics.New(metrics.Options{Start: start, Store: store})
	a.tables = proxy.NewTables(nil, a.reg)
	a.builder = state.NewBuilder(store, logBreakerChanges(a.tables.Hooks(), a.log))
	if _, err := a.builder.Apply(cfg); err != nil {
		return err
	}
	logConfigWarnings(cfg, a.log)
	return nil
}

// logBreakerChanges returns h with each circuit breaker transition also logged.
func logBreakerChanges(h state.Hooks, log zerolog.Logger) state.Hooks {
	record := h.BreakerChange
	h.BreakerChange = func(b *state.Backend, from, to state.BreakerState, reason string) {
		if record != nil {
			record(b, from, to, reason)
		}
		ev := log.Warn()
		if to == state.BreakerClosed {
			ev = log.Info()
		}
		ev.Str("backend", b.ID).Str("from", from.String()).Str("to", to.String()).Str("reason", reason).Msg("circuit breaker changed")
	}
	return h
}

// buildProxy makes the data plane: the proxy with what it consults per request (access
// log, session store, rate limiter, tracer, JWT verifier), its server and the front TLS
// config, and registers their metrics.
func (a *app) buildProxy(cfg *config.Config, out *logOutputs, nofile uint64) error {
	// The access log exists even when log.access_log is off, so that a reload can turn it
	// on; the proxy writes to it while the table's log.access_log is on.
	alog := proxy.NewAccessLog(out.stdout, logring.Options{})
	a.onClose(func() { _ = alog.Close() })
	a.reg.CounterFunc("lb_access_log_dropped_total", "Access log lines dropped because the log writer fell behind or could not write them.", alog.Dropped)
	store, err := newStickyStore(cfg, a.log)
	if err != nil {
		return err
	}
	if store != nil {
		a.onClose(store.Close)
		registerStickyMetrics(a.reg, store)
	}
	limiter, closeLimiter, err := newRateLimiter(cfg, a.log)
	if err != nil {
		return err
	}
	a.onClose(closeLimiter)
	popts := proxy.Options{Tables: a.tables, Log: a.log, AccessLog: alog, Sticky: store,
		Limiter: limiter, OnRateLimited: a.reg.RateLimited.Inc}
	if cfg.Tracing.Enabled {
		if a.tracer, err = tracing.New(tracing.Options{Config: cfg.Tracing, Log: a.log}); err != nil {
			return err
		}
		a.onClose(func() { _ = a.tracer.Close() })
		popts.Tracer = a.tracer
	}
	if popts.Auth, err = newVerifier(cfg, a.log); err != nil {
		return err
	}
	if a.f.demo {
		popts.Local = a.admin.Local() // the demo's /, /metrics, /health, /prometheus on :8080
	}
	a.px = proxy.New(popts)
	a.onClose(func() {
		if v := a.px.SetAuth(nil); v != nil {
			v.Close()
		}
	})
	a.srv = a.px.NewServer(serverLimits(cfg.Server, nofile, a.log), a.log)
	a.conns = &proxy.ConnStats{}
	registerServerMetrics(a.reg, a.srv, out)
	registerProxyMetrics(a.reg, a.px, a.conns)
	a.tlsConf, a.cert, err = tlsconf.Front(cfg.TLS)
	return err
}

// startLoops starts the control loops that change the table while it serves: health
// checks, Consul discovery (CONSUL_ENABLED), the metrics sampler and the autoscaler.
func (a *app) startLoops(cfg *config.Config) error {
	checker := health.NewChecker(a.builder, a.log)
	a.onClose(checker.Stop)
	if cfg.Env.ConsulEnabled {
		// The watchers follow the builder's tables: a reload that changes a pool's
		// discovery.consul restarts that pool's watcher; Stop ends them all.
		consul, err := discovery.NewConsul(discovery.ConsulOptions{Builder: a.builder, Log: a.log, Addr: cfg.Env.ConsulAddr})
		if err != nil {
			return err
		}
		a.onClose(consul.Stop)
	}
	ctx, stop := context.WithCancel(context.Background())
	a.onClose(stop)
	go a.reg.Run(ctx)
	go autoscale.New(a.builder, a.log).Run(ctx) // pools with autoscale.target_inflight_per_backend
	return nil
}

// listen opens the data-plane and admin listeners.
func (a *app) listen(cfg *config.Config) error {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %q: %w", cfg.Listen, err)
	}
	adminLn, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("cannot listen on admin address %q: %w", cfg.Admin.Listen, err)
	}
	a.ln, a.adminLn = ln, adminLn
	a.adminSrv = &http.Server{Handler: a.admin, ReadHeaderTimeout: 10 * time.Second}
	return nil
}

// run serves both listeners until SIGTERM or SIGINT, then shuts down; SIGHUP reloads. If
// either server stops serving, run shuts the other down too, as SIGTERM would, and returns
// that server's error: close must not release what requests in flight still use. It
// returns nil after a shutdown by signal.
func (a *app) run() error {
	// Signals are caught before anything is announced, so a SIGHUP sent as soon as the
	// process says it serves reloads it instead of killing it.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	errc := make(chan error, 2)
	go func() {
		if a.tlsConf != nil {
			a.srv.TLSConfig = a.tlsConf
		}
		// Accept retries and connection limits at the bottom, lingering close under TLS and
		// counting, bare-LF heads refused above them.
		err := a.srv.Serve(proxy.HeadScanner(a.conns.Listener(proxy.Listener(a.srv.Listener(a.ln)), a.tlsConf)))
		if err == nil { // fasthttp's Serve returns nil once its listener is closed
			err = errors.New("listener closed")
		}
		errc <- fmt.Errorf("data plane: %w", err)
	}()
	go func() {
		if err := a.adminSrv.Serve(a.adminLn); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("admin server: %w", err)
		}
	}()
	t := a.builder.Store.Load()
	a.log.Info().Str("listen", a.ln.Addr().String()).Str("admin", a.adminLn.Addr().String()).
		Int("pools", len(t.Pools)).Int("backends", len(t.Backends())).Str("version", version).
		Msg("go-loadbalancer serving")
	for {
		select {
		case err := <-errc:
			a.log.Error().Err(err).Msg("a server stopped serving: shutting down")
			a.shutdown()
			return err
		case s := <-sigs:
			if s == syscall.SIGHUP {
				_ = a.reload()
				continue
			}
			a.shutdown()
			return nil
		}
	}
}

// reload applies the config file again: a new table, JWT verifier, front certificate, log
// level and trace sampling. A config that does not load or build is rejected and the
// running one keeps serving; settings that need a restart are logged, not applied.
func (a *app) reload() error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	log := a.log
	if a.f.config == "" {
		log.Info().Msg("reload: demo mode has no config file; nothing to do")
		return errors.New("demo mode has no config file to reload")
	}
	next, err := loadConfig(a.f, a.getenv)
	if err != nil {
		log.Error().Str("file", a.f.config).Str("errors", err.Error()).Msg("reload rejected; the running configuration keeps serving")
		return err
	}
	running := a.builder.Store.Load().Config
	for _, key := range restartChanges(running, next) {
		log.Warn().Str("setting", key).Msg(key + " changed: restart to apply")
	}
	keepRunning(running, next)
	// The JWT verifier is built again on every reload, so a key removed from the JWKS
	// file (or URL) stops being accepted without a restart.
	verifier, err := newVerifier(next, log)
	if err != nil {
		log.Error().Err(err).Msg("reload rejected; the running configuration keeps serving")
		return err
	}
	if a.cert != nil {
		// Certificates rotated in place (cert-manager, certbot) are picked up here.
		if err := a.cert.Reload(); err != nil {
			log.Error().Err(err).Msg("reload: the front certificate could not be reloaded; the old one stays in use")
		}
	}
	nt, err := a.builder.Apply(next)
	if err != nil {
		if verifier != nil {
			verifier.Close()
		}
		log.Error().Err(err).Msg("reload rejected; the running configuration keeps serving")
		return err
	}
	if v := a.px.SetAuth(verifier); v != nil {
		v.Close() // stops its key refresh; requests still using it finish with it
	}
	setLogLevel(next.Log.Level)
	if a.tracer != nil {
		a.tracer.SetSampleRatio(next.Tracing.SampleRatio)
	}
	logConfigWarnings(next, log)
	// The outcome line is the last a reload writes: whoever waits for it (an operator's
	// script, the tests) then has every line the reload said.
	log.Info().Uint64("table", nt.Version).Int("backends", len(nt.Backends())).Msg("configuration reloaded")
	return nil
}

// shutdown turns readiness off, closes the listeners and drains for server.drain_grace
// (every response says Connection: close, idle keep-alive connections stay open), then
// closes idle connections and waits for in-flight requests until server.shutdown_timeout.
// Both are read from the table in use.
func (a *app) shutdown() {
	s := a.builder.Store.Load().Config.Server
	a.draining.Store(true)
	a.log.Info().Dur("timeout_ms", s.ShutdownTimeout).Dur("drain_grace_ms", s.DrainGrace).Msg("shutting down: draining in-flight requests")
	ctx, cancel := context.WithTimeout(context.Background(), s.ShutdownTimeout)
	defer cancel()
	err := a.srv.Stop(ctx, s.DrainGrace)
	_ = a.adminSrv.Shutdown(ctx)
	if err != nil {
		a.log.Warn().Err(err).Msg("shutdown timeout: some requests were cut off")
		return
	}
	a.log.Info().Msg("stopped")
}

// logConfigWarnings says, at start and after each reload, what in a valid config does not
// do what it seems to: TRAFFIC_POLICIES_ENABLED=false leaves the routes unused, and a rate
// limit keyed by a forwarding header is keyed by what the client wrote.
func logConfigWarnings(cfg *config.Config, log zerolog.Logger) {
	if cfg.Env.TrafficPoliciesOff {
		log.Warn().Int("routes", len(cfg.Routes)).Msg("TRAFFIC_POLICIES_ENABLED=false: routes are ignored; every request goes to the first pool")
	}
	if name, ok := strings.CutPrefix(cfg.RateLimit.Key, "header:"); ok && cfg.RateLimit.Enabled &&
		(strings.EqualFold(name, "X-Forwarded-For") || strings.EqualFold(name, "Forwarded")) {
		log.Warn().Str("key", cfg.RateLimit.Key).Msg("rate_limit.key: from a trusted proxy the key is the whole " + name +
			" value as received, whose left entries the client writes, so a client can get a fresh bucket per request; use key: ip (the client address, resolved through server.trusted_proxies)")
	}
}

// newStickyStore returns the session store for sticky sessions: Redis (shared by every
// instance) with REDIS_ENABLED, else memory; nil when sticky sessions are off. A Redis
// that is down is not an error: the store degrades and recovers by itself.
func newStickyStore(cfg *config.Config, log zerolog.Logger) (sticky.Store, error) {
	if !cfg.Sticky.Enabled {
		return nil, nil
	}
	o := sticky.Options{Log: log, TTL: cfg.Sticky.TTL, HintKey: cfg.Sticky.Secret, PreviousHintKey: cfg.Sticky.PreviousSecret}
	if cfg.Sticky.Secret == nil && !cfg.Env.RedisEnabled {
		log.Warn().Msg("sticky sessions: no sticky.secret_file or STICKY_SECRET; cookies are signed with a random per-process key, so several instances (or a restart) will not recognise each other's cookies and a client moves between backends — set a shared secret")
	}
	if cfg.Env.RedisEnabled {
		o.RedisURL = cfg.Redis.URL
		o.ClientCacheTTL = cfg.Redis.ClientCacheTTL
		return sticky.NewRedis(o)
	}
	return sticky.NewMemory(o)
}

// newRateLimiter returns the rate limiter: in this process (rate_limit.scope: local) or
// shared through Redis at redis.url (scope: redis). It exists even with rate limiting
// off, so that a reload can turn it on.
func newRateLimiter(cfg *config.Config, log zerolog.Logger) (proxy.Limiter, func(), error) {
	if cfg.RateLimit.Scope != "redis" {
		return ratelimit.NewLocal(0), func() {}, nil
	}
	r, err := ratelimit.NewRedis(ratelimit.RedisOptions{URL: cfg.Redis.URL, Log: log})
	if err != nil {
		return nil, nil, err
	}
	return r, r.Close, nil
}

// newVerifier returns the JWT verifier of cfg's auth.jwt, nil when it is off.
func newVerifier(cfg *config.Config, log zerolog.Logger) (*auth.Verifier, error) {
	if !cfg.Auth.JWT.Enabled {
		return nil, nil
	}
	return auth.New(auth.Options{Config: cfg.Auth.JWT, Log: log})
}

// registerStickyMetrics exposes the session store's counters.
func registerStickyMetrics(reg *metrics.Registry, store sticky.Store) {
	reg.SetSticky(func() metrics.StickyCounts {
		st := store.Stats()
		return metrics.StickyCounts{CacheHit: st.CacheHits, Redis: st.RedisHits, Miss: st.Misses, Fallback: st.Fallbacks}
	})
	reg.CounterFunc("lb_sticky_repins_total", "Sticky sessions moved to another backend.", func() uint64 { return store.Stats().Repins })
	reg.CounterFunc("lb_sticky_redis_errors_total", "Failed Redis calls of the sticky-session store.", func() uint64 { return store.Stats().RedisErrors })
}

// registerProxyMetrics exposes the proxy's refusals of client errors and the client
// connections' counters.
func registerProxyMetrics(reg *metrics.Registry, px *proxy.Proxy, conns *proxy.ConnStats) {
	for _, reason := range proxy.ClientErrorReasons() {
		reg.CounterFunc(`lb_client_errors_total{reason="`+reason+`"}`,
			"Requests refused for what the client sent (malformed, oversized, cut short), by reason; never counted against a backend.",
			func() uint64 { return px.ClientErrors(reason) })
	}
	reg.CounterFunc("lb_connections_accepted_total", "Client connections accepted by the data plane.", conns.Accepted)
	reg.CounterFunc("lb_tls_handshakes_total", "TLS handshakes completed with clients.", conns.Handshakes)
	reg.CounterFunc("lb_tls_handshake_errors_total", "TLS handshakes with clients that failed (bad certificate, no common version or cipher, client gone).", conns.HandshakeErrors)
}
