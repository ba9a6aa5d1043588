package admin

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestAdminHostCheck: the admin port answers only requests whose Host is an IP literal,
// localhost, its listen host or an admin.allowed_hosts name (any port). A page on a
// rebound DNS name (its Host is that name) gets 421 for every path, so it cannot read
// /metrics or the dashboard (it could before: any Host was answered).
func TestAdminHostCheck(t *testing.T) {
	t.Parallel()
	l := startLB(t, 1, lbOptions{token: "tok", allowedHosts: []string{"lb-admin.internal"}})
	f := func(host, path string, want int) {
		t.Helper()
		req, err := http.NewRequest("GET", l.admin+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s with Host %q: got %d %s; want %d", path, host, resp.StatusCode, body, want)
		}
	}
	for _, path := range []string{"/metrics", "/", "/prometheus", "/health"} {
		f("evil.example:9901", path, http.StatusMisdirectedRequest)
		f("evil.example", path, http.StatusMisdirectedRequest)
		f("localhost.evil.example", path, http.StatusMisdirectedRequest)
		f("127.0.0.1:9901", path, 200)
		f("[::1]:9901", path, 200)
		f("10.1.2.3:9901", path, 200) // a pod IP: Kubernetes probes, Prometheus
		f("localhost:9901", path, 200)
		f("LocalHost", path, 200)
		f("lb-admin.internal:9901", path, 200)
		f("LB-ADMIN.internal", path, 200)
	}
}

// TestAdminBearerCaseInsensitive: the auth-scheme is case-insensitive (RFC 9110 §11.1):
// "bearer" and "BEARER" work like "Bearer" (they got 401 before).
func TestAdminBearerCaseInsensitive(t *testing.T) {
	t.Parallel()
	l := startLB(t, 1, lbOptions{token: "tok"})
	for _, c := range []struct {
		auth string
		want int
	}{
		{"Bearer tok", 200}, {"bearer tok", 200}, {"BEARER tok", 200}, {"bEaReR   tok ", 200},
		{"Basic tok", 401}, {"Bearertok", 401}, {"tok", 401}, {"Bearer wrong", 401},
	} {
		req, _ := http.NewRequest("POST", l.admin+"/api/reload", nil)
		req.Header.Set("Authorization", c.auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Fatalf("Authorization %q: got %d; want %d", c.auth, resp.StatusCode, c.want)
		}
	}
}

// TestAdminReloadErrorTruncated: a rejected reload whose reason is huge (a 3 MB line of
// the file went back whole before) is answered with a bounded error.
func TestAdminReloadErrorTruncated(t *testing.T) {
	t.Parallel()
	l := startLB(t, 1, lbOptions{token: "tok"})
	l.reloadFn = func() error { return errors.New("lb.yaml:3: listen: \"" + strings.Repeat("A", 3<<20) + "\"") }
	code, _, body := do(t, "POST", l.admin+"/api/reload", "tok", "")
	if code != http.StatusUnprocessableEntity || len(body) > maxErrorText+200 {
		t.Fatalf("got %d with a body of %d bytes; want 422 with at most %d", code, len(body), maxErrorText+200)
	}
}
