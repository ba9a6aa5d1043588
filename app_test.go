package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
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
