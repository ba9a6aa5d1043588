package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"sync"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/state"
)

// tunnel forwards a WebSocket upgrade (RFC 6455 §4): it dials the backend itself, then
// hijacks the client connection and copies bytes both ways until either side closes. The
// backend's 101 (or its refusal) reaches the client as the backend wrote it.
func (p *Proxy) tunnel(ctx *fasthttp.RequestCtx, b *state.Backend, u *upstream) {
	conn, err := u.dial(b.Addr)
	if err == nil && u.tls != nil {
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
	if err != nil {
		b.Stats.Failures.Add(1)
		p.logUpstreamError(b, err)
		writeError(ctx, errConnect)
		return
	}
	// Serialise the request now: ctx must not be used once the handler returns.
	var head []byte
	{
		bw := &byteWriter{}
		w := bufio.NewWriter(bw)
		if err := ctx.Request.Write(w); err == nil {
			_ = w.Flush()
		}
		head = bw.b
	}
	b.Stats.Requests.Add(1)
	b.Stats.Inflight.Add(1)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(client net.Conn) {
		defer b.Stats.Inflight.Add(-1)
		defer conn.Close()
		if _, err := conn.Write(head); err != nil {
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

type byteWriter struct{ b []byte }

func (w *byteWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}
