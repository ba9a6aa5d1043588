package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// errSlowBody: the client sent its body below server.min_request_body_rate.
var errSlowBody = errors.New("request body slower than server.min_request_body_rate")

// takeBody deals with a request body fasthttp did not read whole before the handler (it
// reads at most 8 KiB ahead). One with a Content-Length up to server.request_buffer_bytes
// is read completely now, before a backend is chosen — so a slow client holds its own
// connection and a buffer, never an upstream connection (nginx buffers bodies too). A
// larger or chunked one streams to the backend through uploadReader. Both are read under
// the minimum rate (bodyRate); a streamed one also holds one of server.max_tunnels places
// like a tunnel: it ties an upstream connection to the client's pace. It returns the reply
// to refuse the request with, or nil; up is the streamed upload's reader when a place was
// taken (end it with endStream when the request ends).
func (p *Proxy) takeBody(ctx *fasthttp.RequestCtx, ext *tableData) (r *reply, up *uploadReader) {
	req := &ctx.Request
	cl := req.Header.ContentLength()
	rate := bodyRate{conn: ctx.Conn(), need: int64(float64(ext.minBodyRate) * ext.bodyGrace.Seconds()), period: ext.bodyGrace}
	if cl >= 0 && int64(cl) <= ext.bufferBytes {
		bp := bodyPool.Get().(*[]byte)
		b, err := rate.readFull((*bp)[:0], ctx.RequestBodyStream(), cl)
		if err == nil {
			req.SetBody(b) // a copy: the buffer goes back to the pool
		}
		if cap(b) <= maxPooledBody {
			*bp = b[:0]
			bodyPool.Put(bp)
		}
		switch {
		case err == errSlowBody:
			return &replyReadTimeout, nil
		case err != nil:
			return &replyClientBody, nil
		}
		return nil, nil
	}
	if !p.takePlace() {
		writeReply(ctx, &replyBusy) // 503 with Retry-After
		closeUnread(ctx)            // the body is still on the wire
		return &answered, nil
	}
	// Slow path: a streamed upload. read_timeout bounds each read of it, not the whole
	// (fasthttp's ReadTimeout would cut any upload longer than 30 s), and a chunked one
	// of unknown size is cut off at max_body_bytes.
	rate.timeout = ext.readTimeout
	up = &uploadReader{r: ctx.RequestBodyStream(), h: &req.Header, n: ext.maxBody, size: int64(cl), rate: rate}
	req.SetBodyStream(up, cl)
	return nil, up
}

// readAhead is how much of a body fasthttp reads before the handler runs: min(its
// Content-Length, 8 KiB), all of a chunked one's left on the wire (readBodyWithStreaming
// in fasthttp's http.go).
const readAhead = 8 << 10

// closeUnread closes the client's connection lingering after the answer, as reject does:
// for an answer given with the request's body unread, or read in part, the proxy would
// otherwise read (fasthttp drains up to 256 KiB) a body nobody will use, or close with it
// unread, which resets the connection, and a client still sending can lose the answer.
func closeUnread(ctx *fasthttp.RequestCtx) {
	ctx.SetConnectionClose()
	lingerOnClose(ctx.Conn())
}

// bodyUnread reports whether the request's body is not all read before the handler: one
// over readAhead, or chunked.
func bodyUnread(req *fasthttp.Request) bool {
	cl := req.Header.ContentLength()
	return cl > readAhead || cl == -1
}

// endStream ends a streamed upload's request: its place goes back, and an answer given
// before the whole body was read (no backend, a backend that answered early or failed, a
// timeout) closes the connection lingering.
func (p *Proxy) endStream(ctx *fasthttp.RequestCtx, up *uploadReader) {
	p.givePlace()
	if !up.complete() {
		closeUnread(ctx)
	}
}

// takePlace takes one of server.max_tunnels places, which WebSocket tunnels and streamed
// uploads share, or counts the refusal and reports false. Without a Server (tests) there
// is no limit and nothing is counted.
func (p *Proxy) takePlace() bool {
	st := p.edge
	if st == nil {
		return true
	}
	if n := st.Tunnels.Add(1); p.maxTunnels > 0 && n > p.maxTunnels {
		st.Tunnels.Add(-1)
		st.TunnelsOverLimit.Add(1)
		return false
	}
	return true
}

// givePlace gives back a place takePlace took.
func (p *Proxy) givePlace() {
	if p.edge != nil {
		p.edge.Tunnels.Add(-1)
	}
}

// dropTrailers removes the trailer fields of a chunked request body, and the Trailer
// field announcing them. RFC 9110 §6.5.1 lets a recipient discard trailer fields; they
// escape every check the head gets (field syntax, field count, the fields the proxy sets
// itself), so none is forwarded or looked at. A field of the head that shares a name with
// a trailer field goes too.
func dropTrailers(h *fasthttp.RequestHeader) {
	keys := h.PeekTrailerKeys()
	if len(keys) == 0 {
		return
	}
	for _, k := range keys {
		h.DelBytes(k)
	}
	h.DelBytes(hTrailer) // forgets the (now empty) trailer section
}

var hTrailer = []byte("Trailer")

// maxPooledBody: larger body buffers are left to the garbage collector.
const maxPooledBody = 256 << 10

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// bodyRate reads a request body from conn under server.min_request_body_rate: every
// period (server.request_body_grace) must bring at least need bytes, or the read fails
// with errSlowBody. The first period is the grace: no client is cut off before it ends.
// The connection's read deadline is set to the end of the period in which a stall would
// fail, so a client that stops sending is cut then — one deadline move per period. With
// need 0 (no minimum), timeout (server.read_timeout) bounds each read instead.
type bodyRate struct {
	conn    net.Conn
	need    int64
	period  time.Duration
	timeout time.Duration

	end      time.Time // end of the current period; zero before the first read
	got      int64     // bytes in the current period
	deadline time.Time // the read deadline set last
	last     time.Time // without a minimum: when the deadline last moved (refreshDeadline)
}

// before is called before each read; it fails once a period ended short.
func (r *bodyRate) before() error {
	if r.need <= 0 {
		if r.timeout > 0 {
			refreshDeadline(&r.last, r.timeout, r.conn.SetReadDeadline)
		}
		return nil
	}
	now := time.Now()
	if r.end.IsZero() {
		r.end = now.Add(r.period)
	}
	for !now.Before(r.end) {
		if r.got < r.need {
			return errSlowBody
		}
		r.got = 0
		r.end = r.end.Add(r.period)
	}
	d := r.end
	if r.got >= r.need {
		d = d.Add(r.period) // this period is made: a stall can only fail the next one
	}
	if !d.Equal(r.deadline) {
		r.deadline = d
		_ = r.conn.SetReadDeadline(d)
	}
	return nil
}

// after counts n bytes read; a deadline hit while the minimum is enforced means the
// period failed.
func (r *bodyRate) after(n int, err error) error {
	r.got += int64(n)
	if err != nil && r.need > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		return errSlowBody
	}
	return err
}

// readFull appends exactly n bytes of body from br to dst, growing dst as bytes arrive
// (not by n at once: a Content-Length alone must not reserve memory).
func (r *bodyRate) readFull(dst []byte, br io.Reader, n int) ([]byte, error) {
	start := len(dst)
	for len(dst)-start < n {
		if len(dst) == cap(dst) {
			dst = append(dst, make([]byte, min(max(cap(dst), 16<<10), n-(len(dst)-start)))...)[:len(dst)]
		}
		if err := r.before(); err != nil {
			return dst, err
		}
		m, err := br.Read(dst[len(dst):min(cap(dst), start+n)])
		dst = dst[:len(dst)+m]
		if err = r.after(m, err); err != nil {
			if err == io.EOF && len(dst)-start == n {
				break
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return dst, err
		}
	}
	return dst, nil
}
