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

	"github.com/rs/zerolog"

	"go-loadbalancer/config"
	"go-loadbalancer/demo"
)

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

// serve builds the load balancer and runs it until SIGTERM/SIGINT (app.go).
func serve(f *flags, cfg *config.Config, getenv func(string) string, out *logOutputs, log zerolog.Logger) error {
	a, err := newApp(f, cfg, getenv, out, log)
	if err != nil {
		return err
	}
	defer a.close()
	return a.run()
}
