// Command bench is go-loadbalancer's end-to-end load harness: it measures the proxy CPU
// time per request, throughput and latency of go-loadbalancer beside HAProxy, nginx and no
// proxy at all, in one run, on this machine, and prints a markdown report (PERF.md).
//
//	go run ./bench                       # the default run: < 8 minutes
//	go run ./bench -quick                # smoke test: 1 repetition, short runs
//	go run ./bench -reps 0 -profile 20s  # only a CPU profile of go-loadbalancer under wrk
//
// Method (PERF.md says why): the proxy under test runs alone on one core (taskset,
// GOMAXPROCS=1, nginx 1 worker, HAProxy nbthread 1); wrk, vegeta and the three backends
// (one process, weights 3:2:1) share the other. Each run reads the CPU time of the proxy's
// process tree from /proc before and after and divides by the completed requests. Targets
// run interleaved (A B C D, B C D A, …) for -reps repetitions; the report gives medians
// and min–max, plus an A/A twin of one target as the noise floor. Closed loop (wrk) gives
// the cost; open loop (vegeta, fixed rate, latency measured from the scheduled send time)
// gives latency without coordinated omission.
//
// Every process the harness starts is killed by its PID (process group) when it ends,
// including on SIGINT/SIGTERM. Traffic goes to 127.0.0.1 only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command line.
type options struct {
	targets      []string        // kinds, in the order of the first repetition
	aa           string          // kind measured twice (A/A control); "" for none
	reps         int             // repetitions of the interleaved rotation
	conns        []int           // wrk connections (closed loop)
	duration     time.Duration   // each closed-loop run
	warmup       time.Duration   // wrk run before each measured run (not measured)
	rates        []int           // open-loop rates, requests/s
	openDur      time.Duration   // each open-loop run
	openAA       bool            // include the A/A twin in the open loop
	proxyCPU     int             // core of the proxy under test
	loadCPU      int             // core of the load generators and backends
	lbBin        string          // prebuilt go-loadbalancer; "" builds it
	baseBin      string          // prebuilt go-loadbalancer for -base targets
	baseRev      string          // build -base targets' go-loadbalancer from this git revision
	lbRev        string          // build go-loadbalancer from this git revision, not the work tree
	lbSrc        string          // the source tree go-loadbalancer is built from
	out          string          // results directory; "" = <repo>/bench/results/<time>
	plot         string          // PNG path; "" = <out>/latency.png
	profile      time.Duration   // CPU-profile go-loadbalancer under wrk for this long; 0 = no
	profileKinds []string        // go-loadbalancer targets -profile profiles, one after the other
	openTargets  []string        // targets of the open loop (those of -targets among them)
	handshakes   time.Duration   // each full-handshake run of the -tls targets; 0 = none
	hsConns      int             // concurrent clients of the handshake runs
	hsResume     bool            // also runs where the clients resume their sessions
	parity       bool            // HAProxy and nginx set X-Forwarded-* and X-Request-Id too
	splitCheck   int             // requests of the 3:2:1 check
	idle         int             // idle keep-alive connections per target for the memory measurement; 0 = none
	syscalls     bool            // count system calls per request with perf (a pass of its own)
	requireWrk   bool            // a missing wrk is an error (not a skipped closed loop)
	stdoutExtra  io.Writer       // where progress goes (stderr)
	quick        bool            // noted in the report
	args         []string        // the command line, for the report
	timeout      time.Duration   // whole run
	ctx          context.Context // cancelled on SIGINT/SIGTERM
}

func main() {
	maybeServeBackends()
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	o.ctx = ctx
	rep, err := run(o)
	if rep != nil {
		rep.markdown(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{stdoutExtra: stderr, args: args}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	targets := fs.String("targets", "direct,haproxy,nginx,golb,golb-log", "comma-separated `targets`: "+strings.Join(allKinds, ", ")+
		" (a proxy with the variants -log: access log to a file, -tls: front TLS, -2c: on both cores, sharing them with the load)")
	fs.StringVar(&o.aa, "aa", kindGoLB, "`target` measured twice as an A/A control (\"\" for none)")
	fs.IntVar(&o.reps, "reps", 5, "repetitions of the interleaved rotation (0: only -profile)")
	conns := fs.String("c", "50,256", "closed-loop wrk `connections`, comma-separated")
	fs.DurationVar(&o.duration, "d", 3*time.Second, "each closed-loop run (whole seconds)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured wrk run before each closed-loop run (0: none)")
	rates := fs.String("rates", "10000,30000", "open-loop `rates` in requests/s, comma-separated (\"\" for none)")
	fs.DurationVar(&o.openDur, "open-d", 2500*time.Millisecond, "each open-loop run")
	fs.BoolVar(&o.openAA, "open-aa", false, "include the A/A twin in the open loop")
	fs.IntVar(&o.proxyCPU, "proxy-cpu", 1, "`core` of the proxy under test")
	fs.IntVar(&o.loadCPU, "load-cpu", 0, "`core` of wrk, vegeta and the backends")
	fs.StringVar(&o.lbBin, "lb-bin", "", "prebuilt go-loadbalancer `binary` (default: go build the module)")
	fs.StringVar(&o.lbSrc, "lb-src", "", "build go-loadbalancer from this source `dir` (default: the module root)")
	fs.StringVar(&o.baseRev, "base-rev", "", "build the golb-base targets from this git `revision` (e.g. main), to compare two builds in one interleaved run")
	fs.StringVar(&o.baseBin, "base-bin", "", "prebuilt go-loadbalancer `binary` for the golb-base targets")
	fs.StringVar(&o.lbRev, "lb-rev", "", "build go-loadbalancer from this git `revision` (e.g. HEAD) instead of the work tree")
	fs.StringVar(&o.out, "out", "", "results `dir` (default <repo>/bench/results/<time>)")
	fs.StringVar(&o.plot, "plot", "", "latency plot `png` (default <out>/latency.png)")
	fs.DurationVar(&o.profile, "profile", 0, "also CPU-profile go-loadbalancer under wrk -c50 for this `long` (pprof)")
	profileKinds := fs.String("profile-target", kindGoLB, "what -profile profiles, comma-separated: golb, golb-log (access log on), golb-tls, ... each for -profile")
	openTargets := fs.String("open-targets", "direct,haproxy,nginx,golb,golb-log", "`targets` of the open loop (those also in -targets)")
	fs.DurationVar(&o.handshakes, "handshakes", 3*time.Second, "each run of the full-handshake pass over the -tls targets (a new connection, full handshake and one request each; 0: none)")
	fs.IntVar(&o.hsConns, "hs-c", 50, "concurrent clients of the handshake pass")
	fs.BoolVar(&o.hsResume, "hs-resume", true, "the handshake pass also measures resumed handshakes (each client offers its last session)")
	fs.BoolVar(&o.parity, "parity", true, "HAProxy and nginx add X-Forwarded-For/-Proto/-Host and X-Request-Id, as go-loadbalancer does")
	fs.BoolVar(&o.syscalls, "syscalls", true, "count each target's system calls per request with perf stat, in a separate wrk pass (skipped without perf)")
	fs.IntVar(&o.splitCheck, "split-check", 600, "requests sent through each proxy to check its 3:2:1 split")
	fs.IntVar(&o.idle, "idle", 0, "also measure each target's memory per idle keep-alive `connections` (e.g. 5000; -reps 0 for only this)")
	fs.BoolVar(&o.quick, "quick", false, "smoke test: 1 repetition, 1 s runs, no warm-up, c=50, 2000 rps")
	fs.DurationVar(&o.timeout, "timeout", 20*time.Minute, "abort the whole run after this long")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		quick := map[string]func(){
			"reps":       func() { o.reps = 1 },
			"d":          func() { o.duration = time.Second },
			"warmup":     func() { o.warmup = 0 },
			"c":          func() { *conns = "50" },
			"rates":      func() { *rates = "2000" },
			"open-d":     func() { o.openDur = time.Second },
			"handshakes": func() { o.handshakes = time.Second },
		}
		for name, f := range quick {
			if !set[name] {
				f()
			}
		}
	}
	o.requireWrk = os.Getenv("CI") == "true"
	var err error
	for _, t := range splitList(*targets) {
		if _, err := parseKind(t); err != nil {
			return nil, err
		}
		if contains(o.targets, t) {
			return nil, fmt.Errorf("-targets: %s given twice (-aa measures a target twice)", t)
		}
		o.targets = append(o.targets, t)
	}
	o.openTargets = splitList(*openTargets)
	if o.aa != "" && !contains(o.targets, o.aa) {
		return nil, fmt.Errorf("-aa %s: not one of -targets", o.aa)
	}
	if o.conns, err = intList(*conns); err != nil {
		return nil, fmt.Errorf("-c: %w", err)
	}
	if o.rates, err = intList(*rates); err != nil {
		return nil, fmt.Errorf("-rates: %w", err)
	}
	if o.duration < time.Second || o.duration%time.Second != 0 {
		return nil, fmt.Errorf("-d %v: wrk takes whole seconds", o.duration)
	}
	if o.warmup%time.Second != 0 {
		return nil, fmt.Errorf("-warmup %v: wrk takes whole seconds", o.warmup)
	}
	for _, k := range splitList(*profileKinds) {
		if v, err := parseKind(k); err != nil || v.base != kindGoLB {
			return nil, fmt.Errorf("-profile-target %q: want golb or a golb variant (golb-log, golb-tls, ...)", k)
		}
		o.profileKinds = append(o.profileKinds, k)
	}
	if o.handshakes%time.Second != 0 {
		return nil, fmt.Errorf("-handshakes %v: wrk takes whole seconds", o.handshakes)
	}
	if o.proxyCPU == o.loadCPU {
		return nil, fmt.Errorf("-proxy-cpu and -load-cpu must differ")
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// progress prints a line to stderr.
func (o *options) progress(format string, args ...any) {
	fmt.Fprintf(o.stdoutExtra, "bench: "+format+"\n", args...)
}

// run performs the whole measurement and returns the report (also on error, with what
// was measured).
func run(o *options) (*report, error) {
	ctx, cancel := context.WithTimeout(o.ctx, o.timeout)
	defer cancel()
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	if o.out == "" {
		o.out = filepath.Join(root, "bench", "results", time.Now().Format("20060102-150405"))
	} else if abs, err := filepath.Abs(o.out); err == nil {
		// Targets run with their own working directories: a relative -out made nginx
		// look for bench/results/x/nginx/bench/results/x/nginx/nginx.conf.
		o.out = abs
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}
	if o.plot == "" {
		o.plot = filepath.Join(o.out, "latency.png")
	}
	if err := pinSelf(o.loadCPU); err != nil {
		return nil, err
	}
	runtime.GOMAXPROCS(1)
	raiseFileLimit()

	rep := newReport(o, root)
	ps := &procs{}
	defer ps.stopAll()
	// On SIGINT/SIGTERM, ctx ends: the loops stop at the next run and the deferred stopAll
	// kills every process started, by PID.
	go func() {
		<-ctx.Done()
		if o.ctx.Err() != nil {
			ps.stopAll()
		}
	}()

	// What can run here.
	haveWrk := haveTool("wrk")
	if !haveWrk {
		if o.requireWrk {
			return rep, errors.New("wrk is not installed (scripts/install-deps.sh bench); CI=true requires it")
		}
		rep.note("wrk is not installed: no closed-loop runs (scripts/install-deps.sh bench).")
		o.conns = nil
	}
	var kinds []string
	needLB := o.profile > 0 && len(o.profileKinds) > 0
	variants := map[string]bool{}
	needBase := false
	for _, k := range o.targets {
		v, _ := parseKind(k)
		tool := map[string]string{kindHAProxy: "haproxy", kindNginx: "nginx"}[v.base]
		if tool != "" && !haveTool(tool) {
			rep.note(fmt.Sprintf("%s is not installed: target %s skipped (scripts/install-deps.sh bench).", tool, k))
			continue
		}
		kinds = append(kinds, k)
		needLB = needLB || v.base == kindGoLB
		variants[variantLog] = variants[variantLog] || v.log
		variants[variantTLS] = variants[variantTLS] || v.tls
		variants[variant2Core] = variants[variant2Core] || v.cores > 1
		needBase = needBase || v.ref
	}
	if variants[variantLog] {
		rep.note("-log targets write one line per request to a file of their own (emptied after each run), with the same fields: " +
			"go-loadbalancer its JSON access log (stdout; batched writes of up to 64 KiB), nginx a JSON log_format " +
			"(access_log buffer=64k), HAProxy a JSON log-format (log stdout: one write per line, HAProxy has no buffered file log). " +
			"Without -log, go-loadbalancer's stdout goes to /dev/null and nginx and HAProxy log nothing.")
	}
	if variants[variantTLS] {
		rep.note("-tls targets terminate TLS on the front (ECDSA P-256 certificate made at run time, TLS 1.3 only, " +
			tlsSuite + " for HAProxy and nginx, which Go's server picks itself) and speak plain HTTP to the backends; " +
			"wrk (OpenSSL) keeps its connections alive, so the closed loop measures TLS record costs, the handshake pass full handshakes.")
	}
	if variants[variant2Core] {
		rep.note(fmt.Sprintf("-2c targets run on both cores (%s: go-loadbalancer GOMAXPROCS=2, HAProxy nbthread 2, nginx 2 workers), "+
			"sharing them with wrk (2 threads) and the backends process (its affinity widened to both cores for those runs).",
			bothCores(o.proxyCPU, o.loadCPU)))
	}
	if o.lbSrc == "" {
		o.lbSrc = root
	} else if needLB {
		rep.note("go-loadbalancer was built from " + o.lbSrc + ", not from the work tree.")
	}
	if needLB && o.lbRev != "" {
		src, err := exportRev(ctx, root, o.lbRev, filepath.Join(o.out, "src"))
		if err != nil {
			return rep, err
		}
		o.lbSrc = src
		rep.setCommit(root, o.lbRev)
	}
	if needLB && o.lbBin == "" {
		o.progress("building go-loadbalancer")
		o.lbBin = filepath.Join(o.out, "go-loadbalancer")
		if err := goBuild(ctx, o.lbSrc, o.lbBin, ""); err != nil {
			return rep, err
		}
	}
	if needBase {
		if (o.baseRev == "") == (o.baseBin == "") {
			return rep, errors.New("golb-base targets need one of -base-rev and -base-bin")
		}
		if o.baseBin == "" {
			src, err := exportRev(ctx, root, o.baseRev, filepath.Join(o.out, "base-src"))
			if err != nil {
				return rep, err
			}
			o.progress("building go-loadbalancer " + o.baseRev + " for the -base targets")
			o.baseBin = filepath.Join(o.out, "go-loadbalancer-base")
			if err := goBuild(ctx, src, o.baseBin, ""); err != nil {
				return rep, err
			}
		}
		rep.note("-base targets are go-loadbalancer built from " + o.baseRev + o.baseBin + ", configured as the same target without -base.")
	}
	self, err := os.Executable()
	if err != nil {
		return rep, err
	}

	// The backends: three listeners in one process on the load core.
	var beAddrs []string
	for range backendWeights {
		p, err := freePort()
		if err != nil {
			return rep, err
		}
		beAddrs = append(beAddrs, "127.0.0.1:"+strconv.Itoa(p))
	}
	cp, err := freePort()
	if err != nil {
		return rep, err
	}
	control := "127.0.0.1:" + strconv.Itoa(cp)
	beProc, err := ps.start("backends", strconv.Itoa(o.loadCPU),
		[]string{roleEnv + "=" + roleBackends, listenEnv + "=" + strings.Join(beAddrs, ","), controlEnv + "=" + control, "GOMAXPROCS=1"},
		o.out, "", self)
	if err != nil {
		return rep, err
	}
	if err := waitFor(func() error { _, err := backendCounts(control); return err }, 10*time.Second); err != nil {
		return rep, fmt.Errorf("backends did not start: %w", err)
	}
	e := &env{procs: ps, dir: o.out, proxyCPU: o.proxyCPU, loadCPU: o.loadCPU, lbBin: o.lbBin, baseBin: o.baseBin, self: self, backends: beAddrs, parity: o.parity}

	if o.reps > 0 && len(kinds) > 0 {
		if err := measure(ctx, o, e, rep, kinds, control, beProc); err != nil {
			return rep, err
		}
	}
	if o.idle > 0 {
		if err := measureIdle(ctx, o, e, rep, kinds); err != nil {
			return rep, err
		}
	}
	if o.profile > 0 && len(o.profileKinds) > 0 {
		if !haveWrk {
			return rep, errors.New("-profile needs wrk")
		}
		if err := profileLB(ctx, o, e, rep, o.lbSrc); err != nil {
			return rep, err
		}
	}
	if len(rep.open) > 0 {
		if err := rep.plotLatency(o.plot); err != nil {
			rep.note("cannot draw the latency plot: " + err.Error())
		}
	}
	rep.finish()
	return rep, nil
}

// measure starts the targets, checks their split, and runs the interleaved closed- and
// open-loop rotations.
func measure(ctx context.Context, o *options, e *env, rep *report, kinds []string, control string, beProc *proc) error {
	var targets []*target
	for _, k := range kinds {
		t, err := e.startTarget(k, k)
		if err != nil {
			return err
		}
		targets = append(targets, t)
		if k == o.aa {
			t2, err := e.startTarget(k+"#2", k)
			if err != nil {
				return err
			}
			targets = append(targets, t2)
		}
	}
	for _, t := range targets {
		if t.v.tls {
			params, err := tlsParams(t)
			if err != nil {
				return err
			}
			rep.tlsParams = append(rep.tlsParams, [2]string{t.name, params})
		}
		if t.kind == kindDirect {
			continue
		}
		got, err := checkSplit(t, control, o.splitCheck)
		if err != nil {
			return err
		}
		rep.splits = append(rep.splits, splitRow{t.name, got})
		o.progress("%s splits %v over the 3:2:1 backends", t.name, got)
	}
	rep.targets = targets

	for r := 0; r < o.reps; r++ {
		for _, c := range o.conns {
			for _, t := range rotate(r, targets) {
				if err := ctx.Err(); err != nil {
					return err
				}
				w, cpu, beCPU, err := measureRun(ctx, o, t, beProc, t.load(o), c, o.warmup, o.duration)
				if err != nil {
					return err
				}
				run := closedRun{target: t.name, rep: r, conns: c, wrk: w, cpu: cpu, backendCPU: beCPU, logLines: t.lastLogLines}
				rep.closed = append(rep.closed, run)
				o.progress("rep %d c=%d %-10s %8.0f rps  %6.2f µs/req  p99 %v  errors %d",
					r+1, c, t.name, w.rps, run.cpuPerReq(), w.p99, w.errors)
			}
		}
	}
	if o.syscalls && len(o.conns) > 0 {
		if perfWorks() {
			for _, t := range targets {
				row, err := countSyscalls(ctx, o, t, o.conns[0])
				if err != nil {
					return err
				}
				rep.syscalls = append(rep.syscalls, row)
				o.progress("%-10s %.2f system calls per request", t.name, row.perReq["all"])
			}
		} else {
			rep.note("perf cannot count syscall tracepoints here: no system-call table.")
		}
	}
	if err := measureHandshakes(ctx, o, rep, targets, beProc); err != nil {
		return err
	}
	var openTargets []*target
	for _, t := range targets {
		if contains(o.openTargets, t.kind) && (o.openAA || !strings.Contains(t.name, "#")) {
			openTargets = append(openTargets, t)
		}
	}
	for r := 0; r < o.reps; r++ {
		for _, rate := range o.rates {
			for _, t := range rotate(r, openTargets) {
				if err := ctx.Err(); err != nil {
					return err
				}
				cpu0, err := treeCPU(t.proc.pid())
				if err != nil {
					return err
				}
				v := runVegeta(t.url(), rate, o.openDur)
				cpu1, err := treeCPU(t.proc.pid())
				if err != nil {
					return err
				}
				run := openRun{target: t.name, rep: r, rate: rate, res: v, cpu: cpu1.sub(cpu0)}
				rep.open = append(rep.open, run)
				o.progress("rep %d %5d rps %-10s achieved %8.0f  p50 %v  p99 %v  (generator late p99 %v)",
					r+1, rate, t.name, v.achieved, v.p50, v.p99, v.behind)
			}
		}
	}
	return nil
}

// measureRun runs wrk against t (after an unmeasured warm-up) and returns what it
// measured and the CPU time t's process tree and the backends used meanwhile. For a -2c
// target the backends may run on both cores during the run. t's access log is emptied
// afterwards.
func measureRun(ctx context.Context, o *options, t *target, beProc *proc, l wrkLoad, conns int, warmup, d time.Duration) (w wrkResult, cpu, beCPU cpuTime, err error) {
	if t.v.cores > 1 {
		if err := pinPID(strconv.Itoa(beProc.pid()), o.proxyCPU, o.loadCPU); err != nil {
			return w, cpu, beCPU, err
		}
		defer func() {
			if perr := pinPID(strconv.Itoa(beProc.pid()), o.loadCPU); perr != nil && err == nil {
				err = perr
			}
		}()
	}
	defer t.truncateLog()
	if warmup > 0 {
		if _, err := runWrk(ctx, l, conns, warmup, t.url()); err != nil {
			return w, cpu, beCPU, err
		}
	}
	t.truncateLog() // count only the measured run's lines
	cpu0, err := treeCPU(t.proc.pid())
	if err != nil {
		return w, cpu, beCPU, err
	}
	be0, _ := treeCPU(beProc.pid())
	w, err = runWrk(ctx, l, conns, d, t.url())
	if err != nil {
		return w, cpu, beCPU, err
	}
	cpu1, err := treeCPU(t.proc.pid())
	if err != nil {
		return w, cpu, beCPU, err
	}
	be1, _ := treeCPU(beProc.pid())
	t.lastLogLines = t.logLines()
	return w, cpu1.sub(cpu0), be1.sub(be0), nil
}

// rotate returns ts starting at its rep-th element (A B C, B C A, ...): each repetition
// starts one target later.
func rotate(rep int, ts []*target) []*target {
	n := len(ts)
	out := make([]*target, n)
	for i := range ts {
		out[i] = ts[(i+rep)%n]
	}
	return out
}

func haveTool(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// repoRoot is the directory of the go-loadbalancer module.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("cannot find the module root (run from the repository): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// goBuild builds the go-loadbalancer binary (package main at the module root) to bin,
// with an optional -overlay file.
func goBuild(ctx context.Context, root, bin, overlay string) error {
	args := []string{"build", "-o", bin}
	if overlay != "" {
		args = append(args, "-overlay", overlay)
	}
	args = append(args, ".")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cannot build go-loadbalancer: %w\n%s", err, out)
	}
	return nil
}

// exportRev writes the tree of git revision rev to dir (git archive), for a build that
// does not depend on uncommitted edits in the work tree.
func exportRev(ctx context.Context, root, rev, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", `git -C "$1" archive --format=tar "$2" | tar -x -C "$3"`, "sh", root, rev, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("cannot export revision %q: %w: %s", rev, err, out)
	}
	return dir, nil
}

func waitFor(f func() error, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
