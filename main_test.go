package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go-loadbalancer/internal/logbuf"
	"go-loadbalancer/internal/testtool"
)

// binary is the go-loadbalancer the tests run as a real process: this test binary, which
// runs main instead of the tests when runMainEnv is set (every child has it).
var binary string

// runMainEnv tells this test binary to be go-loadbalancer: run main with its arguments.
const runMainEnv = "GOLB_TEST_RUN_MAIN"

// TestMain runs main in a child started by a test (the test binary holds package main
// whole, built with the same -race and -cover; linking a second binary cost seconds), or
// else the tests, up to 8 at once: they wait on child processes and sockets.
func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	binary = exe
	if err := os.Setenv(runMainEnv, "1"); err != nil { // inherited by every child
		panic(err)
	}
	os.Exit(testtool.Main(m, 8))
}

// backend is a real HTTP server on a loopback port answering its name.
func backend(t *testing.T, name string, delay time.Duration) (url string, hits *atomic.Int64) {
	t.Helper()
	hits = &atomic.Int64{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" { // health checks are not the traffic tests count
			hits.Add(1)
		}
		time.Sleep(delay)
		io.WriteString(w, name)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String(), hits
}

func writeConfig(t *testing.T, path string, backends ...string) {
	t.Helper()
	var sb strings.Builder
	sb.WriteString("listen: \"127.0.0.1:0\"\nadmin: { listen: \"127.0.0.1:0\" }\nserver: { shutdown_timeout: 5s, drain_grace: 100ms }\npools:\n  - name: web\n    backends:\n")
	for _, b := range backends {
		fmt.Fprintf(&sb, "      - url: %q\n", b)
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startOne starts go-loadbalancer with a config file (its path returned) of one pool of
// one backend.
func startOne(t *testing.T) (*process, string) {
	t.Helper()
	a, _ := backend(t, "a", 0)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	writeConfig(t, cfg, a)
	return start(t, "-config", cfg), cfg
}

// process is a running go-loadbalancer whose JSON log lines are collected.
type process struct {
	cmd    *exec.Cmd
	addr   string
	mu     sync.Mutex
	logs   []string
	stdout logbuf.Buffer // the access log
	exited chan error
}

func start(t *testing.T, args ...string) *process {
	t.Helper()
	return startEnv(t, append(os.Environ(), "LOG_LEVEL=info"), args...)
}

// startEnv starts go-loadbalancer with the environment env and waits until it serves.
func startEnv(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	return startCmd(t, cmd)
}

// startCmd starts cmd (the binary with its arguments and environment, and any Stdout) and
// waits until it serves; without a Stdout of its own, stdout is collected in p.stdout.
func startCmd(t *testing.T, cmd *exec.Cmd) *process {
	t.Helper()
	p := &process{cmd: cmd, exited: make(chan error, 1)}
	if p.cmd.Stdout == nil {
		p.cmd.Stdout = &p.stdout
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs = append(p.logs, line)
			p.mu.Unlock()
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["message"] == "go-loadbalancer serving" {
				addr <- m["listen"].(string)
			}
		}
		p.exited <- p.cmd.Wait()
	}()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	select {
	case p.addr = <-addr:
	case err := <-p.exited:
		t.Fatalf("go-loadbalancer exited at start: %v\n%s", err, p.log())
	case <-time.After(20 * time.Second):
		t.Fatalf("go-loadbalancer did not start\n%s", p.log())
	}
	return p
}

// wait waits up to d for the process to exit and returns how it exited.
func (p *process) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.exited:
		return err
	case <-time.After(d):
		t.Fatalf("go-loadbalancer did not exit within %v\n%s", d, p.log())
	}
	return nil
}

// stop sends SIGTERM and waits up to 20 s for the process to exit; it returns how it
// exited.
func (p *process) stop(t *testing.T) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	return p.wait(t, 20*time.Second)
}

func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.logs, "\n")
}

func (p *process) waitLog(t *testing.T, substr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.log(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q:\n%s", substr, p.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCheckConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeConfig(t, good, "http://127.0.0.1:9")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("pools:\n  - name: web\n    backends:\n      - url: \"http://127.0.0.1:9\"\n        weight: 0\n    balance: fastest\n"), 0o644)
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("listen: \":8080\"\npools:\n  - name: web\n    backend: []\n"), 0o644)

	f := func(file string, wantCode int, wantOut ...string) {
		t.Helper()
		out, err := exec.Command(binary, "-check-config", "-config", file).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != wantCode {
			t.Fatalf("-check-config %s: got exit %d; want %d\n%s", file, code, wantCode, out)
		}
		for _, w := range wantOut {
			if !bytes.Contains(out, []byte(w)) {
				t.Errorf("-check-config %s: got %q; want it to contain %q", file, out, w)
			}
		}
	}
	f(good, 0, "valid")
	f(bad, 1, bad+":5:", bad+":6:")
	f(unknown, 1, unknown+":4:", "backend")
}

func TestReloadUnderLoadLosesNothing(t *testing.T) {
	t.Parallel()
	a, aHits := backend(t, "a", 0)
	b, bHits := backend(t, "b", 0)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	writeConfig(t, cfg, a)
	p := start(t, "-config", cfg)

	stop := make(chan struct{})
	var failures atomic.Int64
	var total atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get("http://" + p.addr + "/")
				total.Add(1)
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, resp.Status)
				}
			}
		}()
	}
	for i := 0; i < 10; i++ {
		if i%2 == 0 {
			writeConfig(t, cfg, a, b)
		} else {
			writeConfig(t, cfg, b)
		}
		p.cmd.Process.Signal(syscall.SIGHUP)
		p.waitLog(t, fmt.Sprintf(`"table":%d`, i+2))
		time.Sleep(20 * time.Millisecond)
	}
	// An invalid file is rejected and the running table keeps serving.
	os.WriteFile(cfg, []byte("pools: [ { backends: [ { url: \"ftp://nope\" } ] } ]\n"), 0o644)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "reload rejected")
	before := bHits.Load()
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed during 10 reloads; first: %v", n, total.Load(), firstErr.Load())
	}
	if aHits.Load() == 0 || bHits.Load() == before {
		t.Fatalf("a got %d, b got %d (%d after the bad reload); want both to have served and b to keep serving", aHits.Load(), bHits.Load(), before)
	}
}

func TestGracefulStopFinishesInFlight(t *testing.T) {
	t.Parallel()
	slow, hits := backend(t, "slow", 1500*time.Millisecond)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	writeConfig(t, cfg, slow)
	p := start(t, "-config", cfg)

	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + p.addr + "/slow")
		if err != nil {
			done <- result{err: err}
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{status: resp.StatusCode, body: string(body)}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for hits.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the backend")
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitLog(t, "shutting down")
	// New connections are refused once draining started.
	waitRefused := time.Now().Add(2 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr, 200*time.Millisecond)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(waitRefused) {
			t.Fatal("the listener still accepts connections while draining")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := <-done
	if r.err != nil || r.status != 200 || r.body != "slow" {
		t.Fatalf("in-flight request: got %d %q err %v; want 200 \"slow\"", r.status, r.body, r.err)
	}
	if err := p.wait(t, 10*time.Second); err != nil {
		t.Fatalf("exit: %v; want 0\n%s", err, p.log())
	}
}
