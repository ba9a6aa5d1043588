// Command go-loadbalancer is an L7 HTTP load balancer and edge proxy (see README.md).
//
// main only wires packages together: config → state.Builder → proxy → listeners, plus the
// signals (SIGHUP reload, SIGTERM/SIGINT graceful stop). No request logic lives here.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
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

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// flags are the command line (SPEC §3).
type flags struct {
	config      string
	listen      string
	admin       string
	demo        bool
	checkConfig bool
	healthcheck bool
	version     bool
	demoBackend string
	set         map[string]bool // flags given explicitly: they beat env and file
}

func parseFlags(args []string, stderr io.Writer) (*flags, error) {
	f := &flags{set: map[string]bool{}}
	fs := flag.NewFlagSet("go-loadbalancer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "", "YAML config `file`")
	fs.StringVar(&f.listen, "listen", ":8080", "data-plane listen `address` (overrides the config file)")
	fs.StringVar(&f.admin, "admin", "127.0.0.1:9901", "admin listen `address` (overrides the config file)")
	fs.BoolVar(&f.demo, "demo", false, "start three demo backends on 127.0.0.1:8081-8083 (weights 3:2:1) and balance them")
	fs.BoolVar(&f.checkConfig, "check-config", false, "validate -config and exit: 0 valid, 1 invalid")
	fs.BoolVar(&f.healthcheck, "healthcheck", false, "request the admin port's /health and exit: 0 healthy, 1 not (for Docker's HEALTHCHECK)")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	fs.StringVar(&f.demoBackend, "demo-backend", "", "run only one demo backend on `address` (no balancer); for tests and benchmarks")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	return f, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is main with its inputs passed in; it returns the exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	f, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, err)
		return 2
	}
	if f.version {
		fmt.Fprintln(stdout, "go-loadbalancer", version)
		return 0
	}
	if f.healthcheck {
		return healthcheck(f, getenv, stdout, stderr) // healthcheck.go
	}
	if f.demoBackend != "" {
		return runDemoBackend(f.demoBackend, stderr)
	}
	if f.checkConfig {
		if f.config == "" {
			fmt.Fprintln(stderr, "-check-config needs -config FILE")
			return 2
		}
		if _, err := loadConfig(f, getenv); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: configuration is valid\n", f.config)
		return 0
	}
	if f.config == "" && !f.demo {
		fmt.Fprintln(stderr, "go-loadbalancer: give -config FILE, or -demo to try it out (see -h)")
		return 2
	}
	cfg, err := loadConfig(f, getenv)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	out := newLogOutputs(stdout, stderr)
	log := newLogger(out.stderr, cfg.Log.Level)
	if err := serve(f, cfg, getenv, out, log); err != nil {
		log.Error().Err(err).Msg("go-loadbalancer stopped")
		return 1
	}
	return 0
}

// runDemoBackend serves one demo backend, named after its port, until SIGTERM/SIGINT.
func runDemoBackend(addr string, stderr io.Writer) int {
	_, port, _ := net.SplitHostPort(addr)
	b, err := demo.StartOne("backend-"+port, addr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	demo.Stop([]*demo.Backend{b})
	return 0
}

// loadConfig reads the config (the demo one with -demo and no -config), then applies
// environment and flags, in that order of precedence, validates it and opens the files it
// names (preflight). -check-config, a start and a reload all go through it.
func loadConfig(f *flags, getenv func(string) string) (*config.Config, error) {
	cfg, err := readConfig(f, getenv)
	if err != nil {
		return nil, err
	}
	if errs := preflight(cfg); len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// readConfig is loadConfig without preflight: it opens no file the config names and fetches
// no JWKS, for -healthcheck, which needs only the admin address.
func readConfig(f *flags, getenv func(string) string) (*config.Config, error) {
	var cfg *config.Config
	if f.config != "" {
		c, err := config.Load(f.config)
		if err != nil {
			return nil, err
		}
		cfg = c
	} else {
		cfg = config.Demo()
	}
	if errs := cfg.ApplyEnv(getenv); len(errs) > 0 {
		return nil, errs
	}
	if f.set["listen"] || (f.demo && f.config == "") {
		cfg.Listen = f.listen
	}
	if f.set["admin"] {
		cfg.Admin.Listen = f.admin
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// newLogger returns the process's logger; its level is zerolog's global level, which
// setLogLevel changes (at start and on reload, log.level).
func newLogger(w io.Writer, level string) zerolog.Logger {
	setLogLevel(level)
	// RFC 3339 in UTC with milliseconds, as the access log writes it; durations are
	// logged in ms under names that say so (timeout_ms).
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	zerolog.TimestampFunc = func() time.Time { return time.Now().UTC() }
	return zerolog.New(w).Level(zerolog.TraceLevel).With().Timestamp().Logger()
}

func setLogLevel(level string) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	zerolog.SetGlobalLevel(lvl)
}

// serve runs the load balancer until SIGTERM/SIGINT.
func serve(f *flags, cfg *config.Config, getenv func(string) string, out *logOutputs, log zerolog.Logger) error {
	start := time.Now()
	nofile := survive(log) // limits.go: SIGPIPE, RLIMIT_NOFILE
	if f.demo {
		bs, err := demo.Start([]string{"127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"})
		if err != nil {
			return err
		}
		defer demo.Stop(bs)
		log.Info().Msg("demo backends listening on 127.0.0.1:8081, :8082, :8083 (weights 3:2:1)")
	}

	var builder *state.Builder
	reg := metrics.New(metrics.Options{Start: start, Current: func() *state.Table { return builder.Store.Load() }})
	tables := proxy.NewTables(nil, reg)
	hooks := tables.Hooks()
	recordBreaker := hooks.BreakerChange
	hooks.BreakerChange = func(b *state.Backend, from, to state.BreakerState, reason string) {
		recordBreaker(b, from, to, reason)
		ev := log.Warn()
		if to == state.BreakerClosed {
			ev = log.Info()
		}
		ev.Str("backend", b.ID).Str("from", from.String()).Str("to", to.String()).Str("reason", reason).Msg("circuit breaker changed")
	}
	builder = state.NewBuilder(hooks)
	t, err := builder.Apply(cfg)
	if err != nil {
		return err
	}
	logIgnoredRoutes(cfg, log)
	checker := health.NewChecker(builder, log)
	defer checker.Stop()
	if cfg.Env.ConsulEnabled {
		// The watchers follow the builder's tables: a reload that changes a pool's
		// discovery.consul restarts that pool's watcher; Stop ends them all.
		consul, err := discovery.NewConsul(discovery.ConsulOptions{Builder: builder, Log: log, Addr: cfg.Env.ConsulAddr})
		if err != nil {
			return err
		}
		defer consul.Stop()
	}
	sampleCtx, stopSampler := context.WithCancel(context.Background())
	defer stopSampler()
	go reg.Run(sampleCtx)
	go autoscale.New(builder, log).Run(sampleCtx) // pools with autoscale.target_inflight_per_backend
	// The access log exists even when log.access_log is off, so that a reload can turn it
	// on; the proxy writes to it while the table's log.access_log is on.
	alog := proxy.NewAccessLog(out.stdout, logring.Options{})
	defer alog.Close()
	reg.CounterFunc("lb_access_log_dropped_total", "Access log lines dropped because the log writer fell behind or could not write them.", alog.Dropped)
	var draining atomic.Bool
	var reload func() error
	adminHost, _, _ := net.SplitHostPort(cfg.Admin.Listen)
	adm := admin.New(admin.Options{Builder: builder, Metrics: reg, Ready: func() bool { return !draining.Load() }, ListenHost: adminHost,
		Reload: func() error { return reload() }, Pprof: cfg.Admin.Pprof, Log: log})
	store, err := newStickyStore(cfg, log)
	if err != nil {
		return err
	}
	if store != nil {
		defer store.Close()
		reg.SetSticky(func() metrics.StickyCounts {
			st := store.Stats()
			return metrics.StickyCounts{CacheHit: st.CacheHits, Redis: st.RedisHits, Miss: st.Misses, Fallback: st.Fallbacks}
		})
		reg.CounterFunc("lb_sticky_repins_total", "Sticky sessions moved to another backend.", func() uint64 { return store.Stats().Repins })
		reg.CounterFunc("lb_sticky_redis_errors_total", "Failed Redis calls of the sticky-session store.", func() uint64 { return store.Stats().RedisErrors })
	}
	limiter, closeLimiter, err := newRateLimiter(cfg, log)
	if err != nil {
		return err
	}
	defer closeLimiter()
	popts := proxy.Options{Tables: tables, Log: log, AccessLog: alog, Sticky: store,
		Limiter: limiter, OnRateLimited: reg.RateLimited.Inc}
	if cfg.Tracing.Enabled {
		tr, err := tracing.New(tracing.Options{Config: cfg.Tracing, Log: log})
		if err != nil {
			return err
		}
		defer tr.Close() // after shutdown has drained the requests: flushes their spans
		popts.Tracer = tr
	}
	if popts.Auth, err = newVerifier(cfg, log); err != nil {
		return err
	}
	if f.demo {
		popts.Local = adm.Local() // the founding document's /, /metrics, /health, /prometheus on :8080
	}
	px := proxy.New(popts)
	defer func() {
		if v := px.SetAuth(nil); v != nil {
			v.Close()
		}
	}()
	srv := px.NewServer(serverLimits(cfg.Server, nofile, log), log)
	registerServerMetrics(reg, srv, out)
	for _, reason := range proxy.ClientErrorReasons() {
		reg.CounterFunc(`lb_client_errors_total{reason="`+reason+`"}`,
			"Requests refused for what the client sent (malformed, oversized, cut short), by reason; never counted against a backend.",
			func() uint64 { return px.ClientErrors(reason) })
	}
	conns := &proxy.ConnStats{}
	reg.CounterFunc("lb_connections_accepted_total", "Client connections accepted by the data plane.", conns.Accepted)
	reg.GaugeFunc("lb_connections_open", "Client connections open now.", conns.Open)
	reg.CounterFunc("lb_tls_handshakes_total", "TLS handshakes completed with clients.", conns.Handshakes)
	reg.CounterFunc("lb_tls_handshake_errors_total", "TLS handshakes with clients that failed (bad certificate, no common version or cipher, client gone).", conns.HandshakeErrors)
	tlsConf, serverCert, err := tlsconf.Front(cfg.TLS)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %q: %w", cfg.Listen, err)
	}

	adminLn, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("cannot listen on admin address %q: %w", cfg.Admin.Listen, err)
	}
	adminSrv := &http.Server{
		Handler:           adm,
		ReadHeaderTimeout: 10 * time.Second,
	}

	// Signals are caught before anything is announced, so a SIGHUP sent as soon as the
	// process says it serves reloads it instead of killing it.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	errc := make(chan error, 2)
	go func() {
		if tlsConf != nil {
			srv.TLSConfig = tlsConf
		}
		// Accept retries and connection limits at the bottom, lingering close under TLS and
		// counting, bare-LF heads refused above them.
		errc <- srv.Serve(proxy.HeadScanner(conns.Listener(proxy.Listener(srv.Listener(ln)), tlsConf)))
	}()
	go func() {
		if err := adminSrv.Serve(adminLn); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	log.Info().Str("listen", ln.Addr().String()).Str("admin", adminLn.Addr().String()).
		Int("pools", len(t.Pools)).Int("backends", len(t.Backends())).Str("version", version).
		Msg("go-loadbalancer serving")

	var reloadMu sync.Mutex
	reload = func() error {
		reloadMu.Lock()
		defer reloadMu.Unlock()
		if f.config == "" {
			log.Info().Msg("reload: demo mode has no config file; nothing to do")
			return errors.New("demo mode has no config file to reload")
		}
		next, err := loadConfig(f, getenv)
		if err != nil {
			log.Error().Str("file", f.config).Str("errors", err.Error()).Msg("reload rejected; the running configuration keeps serving")
			return err
		}
		old := builder.Store.Load().Config
		for _, key := range restartChanges(old, next) {
			log.Warn().Str("setting", key).Msg(key + " changed: restart to apply")
		}
		// The JWT verifier is built again on every reload, so a key removed from the JWKS
		// file (or URL) stops being accepted without a restart.
		verifier, err := newVerifier(next, log)
		if err != nil {
			log.Error().Err(err).Msg("reload rejected; the running configuration keeps serving")
			return err
		}
		if serverCert != nil {
			// Certificates rotated in place (cert-manager, certbot) are picked up here.
			if err := serverCert.Reload(); err != nil {
				log.Error().Err(err).Msg("reload: the front certificate could not be reloaded; the old one stays in use")
			}
		}
		nt, err := builder.Apply(next)
		if err != nil {
			if verifier != nil {
				verifier.Close()
			}
			log.Error().Err(err).Msg("reload rejected; the running configuration keeps serving")
			return err
		}
		if v := px.SetAuth(verifier); v != nil {
			v.Close() // stops its key refresh; requests still using it finish with it
		}
		setLogLevel(next.Log.Level)
		if popts.Tracer != nil {
			popts.Tracer.SetSampleRatio(next.Tracing.SampleRatio)
		}
		log.Info().Uint64("table", nt.Version).Int("backends", len(nt.Backends())).Msg("configuration reloaded")
		logIgnoredRoutes(next, log)
		return nil
	}

	for {
		select {
		case err := <-errc:
			return err
		case s := <-sigs:
			if s == syscall.SIGHUP {
				_ = reload()
				continue
			}
			return shutdown(srv, adminSrv, &draining, builder.Store.Load().Config.Server, log)
		}
	}
}

// logIgnoredRoutes says, at start and after each reload, that TRAFFIC_POLICIES_ENABLED=false
// leaves the config's routes unused.
func logIgnoredRoutes(cfg *config.Config, log zerolog.Logger) {
	if cfg.Env.TrafficPoliciesOff {
		log.Warn().Int("routes", len(cfg.Routes)).Msg("TRAFFIC_POLICIES_ENABLED=false: routes are ignored; every request goes to the first pool")
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

// shutdown turns readiness off, closes the listeners and drains for server.drain_grace
// (every response says Connection: close, idle keep-alive connections stay open), then
// closes idle connections and waits for in-flight requests until server.shutdown_timeout.
func shutdown(srv *proxy.Server, adminSrv *http.Server, draining *atomic.Bool, s config.Server, log zerolog.Logger) error {
	draining.Store(true)
	log.Info().Dur("timeout_ms", s.ShutdownTimeout).Dur("drain_grace_ms", s.DrainGrace).Msg("shutting down: draining in-flight requests")
	ctx, cancel := context.WithTimeout(context.Background(), s.ShutdownTimeout)
	defer cancel()
	err := srv.Stop(ctx, s.DrainGrace)
	_ = adminSrv.Shutdown(ctx)
	if err != nil {
		log.Warn().Err(err).Msg("shutdown timeout: some requests were cut off")
		return nil
	}
	log.Info().Msg("stopped")
	return nil
}

// newVerifier returns the JWT verifier of cfg's auth.jwt, nil when it is off.
func newVerifier(cfg *config.Config, log zerolog.Logger) (*auth.Verifier, error) {
	if !cfg.Auth.JWT.Enabled {
		return nil, nil
	}
	return auth.New(auth.Options{Config: cfg.Auth.JWT, Log: log})
}
