package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Target kinds. A target is one server the load generator talks to; every proxy balances
// the same three backends weighted 3:2:1.
const (
	kindDirect  = "direct"   // the backend server itself, alone on the proxy core: one server hop
	kindHAProxy = "haproxy"  // HAProxy, nbthread 1, http-reuse always
	kindNginx   = "nginx"    // nginx, 1 worker, upstream keepalive 1024
	kindGoLB    = "golb"     // go-loadbalancer, GOMAXPROCS=1, default features, access log off
	kindGoLBLog = "golb-log" // go-loadbalancer with log.access_log: true
)

var allKinds = []string{kindDirect, kindHAProxy, kindNginx, kindGoLB, kindGoLBLog}

// backendWeights is the split every proxy is configured with (and checked for).
var backendWeights = []int{3, 2, 1}

// target is one running server under test.
type target struct {
	name string // as shown in the report; the A/A twin is "<kind>#2"
	kind string
	addr string // host:port
	proc *proc
}

func (t *target) url() string { return "http://" + t.addr + "/" }

// env is what starting a target needs.
type env struct {
	procs      *procs
	dir        string // config files and logs
	proxyCPU   int
	lbBin      string
	self       string   // this binary, for the direct backend
	backends   []string // the 3:2:1 backends' addresses
	parity     bool     // proxies add X-Forwarded-* and X-Request-Id like go-loadbalancer
	extraLBEnv []string // e.g. the pprof listener of a profiling build
}

// startTarget starts one target on the proxy core and waits until it answers 200.
func (e *env) startTarget(name, kind string) (*target, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	t := &target{name: name, kind: kind, addr: "127.0.0.1:" + strconv.Itoa(port)}
	slug := strings.ReplaceAll(name, "#", "-")
	switch kind {
	case kindDirect:
		t.proc, err = e.procs.start(slug, e.proxyCPU,
			[]string{roleEnv + "=" + roleBackends, listenEnv + "=" + t.addr, controlEnv + "=", "GOMAXPROCS=1"},
			e.dir, false, e.self)
	case kindHAProxy:
		cfg := filepath.Join(e.dir, slug+".cfg")
		if err = os.WriteFile(cfg, []byte(haproxyConfig(t.addr, e.backends, e.parity)), 0o644); err == nil {
			t.proc, err = e.procs.start(slug, e.proxyCPU, nil, e.dir, false, "haproxy", "-db", "-f", cfg)
		}
	case kindNginx:
		prefix := filepath.Join(e.dir, slug)
		if err = os.MkdirAll(prefix, 0o755); err == nil {
			cfg := filepath.Join(prefix, "nginx.conf")
			if err = os.WriteFile(cfg, []byte(nginxConfig(t.addr, prefix, e.backends, e.parity)), 0o644); err == nil {
				t.proc, err = e.procs.start(slug, e.proxyCPU, nil, e.dir, false, "nginx", "-p", prefix, "-c", cfg)
			}
		}
	case kindGoLB, kindGoLBLog:
		cfg := filepath.Join(e.dir, slug+".yaml")
		adminPort, perr := freePort()
		if perr != nil {
			return nil, perr
		}
		yaml := golbConfig(t.addr, "127.0.0.1:"+strconv.Itoa(adminPort), e.backends, kind == kindGoLBLog)
		if err = os.WriteFile(cfg, []byte(yaml), 0o644); err == nil {
			lbEnv := append([]string{"GOMAXPROCS=1"}, e.extraLBEnv...)
			t.proc, err = e.procs.start(slug, e.proxyCPU, lbEnv, e.dir, true, e.lbBin, "-config", cfg)
		}
	default:
		return nil, fmt.Errorf("unknown target %q (want one of %s)", kind, strings.Join(allKinds, ", "))
	}
	if err != nil {
		return nil, err
	}
	if err := waitReady(t); err != nil {
		return nil, err
	}
	return t, nil
}

// waitReady polls the target until it answers 200, for up to 10 s.
func waitReady(t *target) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _, err := fasthttp.GetTimeout(nil, t.url(), time.Second)
		if err == nil && status == 200 {
			return nil
		}
		if t.proc.exited() || time.Now().After(deadline) {
			log, _ := os.ReadFile(t.proc.log)
			return fmt.Errorf("target %s did not become ready (status %d, err %v); its log:\n%s", t.name, status, err, tail(log, 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// haproxyConfig: one thread, keep-alive both ways, idle server connections shared by all
// clients (http-reuse always), the same 3:2:1 weights with roundrobin (smooth, like
// go-loadbalancer's), no logging, no health checks.
func haproxyConfig(listen string, backends []string, parity bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
    nbthread 1
    maxconn 8000
    tune.bufsize 16384

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 90s
    option http-keep-alive
    http-reuse always
    maxconn 8000

frontend fe
    bind %s
    default_backend be
`, listen)
	if parity {
		b.WriteString(`    option forwardfor
    unique-id-format %[uuid()]
    unique-id-header X-Request-Id
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
`)
	}
	b.WriteString("\nbackend be\n    balance roundrobin\n")
	for i, addr := range backends {
		fmt.Fprintf(&b, "    server b%d %s weight %d\n", i+1, addr, backendWeights[i])
	}
	return b.String()
}

// nginxConfig: one worker, an upstream keep-alive pool of 1024 idle connections that are
// never retired by count, the same 3:2:1 weights (nginx's smooth WRR), no access log.
func nginxConfig(listen, prefix string, backends []string, parity bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `daemon off;
master_process on;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 90s;
    upstream be {
`, prefix)
	for i, addr := range backends {
		fmt.Fprintf(&b, "        server %s weight=%d;\n", addr, backendWeights[i])
	}
	fmt.Fprintf(&b, `        keepalive 1024;
        keepalive_requests 10000000;
        keepalive_timeout 90s;
    }
    server {
        listen %s;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
`, listen)
	if parity {
		b.WriteString(`            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Request-Id $request_id;
`)
	}
	b.WriteString("        }\n    }\n}\n")
	return b.String()
}

// golbConfig: go-loadbalancer's defaults (SPEC §4) and the 3:2:1 pool; only the log
// settings differ between the two go-loadbalancer targets.
func golbConfig(listen, admin string, backends []string, accessLog bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %q\nadmin: { listen: %q }\npools:\n  - name: bench\n    backends:\n", listen, admin)
	for i, addr := range backends {
		fmt.Fprintf(&b, "      - { url: \"http://%s\", weight: %d }\n", addr, backendWeights[i])
	}
	fmt.Fprintf(&b, "log: { level: warn, access_log: %t }\n", accessLog)
	return b.String()
}

// checkSplit sends n sequential requests through t and checks that the backends saw them
// in the 3:2:1 ratio (each share within 3 percentage points).
func checkSplit(t *target, control string, n int) ([]uint64, error) {
	before, err := backendCounts(control)
	if err != nil {
		return nil, err
	}
	c := &fasthttp.HostClient{Addr: t.addr, MaxConns: 1}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for i := 0; i < n; i++ {
		req.SetRequestURI(t.url())
		if err := c.DoTimeout(req, resp, 2*time.Second); err != nil {
			return nil, fmt.Errorf("cannot check %s's split: %w", t.name, err)
		}
		if resp.StatusCode() != 200 {
			return nil, fmt.Errorf("cannot check %s's split: status %d", t.name, resp.StatusCode())
		}
	}
	c.CloseIdleConnections()
	after, err := backendCounts(control)
	if err != nil {
		return nil, err
	}
	got := make([]uint64, len(after))
	var sum uint64
	wsum := 0
	for i := range after {
		got[i] = after[i] - before[i]
		sum += got[i]
		wsum += backendWeights[i]
	}
	for i := range got {
		share, want := float64(got[i])/float64(sum), float64(backendWeights[i])/float64(wsum)
		// A readiness probe that timed out on the client side may still be served during
		// the check: allow a few requests more than were sent.
		if d := share - want; d > 0.03 || d < -0.03 || sum < uint64(n) || sum > uint64(n)+10 {
			return got, fmt.Errorf("%s does not split 3:2:1: backends served %v of %d requests", t.name, got, n)
		}
	}
	return got, nil
}

// versionOf returns the first line of a tool's version output, for the report.
func versionOf(argv ...string) string {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "not found"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
