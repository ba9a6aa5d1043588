package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go-loadbalancer/internal/testtool"
)

// logField returns field key of the first JSON log line whose message is msg.
func (p *process) logField(msg, key string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, line := range p.logs {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["message"] == msg {
			switch v := m[key].(type) {
			case string:
				return v
			case float64:
				return strconv.FormatFloat(v, 'f', -1, 64)
			}
		}
	}
	return ""
}

// metric returns the value of the Prometheus series name (with its labels) from the admin
// port, -1 if absent.
func (p *process) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.adminAddr(t) + "/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

func (p *process) get(t *testing.T, path string) int {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, p.log())
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (p *process) alive() bool {
	select {
	case err := <-p.exited:
		p.exited <- err
		return false
	default:
		return true
	}
}

// TestClosedStdoutDoesNotKill: `go-loadbalancer | head -c 10` — once head exits, the access
// log's writes to the closed pipe fail with EPIPE. The Go runtime used to end the process
// on that SIGPIPE, with nothing on stderr; now the failure is reported once and counted.
func TestClosedStdoutDoesNotKill(t *testing.T) {
	t.Parallel()
	a, _ := backend(t, "a", 0)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	writeConfig(t, cfg, a)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	head := exec.Command("head", "-c", "10")
	head.Stdin = r
	if err := head.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "-config", cfg)
	cmd.Env = append(os.Environ(), "LOG_LEVEL=info")
	cmd.Stdout = w
	p := startCmd(t, cmd)
	r.Close()
	w.Close()
	p.get(t, "/") // head reads its 10 bytes of this line and exits
	if err := head.Wait(); err != nil {
		t.Fatal(err)
	}
	testtool.WaitFor(t, 10*time.Second, "a write error to be counted", func() bool {
		if !p.alive() {
			t.Fatalf("go-loadbalancer exited when its stdout closed:\n%s", p.log())
		}
		p.get(t, "/")
		return p.metric(t, "lb_log_write_errors_total") >= 1
	})
	for range 20 {
		if p.get(t, "/") != 200 {
			t.Fatal("not serving after stdout closed")
		}
	}
	if !p.alive() {
		t.Fatalf("go-loadbalancer exited:\n%s", p.log())
	}
	if n := strings.Count(p.log(), "cannot write the log"); n != 1 {
		t.Fatalf("got %d reports of the failing log; want 1:\n%s", n, p.log())
	}
}

// TestFullDiskLogCounted: an access log on a full disk (/dev/full) loses lines; they are
// counted as dropped and as write errors instead of vanishing silently.
func TestFullDiskLogCounted(t *testing.T) {
	t.Parallel()
	a, _ := backend(t, "a", 0)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	writeConfig(t, cfg, a)
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		if os.Getenv("CI") == "true" { // CI runs on Linux, which always has it
			t.Fatalf("no /dev/full: %v", err)
		}
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	cmd := exec.Command(binary, "-config", cfg)
	cmd.Env = append(os.Environ(), "LOG_LEVEL=info")
	cmd.Stdout = full
	p := startCmd(t, cmd)
	for range 10 {
		p.get(t, "/")
	}
	testtool.WaitFor(t, 10*time.Second, "the lost lines to be counted", func() bool {
		return p.metric(t, "lb_access_log_dropped_total") >= 1 && p.metric(t, "lb_log_write_errors_total") >= 1
	})
	if !strings.Contains(p.log(), "no space left on device") {
		t.Fatalf("the write error was not reported on stderr:\n%s", p.log())
	}
}

// TestOutOfDescriptorsKeepsServing: with a 200-descriptor limit, 300 idle connections
// exhaust the descriptors and accept fails with EMFILE. fasthttp's accept loop returned on
// that error and the process exited with code 1; now the failures are counted, logged once
// per burst and retried, the connections already open are served, and new ones are
// accepted again once descriptors are free.
func TestOutOfDescriptorsKeepsServing(t *testing.T) {
	t.Parallel()
	prlimit := testtool.Need(t, "prlimit", "util-linux")
	a, _ := backend(t, "a", 0)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	// max_conns far above the descriptor limit, so that accept runs out first.
	os.WriteFile(cfg, []byte(`listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0" }
server: { shutdown_timeout: 5s, max_conns: 100000 }
log: { access_log: false }
pools:
  - name: web
    backends: [{ url: "`+a+`" }]
`), 0o644)
	cmd := exec.Command(prlimit, "--nofile=200:200", binary, "-config", cfg)
	cmd.Env = append(os.Environ(), "LOG_LEVEL=info")
	p := startCmd(t, cmd)
	if got := p.logField("descriptor limit (RLIMIT_NOFILE)", "hard"); got != "200" {
		t.Fatalf("logged hard limit %q; want 200\n%s", got, p.log())
	}
	first, err := net.Dial("tcp", p.addr) // a connection open before the descriptors run out
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	firstBR := bufio.NewReader(first)
	keepAliveGet := func() int {
		t.Helper()
		io.WriteString(first, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		first.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(firstBR, nil)
		if err != nil {
			t.Fatalf("the open connection is no longer served: %v\n%s", err, p.log())
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if keepAliveGet() != 200 {
		t.Fatal("first request failed")
	}
	var idle []net.Conn
	for range 300 {
		c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
		if err != nil {
			break // the listen backlog is full: enough
		}
		idle = append(idle, c)
	}
	p.waitLog(t, "cannot accept connections")
	if !p.alive() {
		t.Fatalf("go-loadbalancer exited when it ran out of descriptors:\n%s", p.log())
	}
	if keepAliveGet() != 200 {
		t.Fatal("the open connection got an error while out of descriptors")
	}
	for _, c := range idle {
		c.Close()
	}
	p.waitLog(t, "accepting connections again")
	testtool.WaitFor(t, 20*time.Second, "new connections to be served", func() bool {
		resp, err := http.Get("http://" + p.addr + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	if n := p.metric(t, "lb_accept_errors_total"); n < 1 {
		t.Fatalf("lb_accept_errors_total = %v; want at least 1", n)
	}
	if !p.alive() {
		t.Fatalf("go-loadbalancer exited:\n%s", p.log())
	}
}
