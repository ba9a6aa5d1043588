// Package testredis runs a real redis-server for tests: one process per test on a random
// loopback port, in the test's temp dir, with persistence off, killed when the test ends.
//
// A test that needs Redis calls Start (or New, then Server.Start, to begin with Redis down).
// When redis-server is not installed the test is skipped — except under CI=true, where a
// skipped suite would pass silently, so it fails (install it with scripts/install-deps.sh).
//
// Start, Client, Calls and Get must be called from the test's goroutine (they may call
// t.Fatal); Kill, Running, URL, Addr and Port are safe from any goroutine.
package testredis

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"go-loadbalancer/internal/testtool"
)

// Server is one redis-server on a fixed loopback port. Kill stops it like a crash; Start
// runs it again on the same port, empty (nothing is persisted).
type Server struct {
	t    testing.TB
	port int
	dir  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	out    *bytes.Buffer
	client rueidis.Client // for Calls and Client; made on first use
}

// Need returns the path of redis-server, skipping t when it is missing (failing it under
// CI=true).
func Need(t testing.TB) string {
	t.Helper()
	return testtool.Need(t, "redis-server", "redis-server")
}

// New returns a server on a free loopback port without starting it: a Redis that is down.
// It is killed in t.Cleanup.
func New(t testing.TB) *Server {
	t.Helper()
	Need(t)
	s := &Server{t: t, port: testtool.ServicePort(t), dir: t.TempDir()}
	t.Cleanup(func() {
		s.mu.Lock()
		c := s.client
		s.client = nil
		s.mu.Unlock()
		if c != nil {
			c.Close()
		}
		s.Kill()
	})
	return s
}

// Start returns a running server on a free loopback port, killed in t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	s := New(t)
	s.Start()
	return s
}

// URL returns "redis://127.0.0.1:<port>/0".
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Addr returns "127.0.0.1:<port>".
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Port returns the server's port; it does not change across Kill and Start.
func (s *Server) Port() int { return s.port }

// Start runs redis-server on the server's port and waits (up to 5 s) until it accepts a
// connection. After Kill it restarts the server on the same port, with no data. Starting a
// running server is a test bug.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.t.Fatalf("redis-server on %s is already running", s.Addr())
	}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("cannot start redis-server: %v", err)
	}
	s.cmd, s.out = cmd, out
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr(), 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			s.cmd = nil
			s.t.Fatalf("redis-server on %s did not come up: %v\n%s", s.Addr(), err, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill stops the server at once (SIGKILL), like a crash, and waits for it to exit. Killing
// a stopped server does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Running reports whether the server process was started and not killed.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Client returns a plain rueidis client (no client-side cache) for inspecting the server,
// shared by every call and closed in t.Cleanup. It reconnects by itself after a restart.
func (s *Server) Client() rueidis.Client {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return s.client
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.Addr()}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		s.t.Fatalf("cannot connect to redis on %s: %v", s.Addr(), err)
	}
	s.client = c
	return c
}

// Calls returns how many times the server has run cmd (lower case, e.g. "get") since it
// started, from INFO commandstats. The INFO call itself is not a GET.
func (s *Server) Calls(cmd string) int {
	s.t.Helper()
	c := s.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := c.Do(ctx, c.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		s.t.Fatalf("cannot read INFO commandstats from %s: %v", s.Addr(), err)
	}
	n, err := parseCalls(info, cmd)
	if err != nil {
		s.t.Fatal(err)
	}
	return n
}

// parseCalls finds "cmdstat_<cmd>:calls=<n>,..." in an INFO commandstats reply; a command
// never run has no line (0).
func parseCalls(info, cmd string) (int, error) {
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls=")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		v, err := strconv.Atoi(n)
		if err != nil {
			return 0, &parseError{line}
		}
		return v, nil
	}
	return 0, nil
}

type parseError struct{ line string }

func (e *parseError) Error() string {
	return "cannot parse INFO commandstats line " + strconv.Quote(e.line)
}

// Get returns the string at key and whether it exists.
func (s *Server) Get(key string) (string, bool) {
	s.t.Helper()
	c := s.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := c.Do(ctx, c.B().Get().Key(key).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return "", false
	}
	if err != nil {
		s.t.Fatalf("cannot GET %q from %s: %v", key, s.Addr(), err)
	}
	return v, true
}
