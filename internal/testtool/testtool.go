// Package testtool finds the external programs tests run (redis-server, promtool,
// prometheus, chromium, wrk; the Consul agent and OpenTelemetry Collector that
// scripts/install-deps.sh builds). A missing one skips the test on a developer's machine, but
// fails it under CI=true: a suite that silently skips its real-parts tests in CI would
// pass without testing anything, so CI must install them (scripts/install-deps.sh).
//
// It also holds the small helpers several packages' tests share: Main, ServicePort,
// WaitFor, and keys and signed tokens for JWT tests, a self-signed certificate for TLS tests.
package testtool

import (
	"flag"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Need returns the path of the command name (from Debian package pkg).
func Need(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found; CI must install it (scripts/install-deps.sh: Debian package %s)", name, pkg)
		}
		t.Skipf("%s not found (Debian package %s; scripts/install-deps.sh installs it)", name, pkg)
	}
	return p
}

// Built returns the path of a program scripts/install-deps.sh builds from source into its
// tools directory, rel being its path there ("consul-1.16.3/consul"). The directory is
// $GOLB_TOOLS when set, else /var/cache/go-loadbalancer or ~/.cache/go-loadbalancer, as in
// the script. A missing program skips t, or fails it under CI=true; arg is the script's
// argument that builds it.
func Built(t testing.TB, rel, arg string) string {
	t.Helper()
	var dirs []string
	if d := os.Getenv("GOLB_TOOLS"); d != "" {
		dirs = append(dirs, d)
	} else {
		dirs = append(dirs, "/var/cache/go-loadbalancer")
		if home, err := os.UserHomeDir(); err == nil {
			dirs = append(dirs, filepath.Join(home, ".cache", "go-loadbalancer"))
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, rel)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found in %v; CI must build it (scripts/install-deps.sh %s)", rel, dirs, arg)
	}
	t.Skipf("%s not found in %v (build it with scripts/install-deps.sh %s)", rel, dirs, arg)
	return ""
}

// WaitFor polls cond every 5 ms until it holds, failing t once d has passed: tests wait
// for what they expect instead of sleeping and hoping.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Main runs m's tests with up to n parallel tests at once, unless -parallel is given on
// the command line. The default, GOMAXPROCS, suits tests that keep the CPU busy; the
// parallel tests of the packages that call Main mostly wait on sockets, child processes
// and timers, so two at a time on a two-core machine would leave it idle. A test that
// must run alone (it counts allocations or measures the heap, which are the process's)
// does not call t.Parallel: Go runs it before any parallel test starts.
func Main(m *testing.M, n int) int {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		if err := flag.Set("test.parallel", strconv.Itoa(n)); err != nil {
			panic(err)
		}
	}
	return m.Run()
}

// Service ports are picked in [servicePortLow, the ephemeral range's start): tester.sh's
// fixed ports are below servicePortLow.
const servicePortLow = 29000

var (
	servicePortMu   sync.Mutex
	servicePortUsed = map[int]bool{}
)

// ServicePort returns a loopback port for a server a test starts as a child process (Redis,
// Consul), possibly more than once on the same port: free now for TCP and UDP, never
// returned before in this process, and below Linux's ephemeral range, so that no
// connection's local port or listener on port 0 (the parallel tests make thousands) takes
// it while the server is down between a kill and a restart.
func ServicePort(t testing.TB) int {
	t.Helper()
	high := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				high = n
			}
		}
	}
	if high-servicePortLow < 1000 {
		t.Fatalf("the ephemeral port range starts at %d: too few ports below it from %d", high, servicePortLow)
	}
	servicePortMu.Lock()
	defer servicePortMu.Unlock()
	for range 1000 {
		port := servicePortLow + rand.IntN(high-servicePortLow)
		if servicePortUsed[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		servicePortUsed[port] = true
		return port
	}
	t.Fatalf("no free loopback port in [%d, %d)", servicePortLow, high)
	return 0
}
