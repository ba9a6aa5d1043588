package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"sync"
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
func (p *Proxy) tunnel(ctx *fasthttp.RequestCtx, b *state.Backend, u *upstream, answered func()) {
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
		p.logUpstreamError(b, err)
		writeError(ctx, errConnect)
		return
	}
	b.Stats.Requests.Add(1)
	bw := bufio.NewWriter(conn)
	err = ctx.Request.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	br := bufio.NewReader(conn)
	resp := &ctx.Response
	if err == nil {
		err = resp.Header.Read(br)
	}
	if err != nil {
		conn.Close()
		b.Stats.Failures.Add(1)
		p.logUpstreamError(b, err)
		writeError(ctx, readError(err))
		return
	}
	if resp.StatusCode() != fasthttp.StatusSwitchingProtocols {
		// Not upgraded: an ordinary response, and the end of this backend connection.
		err = resp.ReadBody(br, maxRefusalBody)
		conn.Close()
		if err != nil {
			writeError(ctx, errBadResponse)
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
	// Upgraded. The 101 goes to the client as parsed, then whatever the backend already
	// sent after it, then the raw streams.
	answered()
	head := append([]byte(nil), resp.Header.Header()...)
	early, _ := br.Peek(br.Buffered())
	head = append(head, early...)
	_ = conn.SetDeadline(time.Time{})
	b.Stats.Inflight.Add(1)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(client net.Conn) {
		defer b.Stats.Inflight.Add(-1)
		defer conn.Close()
		if _, err := client.Write(head); err != nil {
			return
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(client, conn)
			closeWrite(client)
		}()
		_, _ = io.Copy(conn, client)
		closeWrite(conn)
		wg.Wait()
	})
}

// closeWrite half-closes c so the peer sees EOF while the other direction drains.
func closeWrite(c net.Conn) {
	type halfCloser interface{ CloseWrite() error }
	if hc, ok := c.(halfCloser); ok {
		_ = hc.CloseWrite()
		return
	}
	_ = c.Close()
}
