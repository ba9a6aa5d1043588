package main

import (
	"bytes"
	"crypto/tls"
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
// the same three backends weighted 3:2:1. A proxy's name is its base kind and optional
// variants: "-log" (one access-log line per request to a file), "-tls" (front TLS: ECDSA
// P-256, TLS 1.3, keep-alive) and "-2c" (the proxy on both cores, sharing them with the
// load generator and the backends), e.g. haproxy-log, golb-tls, nginx-2c; go-loadbalancer
// also "-base" (built from -base-rev or -base-bin, to compare two builds in one run).
const (
	kindDirect  = "direct"   // the backend server itself, alone on the proxy core: one server hop
	kindHAProxy = "haproxy"  // HAProxy, nbthread 1, http-reuse always
	kindNginx   = "nginx"    // nginx, 1 worker, upstream keepalive 1024
	kindGoLB    = "golb"     // go-loadbalancer, GOMAXPROCS=1, default features, access log off
	kindGoLBLog = "golb-log" // go-loadbalancer with log.access_log: true
)

const (
	variantLog   = "log"
	variantTLS   = "tls"
	variant2Core = "2c"
	variantBase  = "base"
)

var baseKinds = []string{kindDirect, kindHAProxy, kindNginx, kindGoLB}

// allKinds are the target names the help text lists; other combinations of a proxy and
// variants (golb-tls-log) are accepted too.
var allKinds = []string{kindDirect, kindHAProxy, kindNginx, kindGoLB, kindGoLBLog,
	"haproxy-log", "nginx-log", "golb-tls", "haproxy-tls", "nginx-tls", "golb-2c", "haproxy-2c", "nginx-2c", "golb-base"}

// variant is what a target name asks for.
type variant struct {
	base  string // direct, haproxy, nginx or golb
	log   bool   // access log on, one line per request to a file
	tls   bool   // front TLS
	cores int    // 1, or 2 with -2c
	ref   bool   // go-loadbalancer built from -base-rev or -base-bin
}

// parseKind splits a target name into its base and variants; the A/A twin's "#2" is not
// part of it.
func parseKind(kind string) (variant, error) {
	f := strings.Split(kind, "-")
	v := variant{base: f[0], cores: 1}
	if !contains(baseKinds, v.base) {
		return v, fmt.Errorf("unknown target %q (want one of %s)", kind, strings.Join(allKinds, ", "))
	}
	for _, x := range f[1:] {
		switch {
		case x == variantLog && !v.log:
			v.log = true
		case x == variantTLS && !v.tls:
			v.tls = true
		case x == variant2Core && v.cores == 1:
			v.cores = 2
		case x == variantBase && !v.ref && v.base == kindGoLB:
			v.ref = true
		default:
			return v, fmt.Errorf("unknown target %q: variant %q (want log, tls, 2c or, for golb, base; each at most once)", kind, x)
		}
	}
	if v.base == kindDirect && kind != kindDirect {
		return v, fmt.Errorf("target %q: direct has no variants", kind)
	}
	return v, nil
}

// backendWeights is the split every proxy is configured with (and checked for).
var backendWeights = []int{3, 2, 1}

// target is one running server under test.
type target struct {
	name    string // as shown in the report; the A/A twin is "<kind>#2"
	kind    string
	v       variant
	addr    string // host:port
	proc    *proc
	cpus    string // taskset list of the target's cores
	logFile string // the access log the target writes, "" for none

	lastLogLines int64 // lines in logFile after the last measured run; -1 without a log
}

func (t *target) url() string {
	if t.v.tls {
		return "https://" + t.addr + "/"
	}
	return "http://" + t.addr + "/"
}

// client is a connection to t for the harness's own requests (readiness, 3:2:1 check):
// TLS without verification for a -tls target (its certificate is made at run time).
func (t *target) client(maxConns int) *fasthttp.HostClient {
	c := &fasthttp.HostClient{Addr: t.addr, MaxConns: maxConns}
	if t.v.tls {
		c.IsTLS = true
		c.TLSConfig = &tls.Config{InsecureSkipVerify: true}
	}
	return c
}

// env is what starting a target needs.
type env struct {
	procs      *procs
	dir        string // config files and logs
	proxyCPU   int
	loadCPU    int
	lbBin      string
	baseBin    string   // go-loadbalancer for -base targets
	self       string   // this binary, for the direct backend
	backends   []string // the 3:2:1 backends' addresses
	parity     bool     // proxies add X-Forwarded-* and X-Request-Id like go-loadbalancer
	extraLBEnv []string // e.g. the pprof listener of a profiling build
	cert       *certFiles
}

// startTarget starts one target on the proxy core (both cores for -2c) and waits until it
// answers 200.
func (e *env) startTarget(name, kind string) (*target, error) {
	v, err := parseKind(kind)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	t := &target{name: name, kind: kind, v: v, addr: "127.0.0.1:" + strconv.Itoa(port), cpus: strconv.Itoa(e.proxyCPU)}
	if v.cores > 1 {
		t.cpus = bothCores(e.proxyCPU, e.loadCPU)
	}
	slug := strings.ReplaceAll(name, "#", "-")
	if v.tls && e.cert == nil {
		if e.cert, err = writeCert(e.dir); err != nil {
			return nil, err
		}
	}
	p := proxySetup{listen: t.addr, backends: e.backends, parity: e.parity, threads: v.cores}
	if v.tls {
		p.cert = e.cert
	}
	if v.log {
		t.logFile = filepath.Join(e.dir, "logs", slug+".access.log")
		if err = os.MkdirAll(filepath.Dir(t.logFile), 0o755); err != nil {
			return nil, err
		}
		p.accessLog = t.logFile
	}
	switch v.base {
	case kindDirect:
		t.proc, err = e.procs.start(slug, t.cpus,
			[]string{roleEnv + "=" + roleBackends, listenEnv + "=" + t.addr, controlEnv + "=", "GOMAXPROCS=1"},
			e.dir, "", e.self)
	case kindHAProxy:
		cfg := filepath.Join(e.dir, slug+".cfg")
		out := ""
		if v.log {
			out = t.logFile // HAProxy logs to its stdout (log stdout)
		}
		if err = os.WriteFile(cfg, []byte(haproxyConfig(p)), 0o644); err == nil {
			t.proc, err = e.procs.start(slug, t.cpus, nil, e.dir, out, "haproxy", "-db", "-f", cfg)
		}
	case kindNginx:
		prefix := filepath.Join(e.dir, slug)
		if err = os.MkdirAll(prefix, 0o755); err == nil {
			cfg := filepath.Join(prefix, "nginx.conf")
			if err = os.WriteFile(cfg, []byte(nginxConfig(p, prefix)), 0o644); err == nil {
				t.proc, err = e.procs.start(slug, t.cpus, nil, e.dir, "", "nginx", "-p", prefix, "-c", cfg)
			}
		}
	case kindGoLB:
		cfg := filepath.Join(e.dir, slug+".yaml")
		adminPort, perr := freePort()
		if perr != nil {
			return nil, perr
		}
		yaml := golbConfig(p, "127.0.0.1:"+strconv.Itoa(adminPort))
		out := os.DevNull // go-loadbalancer's stdout is its access log
		if v.log {
			out = t.logFile
		}
		if err = os.WriteFile(cfg, []byte(yaml), 0o644); err == nil {
			lbEnv := append([]string{"GOMAXPROCS=" + strconv.Itoa(v.cores)}, e.extraLBEnv...)
			bin := e.lbBin
			if v.ref {
				bin = e.baseBin
			}
			t.proc, err = e.procs.start(slug, t.cpus, lbEnv, e.dir, out, bin, "-config", cfg)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := waitReady(t); err != nil {
		return nil, err
	}
	return t, nil
}

// load is how wrk loads t: one thread on the load core, or two threads on both cores
// beside a -2c target.
func (t *target) load(o *options) wrkLoad {
	if t.v.cores > 1 {
		return wrkLoad{cpus: t.cpus, threads: 2}
	}
	return wrkLoad{cpus: strconv.Itoa(o.loadCPU), threads: 1}
}

// bothCores is the taskset list of the two cores of a -2c run.
func bothCores(a, b int) string { return strconv.Itoa(min(a, b)) + "," + strconv.Itoa(max(a, b)) }

// logLines counts the lines in t's access log, -1 without one. A line still in a
// writer's buffer (nginx's 64 KiB, flushed every second; go-loadbalancer's ring, written
// within 10 ms) is not counted.
func (t *target) logLines() int64 {
	if t.logFile == "" {
		return -1
	}
	f, err := os.Open(t.logFile)
	if err != nil {
		return -1
	}
	defer f.Close()
	var n int64
	buf := make([]byte, 1<<20)
	for {
		k, err := f.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err != nil {
			return n
		}
	}
}

// truncateLog empties t's access log (between runs: 50k lines a second would fill the
// disk). Every writer appends (O_APPEND), so the next line goes to the new end.
func (t *target) truncateLog() {
	if t.logFile != "" {
		_ = os.Truncate(t.logFile, 0)
	}
}

// waitReady polls the target until it answers 200, for up to 10 s.
func waitReady(t *target) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, err := getStatus(t)
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

// getStatus sends one GET to t on a connection of its own.
func getStatus(t *target) (int, error) {
	c := t.client(1)
	defer c.CloseIdleConnections()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(t.url())
	err := c.DoTimeout(req, resp, time.Second)
	return resp.StatusCode(), err
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

// proxySetup is what a proxy's configuration says, for every proxy alike.
type proxySetup struct {
	listen    string
	backends  []string
	parity    bool       // X-Forwarded-For/-Proto/-Host and X-Request-Id, as go-loadbalancer adds
	threads   int        // HAProxy nbthread, nginx workers (go-loadbalancer: GOMAXPROCS)
	cert      *certFiles // front TLS; nil for plain HTTP
	accessLog string     // file for one line per request; "" for none
}

// tlsSuite is the one TLS 1.3 cipher suite HAProxy and nginx are held to: Go's server
// picks it (AES-128-GCM with AES hardware) whatever the client prefers, while OpenSSL's
// default order would give HAProxy and nginx AES-256-GCM.
const tlsSuite = "TLS_AES_128_GCM_SHA256"

// haproxyConfig: one thread (two for -2c), keep-alive both ways, idle server connections
// shared by all clients (http-reuse always), the same 3:2:1 weights with roundrobin
// (smooth, like go-loadbalancer's), no health checks; logging only with -log, to stdout
// (a file), the same fields as go-loadbalancer's access log.
func haproxyConfig(p proxySetup) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global\n    nbthread %d\n    maxconn 8000\n    tune.bufsize 16384\n", max(p.threads, 1))
	if p.accessLog != "" {
		// Unbuffered: HAProxy writes each line with its own system call (it has no
		// buffered file log; its rings forward to syslog servers only).
		b.WriteString("    log stdout format raw local0\n")
	}
	b.WriteString(`
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 90s
    option http-keep-alive
    http-reuse always
    maxconn 8000
`)
	if p.accessLog != "" {
		b.WriteString("    log global\n")
	}
	b.WriteString("\nfrontend fe\n")
	if p.cert != nil {
		fmt.Fprintf(&b, "    bind %s ssl crt %s ssl-min-ver TLSv1.3 ciphersuites %s\n", p.listen, p.cert.combined, tlsSuite)
	} else {
		fmt.Fprintf(&b, "    bind %s\n", p.listen)
	}
	b.WriteString("    default_backend be\n")
	if p.parity || p.accessLog != "" {
		b.WriteString("    unique-id-format %[uuid()]\n")
	}
	if p.parity {
		proto := "http"
		if p.cert != nil {
			proto = "https"
		}
		fmt.Fprintf(&b, `    option forwardfor
    unique-id-header X-Request-Id
    http-request set-header X-Forwarded-Proto %s
    http-request set-header X-Forwarded-Host %%[req.hdr(host)]
`, proto)
	}
	if p.accessLog != "" {
		// The request headers are gone by the time a line is written: capture them.
		b.WriteString(`    http-request capture req.hdr(host) len 128
    http-request capture req.hdr(user-agent) len 256
    http-request capture req.hdr(referer) len 256
    http-request capture req.hdr(traceparent) len 64
    log-format '{"time":"%tr","level":"info","message":"access","method":"%HM","host":"%[capture.req.hdr(0),json(utf8s)]","path":%{+Q}HP,"query":%{+Q}HQ,"protocol":"%HV","status":%ST,"backend":"%b/%s","upstream":"%si:%sp","tries":%rc,"upstream_ms":%Tr,"duration_ms":%Ta,"request_bytes":%U,"response_bytes":%B,"client":"%ci","user_agent":"%[capture.req.hdr(1),json(utf8s)]","referer":"%[capture.req.hdr(2),json(utf8s)]","request_id":"%ID","trace_id":"%[capture.req.hdr(3),json(utf8s)]"}'
`)
	}
	b.WriteString("\nbackend be\n    balance roundrobin\n")
	for i, addr := range p.backends {
		fmt.Fprintf(&b, "    server b%d %s weight %d\n", i+1, addr, backendWeights[i])
	}
	return b.String()
}

// nginxConfig: one worker (two for -2c), an upstream keep-alive pool of 1024 idle
// connections that are never retired by count, the same 3:2:1 weights (nginx's smooth
// WRR); with -log, an access log of go-loadbalancer's fields, buffered 64 KiB as
// go-loadbalancer batches its writes.
func nginxConfig(p proxySetup, prefix string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `daemon off;
master_process on;
worker_processes %[2]d;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 8192; }
http {
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 90s;
`, prefix, max(p.threads, 1))
	if p.accessLog != "" {
		fmt.Fprintf(&b, `    log_format golb escape=json '{"time":"$time_iso8601","msec":$msec,"level":"info","message":"access","method":"$request_method","host":"$http_host","path":"$uri","query":"$args","protocol":"$server_protocol","status":$status,"upstream":"$upstream_addr","upstream_ms":"$upstream_response_time","duration_ms":$request_time,"request_bytes":$request_length,"response_bytes":$body_bytes_sent,"client":"$remote_addr","user_agent":"$http_user_agent","referer":"$http_referer","request_id":"$request_id","trace_id":"$http_traceparent"}';
    access_log %s golb buffer=64k flush=1s;
`, p.accessLog)
	} else {
		b.WriteString("    access_log off;\n")
	}
	b.WriteString("    upstream be {\n")
	for i, addr := range p.backends {
		fmt.Fprintf(&b, "        server %s weight=%d;\n", addr, backendWeights[i])
	}
	b.WriteString(`        keepalive 1024;
        keepalive_requests 10000000;
        keepalive_timeout 90s;
    }
    server {
`)
	if p.cert != nil {
		fmt.Fprintf(&b, `        listen %s ssl;
        ssl_certificate %s;
        ssl_certificate_key %s;
        ssl_protocols TLSv1.3;
        ssl_conf_command Ciphersuites %s;
`, p.listen, p.cert.cert, p.cert.key, tlsSuite)
	} else {
		fmt.Fprintf(&b, "        listen %s;\n", p.listen)
	}
	b.WriteString(`        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
`)
	if p.parity {
		b.WriteString(`            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Request-Id $request_id;
`)
	}
	b.WriteString("        }\n    }\n}\n")
	return b.String()
}

// golbConfig: go-loadbalancer's defaults and the 3:2:1 pool; only the access log and
// front TLS differ between the go-loadbalancer targets (GOMAXPROCS is the environment's).
func golbConfig(p proxySetup, admin string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %q\nadmin: { listen: %q }\n", p.listen, admin)
	if p.cert != nil {
		fmt.Fprintf(&b, "tls: { cert_file: %q, key_file: %q }\n", p.cert.cert, p.cert.key)
	}
	b.WriteString("pools:\n  - name: bench\n    backends:\n")
	for i, addr := range p.backends {
		fmt.Fprintf(&b, "      - { url: \"http://%s\", weight: %d }\n", addr, backendWeights[i])
	}
	fmt.Fprintf(&b, "log: { level: warn, access_log: %t }\n", p.accessLog != "")
	return b.String()
}

// checkSplit sends n sequential requests through t and checks that the backends saw them
// in the 3:2:1 ratio (each share within 3 percentage points).
func checkSplit(t *target, control string, n int) ([]uint64, error) {
	before, err := backendCounts(control)
	if err != nil {
		return nil, err
	}
	c := t.client(1)
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
