package proxy

import (
	"crypto/tls"
	"net"
	"sync/atomic"
)

// ConnStats counts the data plane's accepted client connections and TLS handshakes
// (HAProxy's frontend conn_tot and ssl handshake counters). The connections open now are
// counted once, by the Server's listener (ServerStats.Conns), which holds them to
// server.max_conns. Safe for concurrent use; the zero value is ready.
type ConnStats struct {
	accepted, handshakes, handshakeErrors atomic.Uint64
}

// Accepted returns how many client connections were accepted.
func (s *ConnStats) Accepted() uint64 { return s.accepted.Load() }

// Handshakes returns how many TLS handshakes completed.
func (s *ConnStats) Handshakes() uint64 { return s.handshakes.Load() }

// HandshakeErrors returns how many TLS handshakes failed (a bad or untrusted client
// certificate, no shared version or cipher, a client that went away mid-handshake).
func (s *ConnStats) HandshakeErrors() uint64 { return s.handshakeErrors.Load() }

// Listener returns ln counting its connections; with c, it also serves TLS with c, as
// tls.NewListener does, and counts the handshakes. Wrap ln in proxy.Listener first: the
// TLS connections it returns unwrap (NetConn) to the lingering one.
func (s *ConnStats) Listener(ln net.Listener, c *tls.Config) net.Listener {
	return &countedListener{Listener: ln, s: s, tls: c}
}

type countedListener struct {
	net.Listener
	s   *ConnStats
	tls *tls.Config
}

func (l *countedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.s.accepted.Add(1)
	if l.tls == nil {
		return c, nil
	}
	return &tlsConn{Conn: tls.Server(c, l.tls), s: l.s}, nil
}

// tlsConn is a server TLS connection whose handshake, run by its first Read or Write, is
// counted. It keeps *tls.Conn's Handshake and ConnectionState, which fasthttp looks for
// (RequestCtx.IsTLS, client certificates).
type tlsConn struct {
	*tls.Conn
	s    *ConnStats
	done atomic.Bool
}

func (c *tlsConn) handshake() error {
	if c.done.Load() || !c.done.CompareAndSwap(false, true) {
		return nil // done or being done: tls.Conn's Read and Write wait for it themselves
	}
	err := c.Conn.Handshake()
	if err != nil {
		c.s.handshakeErrors.Add(1)
	} else {
		c.s.handshakes.Add(1)
	}
	return err
}

func (c *tlsConn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *tlsConn) Write(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
