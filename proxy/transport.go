package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Errors the transport returns; errorStatus maps them to what the client sees. They are
// sentinels so that the request path never allocates to describe a failure.
var (
	errConnect     = errors.New("cannot connect to backend")
	errDialTimeout = errors.New("cannot connect to backend: timeout")
	errNoConns     = errors.New("backend connection limit reached")
	errWrite       = errors.New("cannot send request to backend")
	errReset       = errors.New("backend closed the connection before responding")
	errRespTimeout = errors.New("backend response timeout")
	errBadResponse = errors.New("backend sent a malformed response")
	errBigHead     = errors.New("backend response head exceeds server.max_header_bytes")
	errBodyLimit   = errors.New("request body exceeds max_body_bytes")
	errClientBody  = errors.New("client failed while sending the request body")
)

// transport is a fasthttp.RoundTripper, one per backend HostClient, that streams large
// response bodies without allocating per request. fasthttp's own StreamResponseBody mode
// allocates several closures per response (client.go, transport.RoundTrip); here a body of
// known length up to bufferLimit is read whole (and the connection goes straight back to
// the pool), anything larger, chunked or close-delimited is handed to the server as a
// pooled stream that returns the connection when the server has written it out.
//
// Deadlines: the request write and the response header must each arrive within
// responseTimeout; while a body streams, each read must make progress within it (like
// nginx's proxy_read_timeout), so a long download is never cut off at a fixed time.
type transport struct {
	writeTimeout    time.Duration
	responseTimeout time.Duration
	bufferLimit     int

	// release and close are the HostClient's ReleaseConn and CloseConn, stored as
	// func(*fasthttp.clientConn) behind any because that type is unexported; roundTrip
	// asserts them back with the type inferred from AcquireConn. Set once by bind.
	release, close any
	streams        sync.Pool // *bodyStream[C]

	// cause is the text of the error behind the last failed dial or write (refused, x509,
	// timeout), which the sentinel errors the proxy works with leave out; for the log.
	cause atomic.Pointer[string]
}

// noteCause keeps err's text as the last failure's cause (an allocation, on the error
// path only).
func (t *transport) noteCause(err error) {
	s := err.Error()
	t.cause.Store(&s)
}

// lastCause returns the text of the last dial or write failure, "" if none.
func (t *transport) lastCause() string {
	if s := t.cause.Load(); s != nil {
		return *s
	}
	return ""
}

// bind stores hc's connection functions; call once before the client is used.
func (t *transport) bind(hc *fasthttp.HostClient) {
	t.release = hc.ReleaseConn
	t.close = hc.CloseConn
}

// RoundTrip implements fasthttp.RoundTripper. retry is always false: the proxy, not
// fasthttp, decides retries (on a different backend).
func (t *transport) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	// A pooled connection that the backend closed, reset or wrote to while it was idle is
	// closed and the next one taken (or a new one dialed): nothing was sent on it, so this
	// is not a retry. Each turn removes a connection from the pool, so the loop ends; the
	// bound only guards against a pool refilled as fast as it is drained.
	for range maxStaleConns {
		cc, err := hc.AcquireConn(0, false)
		if err != nil {
			t.noteCause(err)
			return false, dialError(err)
		}
		if err = roundTrip(t, hc, cc, req, resp); err != errStale {
			return false, err
		}
	}
	return false, errConnect
}

// maxStaleConns bounds how many unusable pooled connections one request discards before
// it gives up (as a connect failure: nothing was sent).
const maxStaleConns = 64

// errStale is roundTrip's answer for a pooled connection that must not be used; the
// connection was closed and the request not sent.
var errStale = errors.New("stale pooled connection")

// connHandle is the method set of fasthttp's unexported *clientConn that roundTrip uses.
type connHandle interface{ Conn() net.Conn }

func roundTrip[C connHandle](t *transport, hc *fasthttp.HostClient, cc C, req *fasthttp.Request, resp *fasthttp.Response) error {
	release, closeConn := t.release.(func(C)), t.close.(func(C))
	conn := cc.Conn()
	uc := upstreamConn(conn)
	if uc != nil && uc.used && !uc.idleClean(conn) {
		closeConn(cc)
		return errStale
	}
	if uc != nil {
		uc.slack = deadlineSlack(t.responseTimeout)
	}
	now := time.Now()
	// A body fasthttp read ahead whole (Content-Length up to bufferLimit) is written at
	// once like any other request; only a larger or chunked upload streams.
	cl := req.Header.ContentLength()
	streamingUpload := req.IsBodyStream() && (cl < 0 || cl > t.bufferLimit)
	switch {
	case streamingUpload:
		// An upload streams at the client's pace (the front server's read timeout bounds
		// the client), but each write to the backend must make progress within the
		// response timeout: a backend that stops reading gets a 504, not a hung request.
		if uc != nil {
			uc.writeTimeout = t.responseTimeout
			uc.lastWrite = time.Time{}
		} else {
			_ = conn.SetWriteDeadline(time.Time{})
		}
	case t.writeTimeout == t.responseTimeout:
		// Fast path: one deadline covers the write and the response header (the profile
		// in PERF.md showed deadline churn at ~6 % of CPU), moved lazily (deadline.go).
		_ = conn.SetDeadline(now.Add(t.responseTimeout))
	default:
		_ = conn.SetWriteDeadline(now.Add(t.writeTimeout))
	}
	bw := hc.AcquireWriter(conn)
	err := req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if uc != nil {
		uc.writeTimeout = 0
	}
	if err != nil {
		closeConn(cc)
		t.noteCause(err)
		if errors.Is(err, errBodyLimit) {
			return errBodyLimit
		}
		if errors.Is(err, errClientBody) {
			return errClientBody // the client's fault, not the backend's
		}
		if tc, ok := conn.(interface{ ConnectionState() tls.ConnectionState }); ok && !tc.ConnectionState().HandshakeComplete {
			// The TLS handshake, run by the first write, failed (an untrusted certificate,
			// say): nothing was sent, as with a refused connection.
			return errConnect
		}
		if isTimeout(err) {
			return errRespTimeout // the backend stopped reading the request
		}
		return errWrite
	}

	if streamingUpload || t.writeTimeout != t.responseTimeout {
		if streamingUpload {
			now = time.Now()
		}
		_ = conn.SetReadDeadline(now.Add(t.responseTimeout))
	}
	br := hc.AcquireReader(conn)
	ambiguous, err := readHeader(br, resp)
	if err == nil && resp.Header.StatusCode() == fasthttp.StatusSwitchingProtocols {
		// Upgrades go through tunnel; a 101 to a request that asked for none would turn
		// this connection into something that is no longer HTTP (RFC 9110 §15.2.2).
		err = errBadResponse
	}
	if err != nil {
		hc.ReleaseReader(br)
		closeConn(cc)
		return err
	}
	if req.Header.IsHead() {
		resp.SkipBody = true
	}
	cl = resp.Header.ContentLength()
	// A response framed both by Content-Length and chunked coding is read as chunked
	// (RFC 9112 §6.3), but it may be an attempt at response splitting: its connection is
	// never reused (RFC 9112 §6.1; HAProxy does the same).
	keep := !resp.Header.ConnectionClose() && !req.Header.ConnectionClose() && !ambiguous
	if resp.SkipBody || noBody(resp.Header.StatusCode()) || (cl >= 0 && cl <= t.bufferLimit) {
		if !resp.SkipBody && !noBody(resp.Header.StatusCode()) {
			err = resp.ReadBody(br, 0)
		}
		// Anything the backend sent beyond the response's framing (a body on a HEAD
		// answer, a 204 or 304, more than its Content-Length) must never be read as the
		// next request's response: the connection is closed, not pooled.
		keep = keep && br.Buffered() == 0
		hc.ReleaseReader(br)
		if err != nil {
			closeConn(cc)
			return readError(err)
		}
		if keep {
			uc.markUsed()
			release(cc)
		} else {
			closeConn(cc)
		}
		return nil
	}
	if cl == -1 {
		// A chunked body whose first chunk-size line is already here is checked before
		// the head goes to the client: a malformed one is a 502, not a broken reply.
		if err = checkFirstChunk(br); err != nil {
			hc.ReleaseReader(br)
			closeConn(cc)
			return errBadResponse
		}
	}

	// Slow path: stream the body.
	s, _ := t.streams.Get().(*bodyStream[C])
	if s == nil {
		s = &bodyStream[C]{}
	}
	*s = bodyStream[C]{
		t: t, hc: hc, cc: cc, uc: uc, conn: conn, br: br, keep: keep && cl != -2, closeDelimited: cl == -2,
		remaining: int64(max(cl, 0)), chunked: cl == -1, release: release, close: closeConn,
	}
	resp.SetBodyStream(s, cl)
	if cl == -2 {
		// Close-delimited body: the client gets it chunked.
		resp.Header.SetContentLength(-1)
	}
	return nil
}

// readHeader reads the response header, skipping interim 1xx responses (RFC 9110 §15.2)
// other than 101. ambiguous reports a chunked response that also carried Content-Length
// (fasthttp drops the Content-Length while parsing, so the raw head is looked at), or one
// whose raw head could not be seen whole: its connection must not be reused.
func readHeader(br *bufio.Reader, resp *fasthttp.Response) (ambiguous bool, err error) {
	for i := 0; ; i++ {
		var raw []byte
		if i == 0 {
			// br is fresh (nothing consumed), so what it holds stays where it is while
			// fasthttp parses: raw is the head, or the start of it, as received.
			if _, err := br.Peek(1); err == nil {
				raw, _ = br.Peek(br.Buffered())
			}
			// fasthttp waits for a CRLF CRLF that a head with bare-LF line ends never
			// sends: refuse it at once rather than at the response timeout (RFC 9112 §2.2
			// lets us; HAProxy accepts such heads, we do not guess at the framing).
			if bareLFInHead(raw) {
				return false, errBadResponse
			}
		}
		if err := resp.Header.Read(br); err != nil {
			return false, readError(err)
		}
		code := resp.Header.StatusCode()
		if code < 100 || code >= 200 || code == fasthttp.StatusSwitchingProtocols {
			// Only HTTP/1.0 and 1.1 answers are relayed (fasthttp accepts any HTTP/x.y),
			// and the client is answered in our own version: RFC 9110 §2.5 has a proxy send
			// its version, and the client frames the body by it — an "HTTP/1.0" status
			// line over the chunked body we relay would have it read to the close.
			proto := resp.Header.Protocol()
			if !bytes.Equal(proto, strHTTP11) && !bytes.Equal(proto, strHTTP10) {
				return false, errBadResponse
			}
			resp.Header.SetProtocol(strHTTP11)
			if resp.Header.ContentLength() == -1 {
				ambiguous = i > 0 || chunkedWithLength(raw)
			}
			return ambiguous, nil
		}
		// The next Read clears what this interim answer set, keeping the flags the server
		// gave the response (no default Content-Type or Date): Reset would drop them.
	}
}

// bareLFInHead reports whether the head at the start of raw (up to its first CRLF CRLF, or
// all of raw when that has not arrived) has a line ending in LF without CR.
func bareLFInHead(raw []byte) bool {
	if end := bytes.Index(raw, crlfcrlf); end >= 0 {
		raw = raw[:end]
	}
	for i := bytes.IndexByte(raw, '\n'); i >= 0; {
		if i == 0 || raw[i-1] != '\r' {
			return true
		}
		raw = raw[i+1:]
		i = bytes.IndexByte(raw, '\n')
	}
	return false
}

// chunkedWithLength reports whether the raw response head has a Content-Length field, or
// does not end within raw (then nobody can tell).
func chunkedWithLength(raw []byte) bool {
	end := bytes.Index(raw, crlfcrlf)
	if end < 0 {
		return true
	}
	head := raw[:end+2]
	for {
		i := bytes.IndexByte(head, '\n')
		if i < 0 {
			return false
		}
		head = head[i+1:]
		if len(head) > len(strContentLength) && bytes.EqualFold(head[:len(strContentLength)], strContentLength) {
			if rest := bytes.TrimLeft(head[len(strContentLength):], " \t"); len(rest) > 0 && rest[0] == ':' {
				return true
			}
		}
	}
}

var (
	crlfcrlf         = []byte("\r\n\r\n")
	strHTTP11        = []byte("HTTP/1.1")
	strHTTP10        = []byte("HTTP/1.0")
	strContentLength = []byte("Content-Length")
)

// checkFirstChunk validates the first chunk-size line of a chunked body if br already
// holds it whole; it never waits for one (a stream may send its head long before data).
func checkFirstChunk(br *bufio.Reader) error {
	b, _ := br.Peek(br.Buffered())
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		if len(b) > maxChunkLine {
			return errChunk
		}
		return nil
	}
	_, err := parseChunkSize(b[:i+1])
	return err
}

func noBody(code int) bool { return code < 200 || code == 204 || code == 304 }

func dialError(err error) error {
	switch {
	case errors.Is(err, fasthttp.ErrNoFreeConns), errors.Is(err, fasthttp.ErrConnPoolStrategyNotImpl):
		return errNoConns
	case errors.Is(err, fasthttp.ErrDialTimeout), isTimeout(err):
		return errDialTimeout
	}
	return errConnect
}

func readError(err error) error {
	switch {
	case isTimeout(err):
		return errRespTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), isConnReset(err):
		return errReset
	}
	var nr fasthttp.ErrNothingRead
	if errors.As(err, &nr) {
		return errReset
	}
	var small *fasthttp.ErrSmallBuffer
	if errors.As(err, &small) {
		return errBigHead
	}
	return errBadResponse
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, fasthttp.ErrTimeout) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isConnReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

// bodyStream is a response body read from a backend connection while the front server
// writes it to the client. CloseWithError returns the connection to the HostClient's pool
// when the body was read to its end and both sides allow keep-alive; otherwise it closes it.
type bodyStream[C connHandle] struct {
	t              *transport
	hc             *fasthttp.HostClient
	cc             C
	uc             *upConn // nil for a connection the proxy's dialer did not make
	conn           net.Conn
	br             *bufio.Reader
	release        func(C)
	close          func(C)
	remaining      int64 // bytes left of a Content-Length body or of the current chunk
	chunked        bool
	closeDelimited bool // no length: the body ends when the backend closes
	keep           bool
	done           bool // the body was read to its end
	failed         bool
	afterChunk     bool // a chunk's data was read; its CRLF is next
	lastRead       time.Time

	client        net.Conn // the client connection the body is written to, if watched
	clientTimeout time.Duration
	lastWrite     time.Time
}

// Read implements io.Reader.
func (s *bodyStream[C]) Read(p []byte) (int, error) {
	if s.done {
		return 0, io.EOF
	}
	if s.failed {
		return 0, errReset
	}
	// Each read must make progress within the response timeout, and each write to the
	// client within write_timeout (nginx's proxy_read_timeout and send_timeout): a long
	// download is never cut off at a fixed time.
	refreshDeadline(&s.lastRead, s.t.responseTimeout, s.conn.SetReadDeadline)
	if s.client != nil {
		refreshDeadline(&s.lastWrite, s.clientTimeout, s.client.SetWriteDeadline)
	}
	var n int
	var err error
	switch {
	case s.chunked:
		n, err = s.readChunked(p)
	case !s.keep && s.closeDelimited:
		n, err = s.br.Read(p)
		if err == io.EOF {
			s.done = true
			return n, io.EOF
		}
	default:
		if s.remaining == 0 {
			s.done = true
			return 0, io.EOF
		}
		if int64(len(p)) > s.remaining {
			p = p[:s.remaining]
		}
		n, err = s.br.Read(p)
		s.remaining -= int64(n)
		if err == nil && s.remaining == 0 {
			s.done = true
			return n, io.EOF
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	}
	if err != nil && err != io.EOF {
		s.failed = true
	}
	return n, err
}

// readChunked decodes RFC 9112 §7.1 chunked coding; trailers are read and dropped.
func (s *bodyStream[C]) readChunked(p []byte) (int, error) {
	if s.remaining == 0 {
		if s.afterChunk {
			if err := expectCRLF(s.br); err != nil {
				return 0, err
			}
			s.afterChunk = false
		}
		size, err := readChunkSize(s.br)
		if err != nil {
			return 0, err
		}
		if size == 0 {
			if err := skipTrailers(s.br); err != nil {
				return 0, err
			}
			s.done = true
			return 0, io.EOF
		}
		s.remaining = size
	}
	if int64(len(p)) > s.remaining {
		p = p[:s.remaining]
	}
	n, err := s.br.Read(p)
	s.remaining -= int64(n)
	if s.remaining == 0 {
		s.afterChunk = true
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

var errChunk = errors.New("malformed chunked body from backend")

// maxChunkLine bounds a chunk-size line (size plus extensions).
const maxChunkLine = 4096

func readChunkSize(br *bufio.Reader) (int64, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == io.EOF {
			return 0, io.ErrUnexpectedEOF
		}
		return 0, errChunk
	}
	return parseChunkSize(line)
}

// parseChunkSize parses a chunk-size line, CRLF included (RFC 9112 §7.1).
func parseChunkSize(line []byte) (int64, error) {
	if len(line) > maxChunkLine || len(line) < 2 || line[len(line)-2] != '\r' {
		return 0, errChunk
	}
	body := line[:len(line)-2]
	size, n := hexSize(body)
	if n == 0 {
		return 0, errChunk
	}
	// Chunk extensions (and the whitespace before them) are ignored.
	if n < len(body) && body[n] != ';' && body[n] != ' ' && body[n] != '\t' {
		return 0, errChunk
	}
	return size, nil
}

func expectCRLF(br *bufio.Reader) error {
	b, err := br.Peek(2)
	if err != nil {
		return io.ErrUnexpectedEOF
	}
	if b[0] != '\r' || b[1] != '\n' {
		return errChunk
	}
	_, _ = br.Discard(2)
	return nil
}

func skipTrailers(br *bufio.Reader) error {
	for i := 0; i < 64; i++ {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return io.ErrUnexpectedEOF
		}
		if len(line) == 2 && line[0] == '\r' {
			return nil
		}
	}
	return errChunk
}

// watchClient makes the stream keep c's write deadline timeout ahead while it is read.
func (s *bodyStream[C]) watchClient(c net.Conn, timeout time.Duration) {
	s.client, s.clientTimeout = c, timeout
}

// clientWatcher is a streamed response body that can keep the client's write deadline
// moving (bodyStream).
type clientWatcher interface {
	watchClient(c net.Conn, timeout time.Duration)
}

// CloseWithError implements fasthttp.ReadCloserWithError; the server calls it once the
// body has been written to the client (err nil) or the write failed.
func (s *bodyStream[C]) CloseWithError(err error) error {
	// Bytes after the body's end (more than its Content-Length, or after the last chunk)
	// are not the next response: such a connection is closed.
	clean := s.br.Buffered() == 0
	s.hc.ReleaseReader(s.br)
	if err == nil && s.done && s.keep && !s.failed && clean {
		s.uc.markUsed()
		s.release(s.cc)
	} else {
		s.close(s.cc)
	}
	t := s.t
	*s = bodyStream[C]{}
	t.streams.Put(s)
	return nil
}

// upConn is a backend connection as the proxy's dialer made it (under TLS, if any). It
// lets the transport look at a pooled connection before using it again, and move the
// write deadline while a streamed upload is written.
type upConn struct {
	net.Conn
	raw  syscall.RawConn // nil: the connection has no socket to look at (in-memory pipes)
	peek func(fd uintptr) bool
	used bool // it carried a request and went back to the pool

	peekN int     // the last peek's result: -1 nothing waiting, else unusable
	b     [1]byte // the peek's buffer

	writeTimeout time.Duration // > 0 while a streamed upload is written
	lastWrite    time.Time

	armed time.Time     // the deadline SetDeadline set on both directions; zero: none known
	slack time.Duration // how late SetDeadline may arm it (deadline.go)
}

func newUpConn(c net.Conn) *upConn {
	uc := &upConn{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil && canPeek {
			uc.raw = raw
			uc.peek = uc.peekFD
		}
	}
	return uc
}

// upstreamConn returns the upConn under conn, or nil.
func upstreamConn(conn net.Conn) *upConn {
	switch c := conn.(type) {
	case *upConn:
		return c
	case *tls.Conn:
		uc, _ := c.NetConn().(*upConn)
		return uc
	}
	return nil
}

// Write implements net.Conn; during a streamed upload each write must make progress
// within writeTimeout (nginx's proxy_send_timeout), however long the upload takes.
func (c *upConn) Write(p []byte) (int, error) {
	if c.writeTimeout > 0 {
		refreshDeadline(&c.lastWrite, c.writeTimeout, c.SetWriteDeadline)
	}
	return c.Conn.Write(p)
}

// markUsed records that c goes back to the pool; nil-safe.
func (c *upConn) markUsed() {
	if c != nil {
		c.used = true
	}
}

// idleClean reports whether the pooled connection conn (c, or TLS over c) can carry a
// request: nothing arrived on it while it was idle — no byte (a late body, say, that must
// never be read as the next response), no EOF (the backend closed it: a restart, an idle
// timeout), no reset. One non-blocking MSG_PEEK system call; the bytes stay unread. This
// is what Go's net/http (a background read on each idle connection) and HAProxy (polling
// idle connections) detect, done at reuse instead, without a goroutine per connection.
func (c *upConn) idleClean(conn net.Conn) bool {
	if tc, ok := conn.(*tls.Conn); ok && !tlsIdle(tc, c) {
		return false
	}
	if c.raw == nil {
		return true
	}
	err := c.raw.Read(c.peek)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The last response's read deadline passed while the connection was idle, which
		// says nothing about it; clear it and look again.
		_ = c.SetReadDeadline(time.Time{})
		err = c.raw.Read(c.peek)
	}
	return err == nil && c.peekN < 0
}

// tlsIdle reports whether tc holds no decrypted or undecrypted data of its own: a read
// with a deadline already passed returns what TLS buffered (and handles post-handshake
// messages such as session tickets) without reading the socket.
func tlsIdle(tc *tls.Conn, c *upConn) bool {
	_ = tc.SetReadDeadline(aLongTimeAgo)
	n, err := tc.Read(c.b[:])
	_ = tc.SetReadDeadline(time.Time{})
	return n == 0 && isTimeout(err)
}

var aLongTimeAgo = time.Unix(1, 0)
