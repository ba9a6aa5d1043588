package proxy

import "time"

// A backend connection's deadline is moved before every request (transport.go:
// roundTrip), and each move is a runtime timer update under a lock. On a busy pooled
// connection the new deadline is only microseconds after the armed one, so upConn moves
// it only when it must: SetDeadline arms t+slack, and keeps the armed deadline for a later
// t as long as that one fires no earlier than t and at most slack after it. A response
// timeout then fires between its time and slack after it (slack is 1/16 of it), never
// early — nginx's timers are coarse the same way.

// lazyDeadline returns the deadline to arm for t given the one armed (zero: none known),
// and whether it must be armed at all.
func lazyDeadline(armed, t time.Time, slack time.Duration) (time.Time, bool) {
	if t.IsZero() || slack <= 0 {
		return t, true
	}
	if !armed.IsZero() && !armed.Before(t) && armed.Sub(t) <= slack {
		return armed, false
	}
	return t.Add(slack), true
}

// deadlineSlack is how late a lazily moved response timeout may fire.
func deadlineSlack(timeout time.Duration) time.Duration { return timeout / 16 }

// SetDeadline implements net.Conn, moving the deadline lazily (lazyDeadline).
func (c *upConn) SetDeadline(t time.Time) error {
	d, arm := lazyDeadline(c.armed, t, c.slack)
	if !arm {
		return nil
	}
	err := c.Conn.SetDeadline(d)
	c.armed = armedAfter(d, err)
	return err
}

// armedAfter is the deadline known armed once arming d returned err: d, or none (zero)
// when arming failed or d clears the deadline.
func armedAfter(d time.Time, err error) time.Time {
	if err != nil {
		return time.Time{}
	}
	return d
}

// SetReadDeadline implements net.Conn; the read and write deadlines may differ from now
// on, so the next SetDeadline arms its own.
func (c *upConn) SetReadDeadline(t time.Time) error {
	c.armed = time.Time{}
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline implements net.Conn, as SetReadDeadline.
func (c *upConn) SetWriteDeadline(t time.Time) error {
	c.armed = time.Time{}
	return c.Conn.SetWriteDeadline(t)
}
