package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// errBareLF is what a client connection's Read returns when a request head holds a line
// ended by a bare LF; serverError answers it with 400.
var errBareLF = errors.New("bare LF in the request head")

// HeadScanner wraps the data plane's outermost listener (after TLS, where requests are
// plain bytes) so that a request head with a bare-LF line end is refused at once.
// fasthttp accepts bare LF in places but waits for a CRLFCRLF to end a head, so a request
// written with LF only waited for read_timeout and got 408; the connection fails its read
// as soon as such a line arrives instead, and the client gets 400 (RFC 9112 §2.2 allows,
// never requires, a recipient to take a bare LF as a line end).
//
// The scan follows the request stream as fasthttp frames it: each head's lines, then its
// body — Content-Length bytes, or chunks up to the last one and its trailer section —
// skipped unread, then the next head. So every head of a pipelined series is judged, and
// no body byte ever is. The failing read hands fasthttp the requests before the bad head
// and one byte of it, never a whole bad head: the requests before it are answered, the bad
// one gets 400. A connection whose framing the scan cannot follow (an Upgrade, a repeated
// or unreadable Content-Length, an unreadable chunk size) is not scanned again until a
// response is written; a tunnel never is.
func HeadScanner(ln net.Listener) net.Listener { return scanListener{ln} }

type scanListener struct{ net.Listener }

func (l scanListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if _, ok := c.(tlsState); ok {
		s := &scanTLSConn{scanConn{Conn: c, length: -1}}
		return s, nil
	}
	return &scanConn{Conn: c, length: -1}, nil
}

// tlsState is what fasthttp looks for to see a TLS connection (RequestCtx.IsTLS).
type tlsState interface {
	Handshake() error
	ConnectionState() tls.ConnectionState
}

// scanState is what the scan expects next on the connection.
type scanState uint8

const (
	scanHead      scanState = iota // a request head's lines
	scanBody                       // the rest of a Content-Length body
	scanChunkLine                  // a chunk-size line
	scanChunkData                  // the rest of a chunk and its CRLF
	scanTrailer                    // trailer lines up to the blank line
	scanOff                        // not followed until a response is written
)

type scanConn struct {
	net.Conn

	wrote  atomic.Bool // a response was written (resumes a scan that is off)
	tunnel atomic.Bool // an upgraded connection: its bytes are not HTTP heads

	// Touched only by the goroutine serving the connection (its reads).
	state     scanState
	remaining int64 // scanBody, scanChunkData: bytes left to skip
	headLen   int64 // bytes of the current head read so far
	sawLine   bool  // the head's request line was read
	line      int   // bytes of the current line read so far
	last      byte  // the current line's last byte so far
	start     [48]byte
	startN    int // c.start[:startN] are the current line's first bytes
	// The framing the current head declares.
	length  int64 // Content-Length; -1 if none
	chunked bool  // Transfer-Encoding
	unknown bool  // an Upgrade, or framing the scan cannot follow

	// The last head with a body fasthttp parsed (noteHead), for serverError to log a
	// request whose body fasthttp then failed to read: fasthttp resets the request first.
	headMethod, headURI, headHost []byte
	headAt                        time.Time // zero: nothing noted
	headNum                       uint64    // ctx.ConnRequestNum() when noted
}

// noteHead keeps what the access log shows of h, the head of ctx's request.
func (c *scanConn) noteHead(ctx *fasthttp.RequestCtx, h *fasthttp.RequestHeader) {
	c.headMethod = append(c.headMethod[:0], h.Method()...)
	c.headURI = append(c.headURI[:0], h.RequestURI()...)
	c.headHost = append(c.headHost[:0], h.Host()...)
	c.headAt, c.headNum = time.Now(), ctx.ConnRequestNum()
}

// restoreHead puts back into ctx's request (which fasthttp reset) the head noted for it,
// and returns when it was parsed; or it returns now when the head noted was another
// request's, or none was. fasthttp numbers a connection's requests once their body is
// read, so a head noted for a request that failed still carries the number ctx has.
func (c *scanConn) restoreHead(ctx *fasthttp.RequestCtx, now time.Time) time.Time {
	if c.headAt.IsZero() || c.headNum != ctx.ConnRequestNum() {
		return now
	}
	h := &ctx.Request.Header
	h.SetMethodBytes(c.headMethod)
	h.SetRequestURIBytes(c.headURI)
	h.SetHostBytes(c.headHost)
	at := c.headAt
	c.headAt = time.Time{}
	return at
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

// tunnelled tells c that it carries a tunnel from now on: its bytes are not scanned.
func tunnelled(c net.Conn) {
	if s := scanned(c); s != nil {
		s.tunnel.Store(true)
	}
}

func (c *scanConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.tunnel.Load() {
		if c.state == scanOff && c.wrote.Load() {
			c.startHead()
		}
		if cut := c.scan(p[:n]); cut >= 0 {
			return cut, errBareLF
		}
	}
	return n, err
}

func (c *scanConn) startHead() {
	c.state, c.headLen, c.sawLine, c.length, c.chunked, c.unknown = scanHead, 0, false, -1, false, false
}

// scan follows the stream through b. It returns -1, or — at a head line ended by a bare
// LF — how many bytes of b to hand on with the error: those before that head and one of
// it (none if the head began in an earlier read).
func (c *scanConn) scan(b []byte) int {
	headAt := -1 // where in b the current head began
	if c.state == scanHead && c.headLen == 0 {
		headAt = 0
	}
	for i := 0; i < len(b); {
		switch c.state {
		case scanOff:
			return -1
		case scanBody, scanChunkData:
			k := min(int64(len(b)-i), c.remaining)
			i += int(k)
			if c.remaining -= k; c.remaining > 0 {
				continue
			}
			if c.state == scanChunkData {
				c.state = scanChunkLine
				continue
			}
			c.startHead()
			headAt = i
			continue
		}
		// A line: of a head, a chunk size or a trailer section.
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			c.take(b[i:])
			if c.state == scanHead {
				c.headLen += int64(len(b) - i)
			}
			return -1
		}
		c.take(b[i : i+j])
		if c.state == scanHead {
			c.headLen += int64(j + 1)
		}
		i += j + 1
		ok := c.endLine(c.line, c.line > 0 && c.last == '\r')
		c.line, c.last, c.startN = 0, 0, 0
		if !ok {
			if headAt < 0 {
				return 0
			}
			return headAt + 1
		}
		if c.state == scanHead && c.headLen == 0 {
			headAt = i // the line ended a body or a head: a new head starts here
		}
	}
	return -1
}

// take adds p to the current line.
func (c *scanConn) take(p []byte) {
	if len(p) == 0 {
		return
	}
	c.startN += copy(c.start[c.startN:], p)
	c.line += len(p)
	c.last = p[len(p)-1]
}

// endLine handles a line of n bytes (its CR included, cr whether it has one) and reports
// false for a head line ended by a bare LF.
func (c *scanConn) endLine(n int, cr bool) bool {
	switch c.state {
	case scanHead:
		switch {
		case !c.sawLine && n <= 1:
			// An empty line before the request line (RFC 9112 §2.2).
		case !cr:
			return false
		case !c.sawLine:
			c.sawLine = true
		case n == 1:
			c.endHead()
		default:
			c.field(n - 1)
		}
	case scanChunkLine:
		size, ok := chunkSize(c.start[:c.startN])
		switch {
		case !ok:
			c.off()
		case size == 0:
			c.state = scanTrailer
		default:
			c.state, c.remaining = scanChunkData, size+2
		}
	case scanTrailer:
		if n <= 1 {
			c.startHead()
		}
	}
	return true
}

// field notes what a header line of n bytes (CR excluded) says about framing.
func (c *scanConn) field(n int) {
	line := c.start[:min(c.startN, n)]
	if len(line) == 0 || line[0]|0x20 != 'c' && line[0]|0x20 != 't' && line[0]|0x20 != 'u' {
		return // fast path: no name looked for starts so
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return // a longer name than any looked for, or no field: the handler judges it
	}
	name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
	switch {
	case eqFold(name, "content-length"):
		v, ok := decimal(value)
		if !ok || n > len(c.start) || c.length >= 0 {
			c.unknown = true
		}
		c.length = v
	case eqFold(name, "transfer-encoding"):
		c.chunked = true
	case eqFold(name, "upgrade"):
		c.unknown = true
	}
}

// endHead starts on what follows the head: its body, or the next head.
func (c *scanConn) endHead() {
	switch {
	case c.unknown || c.chunked && c.length >= 0:
		c.off()
	case c.chunked:
		c.state = scanChunkLine
	case c.length > 0:
		c.state, c.remaining = scanBody, c.length
	default:
		c.startHead()
	}
}

func (c *scanConn) off() {
	c.state = scanOff
	c.wrote.Store(false)
}

// decimal parses a Content-Length value: 1 to 18 digits.
func decimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, false
		}
		v = v*10 + int64(d-'0')
	}
	return v, true
}

// chunkSize parses the hex size at the start of a chunk-size line (RFC 9112 §7.1): 1 to
// 15 digits, then the end of the line, an extension or whitespace. What follows the digits
// is not checked here.
func chunkSize(line []byte) (int64, bool) {
	size, n := hexSize(line)
	return size, n > 0
}

// hexSize parses the chunk size that b begins with: it returns the size and how many hex
// digits it took, or 0 digits when b begins with none or with more than 15 (a size past
// int64, or one nobody sends).
func hexSize(b []byte) (size int64, digits int) {
	for _, d := range b {
		var v byte
		switch {
		case d >= '0' && d <= '9':
			v = d - '0'
		case d >= 'a' && d <= 'f':
			v = d - 'a' + 10
		case d >= 'A' && d <= 'F':
			v = d - 'A' + 10
		default:
			return size, digits
		}
		if digits == 15 {
			return 0, 0
		}
		size = size<<4 | int64(v)
		digits++
	}
	return size, digits
}

func (c *scanConn) Write(p []byte) (int, error) {
	// An interim 100 Continue is followed by the body, not by a new head.
	if !bytes.HasPrefix(p, interim100) {
		c.wrote.Store(true)
	}
	return c.Conn.Write(p)
}

var interim100 = []byte("HTTP/1.1 100 ")
