package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
)

// Status codes that get a code="NNN" series of their own. Any other code is counted in
// its class (code="2xx" … "5xx"), and a value outside 100..599 in code="other": the
// label's values stay few whatever a backend answers.
var knownCodes = [...]int{
	200, 201, 202, 204, 206,
	301, 302, 303, 304, 307, 308,
	400, 401, 403, 404, 405, 408, 409, 410, 412, 413, 415, 422, 429, 431,
	500, 501, 502, 503, 504,
}

// Cause is why a try got no response from its backend. Tries count under
// lb_requests_total{code=CAUSE} rather than under the status the client is then answered
// with: a 502 the balancer made up for a refused connection is not a backend's 502.
type Cause uint8

// The causes, with their code label.
const (
	CauseConnect        Cause = iota // "connect_error": connection refused or failed
	CauseConnectTimeout              // "connect_timeout"
	CauseBusy                        // "busy": max_conns_per_backend reached, nothing sent
	CauseSend                        // "send_error": the request could not be sent
	CauseReset                       // "reset": the backend closed the connection before answering
	CauseTimeout                     // "timeout": no response header within timeouts.response
	CauseBadResponse                 // "bad_response": a response that does not parse
	CauseClient                      // "client_error": the client's body failed or was too large
	numCauses
)

var causeLabels = [numCauses]string{"connect_error", "connect_timeout", "busy", "send_error", "reset", "timeout", "bad_response", "client_error"}

// String returns the cause's code label.
func (c Cause) String() string { return causeLabels[c] }

const (
	slotOther   = 0
	slotClass1  = 1 // slotClass1+k-1 is class kxx, k = 1..5
	firstKnown  = 6
	firstCause  = firstKnown + len(knownCodes)
	codeSlots   = firstCause + int(numCauses)
	statusLimit = 600
)

// codeSlot maps a status code to its counter slot; slotLabel gives each slot's label.
var codeSlot, slotLabel = func() (slot [statusLimit]uint8, label [codeSlots]string) {
	label[slotOther] = "other"
	for k := 1; k <= 5; k++ {
		label[slotClass1+k-1] = strconv.Itoa(k) + "xx"
		for c := k * 100; c < k*100+100; c++ {
			slot[c] = uint8(slotClass1 + k - 1)
		}
	}
	for i, c := range knownCodes {
		slot[c] = uint8(firstKnown + i)
		label[firstKnown+i] = strconv.Itoa(c)
	}
	for c := range numCauses {
		label[firstCause+int(c)] = causeLabels[c]
	}
	return slot, label
}()

func slotOf(code int) int {
	if code < 100 || code >= statusLimit {
		return slotOther
	}
	return int(codeSlot[code])
}

// slotClass returns the class (1..5) a slot counts, 0 for "other", -1 for a cause.
func slotClass(s int) int {
	switch {
	case s == slotOther:
		return 0
	case s < firstKnown:
		return s - slotClass1 + 1
	case s >= firstCause:
		return -1
	}
	return knownCodes[s-firstKnown] / 100
}

// codeCounters is one counter per code label of a metric, made on first use: the labels
// are built once, nothing is formatted per request. The zero value is not usable: init.
type codeCounters struct {
	prefix string // name{labels,code="
	set    *vm.Set
	codes  [codeSlots]atomic.Pointer[vm.Counter]
	mu     sync.Mutex // serialises the first use of a code (slow path)
}

func (cc *codeCounters) init(name, labels string) {
	cc.prefix = name + `{` + labels + `,code="`
	cc.set = vm.NewSet()
}

// inc adds one to slot s: an atomic load and add, no allocation (but the first time, which
// takes mu).
func (cc *codeCounters) inc(s int) {
	c := cc.codes[s].Load()
	if c == nil {
		c = cc.counter(s) // Slow path: once per code.
	}
	c.Inc()
}

func (cc *codeCounters) counter(s int) *vm.Counter {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if c := cc.codes[s].Load(); c != nil {
		return c
	}
	c := cc.set.NewCounter(cc.prefix + slotLabel[s] + `"}`)
	cc.codes[s].Store(c)
	return c
}

// classes sums the code counters by class; causes go to Errors.
func (cc *codeCounters) classes() Classes {
	var c Classes
	for s := range cc.codes {
		cn := cc.codes[s].Load()
		if cn == nil {
			continue
		}
		n := cn.Get()
		switch slotClass(s) {
		case -1:
			c.Errors += n
		case 1:
			c.C1xx += n
		case 2:
			c.C2xx += n
		case 3:
			c.C3xx += n
		case 4:
			c.C4xx += n
		case 5:
			c.C5xx += n
		default:
			c.Other += n
		}
	}
	return c
}

// Backend holds one backend's metric handles. It belongs to the backend ID and outlives
// tables: a reload that keeps the backend keeps its counters. The zero value is not
// usable; a nil *Backend is, and records nothing. Safe for concurrent use.
type Backend struct {
	ID     string
	Pool   string
	labels string // pool="…",backend="…", built once

	codes codeCounters // lb_requests_total{pool,backend,code}
	hist  histogram    // lb_request_duration_seconds
	lat   sketch       // percentiles for the JSON and the dashboard

	refs int // Acquire count, under Registry.mu
}

func newBackend(id, pool string) *Backend {
	m := &Backend{ID: id, Pool: pool}
	m.labels = `pool=` + quoteLabel(pool) + `,backend=` + quoteLabel(id)
	m.codes.init("lb_requests_total", m.labels)
	m.hist.init("lb_request_duration_seconds", m.labels)
	m.codes.counter(slotOf(200)) // every backend has a series from the start, for rate()
	return m
}

// Observe records one response of status code that took d. With ObserveError it is the
// request path's only per-try metrics call: an atomic load of the code's counter and four
// atomic adds (that counter, the histogram's bucket and sum, the latency sketch); no lock
// and no allocation, except the first time a backend answers a given code, when its
// counter is made under codeCounters.mu.
func (m *Backend) Observe(code int, d time.Duration) {
	if m == nil {
		return
	}
	m.codes.inc(slotOf(code))
	m.hist.observe(d)
	m.lat.observe(d)
}

// ObserveError records a try that got no response, by cause, after d.
func (m *Backend) ObserveError(c Cause, d time.Duration) {
	if m == nil {
		return
	}
	m.codes.inc(firstCause + int(c))
	m.hist.observe(d)
	m.lat.observe(d)
}

// Classes are response counts by status class.
type Classes struct {
	C1xx  uint64 `json:"1xx"`
	C2xx  uint64 `json:"2xx"`
	C3xx  uint64 `json:"3xx"`
	C4xx  uint64 `json:"4xx"`
	C5xx  uint64 `json:"5xx"`
	Other uint64 `json:"other"`
	// Errors are tries that got no response (connection errors, timeouts, resets), counted
	// by cause; a client-facing count has none.
	Errors uint64 `json:"errors"`
}

func (c *Classes) add(o Classes) {
	c.C1xx += o.C1xx
	c.C2xx += o.C2xx
	c.C3xx += o.C3xx
	c.C4xx += o.C4xx
	c.C5xx += o.C5xx
	c.Other += o.Other
	c.Errors += o.Errors
}

// classes sums the code counters by class.
func (m *Backend) classes() Classes {
	if m == nil {
		return Classes{}
	}
	return m.codes.classes()
}

// quoteLabel quotes a label value for the Prometheus text format (backslash, double
// quote and newline escaped).
func quoteLabel(v string) string {
	b := make([]byte, 0, len(v)+2)
	b = append(b, '"')
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, c)
		}
	}
	return string(append(b, '"'))
}
