package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/testtool"
	"go-loadbalancer/metrics"
	"go-loadbalancer/proxy"
	"go-loadbalancer/state"
)

// testBackend is a real fasthttp server on a loopback port that counts its hits.
type testBackend struct {
	url  string
	hits atomic.Int64
}

func startBackend(t testing.TB, name string) *testBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &testBackend{url: "http://" + ln.Addr().String()}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		b.hits.Add(1)
		if string(ctx.Path()) == "/slow" {
			time.Sleep(20 * time.Millisecond)
		}
		ctx.SetBodyString(name)
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return b
}

// lb is a whole load balancer on loopback ports: real backends, the proxy, the admin
// port, and the metrics sampler.
type lb struct {
	backends []*testBackend
	builder  *state.Builder
	reg      *metrics.Registry
	proxy    string // data-plane address
	admin    string // admin base URL
	ready    atomic.Bool
	reloads  atomic.Int64
	reloadFn func() error
}

type lbOptions struct {
	token        string
	allowedHosts []string
	pprof        bool
	demo         bool // answer the demo paths on the data plane too
}

func startLB(t testing.TB, n int, o lbOptions) *lb {
	t.Helper()
	l := &lb{}
	var sb strings.Builder
	sb.WriteString("pools:\n  - name: web\n    timeouts: { connect: 500ms, response: 5s }\n    backends:\n")
	for i := 0; i < n; i++ {
		be := startBackend(t, fmt.Sprintf("b%d", i+1))
		l.backends = append(l.backends, be)
		fmt.Fprintf(&sb, "      - url: %q\n", be.url)
	}
	cfg, err := config.Parse("test.yaml", []byte(sb.String()))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Admin.Token = o.token
	cfg.Admin.Pprof = o.pprof
	cfg.Admin.AllowedHosts = o.allowedHosts
	store := new(state.Store)
	l.reg = metrics.New(metrics.Options{Store: store})
	tables := proxy.NewTables(nil, l.reg)
	l.builder = state.NewBuilder(store, tables.Hooks())
	if _, err := l.builder.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go l.reg.Run(ctx)

	l.ready.Store(true)
	srv := New(Options{Builder: l.builder, Metrics: l.reg, Ready: l.ready.Load, Pprof: o.pprof, Log: zerolog.Nop(),
		Reload: func() error {
			l.reloads.Add(1)
			if l.reloadFn != nil {
				return l.reloadFn()
			}
			return nil
		}})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	l.admin = hs.URL

	popts := proxy.Options{Tables: tables, Log: zerolog.Nop()}
	if o.demo {
		popts.Local = srv.Local()
	}
	px := proxy.New(popts)
	fs := px.NewServer(cfg.Server, zerolog.Nop())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = fs.Serve(ln) }()
	t.Cleanup(func() { _ = fs.Shutdown() })
	l.proxy = ln.Addr().String()
	return l
}

// backendID returns the ID of backend i.
func (l *lb) backendID(i int) string { return l.builder.Store.Load().Pools[0].Backends[i].ID }

// do sends a request to the admin port and returns status, headers and body.
func do(t testing.TB, method, url, token, body string) (int, http.Header, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// getJSON fetches url and decodes its JSON body into v.
func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	code, _, body := do(t, "GET", url, "", "")
	if code != 200 {
		t.Fatalf("GET %s: status %d: %s", url, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: invalid JSON: %v\n%s", url, err, body)
	}
}

// get sends n GETs of path through the proxy and fails on any non-200.
func (l *lb) get(t testing.TB, path string, n int) {
	t.Helper()
	c := &fasthttp.HostClient{Addr: l.proxy, MaxConns: 64}
	for i := 0; i < n; i++ {
		code, _, err := c.Get(nil, "http://"+l.proxy+path)
		if err != nil || code != 200 {
			t.Fatalf("GET %s through the proxy: status %d, err %v", path, code, err)
		}
	}
}

// needTool returns a command's path: see testtool.Need.
func needTool(t testing.TB, name, pkg string) string {
	t.Helper()
	return testtool.Need(t, name, pkg)
}

// TestMain runs up to 8 tests at once (testtool.Main): they wait on loopback sockets, the
// metrics sampler's ticks and child processes (Prometheus, promtool, Chromium).
func TestMain(m *testing.M) { os.Exit(testtool.Main(m, 8)) }
