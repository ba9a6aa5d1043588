package state

import (
	"sync/atomic"
	"time"
)

// Stats are a backend's runtime counters. They belong to the backend ID, not to a table:
// a reload that keeps the backend keeps its counters. All fields are atomics, safe for
// concurrent use.
type Stats struct {
	Inflight atomic.Int64  // requests being served now
	Requests atomic.Uint64 // requests sent, retries included
	Failures atomic.Uint64 // connection errors, timeouts and 5xx responses
	Breaker  Breaker
}

// PoolStats are a pool's runtime counters, shared by every table with a pool of that name.
type PoolStats struct {
	Requests atomic.Uint64 // requests routed to the pool (not retries)
	Retries  atomic.Uint64 // retries sent
	Budget   Window        // requests (a) and retries (b) over the last 10 s
	Ejection EjectionGuard
}

// RetryBudgetWindow is the window of the retry budget (retry.budget_ratio).
const RetryBudgetWindow = 10 * time.Second

// AllowRetry reports whether the pool's retry budget allows one more retry at now and, if
// so, counts it: retries may be up to ratio × requests over the last 10 s, and never fewer
// than 3 per second (Envoy's retry budget with its minimum).
func (ps *PoolStats) AllowRetry(now int64, ratio float64) bool {
	reqs, retries := ps.Budget.Sum(now)
	limit := uint64(ratio * float64(reqs))
	if floor := uint64(3 * RetryBudgetWindow / time.Second); limit < floor {
		limit = floor
	}
	if retries >= limit {
		return false
	}
	ps.Budget.Add(now, 0, 1)
	ps.Retries.Add(1)
	return true
}

// CountRequest counts a request routed to the pool at now, for the retry budget.
func (ps *PoolStats) CountRequest(now int64) {
	ps.Requests.Add(1)
	ps.Budget.Add(now, 1, 0)
}
