package proxy

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/internal/reqpath"
)

// FuzzRequestScan feeds raw request heads through what the proxy does before forwarding
// — fasthttp's parse, scanRequestHeaders, canonicalize — then writes the request as the
// transport does and parses that again. For every request the proxy accepts: the path and
// Host it decided on are the ones the backend reads, the path is canonical, and the
// forwarded head passes the proxy's own strict scan (one Host, CRLF lines, token names).
func FuzzRequestScan(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /admin/x/..%2F..%2Fpublic?q=1 HTTP/1.1\r\nHost: a.example\r\n\r\n",
		"GET /admin/x/%2e%2e/%2e%2e/public HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET http://internal.example/h HTTP/1.1\r\nHost: public.example\r\n\r\n",
		"GET http:///p HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /p HTTP/1.1\r\nHost: x@internal.example\r\n\r\n",
		"GET /public/..;/admin/secret HTTP/1.0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: [::1]:80\r\nX Y: z\r\nConnection: close, Host\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, raw []byte, m uint8) {
		mode := reqpath.Escaped(m % 3)
		var req fasthttp.Request
		if err := req.Header.Read(bufio.NewReader(bytes.NewReader(raw))); err != nil {
			return
		}
		var u fasthttp.URI // the server parses the URI before the handler and refuses what fails
		if u.Parse(req.Header.Host(), req.Header.RequestURI()) != nil {
			return
		}
		if scanRequestHeaders(req.Header.RawHeaders(), 100)&(hdrBad|hdrTooMany) != 0 {
			return
		}
		if r := canonicalize(&req, mode); r != nil {
			return
		}
		path := append([]byte(nil), requestPath(&req)...)
		host := append([]byte(nil), req.Header.Host()...)
		if c, err := reqpath.Canonical(nil, path, mode); err != nil || !bytes.Equal(c, path) {
			t.Fatalf("%q: decided on path %q, not canonical (%q, %v)", raw, path, c, err)
		}
		if len(host) == 0 {
			host = []byte("backend:80") // forward's HTTP/1.0 fallback
			req.URI().SetHostBytes(host)
		}
		// As forward and the HostClient do.
		req.URI().SetScheme("http")
		req.URI().DisablePathNormalizing = true
		req.Header.SetNoDefaultContentType(true)
		req.Header.ResetConnectionClose()
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		if err := req.Write(w); err != nil {
			t.Fatalf("%q: the accepted request cannot be written: %v", raw, err)
		}
		_ = w.Flush()

		var got fasthttp.RequestHeader
		if err := got.Read(bufio.NewReader(bytes.NewReader(out.Bytes()))); err != nil {
			t.Fatalf("%q: forwarded %q, which does not parse: %v", raw, out.Bytes(), err)
		}
		target := got.RequestURI()
		if q := bytes.IndexByte(target, '?'); q >= 0 {
			target = target[:q]
		}
		if !bytes.Equal(target, path) {
			t.Fatalf("%q: decided on path %q, forwarded %q", raw, path, target)
		}
		if !bytes.EqualFold(got.Host(), host) {
			t.Fatalf("%q: decided on Host %q, forwarded %q", raw, host, got.Host())
		}
		if scanRequestHeaders(got.RawHeaders(), 1000)&hdrBad != 0 {
			t.Fatalf("%q: forwarded a head the proxy itself refuses: %q", raw, out.Bytes())
		}
	})
}

// FuzzProxiedExchange plays random bytes as a backend's answer to one client's request
// (with ID standing for that request's id, so answers can be tagged), then sends another
// client's request over what the proxy has pooled. Invariant: the second client only ever
// receives bytes produced for its own request — its own tagged answer or an error of the
// proxy's making, never anything of the first exchange. The proxy, its pool of one
// connection and the backend live across runs, as they would in production.
func FuzzProxiedExchange(f *testing.F) {
	for _, tc := range responseCorpus {
		f.Add([]byte(tc.answer+tc.late), uint8(len(tc.method)))
	}
	var (
		mu     sync.Mutex
		answer []byte
		closeA bool
	)
	be := startRawBackend(f, "", func(r *backendRequest, c net.Conn) {
		if !strings.HasPrefix(r.id, "a") {
			_, _ = c.Write([]byte(goodAnswer(r.id)))
			return
		}
		mu.Lock()
		a, cl := bytes.ReplaceAll(answer, []byte("ID"), []byte(r.id)), closeA
		mu.Unlock()
		_, _ = c.Write(a)
		if cl {
			c.Close()
		}
	})
	// A short response timeout: an answer cut short (most random ones) costs 100 ms.
	cfg := strings.Replace(rawPoolConfig(f, be.addr, ""), "response: 2s", "response: 100ms", 1)
	px := startProxy(f, parseConfig(f, cfg))
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		i := strconv.FormatInt(n.Add(1), 10)
		mu.Lock()
		answer, closeA = data, mode&4 != 0
		mu.Unlock()
		method := [...]string{"GET", "HEAD", "POST", "DELETE"}[mode%4]
		a := dialRaw(t, px.addr)
		_, _, _, _ = a.do(method, "/", "a"+i, "")
		a.c.Close()

		idB := "b" + i
		b := dialRaw(t, px.addr)
		status, id, body, err := b.do("GET", "/", idB, "")
		own := err == nil && status == 200 && id == idB && body == "id="+idB
		proxyError := err == nil && status >= 500 && id == "" && strings.HasPrefix(body, `{"error":`)
		if !own && !proxyError {
			t.Fatalf("after a first exchange answered %q, the next client got status %d, X-Req %q, body %q, err %v; want its own answer or the proxy's error",
				data, status, id, body, err)
		}
	})
}
