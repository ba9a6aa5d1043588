package proxy

import (
	"io"
	"net"
	"sync/atomic"
	"time"
)

// lingerTime bounds a lingering close: how long the proxy keeps reading (and discarding)
// what a refused client still sends after the answer, before it closes for good.
const lingerTime = 2 * time.Second

// Listener wraps the data plane's listener so that a connection closed after a client
// error closes lingering (as nginx's lingering_close does): the answer is sent, the
// write side is shut (FIN), and what the client is still sending — the rest of a body
// too large, say — is read and discarded for up to lingerTime before the socket closes.
// Without it the kernel answers those bytes with a reset, which can destroy the answer
// before the client has read it.
func Listener(ln net.Listener) net.Listener { return lingerListener{ln} }

type lingerListener struct{ net.Listener }

func (l lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lingerConn{Conn: c}, nil
}

type lingerConn struct {
	net.Conn
	linger atomic.Bool
}

// lingerOnClose marks c (the connection of a request, as fasthttp's ctx.Conn returns it)
// to close lingering; a connection not accepted through Listener is left alone.
func lingerOnClose(c net.Conn) {
	for {
		if lc, ok := c.(*lingerConn); ok {
			lc.linger.Store(true)
			return
		}
		u, ok := c.(interface{ NetConn() net.Conn }) // *tls.Conn and ConnStats' tlsConn
		if !ok {
			return
		}
		c = u.NetConn()
	}
}

// NetConn returns the wrapped connection (closeWrite unwraps through it).
func (c *lingerConn) NetConn() net.Conn { return c.Conn }

func (c *lingerConn) Close() error {
	if !c.linger.Load() {
		return c.Conn.Close()
	}
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		return c.Conn.Close()
	}
	_ = cw.CloseWrite()
	go func() {
		// The server's goroutine is not held up; this one ends within lingerTime.
		_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTime))
		_, _ = io.Copy(io.Discard, c.Conn)
		_ = c.Conn.Close()
	}()
	return nil
}
