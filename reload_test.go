package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// count returns how many log lines contain substr.
func (p *process) count(substr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.logs {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// reload sends SIGHUP and waits for the reload's outcome to be logged.
func (p *process) reload(t *testing.T) {
	t.Helper()
	before := p.count(`"configuration reloaded"`) + p.count("reload rejected")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.count(`"configuration reloaded"`)+p.count("reload rejected") == before {
		if time.Now().After(deadline) {
			t.Fatalf("the reload was never logged:\n%s", p.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestTrafficPoliciesEnabledFalse: TRAFFIC_POLICIES_ENABLED=false ignores routes, and says
// so once at the start and once per reload.
func TestTrafficPoliciesEnabledFalse(t *testing.T) {
	a, _ := backend(t, "a", 0)
	b, _ := backend(t, "b", 0)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	yaml := "listen: \"127.0.0.1:0\"\nadmin: { listen: \"127.0.0.1:0\" }\npools:\n" +
		"  - { name: first, backends: [ { url: \"" + a + "\" } ] }\n" +
		"  - { name: canary, backends: [ { url: \"" + b + "\" } ] }\n" +
		"routes:\n  - { match: { headers: { X-Canary: \"true\" } }, pool: canary }\n"
	writeFile(t, cfg, []byte(yaml))
	const said = "TRAFFIC_POLICIES_ENABLED=false: routes are ignored"

	p := startEnv(t, append(os.Environ(), "LOG_LEVEL=info", "TRAFFIC_POLICIES_ENABLED=false"), "-config", cfg)
	if _, body := httpGet(t, "http://"+p.addr+"/", "X-Canary", "true"); body != "a" {
		t.Fatalf("got backend %q; want a (routes ignored)", body)
	}
	if n := p.count(said); n != 1 {
		t.Fatalf("at start the log said %q %d times; want once\n%s", said, n, p.log())
	}
	p.reload(t)
	if n := p.count(said); n != 2 {
		t.Fatalf("after a reload the log said %q %d times; want twice\n%s", said, n, p.log())
	}

	// Unset: the routes apply, and nothing is said.
	q := start(t, "-config", cfg)
	if _, body := httpGet(t, "http://"+q.addr+"/", "X-Canary", "true"); body != "b" {
		t.Fatalf("got backend %q; want b (the canary route)", body)
	}
	if q.count(said) != 0 {
		t.Fatalf("the log said %q with the variable unset", said)
	}
}
