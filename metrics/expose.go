package metrics

import (
	"bufio"
	"bytes"
	"cmp"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	vm "github.com/VictoriaMetrics/metrics"

	"go-loadbalancer/state"
)

// WritePrometheus writes every metric in the Prometheus text format (0.0.4), each family
// with HELP and TYPE lines: the lb_ metrics, then the process and Go runtime metrics of
// VictoriaMetrics/metrics. The output passes `promtool check metrics` with no warnings.
func (r *Registry) WritePrometheus(w io.Writer) {
	var bb bytes.Buffer
	r.writeLB(&bb)
	var proc bytes.Buffer
	vm.WriteProcessMetrics(&proc)
	annotate(&bb, proc.Bytes())
	_, _ = w.Write(bb.Bytes())
}

func (r *Registry) writeLB(w *bytes.Buffer) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.store.Load()
	var backends []*state.Backend
	var pools []*state.Pool
	if t != nil {
		backends, pools = t.Backends(), t.Pools
	}
	labels := make([]string, len(backends))
	handles := make([]*Backend, len(backends))
	for i, b := range backends {
		if m := r.handle(b.ID); m != nil {
			labels[i], handles[i] = m.labels, m
		} else {
			labels[i] = `pool=` + quoteLabel(b.Pool) + `,backend=` + quoteLabel(b.ID)
		}
	}
	gauge := func(name, help string, v func(b *state.Backend) float64) {
		family(w, name, "gauge", help)
		for i, b := range backends {
			sample(w, name, labels[i], strconv.FormatFloat(v(b), 'g', -1, 64))
		}
	}
	bool01 := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}

	// Client-facing: one answer per request, whatever it took; pools of the table in use
	// and pool="" (answered before a pool was chosen).
	fronts := make([]*Front, 0, len(r.fronts))
	for k, f := range r.fronts {
		if t != nil && frontInTable(t, k) || k == (frontKey{}) {
			fronts = append(fronts, f)
		}
	}
	slices.SortFunc(fronts, func(a, b *Front) int { return cmp.Or(cmp.Compare(a.Pool, b.Pool), cmp.Compare(a.Route, b.Route)) })
	family(w, "lb_http_requests_total", "counter", "Requests answered to clients, by pool, route (the path_prefix of the route that matched, \"\" for none) and status code (NNN, a class like 5xx for uncommon codes, or other); a retried request counts once, with the answer the client got. pool=\"\" is answered before a pool was chosen (401, 429, malformed requests).")
	for _, f := range fronts {
		f.codes.set.WritePrometheus(w)
	}
	family(w, "lb_http_request_duration_seconds", "histogram", "Time from a request's arrival until its response was ready to send (a streamed body goes on after), retries included.")
	var buf []byte
	for _, f := range fronts {
		buf = f.hist.writeTo(w, buf)
	}
	family(w, "lb_http_request_bytes_total", "counter", "Request body bytes received from clients (for a streamed body, its Content-Length).")
	for _, f := range fronts {
		w.WriteString(f.bytesInName + " " + strconv.FormatUint(f.bytesIn.Load(), 10) + "\n")
	}
	family(w, "lb_http_response_bytes_total", "counter", "Response body bytes sent to clients (a streamed body of unknown length is not counted).")
	for _, f := range fronts {
		w.WriteString(f.bytesOutName + " " + strconv.FormatUint(f.bytesOut.Load(), 10) + "\n")
	}

	family(w, "lb_requests_total", "counter", "Upstream tries by backend and outcome: the backend's status code (NNN, a class like 5xx for uncommon codes, or other), or why there was no response (connect_error, connect_timeout, busy, send_error, reset, timeout, bad_response, client_error); each try of a retried request counts.")
	for _, m := range handles {
		if m != nil {
			m.codes.set.WritePrometheus(w)
		}
	}
	family(w, "lb_request_duration_seconds", "histogram", "Time from sending a request to a backend until its response header (or the error), per try.")
	for _, m := range handles {
		if m != nil {
			buf = m.hist.writeTo(w, buf)
		}
	}
	family(w, "lb_backend_failures_total", "counter", "Tries that failed: connection errors, timeouts and 5xx responses.")
	for i, b := range backends {
		sample(w, "lb_backend_failures_total", labels[i], strconv.FormatUint(b.Stats.Failures.Load(), 10))
	}
	gauge("lb_backend_up", "1 when the backend passes its health checks, 0 when it is marked down.",
		func(b *state.Backend) float64 { return bool01(b.Healthy) })
	gauge("lb_backend_drained", "1 when an operator drained the backend (it takes no new requests).",
		func(b *state.Backend) float64 { return bool01(b.Drained) })
	gauge("lb_backend_weight", "The backend's effective weight (config or admin override).",
		func(b *state.Backend) float64 { return float64(b.Weight) })
	gauge("lb_backend_inflight", "Requests the backend is serving now.",
		func(b *state.Backend) float64 { return float64(b.Stats.Inflight.Load()) })
	gauge("lb_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
		func(b *state.Backend) float64 { return float64(b.Stats.Breaker.State()) })
	gauge("lb_breaker_state_seconds", "Time the circuit breaker has been in its current state.",
		func(b *state.Backend) float64 {
			since := b.Stats.Breaker.Since()
			if since.IsZero() || since.Before(r.start) {
				since = r.start
			}
			return now.Sub(since).Seconds()
		})

	family(w, "lb_pool_requests_total", "counter", "Requests routed to the pool (retries not included).")
	for _, p := range pools {
		if p.Stats != nil {
			sample(w, "lb_pool_requests_total", `pool=`+quoteLabel(p.Name), strconv.FormatUint(p.Stats.Requests.Load(), 10))
		}
	}
	family(w, "lb_retries_total", "counter", "Retries sent to another backend of the pool.")
	for _, p := range pools {
		if p.Stats != nil {
			sample(w, "lb_retries_total", `pool=`+quoteLabel(p.Name), strconv.FormatUint(p.Stats.Retries.Load(), 10))
		}
	}
	family(w, "lb_pool_panic", "gauge", "1 when no backend of the pool is usable and traffic goes to all of them (panic mode).")
	for _, p := range pools {
		panicking := p.Panic(now.UnixNano())
		sample(w, "lb_pool_panic", `pool=`+quoteLabel(p.Name), strconv.FormatFloat(bool01(panicking), 'g', -1, 64))
	}
	family(w, "lb_ratelimited_total", "counter", "Requests refused with 429 by the rate limiter.")
	r.global.WritePrometheus(w)

	var sc StickyCounts
	if r.sticky != nil {
		sc = r.sticky()
	}
	family(w, "lb_sticky_lookups_total", "counter", "Sticky-session lookups by result: cache_hit (client-side cache), redis (round trip), miss (no session), fallback (Redis unreachable).")
	for _, x := range []struct {
		result string
		n      uint64
	}{{"cache_hit", sc.CacheHit}, {"redis", sc.Redis}, {"miss", sc.Miss}, {"fallback", sc.Fallback}} {
		sample(w, "lb_sticky_lookups_total", `result="`+x.result+`"`, strconv.FormatUint(x.n, 10))
	}
	prev := ""
	for _, cf := range r.funcs {
		fam := cf.name
		if i := strings.IndexByte(fam, '{'); i >= 0 {
			fam = fam[:i]
		}
		if fam != prev { // the labelled series of one family are registered one after another
			family(w, fam, "counter", cf.help)
			prev = fam
		}
		w.WriteString(cf.name + " " + strconv.FormatUint(cf.f(), 10) + "\n")
	}
	for _, g := range r.gauges {
		family(w, g.name, "gauge", g.help)
		w.WriteString(g.name + " " + strconv.FormatUint(g.f(), 10) + "\n")
	}
	family(w, "lb_table_version", "gauge", "Version of the routing table in use; it increases with every reload and runtime change.")
	if t != nil {
		w.WriteString("lb_table_version " + strconv.FormatUint(t.Version, 10) + "\n")
	}
	family(w, "lb_start_time_seconds", "gauge", "When the load balancer started, in seconds since the Unix epoch.")
	w.WriteString("lb_start_time_seconds " + strconv.FormatFloat(float64(r.start.UnixNano())/1e9, 'f', 3, 64) + "\n")
}

func family(w *bytes.Buffer, name, typ, help string) {
	w.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " " + typ + "\n")
}

func sample(w *bytes.Buffer, name, labels, value string) {
	w.WriteString(name)
	if labels != "" {
		w.WriteString("{" + labels + "}")
	}
	w.WriteString(" " + value + "\n")
}

// annotate copies VictoriaMetrics' process and Go metrics (written without metadata) to
// w, giving each family HELP and TYPE lines. Its types are inferred from the samples:
// `le` buckets make a histogram, `quantile` a summary, a _total suffix a counter, anything
// else a gauge. Three of its names break Prometheus naming rules (a _count suffix on a
// counter or gauge) and are renamed.
func annotate(w *bytes.Buffer, text []byte) {
	type fam struct {
		typ   string
		lines []string
	}
	var order []string
	fams := map[string]*fam{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end < 0 {
			continue
		}
		name, rest := line[:end], line[end:]
		if nn, ok := processRenames[name]; ok {
			name = nn
		}
		base, typ := name, ""
		switch {
		case strings.HasSuffix(name, "_bucket") && strings.Contains(rest, `le="`):
			base, typ = strings.TrimSuffix(name, "_bucket"), "histogram"
		case strings.Contains(rest, `quantile="`):
			typ = "summary"
		case strings.HasSuffix(name, "_sum") || strings.HasSuffix(name, "_count"):
			b := name[:strings.LastIndexByte(name, '_')]
			if f := fams[b]; f != nil && (f.typ == "histogram" || f.typ == "summary") {
				base, typ = b, f.typ
			}
		}
		f := fams[base]
		if f == nil {
			if typ == "" {
				typ = "gauge"
				if strings.HasSuffix(base, "_total") {
					typ = "counter"
				}
			}
			f = &fam{typ: typ}
			fams[base] = f
			order = append(order, base)
		}
		f.lines = append(f.lines, name+rest)
	}
	for _, base := range order {
		f := fams[base]
		help := processHelp[base]
		if help == "" {
			help = "Process or Go runtime metric " + base + " (VictoriaMetrics/metrics)."
		}
		family(w, base, f.typ, help)
		for _, l := range f.lines {
			w.WriteString(l + "\n")
		}
	}
}

// processRenames fixes the names VictoriaMetrics gives that Prometheus' naming rules
// (and promtool) reject: a counter must end in _total, a _count suffix is only for
// histograms and summaries.
var processRenames = map[string]string{
	"go_cgo_calls_count": "go_cgo_calls_total",
	"go_gc_forced_count": "go_gc_forced_total",
	"go_cpu_count":       "go_cpus",
}

var processHelp = map[string]string{
	"go_goroutines":                          "Number of goroutines that currently exist.",
	"go_threads":                             "Number of OS threads created.",
	"go_gomaxprocs":                          "GOMAXPROCS: the number of OS threads that can run Go code at once.",
	"go_cpus":                                "Number of logical CPUs usable by the process.",
	"go_info":                                "Go version the binary was built with.",
	"go_info_ext":                            "Go compiler and target platform of the binary.",
	"go_gc_duration_seconds":                 "Summary of the stop-the-world pause durations of garbage collection cycles.",
	"go_gc_pauses_seconds":                   "Distribution of garbage collection stop-the-world pause latencies.",
	"go_sched_latencies_seconds":             "Distribution of the time goroutines have spent runnable before running.",
	"go_gc_forced_total":                     "Garbage collection cycles forced by the application.",
	"go_cgo_calls_total":                     "Calls made from Go to C.",
	"go_memlimit_bytes":                      "Go runtime soft memory limit (GOMEMLIMIT).",
	"go_memstats_alloc_bytes":                "Bytes of allocated heap objects.",
	"go_memstats_alloc_bytes_total":          "Cumulative bytes allocated for heap objects.",
	"go_memstats_heap_inuse_bytes":           "Bytes in in-use heap spans.",
	"go_memstats_heap_objects":               "Number of allocated heap objects.",
	"go_memstats_mallocs_total":              "Cumulative count of heap objects allocated.",
	"go_memstats_frees_total":                "Cumulative count of heap objects freed.",
	"go_memstats_sys_bytes":                  "Bytes of memory obtained from the OS.",
	"go_memstats_next_gc_bytes":              "Heap size target of the next garbage collection cycle.",
	"go_memstats_last_gc_time_seconds":       "When the last garbage collection finished, in seconds since the Unix epoch.",
	"process_cpu_seconds_total":              "Total user and system CPU time spent.",
	"process_cpu_seconds_user_total":         "User CPU time spent.",
	"process_cpu_seconds_system_total":       "System CPU time spent.",
	"process_resident_memory_bytes":          "Resident memory size.",
	"process_virtual_memory_bytes":           "Virtual memory size.",
	"process_start_time_seconds":             "Start time of the process since the Unix epoch.",
	"process_open_fds":                       "Number of open file descriptors.",
	"process_max_fds":                        "Maximum number of open file descriptors.",
	"process_threads":                        "Number of OS threads in the process.",
	"process_major_pagefaults_total":         "Page faults that needed disk I/O.",
	"process_minor_pagefaults_total":         "Page faults served without disk I/O.",
	"process_io_read_bytes_total":            "Bytes read by the process, page cache included.",
	"process_io_written_bytes_total":         "Bytes written by the process, page cache included.",
	"process_io_read_syscalls_total":         "Read system calls made.",
	"process_io_write_syscalls_total":        "Write system calls made.",
	"process_io_storage_read_bytes_total":    "Bytes read from storage.",
	"process_io_storage_written_bytes_total": "Bytes written to storage.",
}

// frontInTable reports whether the table has k's pool and, for a route label, a route with
// that path_prefix sending to that pool (the handles of a route a reload removed stay, but
// are not exposed).
func frontInTable(t *state.Table, k frontKey) bool {
	if t.Pool(k.pool) == nil {
		return false
	}
	if k.route == "" {
		return true
	}
	if t.Config.Env.TrafficPoliciesOff {
		return false
	}
	for _, rc := range t.Config.Routes {
		if rc.Match.PathPrefix != k.route {
			continue
		}
		if rc.Pool == k.pool {
			return true
		}
		for _, sp := range rc.Split {
			if sp.Pool == k.pool {
				return true
			}
		}
	}
	return false
}
