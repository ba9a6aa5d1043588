package proxy

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ConnLimits cap the data plane's client connections (tunnels included); zero means no cap.
type ConnLimits struct {
	Max   int // server.max_conns
	PerIP int // server.max_conns_per_ip, by the connection's peer address
}

// Accept retry delays: like net/http's Server.Serve, 5 ms doubling up to 1 s.
const (
	acceptDelayMin = 5 * time.Millisecond
	acceptDelayMax = time.Second
)

// Listener returns ln for Serve (wrap it in proxy.Listener and TLS after): it survives
// failed accepts and caps connections. A failed accept — out of descriptors (EMFILE,
// ENFILE), kernel buffers (ENOBUFS, ENOMEM), a connection reset before it was accepted — is
// counted, logged once per burst, and retried after a pause, while the connections
// already open go on being served. fasthttp's own accept loop returns on such an error,
// which ended the process. Accept returns an error only once ln is closed (Stop,
// ShutdownWithContext).
//
// A connection over server.max_conns or server.max_conns_per_ip is closed at once, before
// a byte is read from it (before a TLS handshake), and counted.
func (s *Server) Listener(ln net.Listener) net.Listener {
	l := &listener{Listener: ln, s: s, perIP: map[netip.Addr]int32{}}
	s.mu.Lock()
	s.lns = append(s.lns, l)
	s.mu.Unlock()
	return l
}

type listener struct {
	net.Listener
	s *Server

	mu    sync.Mutex
	perIP map[netip.Addr]int32 // open connections by peer, only with limits.PerIP

	closeOnce sync.Once
	closeErr  error
}

// Close closes the listener once; Stop closes it before fasthttp's ShutdownWithContext
// does again, which must not see an error. A listener already closed from under the
// server (its Serve then returned) is closed too, not an error: else the shutdown that
// follows logs a timeout that did not happen.
func (l *listener) Close() error {
	l.closeOnce.Do(func() {
		if err := l.Listener.Close(); !errors.Is(err, net.ErrClosed) {
			l.closeErr = err
		}
	})
	return l.closeErr
}

func (l *listener) Accept() (net.Conn, error) {
	var delay time.Duration
	var failed uint64 // accept errors in this burst
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if closed(err) {
				return nil, err
			}
			l.s.Stats.AcceptErrors.Add(1)
			if failed++; failed == 1 {
				l.s.log.Error().Err(err).Msg("cannot accept connections: retrying with a backoff; open connections are still served (lb_accept_errors_total counts each failure)")
			}
			delay = min(max(2*delay, acceptDelayMin), acceptDelayMax)
			time.Sleep(delay)
			continue
		}
		if failed > 0 {
			l.s.log.Info().Uint64("accept_errors", failed).Msg("accepting connections again")
			failed, delay = 0, 0
		}
		if wc := l.admit(c); wc != nil {
			return wc, nil
		}
	}
}

// closed reports whether err says the listener was closed: net.ErrClosed, or the same
// text from listeners that do not wrap it (fasthttputil's in-memory one; fasthttp's own
// accept loop matches the text too).
func closed(err error) bool {
	return errors.Is(err, net.ErrClosed) || err == io.EOF || strings.Contains(err.Error(), "use of closed network connection")
}

// admit counts c against the limits and returns it wrapped so that Close gives its place
// back, or closes it and returns nil when a limit is reached.
func (l *listener) admit(c net.Conn) net.Conn {
	st, lim := &l.s.Stats, l.s.limits
	if n := st.Conns.Add(1); lim.Max > 0 && n > int64(lim.Max) {
		st.Conns.Add(-1)
		st.ConnsOverLimit.Add(1)
		_ = c.Close()
		return nil
	}
	wc := &conn{Conn: c, l: l}
	if lim.PerIP > 0 {
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			ip, _ := netip.AddrFromSlice(ta.IP)
			wc.ip = ip.Unmap()
			l.mu.Lock()
			n := l.perIP[wc.ip] + 1
			if n <= int32(lim.PerIP) {
				l.perIP[wc.ip] = n
			}
			l.mu.Unlock()
			if n > int32(lim.PerIP) {
				st.Conns.Add(-1)
				st.ConnsOverPerIP.Add(1)
				_ = c.Close()
				return nil
			}
		}
	}
	return wc
}

// conn is an admitted client connection; its first Close gives its place back.
type conn struct {
	net.Conn
	l      *listener
	ip     netip.Addr // valid when counted per IP
	closed atomic.Bool

	// The write deadline armed by SetWriteDeadline (zero: none known) and how much later
	// than asked it was armed (deadline.go).
	writeArmed time.Time
	writeSlack time.Duration
}

// SetWriteDeadline implements net.Conn. fasthttp moves the write deadline before every
// response; it is moved only when the armed one would fire earlier than t or more than
// 1/16 of the write timeout after it (lazyDeadline), so write_timeout fires up to 1/16
// of itself late, never early.
func (c *conn) SetWriteDeadline(t time.Time) error {
	d, arm := lazyDeadline(c.writeArmed, t, c.writeSlack)
	if !arm {
		return nil
	}
	if !t.IsZero() {
		// The slack is 1/16 of how far off t is, taken only when a deadline is armed:
		// one clock read, not one per response.
		c.writeSlack = max(deadlineSlack(time.Until(t)), 0)
		d = t.Add(c.writeSlack)
	}
	err := c.Conn.SetWriteDeadline(d)
	c.writeArmed = armedAfter(d, err)
	return err
}

// SetDeadline implements net.Conn; the next SetWriteDeadline arms its own.
func (c *conn) SetDeadline(t time.Time) error {
	c.writeArmed = time.Time{}
	return c.Conn.SetDeadline(t)
}

func (c *conn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.s.Stats.Conns.Add(-1)
		if c.ip.IsValid() {
			c.l.mu.Lock()
			if n := c.l.perIP[c.ip] - 1; n > 0 {
				c.l.perIP[c.ip] = n
			} else {
				delete(c.l.perIP, c.ip)
			}
			c.l.mu.Unlock()
		}
	}
	return c.Conn.Close()
}

// CloseWrite shuts the write side, for a lingering close (linger.go).
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
