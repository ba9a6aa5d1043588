package sticky

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/rs/zerolog"
)

// redisServer is a real redis-server on a random loopback port, in a temp dir, with no
// persistence; killed in t.Cleanup.
type redisServer struct {
	t    testing.TB
	port int
	dir  string
	cmd  *exec.Cmd
}

// needRedis returns the redis-server path, skipping the test when it is missing — except
// under CI=true, where a skipped suite would pass silently, so it fails.
func needRedis(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server not found and CI=true: install it (scripts/install-deps.sh)")
		}
		t.Skip("redis-server not installed (apt-get install -y redis-server)")
	}
	return p
}

// freePort returns a loopback port nothing listens on now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cannot listen: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// newRedisServer prepares a server on a free port without starting it.
func newRedisServer(t testing.TB) *redisServer {
	t.Helper()
	needRedis(t)
	s := &redisServer{t: t, port: freePort(t), dir: t.TempDir()}
	t.Cleanup(s.kill)
	return s
}

// startRedis starts a server on a free port and waits until it answers.
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	s := newRedisServer(t)
	s.start()
	return s
}

func (s *redisServer) url() string  { return "redis://" + s.addr() + "/0" }
func (s *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// start runs redis-server on s.port and waits (up to 5 s) until it accepts a connection.
func (s *redisServer) start() {
	s.t.Helper()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("cannot start redis-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr(), 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s did not come up: %v\n%s", s.addr(), err, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill stops the server at once (SIGKILL), like a crash.
func (s *redisServer) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// client returns a plain rueidis client (no client cache) for inspecting the server.
func (s *redisServer) client() rueidis.Client {
	s.t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.addr()}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		s.t.Fatalf("cannot connect to redis: %v", err)
	}
	s.t.Cleanup(c.Close)
	return c
}

// calls returns how many times the server ran cmd (lower case, e.g. "get"), from
// INFO commandstats.
func calls(t testing.TB, c rueidis.Client, cmd string) int {
	t.Helper()
	info, err := c.Do(context.Background(), c.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		t.Fatalf("cannot read INFO commandstats: %v", err)
	}
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls=")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		v, err := strconv.Atoi(n)
		if err != nil {
			t.Fatalf("cannot parse %q", line)
		}
		return v
	}
	return 0
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// count returns how many log lines have the given level.
func (b *syncBuffer) count(level string) int {
	return strings.Count(b.String(), `"level":"`+level+`"`)
}

// newRedisStore returns a Redis store for url, closed in t.Cleanup, with its log captured.
func newRedisStore(t testing.TB, url string, o Options) (*Redis, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	o.RedisURL = url
	o.Log = zerolog.New(logs)
	r, err := NewRedis(o)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(r.Close)
	return r, logs
}

// eventually polls cond every 5 ms until it is true or d has passed.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
