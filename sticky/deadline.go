package sticky

import (
	"context"
	"sync/atomic"
	"time"
)

// deadlines hands out contexts that bound a Redis call without allocating one per call.
//
// context.WithTimeout costs a timer and three allocations; on a cache hit rueidis never
// even looks at the context. So calls share one context whose deadline is at most timeout
// away, renewed when a quarter of it has passed: each call gets between 3/4·timeout and
// timeout. The goroutine that finds the current context due for renewal wins a CAS and
// makes the next one (an allocation every timeout/4 at most, none per call); the others
// keep using the current one, which is still valid.
type deadlines struct {
	timeout  time.Duration
	cur      atomic.Pointer[deadline]
	renewing atomic.Bool
}

type deadline struct {
	ctx     context.Context
	cancel  context.CancelFunc // not called: the timer cancels ctx at its deadline
	renewAt int64              // unix nanoseconds
	expires int64
}

// get returns a context that expires no later than now+timeout and no sooner than
// now+timeout*3/4.
func (d *deadlines) get(now int64) context.Context {
	c := d.cur.Load()
	if c != nil && now < c.renewAt {
		return c.ctx // Fast path.
	}
	// Slow path: one goroutine renews; the others use the current context while it still
	// has most of its budget left.
	if d.renewing.Load() || !d.renewing.CompareAndSwap(false, true) {
		if c != nil && now < c.expires-int64(d.timeout)/2 {
			return c.ctx
		}
		return d.make(now).ctx // the current one is nearly spent (or there is none): rare
	}
	n := d.make(now)
	d.cur.Store(n)
	d.renewing.Store(false)
	return n.ctx
}

func (d *deadlines) make(now int64) *deadline {
	ctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, now+int64(d.timeout)))
	return &deadline{ctx: ctx, cancel: cancel, renewAt: now + int64(d.timeout)/4, expires: now + int64(d.timeout)}
}
