package proxy

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/state"
)

// maxRefusalBody bounds the body of a backend's non-101 answer to an upgrade request.
const maxRefusalBody = 1 << 20

// tunnel forwards a WebSocket upgrade (RFC 6455 §4): it dials the backend itself, sends the
// request and reads the answer. Only a 101 Switching Protocols turns the client connection
// into a raw tunnel (hijacked, bytes copied both ways until either side closes); any other
// answer is relayed as a normal response and the backend connection closed, so a refused
// upgrade can never leave an unfiltered byte pipe to the backend behind it.
//
// answered is called once the backend's answer is in ctx.Response and before it is sent,
// so that headers (a sticky session's cookie) can be added to it.
//
// A tunnel holds one of the backend's max_conns_per_backend connections and one of
// server.max_tunnels for its life (over either: 503), and closes after idle with no byte
// moved either way (timeouts.tunnel_idle, HAProxy's timeout tunnel).
func (p *Proxy) tunnel(ctx *fasthttp.RequestCtx, b *state.Backend, u *upstream, idle time.Duration, answered func()) {
	if !p.acquireTunnel(u) {
		writeError(ctx, errNoConns)
		return
	}
	held := true // until heldTunnel owns the tunnel's places
	defer func() {
		if held {
			p.releaseTunnel(u)
		}
	}()
	conn, err := u.dial(b.Addr)
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(u.tr.responseTimeout))
		if u.tls != nil {
			tc := u.tls
			if tc.ServerName == "" {
				tc = tc.Clone()
				tc.ServerName, _, _ = net.SplitHostPort(b.Addr)
			}
			c := tls.Client(conn, tc)
			if err = c.Handshake(); err != nil {
				conn.Close()
			}
			conn = c
		}
	}
	if err != nil {
		b.Stats.Failures.Add(1)
		p.logUpstreamError(b, u, err)
		writeError(ctx, errConnect)
		return
	}
	b.Stats.Requests.Add(1)
	// The backend client's pooled buffers, as roundTrip uses: a head up to max_header_bytes.
	bw := u.hc.AcquireWriter(conn)
	err = ctx.Request.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	u.hc.ReleaseWriter(bw)
	br := u.hc.AcquireReader(conn)
	defer u.hc.ReleaseReader(br) // the tunnel itself reads conn: what br holds is copied out
	resp := &ctx.Response
	if err != nil {
		err = readError(err)
	} else {
		_, err = readHeader(br, resp) // interim 1xx answers skipped; err already mapped
	}
	if err != nil {
		conn.Close()
		if err != errBigHead { // not the backend's failure: see forward
			b.Stats.Failures.Add(1)
		}
		p.logUpstreamError(b, u, err)
		writeError(ctx, err)
		return
	}
	if resp.StatusCode() == fasthttp.StatusSwitchingProtocols && !isWebSocketUpgrade(resp) {
		// A 101 that does not switch to WebSocket (RFC 6455 §4.1: the client must fail
		// such a connection) would open a byte pipe to a protocol nobody asked for.
		conn.Close()
		b.Stats.Failures.Add(1)
		p.logUpstreamError(b, u, errBadResponse)
		writeError(ctx, errBadResponse)
		return
	}
	if resp.StatusCode() != fasthttp.StatusSwitchingProtocols {
		// Not upgraded: an ordinary response, and the end of this backend connection.
		err = resp.ReadBody(br, maxRefusalBody)
		conn.Close()
		if err != nil {
			// As for the head: a body cut short or stalled is the backend's failure (a
			// stall past timeouts.response is a 504, not a malformed answer).
			err = readError(err)
			b.Stats.Failures.Add(1)
			p.logUpstreamError(b, u, err)
			writeError(ctx, err)
			return
		}
		if resp.StatusCode() >= 500 {
			b.Stats.Failures.Add(1)
		}
		cleanResponse(resp)
		answered()
		resp.SetConnectionClose()
		return
	}
	// Upgraded: heldTunnel owns the connection and the places from here, so a panic in
	// answered or after it (contain calls abortTunnel) gives them back too.
	b.Stats.Inflight.Add(1)
	ht := &heldTunnel{p: p, u: u, b: b, conn: conn}
	ctx.SetUserValue(heldTunnelKey{}, ht) // for abortTunnel
	held = false
	// The 101 goes to the client as parsed and cleaned like any response, then whatever
	// the backend already sent after it, then the raw streams.
	cleanSwitch(resp)
	answered()
	head := append([]byte(nil), resp.Header.Header()...)
	early, _ := br.Peek(br.Buffered())
	head = append(head, early...)
	_ = conn.SetDeadline(time.Time{})
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(hc net.Conn) {
		// fasthttp runs this in a goroutine of its own, outside the handler's recovery.
		if !ht.claim() {
			return // aborted
		}
		defer p.recoverTunnel()
		defer ht.release()
		client := hijacked(hc)
		if _, err := client.Write(head); err != nil {
			return
		}
		pipe(client, conn, idle)
	})
}

// heldTunnel is what an upgraded tunnel holds from the backend's 101 until its hijack
// handler runs: the backend connection, the backend's in-flight count, and its places
// (acquireTunnel). Whoever claims it first gives them back: the hijack handler when the
// tunnel ends, or abortTunnel when a panic cancelled the hijack.
type heldTunnel struct {
	p       *Proxy
	u       *upstream
	b       *state.Backend
	conn    net.Conn
	claimed atomic.Bool
}

type heldTunnelKey struct{}

func (h *heldTunnel) claim() bool { return h.claimed.CompareAndSwap(false, true) }

func (h *heldTunnel) release() {
	h.conn.Close()
	h.b.Stats.Inflight.Add(-1)
	h.p.releaseTunnel(h.u)
}

// abortTunnel gives back what the request's tunnel holds, if one was set up and its hijack
// handler has not claimed it: for the server's panic containment, which cancels the hijack
// (fasthttp then never runs the handler that would have).
func abortTunnel(ctx *fasthttp.RequestCtx) {
	if h, ok := ctx.UserValue(heldTunnelKey{}).(*heldTunnel); ok && h.claim() {
		h.release()
	}
}

// acquireTunnel takes a place for a tunnel to u's backend under server.max_tunnels and
// the backend's max_conns_per_backend (shared with its pooled connections), or reports
// false. Pooled connections left idle (after a burst, they stay a minute) give way: they
// are closed rather than the tunnel refused.
func (p *Proxy) acquireTunnel(u *upstream) bool {
	if !p.takePlace() {
		return false
	}
	if n := u.tunnels.Add(1); u.full(n) {
		u.hc.CloseIdleConnections() // slow path: the limit is reached
		if u.full(n) {
			u.tunnels.Add(-1)
			p.givePlace()
			return false
		}
	}
	return true
}

// recoverTunnel contains a panic of a tunnel's goroutine: the tunnel ends (its deferred
// closes run), the panic is counted with the handler's and logged, and the process lives.
func (p *Proxy) recoverTunnel() {
	if r := recover(); r != nil {
		if p.edge != nil {
			p.edge.Panics.Add(1)
		}
		p.log.Error().Str("panic", fmt.Sprint(r)).Str("stack", string(debug.Stack())).Msg("tunnel panicked: closed it")
	}
}

// releaseTunnel gives back the places acquireTunnel took.
func (p *Proxy) releaseTunnel(u *upstream) {
	u.tunnels.Add(-1)
	p.givePlace()
}

// pipe copies bytes both ways between a and b until both directions ended, or until no
// byte moved either way for idle: then both connections are closed. A direction that
// reaches EOF half-closes its destination, and the other goes on. Each read waits at most
// until idle after the last byte moved in either direction; each write at most idle.
func pipe(a, b net.Conn, idle time.Duration) {
	if idle <= 0 {
		idle = 100 * 365 * 24 * time.Hour // no idle timeout
	}
	var last atomic.Int64 // UnixNano of the last byte moved either way
	last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		copyIdle(a, b, idle, &last)
	}()
	copyIdle(b, a, idle, &last)
	wg.Wait()
}

// copyIdle copies src to dst for pipe; on an idle timeout or an error it closes both.
// Deadlines move at most every 250 ms (each move is a timer update), not per frame: a read
// deadline armed from an older last activity only fires early, and the timeout case below
// re-arms it from the newest.
func copyIdle(dst, src net.Conn, idle time.Duration, last *atomic.Int64) {
	buf := make([]byte, 32<<10)
	var armed int64 // the last activity the read deadline was armed from; 0: re-arm
	var lastWrite time.Time
	for {
		if l := last.Load(); l-armed >= int64(250*time.Millisecond) {
			_ = src.SetReadDeadline(time.Unix(0, l).Add(idle))
			armed = l
		}
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			refreshDeadline(&lastWrite, idle, dst.SetWriteDeadline)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				dst.Close()
				src.Close()
				return
			}
		}
		switch {
		case err == nil:
		case err == io.EOF:
			closeWrite(dst)
			return
		case isTimeout(err) && time.Since(time.Unix(0, last.Load())) < idle:
			// The other direction moved meanwhile: wait again from its last byte.
			armed = 0
		default:
			dst.Close() // idle either way, or broken: the tunnel ends
			src.Close()
			return
		}
	}
}

// isWebSocketUpgrade reports whether a 101 names websocket in its Upgrade field.
func isWebSocketUpgrade(resp *fasthttp.Response) bool {
	return bytes.EqualFold(bytes.TrimSpace(resp.Header.Peek(fasthttp.HeaderUpgrade)), []byte("websocket"))
}

// tunnelClient is the client side of a tunnel. fasthttp's hijacked connection reads what
// the server had already buffered past the upgrade request, but its Close does nothing
// (fasthttp closes the connection once the hijack handler returns) and it has no
// CloseWrite: pipe's closes go to the connection under it, so the client sees the
// backend's end at once, not after timeouts.tunnel_idle.
type tunnelClient struct {
	net.Conn          // fasthttp's hijacked connection: reads, writes, deadlines
	conn     net.Conn // the connection itself
}

// hijacked returns the tunnel's client side for fasthttp's hijacked connection c.
func hijacked(c net.Conn) net.Conn {
	if u, ok := c.(interface{ UnsafeConn() net.Conn }); ok {
		return tunnelClient{Conn: c, conn: u.UnsafeConn()}
	}
	return c
}

func (c tunnelClient) Close() error { return c.conn.Close() }

func (c tunnelClient) CloseWrite() error {
	closeWrite(c.conn)
	return nil
}

// closeWrite half-closes c so the peer sees EOF while the other direction drains: through
// the wrappers of a client connection (NetConn) down to one that can, or it closes c.
func closeWrite(c net.Conn) {
	for w := c; ; {
		if hc, ok := w.(interface{ CloseWrite() error }); ok {
			_ = hc.CloseWrite()
			return
		}
		u, ok := w.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		w = u.NetConn()
	}
	_ = c.Close()
}
