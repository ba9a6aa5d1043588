package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
)

// errBareLF is what a client connection's Read returns when a request head holds a line
// ended by a bare LF; serverError answers it with 400.
var errBareLF = errors.New("bare LF in the request head")

// HeadScanner wraps the data plane's outermost listener (after TLS, where requests are
// plain bytes) so that a request head with a bare-LF line end is refused at once.
// fasthttp accepts bare LF in places but waits for a CRLFCRLF to end a head, so a request
// written with LF only waited for read_timeout and got 408; the connection fails its read
// as soon as such a line arrives instead, and the client gets 400 (RFC 9112 §2.2 allows,
// never requires, a recipient to take a bare LF as a line end). Only heads are looked at: a head ends at its blank line, the
// next begins after a response is written, and an upgraded connection is left alone. A
// pipelined head already read with the request before it is not seen here; the handler's
// own scan (scanRequestHeaders) still refuses a bare LF in its header lines.
func HeadScanner(ln net.Listener) net.Listener { return scanListener{ln} }

type scanListener struct{ net.Listener }

func (l scanListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if _, ok := c.(tlsState); ok {
		return &scanTLSConn{scanConn{Conn: c, head: true}}, nil
	}
	return &scanConn{Conn: c, head: true}, nil
}

// tlsState is what fasthttp looks for to see a TLS connection (RequestCtx.IsTLS).
type tlsState interface {
	Handshake() error
	ConnectionState() tls.ConnectionState
}

type scanConn struct {
	net.Conn

	wrote  atomic.Bool // a response was written since the last read: a new head comes next
	tunnel atomic.Bool // an upgraded connection: its bytes are not HTTP heads

	// Touched only by the goroutine serving the connection (its reads and its handler).
	bareLF  bool // a head line ended by a bare LF was read
	head    bool // reading a request head
	sawLine bool // a non-empty line of this head was read
	line    int  // bytes of the current line read so far
	last    byte // the last byte read
	tail    [10]byte
	tailN   int // c.tail[:tailN] are the last bytes of the current line
}

// scanTLSConn keeps the TLS connection's methods fasthttp looks for.
type scanTLSConn struct{ scanConn }

func (c *scanTLSConn) Handshake() error { return c.Conn.(tlsState).Handshake() }

func (c *scanTLSConn) ConnectionState() tls.ConnectionState {
	return c.Conn.(tlsState).ConnectionState()
}

// NetConn returns the wrapped connection (lingerOnClose unwraps through it).
func (c *scanConn) NetConn() net.Conn { return c.Conn }

// scanned returns the scanConn that c (ctx.Conn() of a request) is, or nil.
func scanned(c net.Conn) *scanConn {
	switch s := c.(type) {
	case *scanConn:
		return s
	case *scanTLSConn:
		return &s.scanConn
	}
	return nil
}

// sawBareLF reports whether a bare LF ended a line of a request head read on c. fasthttp
// may have parsed the request from what was read before the failing read's error
// surfaced (it takes a bare LF after the request line), so the handler asks too.
func sawBareLF(c net.Conn) bool {
	s := scanned(c)
	return s != nil && s.bareLF
}

// tunnelled tells c that it carries a tunnel from now on: its bytes are not scanned.
func tunnelled(c net.Conn) {
	if s := scanned(c); s != nil {
		s.tunnel.Store(true)
	}
}

func (c *scanConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.tunnel.Load() {
		if c.wrote.Load() {
			c.wrote.Store(false)
			c.head, c.sawLine, c.line, c.last, c.tailN = true, false, 0, 0, 0
		}
		if c.head && !c.scanHead(p[:n]) {
			c.bareLF = true
			return n, errBareLF
		}
	}
	return n, err
}

// scanHead follows the lines of a request head through b and reports false at a line
// ended by a bare LF. Empty lines before the request line are skipped (RFC 9112 §2.2). A
// first line that is not a request line ("... HTTP/1.x") stops the scan for this head:
// those bytes are not a head this scan understands — the rest of a pipelined request's
// body, say — and fasthttp judges them. The head ends at its blank line; what follows, a
// body, is not looked at.
func (c *scanConn) scanHead(b []byte) bool {
	for len(b) > 0 {
		j := bytes.IndexByte(b, '\n')
		if j < 0 {
			c.line += len(b)
			c.last = b[len(b)-1]
			c.keepTail(b)
			return true
		}
		c.keepTail(b[:j])
		cr := c.last == '\r'
		if j > 0 {
			cr = b[j-1] == '\r'
		}
		n := c.line + j // the line's bytes, its CR included
		switch {
		case !c.sawLine && n <= 1:
			// An empty line before the request line.
		case !c.sawLine:
			if !c.requestLine(cr) {
				c.head = false
				return true
			}
			c.sawLine = true
			if !cr {
				return false
			}
		case n == 1 && cr:
			c.head = false // the blank line: end of the head
			return true
		case !cr:
			return false
		}
		c.line, c.last, c.tailN, b = 0, '\n', 0, b[j+1:]
	}
	return true
}

// keepTail appends p to the last bytes of the current line kept in c.tail.
func (c *scanConn) keepTail(p []byte) {
	if len(p) >= len(c.tail) {
		c.tailN = copy(c.tail[:], p[len(p)-len(c.tail):])
		return
	}
	keep := min(c.tailN, len(c.tail)-len(p))
	copy(c.tail[:keep], c.tail[c.tailN-keep:c.tailN])
	c.tailN = keep + copy(c.tail[keep:], p)
}

// requestLine reports whether the line just ended (its last bytes in c.tail, with the CR
// when cr) ends like a request line: " HTTP/1.1" or " HTTP/1.0".
func (c *scanConn) requestLine(cr bool) bool {
	t := c.tail[:c.tailN]
	if cr {
		t = t[:len(t)-1]
	}
	return bytes.HasSuffix(t, httpVersion11) || bytes.HasSuffix(t, httpVersion10)
}

var (
	httpVersion11 = []byte(" HTTP/1.1")
	httpVersion10 = []byte(" HTTP/1.0")
)

func (c *scanConn) Write(p []byte) (int, error) {
	// An interim 100 Continue is followed by the body, not by a new head.
	if !bytes.HasPrefix(p, interim100) {
		c.wrote.Store(true)
	}
	return c.Conn.Write(p)
}

var interim100 = []byte("HTTP/1.1 100 ")
