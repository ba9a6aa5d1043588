package main

import (
	"flag"
	"fmt"
	"io"

	"go-loadbalancer/config"
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
