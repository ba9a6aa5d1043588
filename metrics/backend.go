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

const (
	slotOther   = 0
	slotClass1  = 1 // slotClass1+k-1 is class kxx, k = 1..5
	firstKnown  = 6
	codeSlots   = firstKnown + len(knownCodes)
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
	return slot, label
}()

func slotOf(code int) int {
	if code < 100 || code >= statusLimit {
		return slotOther
	}
	return int(codeSlot[code])
}

// slotClass returns the class (1..5) a slot counts, or 0 for "other".
func slotClass(s int) int {
	switch {
	case s == slotOther:
		return 0
	case s < firstKnown:
		return s - slotClass1 + 1
	}
	return knownCodes[s-firstKnown] / 100
}

// Backend holds one backend's metric handles. It belongs to the backend ID and outlives
// tables: a reload that keeps the backend keeps its counters. The zero value is not
// usable; a nil *Backend is, and records nothing. Safe for concurrent use.
type Backend struct {
	ID     string
	Pool   string
	labels string // pool="…",backend="…", built once

	set   *vm.Set // lb_requests_total{pool,backend,code} counters
	codes [codeSlots]atomic.Pointer[vm.Counter]
	mu    sync.Mutex // serialises the first use of a code (slow path)

	hist histogram // lb_request_duration_seconds
	lat  sketch    // percentiles for the JSON and the dashboard

	refs int // Acquire count, under Registry.mu
}

func newBackend(id, pool string) *Backend {
	m := &Backend{ID: id, Pool: pool, set: vm.NewSet()}
	m.labels = `pool=` + quoteLabel(pool) + `,backend=` + quoteLabel(id)
	m.hist.init("lb_request_duration_seconds", m.labels)
	m.counter(slotOf(200)) // every backend has a series from the start, for rate()
	return m
}

// Observe records one response (or error reply) of status code that took d. It is the
// request path's only metrics call: a table lookup and three atomic adds, no lock, no
// allocation (except the first time a backend answers a given code).
func (m *Backend) Observe(code int, d time.Duration) {
	if m == nil {
		return
	}
	s := slotOf(code)
	c := m.codes[s].Load()
	if c == nil {
		c = m.counter(s) // Slow path: once per backend and code.
	}
	c.Inc()
	m.hist.observe(d)
	m.lat.observe(d)
}

func (m *Backend) counter(s int) *vm.Counter {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.codes[s].Load(); c != nil {
		return c
	}
	c := m.set.NewCounter(`lb_requests_total{` + m.labels + `,code="` + slotLabel[s] + `"}`)
	m.codes[s].Store(c)
	return c
}

// Classes are response counts by status class.
type Classes struct {
	C1xx  uint64 `json:"1xx"`
	C2xx  uint64 `json:"2xx"`
	C3xx  uint64 `json:"3xx"`
	C4xx  uint64 `json:"4xx"`
	C5xx  uint64 `json:"5xx"`
	Other uint64 `json:"other"`
}

func (c *Classes) add(o Classes) {
	c.C1xx += o.C1xx
	c.C2xx += o.C2xx
	c.C3xx += o.C3xx
	c.C4xx += o.C4xx
	c.C5xx += o.C5xx
	c.Other += o.Other
}

// classes sums the code counters by class.
func (m *Backend) classes() Classes {
	var c Classes
	if m == nil {
		return c
	}
	for s := range m.codes {
		cn := m.codes[s].Load()
		if cn == nil {
			continue
		}
		n := cn.Get()
		switch slotClass(s) {
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
