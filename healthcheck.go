package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// healthcheckTimeout bounds the whole -healthcheck request; Docker's own default timeout
// for a HEALTHCHECK is 30 s.
const healthcheckTimeout = 5 * time.Second

// healthcheck requests the admin port's /health — the admin address the server itself would
// use: -admin, else the config's admin.listen (with -config; environment applied), else the
// default — and returns the exit code: 0 for a 200, 1 for anything else. A distroless image
// has no curl or shell: this is what its Dockerfile HEALTHCHECK runs.
func healthcheck(f *flags, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := readConfig(f, getenv) // not loadConfig: a JWKS URL that is down must not make a running instance unhealthy
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	url, err := healthURL(cfg.Admin.Listen)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	client := &http.Client{Timeout: healthcheckTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "healthcheck: %s answered %s\n", url, resp.Status)
		return 1
	}
	fmt.Fprintf(stdout, "healthcheck: %s: %s\n", url, resp.Status)
	return 0
}

// healthURL is the /health URL of an admin listen address; a wildcard host (":9901",
// "0.0.0.0:9901", "[::]:9901") is reached on the loopback address of its family.
func healthURL(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("admin listen address %q: %w", listen, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/health", nil
}
