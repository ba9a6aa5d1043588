package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

type closedRun struct {
	target     string
	rep        int
	conns      int
	wrk        wrkResult
	cpu        cpuTime // of the target's process tree during the run
	backendCPU cpuTime // of the backends process during the run
	logLines   int64   // access-log lines written during the run; -1 without a log
}

func (r closedRun) cpuPerReq() float64 { return perReq(r.cpu.total(), r.wrk.requests) }

type openRun struct {
	target string
	rep    int
	rate   int
	res    openResult
	cpu    cpuTime
}

type splitRow struct {
	target string
	counts []uint64
}

// profileResult is the pprof summary of go-loadbalancer under wrk.
type profileResult struct {
	target   string
	conns    int
	duration time.Duration
	rps      float64
	cpu      cpuTime
	requests int64
	top      string // go tool pprof -top
	file     string
}

// report collects everything measured and prints it as markdown.
type report struct {
	o         *options
	started   time.Time
	elapsed   time.Duration
	machine   [][2]string
	notes     []string
	targets   []*target
	splits    []splitRow
	closed    []closedRun
	open      []openRun
	profiles  []*profileResult
	hs        []hsRun
	tlsParams [][2]string // target, what its TLS handshake negotiated
	idle      []idleRow
	syscalls  []syscallRow
	loadEnd   string
}

func perReq(d time.Duration, n int64) float64 {
	if n <= 0 {
		return 0
	}
	return us(d) / float64(n)
}

func newReport(o *options, root string) *report {
	r := &report{o: o, started: time.Now()}
	cpuModel := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpuModel = strings.TrimSpace(v)
				break
			}
		}
	}
	commit := "unknown"
	if out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
		if out, _ := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); len(out) > 0 {
			commit += " (with uncommitted changes)"
		}
	}
	kernel := versionOf("uname", "-r")
	r.machine = [][2]string{
		{"date", r.started.UTC().Format("2006-01-02 15:04 MST")},
		{"commit", commit},
		{"cpu", fmt.Sprintf("%d × %s", runtime.NumCPU(), cpuModel)},
		{"kernel", kernel},
		{"go", runtime.Version()},
		{"wrk", versionOf("wrk", "-v")},
		{"haproxy", versionOf("haproxy", "-v")},
		{"nginx", versionOf("nginx", "-v")},
		{"load average at start", loadAvg()},
	}
	return r
}

// setCommit records that go-loadbalancer was built from revision rev, not the work tree.
func (r *report) setCommit(root, rev string) {
	c := rev
	if out, err := exec.Command("git", "-C", root, "rev-parse", "--short", rev).Output(); err == nil {
		c = strings.TrimSpace(string(out))
	}
	for i := range r.machine {
		if r.machine[i][0] == "commit" {
			r.machine[i][1] = c + " (go-loadbalancer built from -lb-rev " + rev + ")"
		}
	}
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func (r *report) note(s string) { r.notes = append(r.notes, s) }

func (r *report) finish() {
	r.elapsed = time.Since(r.started)
	r.loadEnd = loadAvg()
}

// targetNames returns the targets in first-repetition order.
func (r *report) targetNames() []string {
	var names []string
	for _, t := range r.targets {
		names = append(names, t.name)
	}
	return names
}

func (r *report) markdown(w io.Writer) {
	o := r.o
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("## Benchmark run\n\n")
	p("| | |\n|---|---|\n")
	for _, m := range r.machine {
		p("| %s | %s |\n", m[0], m[1])
	}
	if r.loadEnd != "" {
		p("| load average at end | %s |\n", r.loadEnd)
		p("| duration | %s |\n", r.elapsed.Round(time.Second))
	}
	p("\nCommand: `go run ./bench %s`\n\n", strings.Join(o.args, " "))
	p("Placement: proxy on core %d (alone); wrk, vegeta and the backends process on core %d. "+
		"Repetitions: %d, interleaved. Closed loop: wrk -t1, %v per run after a %v warm-up. "+
		"Open loop: vegeta, %v per run. Results: `%s`.\n\n",
		o.proxyCPU, o.loadCPU, o.reps, o.duration, o.warmup, o.openDur, relPath(o.out))
	for _, n := range r.notes {
		p("- Note: %s\n", n)
	}
	if len(r.notes) > 0 {
		p("\n")
	}
	if len(r.tlsParams) > 0 {
		p("### TLS negotiated (a Go client offering X25519 and every TLS 1.3 suite, as wrk's OpenSSL does)\n\n| target | version, suite, key exchange, certificate |\n|---|---|\n")
		for _, tp := range r.tlsParams {
			p("| %s | %s |\n", tp[0], tp[1])
		}
		p("\n")
	}
	if len(r.splits) > 0 {
		p("### 3:2:1 check (%d sequential requests through each proxy)\n\n| target | backend 1 (w3) | backend 2 (w2) | backend 3 (w1) |\n|---|---|---|---|\n", o.splitCheck)
		for _, s := range r.splits {
			p("| %s | %d | %d | %d |\n", s.target, s.counts[0], s.counts[1], s.counts[2])
		}
		p("\n")
	}
	for _, c := range o.conns {
		r.closedTable(w, c)
	}
	if len(o.conns) > 0 && len(r.closed) > 0 {
		r.ratioTable(w)
		r.logLinesTable(w)
	}
	if len(r.syscalls) > 0 {
		r.syscallTable(w)
	}
	if len(r.open) > 0 {
		r.openTable(w)
	}
	if len(r.hs) > 0 {
		r.handshakeTable(w, false)
		r.handshakeTable(w, true)
	}
	for _, pr := range r.profiles {
		r.profileSection(w, pr)
	}
	if len(r.idle) > 0 {
		p("### Memory per idle keep-alive connection (-idle %d)\n\n| target | connections | RSS before | RSS after | per connection |\n|---|---|---|---|---|\n", o.idle)
		for _, row := range r.idle {
			p("| %s | %d | %.1f MiB | %.1f MiB | %.1f KiB |\n", row.name, row.conns, float64(row.before)/(1<<20), float64(row.after)/(1<<20), row.perConn()/1024)
		}
		p("\n")
	}
}

func (r *report) closedTable(w io.Writer, c int) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	var any bool
	for _, run := range r.closed {
		any = any || run.conns == c
	}
	if !any {
		return
	}
	p("### Closed loop, c=%d (median (min–max) over repetitions)\n\n", c)
	p("| target | proxy CPU µs/req | user µs/req | kernel µs/req | rps | p50 ms | p99 ms | backends CPU µs/req | errors |\n")
	p("|---|---|---|---|---|---|---|---|---|\n")
	for _, name := range r.targetNames() {
		var cpu, usr, sys, rps, p50, p99, be []float64
		var errs int64
		for _, run := range r.closed {
			if run.target != name || run.conns != c {
				continue
			}
			cpu = append(cpu, run.cpuPerReq())
			usr = append(usr, perReq(run.cpu.user, run.wrk.requests))
			sys = append(sys, perReq(run.cpu.sys, run.wrk.requests))
			rps = append(rps, run.wrk.rps)
			p50 = append(p50, ms(run.wrk.p50))
			p99 = append(p99, ms(run.wrk.p99))
			be = append(be, perReq(run.backendCPU.total(), run.wrk.requests))
			errs += run.wrk.errors
		}
		beCol := summarize(be).format("%.2f")
		if strings.HasPrefix(name, kindDirect) {
			beCol = "(idle)"
		}
		p("| %s | **%s** | %s | %s | %s | %s | %s | %s | %d |\n", name,
			summarize(cpu).format("%.2f"), summarize(usr).format("%.2f"), summarize(sys).format("%.2f"),
			summarize(rps).format("%.0f"), summarize(p50).format("%.2f"), summarize(p99).format("%.2f"), beCol, errs)
	}
	p("\n")
}

// pairedRatios returns, for each repetition where both ran, a's CPU/req ÷ b's.
func (r *report) pairedRatios(a, b string, c int) []float64 {
	byRep := map[int]float64{}
	for _, run := range r.closed {
		if run.target == b && run.conns == c {
			byRep[run.rep] = run.cpuPerReq()
		}
	}
	var out []float64
	for _, run := range r.closed {
		if run.target == a && run.conns == c {
			if d, ok := byRep[run.rep]; ok && d > 0 {
				out = append(out, run.cpuPerReq()/d)
			}
		}
	}
	return out
}

func (r *report) ratioTable(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	names := r.targetNames()
	if !contains(names, kindGoLB) {
		return
	}
	pairs := ratioPairs(names)
	p("### CPU per request ratios (median of per-repetition ratios, (min–max))\n\n| ratio |")
	for _, c := range r.o.conns {
		p(" c=%d |", c)
	}
	p("\n|---|")
	for range r.o.conns {
		p("---|")
	}
	p("\n")
	for _, pr := range pairs {
		label := pr[0] + " ÷ " + pr[1]
		if strings.HasSuffix(pr[1], "#2") || strings.HasSuffix(pr[0], "#2") {
			label += " (A/A: the noise floor)"
		}
		p("| %s |", label)
		for _, c := range r.o.conns {
			p(" %s |", summarize(r.pairedRatios(pr[0], pr[1], c)).format("%.2f"))
		}
		p("\n")
	}
	p("\nGoal (issue 6): go-loadbalancer ÷ haproxy ≤ 0.90 at c=50 and c=256.\n\n")
}

// logLinesTable says how many access-log lines each -log target wrote per request in the
// closed loop: about 1 each, or the comparison is not like for like (a line dropped is a
// line not paid for).
func (r *report) logLinesTable(w io.Writer) {
	var names []string
	for _, name := range r.targetNames() {
		for _, run := range r.closed {
			if run.target == name && run.logLines >= 0 && !contains(names, name) {
				names = append(names, name)
			}
		}
	}
	if len(names) == 0 {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("### Access-log lines written per request (closed loop; lines still buffered at the end of a run are not counted)\n\n| target |")
	for _, c := range r.o.conns {
		p(" c=%d |", c)
	}
	p("\n|---|")
	for range r.o.conns {
		p("---|")
	}
	p("\n")
	for _, name := range names {
		p("| %s |", name)
		for _, c := range r.o.conns {
			var xs []float64
			for _, run := range r.closed {
				if run.target == name && run.conns == c && run.wrk.requests > 0 {
					xs = append(xs, float64(run.logLines)/float64(run.wrk.requests))
				}
			}
			p(" %s |", summarize(xs).format("%.3f"))
		}
		p("\n")
	}
	p("\n")
}

// ratioPairs are the ratios of CPU per request the report gives: go-loadbalancer to each
// other server with the same variants (golb-tls ÷ haproxy-tls), to direct and to its A/A
// twin; each variant to the same server without it (golb-log ÷ golb: the access log's
// cost); HAProxy's and nginx's log-on cost to go-loadbalancer's plain cost's reference,
// HAProxy (golb-log ÷ haproxy, as issue 6 tracked it).
func ratioPairs(names []string) [][2]string {
	var pairs [][2]string
	add := func(a, b string) {
		if contains(names, a) && contains(names, b) {
			pairs = append(pairs, [2]string{a, b})
		}
	}
	for _, n := range names {
		v, err := parseKind(n)
		if err != nil || v.base != kindGoLB { // the A/A twin "golb#2" is not a kind
			continue
		}
		suffix := strings.TrimPrefix(n, kindGoLB)
		if v.ref {
			plain := strings.Replace(n, "-"+variantBase, "", 1)
			add(plain, n) // the build under test ÷ the base build
			add(n, strings.Replace(plain, kindGoLB, kindHAProxy, 1))
			continue
		}
		add(n, kindHAProxy+suffix)
		add(n, kindNginx+suffix)
		if suffix == "" {
			add(n, kindDirect)
			add(n, n+"#2")
		}
	}
	for _, n := range names {
		if v, err := parseKind(n); err == nil && v.base != kindDirect && n != v.base && !v.ref {
			add(n, v.base) // what the variant costs
		}
	}
	add(kindGoLBLog, kindHAProxy)
	for _, n := range names {
		if strings.HasSuffix(n, "#2") && n != kindGoLB+"#2" {
			add(n, strings.TrimSuffix(n, "#2"))
		}
	}
	return pairs
}

// handshakeTable reports the full (resume false) or resumed handshakes of the handshake pass.
func (r *report) handshakeTable(w io.Writer, resume bool) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	var hs []hsRun
	var names []string
	for _, run := range r.hs {
		if run.resume == resume {
			hs = append(hs, run)
			if !contains(names, run.target) {
				names = append(names, run.target)
			}
		}
	}
	if len(hs) == 0 {
		return
	}
	if resume {
		p("### Resumed TLS handshakes (%d Go clients, each offering the session ticket of its last connection (TLS 1.3 PSK with X25519): a new connection, a resumed handshake and one GET with Connection: close; %v per run; median (min–max))\n\n", r.o.hsConns, r.o.handshakes)
	} else {
		p("### Full TLS handshakes (%d Go clients in the harness on the load core, no session cache, X25519: each exchange a new connection, a full TLS 1.3 handshake and one GET with Connection: close; %v per run; median (min–max))\n\n", r.o.hsConns, r.o.handshakes)
	}
	p("| target | handshakes/s | resumed | proxy CPU µs per handshake | user µs | kernel µs | **handshakes per proxy CPU-second** | errors |\n|---|---|---|---|---|---|---|---|\n")
	for _, name := range names {
		var rate, res, cpu, usr, sys, perSec []float64
		var errs int64
		for _, run := range hs {
			if run.target != name {
				continue
			}
			n := run.handshakes()
			rate = append(rate, run.wrk.rps)
			res = append(res, 100*float64(run.resumed)/float64(max(n, 1)))
			cpu = append(cpu, perReq(run.cpu.total(), n))
			usr = append(usr, perReq(run.cpu.user, n))
			sys = append(sys, perReq(run.cpu.sys, n))
			if c := run.cpu.total(); c > 0 {
				perSec = append(perSec, float64(n)/c.Seconds())
			}
			errs += run.wrk.errors
		}
		p("| %s | %s | %s %% | %s | %s | %s | **%s** | %d |\n", name, summarize(rate).format("%.0f"), summarize(res).format("%.0f"), summarize(cpu).format("%.1f"),
			summarize(usr).format("%.1f"), summarize(sys).format("%.1f"), summarize(perSec).format("%.0f"), errs)
	}
	p("\n| ratio of CPU per handshake | median (min–max) |\n|---|---|\n")
	for _, other := range []string{kindHAProxy + "-tls", kindNginx + "-tls"} {
		if !contains(names, "golb-tls") || !contains(names, other) {
			continue
		}
		byRep := map[int]float64{}
		for _, run := range hs {
			if run.target == other {
				byRep[run.rep] = perReq(run.cpu.total(), run.handshakes())
			}
		}
		var ratios []float64
		for _, run := range hs {
			if d, ok := byRep[run.rep]; ok && run.target == "golb-tls" && d > 0 {
				ratios = append(ratios, perReq(run.cpu.total(), run.handshakes())/d)
			}
		}
		p("| golb-tls ÷ %s | %s |\n", other, summarize(ratios).format("%.2f"))
	}
	p("\n")
}

func (r *report) syscallTable(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("### System calls per request (perf stat on the target's processes, wrk c=%d, one separate run each)\n\n", r.o.conns[0])
	p("| target | all |")
	for _, e := range syscallEvents[1:] {
		p(" %s |", e.label)
	}
	p("\n|---|---|")
	for range syscallEvents[1:] {
		p("---|")
	}
	p("\n")
	for _, row := range r.syscalls {
		p("| %s | **%.2f** |", row.target, row.perReq["all"])
		for _, e := range syscallEvents[1:] {
			p(" %.2f |", row.perReq[e.label])
		}
		p("\n")
	}
	p("\n")
}

func (r *report) openTable(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("### Open loop (vegeta; latency from the scheduled send time; median (min–max))\n\n")
	p("| rate | target | achieved rps | p50 ms | p99 ms | p99.9 ms | max ms | p99 from send ms | generator late p99 ms | proxy CPU µs/req |\n")
	p("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, rate := range r.o.rates {
		for _, name := range r.targetNames() {
			var ach, p50, p99, p999, mx, cpu, late, sp99 []float64
			limited := 0
			for _, run := range r.open {
				if run.target != name || run.rate != rate {
					continue
				}
				ach = append(ach, run.res.achieved)
				p50 = append(p50, ms(run.res.p50))
				p99 = append(p99, ms(run.res.p99))
				p999 = append(p999, ms(run.res.p999))
				mx = append(mx, ms(run.res.max))
				cpu = append(cpu, perReq(run.cpu.total(), run.res.okAll))
				late = append(late, ms(run.res.behind))
				sp99 = append(sp99, ms(run.res.sendP99))
				if run.res.achieved < 0.97*float64(rate) || run.res.behind > 5*time.Millisecond {
					limited++
				}
			}
			if len(ach) == 0 {
				continue
			}
			if limited > 0 {
				name += fmt.Sprintf(" ⚠ %d/%d", limited, len(ach))
			}
			p("| %d | %s | %s | %s | **%s** | %s | %s | %s | %s | %s |\n", rate, name,
				summarize(ach).format("%.0f"), summarize(p50).format("%.2f"), summarize(p99).format("%.2f"),
				summarize(p999).format("%.2f"), summarize(mx).format("%.1f"), summarize(sp99).format("%.2f"),
				summarize(late).format("%.2f"), summarize(cpu).format("%.2f"))
		}
	}
	p("\nLatencies are measured from each request's scheduled send time (no coordinated omission), so "+
		"they include the generator's own lateness (its p99 is the last column but one); \"p99 from send\" "+
		"is vegeta's latency from the actual send. ⚠ n/m: in n of m runs the generator fell behind "+
		"(achieved < 97%% of the rate, or sent more than 5 ms late at p99): those latencies are the "+
		"load generator's, not the target's.\n\n![latency vs rate](%s)\n\n", relPath(r.o.plot))
}

func (r *report) profileSection(w io.Writer, pr *profileResult) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	tot := pr.cpu.total()
	split := pr.cpu.user + pr.cpu.sys // in clock ticks, which total need not be
	share := func(d time.Duration) float64 {
		if split == 0 {
			return 0
		}
		return 100 * float64(d) / float64(split)
	}
	p("### Where go-loadbalancer's CPU goes (pprof of %s, wrk -c%d, %v)\n\n", pr.target, pr.conns, pr.duration)
	p("%.0f rps; %.2f µs/req; user %.0f%% / kernel %.0f%% of the process's CPU (/proc utime vs stime). Profile: `%s`.\n\n",
		pr.rps, perReq(tot, pr.requests), share(pr.cpu.user), share(pr.cpu.sys), relPath(pr.file))
	p("```\n%s```\n\n", pr.top)
}

func relPath(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if rel, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return p
}
