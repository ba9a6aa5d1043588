// Command go-loadbalancer is an L7 HTTP load balancer and edge proxy (see README.md).
//
// main reads the flags and the config and hands them to the app (app.go), which builds the
// packages in dependency order and handles the signals (SIGHUP reload, SIGTERM/SIGINT
// graceful stop). No request logic lives here.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"go-loadbalancer/config"
	"go-loadbalancer/demo"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// flags are the command line (docs/config.md#command-line-and-precedence).
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

// serve builds the load balancer and runs it until SIGTERM/SIGINT (app.go).
func serve(f *flags, cfg *config.Config, getenv func(string) string, out *logOutputs, log zerolog.Logger) error {
	a, err := newApp(f, cfg, getenv, out, log)
	if err != nil {
		return err
	}
	defer a.close()
	return a.run()
}
