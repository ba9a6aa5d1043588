package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go-loadbalancer/internal/logbuf"
)

// When one server stops serving, run shuts the other down before it returns an error, so
// close never releases the tracer, limiter or sticky store under requests in flight. The
// app runs in this process: its listeners are closed from under the servers.
func TestRunStopsTheOtherServerWhenOneFails(t *testing.T) {
	for _, tc := range []struct {
		name   string
		failed func(*app) net.Listener // closed from under its server
		other  func(*app) net.Listener // must be closed when run returns
		want   string
	}{
		{"admin", func(a *app) net.Listener { return a.adminLn }, func(a *app) net.Listener { return a.ln }, "admin server: "},
		{"data plane", func(a *app) net.Listener { return a.ln }, func(a *app) net.Listener { return a.adminLn }, "data plane: listener closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := backend(t, "a", 0)
			path := filepath.Join(t.TempDir(), "lb.yaml")
			writeConfig(t, path, b)
			f, err := parseFlags([]string{"-config", path}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			getenv := func(string) string { return "" }
			cfg, err := loadConfig(f, getenv)
			if err != nil {
				t.Fatal(err)
			}
			var logs logbuf.Buffer
			a, err := newApp(f, cfg, getenv, newLogOutputs(io.Discard, &logs), newLogger(&logs, "info"))
			if err != nil {
				t.Fatal(err)
			}
			defer a.close()
			done := make(chan error, 1)
			go func() { done <- a.run() }()
			for _, u := range []string{"http://" + a.ln.Addr().String() + "/", "http://" + a.adminLn.Addr().String() + "/health"} {
				waitOK(t, u)
			}

			tc.failed(a).Close()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("run did not return after the %s listener closed; log:\n%s", tc.name, logs.String())
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run returned %v, want an error containing %q", err, tc.want)
			}
			if !a.draining.Load() {
				t.Error("readiness still on after run returned")
			}
			other := tc.other(a).Addr().String()
			if c, err := net.Dial("tcp", other); err == nil {
				c.Close()
				t.Errorf("the other server still accepts on %s after run returned", other)
			}
			if logs.Count(`"message":"stopped"`) != 1 {
				t.Errorf("no drained shutdown logged:\n%s", logs.String())
			}
		})
	}
}

// waitOK polls url until it answers 200, for up to 10 s.
func waitOK(t *testing.T, url string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRateLimitKeyedByForwardedForWarns: behind a trusted proxy, rate_limit.key
// header:X-Forwarded-For is the whole received list, so a client that varies its own
// left-hand entries gets a fresh bucket each time; the process warns at start (and on each
// reload that keeps it), and key: ip limits that client whatever it writes.
func TestRateLimitKeyedByForwardedForWarns(t *testing.T) {
	t.Parallel()
	b, _ := backend(t, "a", 0)
	path := filepath.Join(t.TempDir(), "lb.yaml")
	conf := func(key string) string {
		return "listen: \"127.0.0.1:0\"\nadmin: { listen: \"127.0.0.1:0\" }\nserver: { trusted_proxies: [127.0.0.1/32] }\n" +
			"pools: [ { name: web, backends: [ { url: \"" + b + "\" } ] } ]\n" +
			"rate_limit: { enabled: true, rate: 0.001, burst: 1, key: \"" + key + "\" }\n"
	}
	const warning = "from a trusted proxy the key is the whole X-Forwarded-For value"
	writeFile(t, path, []byte(conf("header:X-Forwarded-For")))
	p := start(t, "-config", path)
	p.waitLog(t, warning)
	codes := func() []int {
		var got []int
		for _, spoof := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"} {
			code, _ := httpGet(t, "http://"+p.addr+"/", "X-Forwarded-For", spoof+", 192.0.2.7")
			got = append(got, code)
		}
		return got
	}
	if got := codes(); !slices.Equal(got, []int{200, 200, 200}) {
		t.Fatalf("key header:X-Forwarded-For, burst 1, three spoofed left entries: got %v; want every one through (what the warning says)", got)
	}
	p.reloadWith(t, path, conf("ip"))
	if got := codes(); !slices.Equal(got, []int{200, 429, 429}) {
		t.Fatalf("key ip, burst 1, one client 192.0.2.7 behind the trusted proxy: got %v; want [200 429 429]", got)
	}
	if n := strings.Count(p.log(), warning); n != 1 {
		t.Errorf("warning logged %d times; want once (at start, not after the reload to key: ip)", n)
	}
}
