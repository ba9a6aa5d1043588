package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backendRequest is what a rawBackend parsed of one request.
type backendRequest struct {
	method, path string
	id           string // the X-Req header: which client request this is
	body         []byte
}

// rawBackend is a loopback HTTP/1.1 "server" that writes whatever bytes its answer function
// returns, framing be damned: the sloppy, broken or hostile backend that a real server
// cannot be made to imitate on demand. It reads requests properly (Content-Length bodies
// only) so that it stays in step with what the proxy sends.
type rawBackend struct {
	t      testing.TB
	ln     net.Listener
	addr   string
	answer func(r *backendRequest, c net.Conn) // writes the answer; may keep c for later writes

	accepted atomic.Int32 // connections accepted so far

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startRawBackend listens on 127.0.0.1:0 (or addr) until the test ends.
func startRawBackend(t testing.TB, addr string, answer func(r *backendRequest, c net.Conn)) *rawBackend {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return serveRawBackend(t, ln, answer)
}

// serveRawBackend is startRawBackend on a listener of the caller's (a TLS one, say).
func serveRawBackend(t testing.TB, ln net.Listener, answer func(r *backendRequest, c net.Conn)) *rawBackend {
	b := &rawBackend{t: t, ln: ln, addr: ln.Addr().String(), answer: answer, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(b.stop)
	return b
}

func (b *rawBackend) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.accepted.Add(1)
		b.mu.Lock()
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.wg.Add(1)
		go b.serve(c)
	}
}

func (b *rawBackend) serve(c net.Conn) {
	defer b.wg.Done()
	defer func() {
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
		c.Close()
	}()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		r := &backendRequest{method: req.Method, path: req.URL.RequestURI(), id: req.Header.Get("X-Req")}
		r.body, _ = io.ReadAll(io.LimitReader(req.Body, 1<<20))
		b.answer(r, c)
	}
}

// stop closes the listener and every open connection and waits for the goroutines: the
// backend process is gone.
func (b *rawBackend) stop() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// goodAnswer is the well-framed answer tagged with the request's id: status 200, X-Req
// and a body "id=<id>".
func goodAnswer(id string) string {
	body := "id=" + id
	return "HTTP/1.1 200 OK\r\nX-Req: " + id + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// forged is a complete response a sloppy backend leaves on the connection: if it ever
// reaches a client, that client was served bytes produced for another's request.
const forged = "HTTP/1.1 200 OK\r\nSet-Cookie: session=stolen\r\nX-Req: forged\r\nContent-Length: 29\r\n\r\n<script>alert('xss')</script>"

// forgedSized is a forged response of about n bytes (its body padded with spaces).
func forgedSized(n int) string {
	body := "<script>alert('xss')</script>" + strings.Repeat(" ", max(n-120, 0))
	return "HTTP/1.1 200 OK\r\nSet-Cookie: session=stolen\r\nX-Req: forged\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// rawClient is one client connection to the proxy, reading responses with net/http's
// parser (independent of fasthttp's).
type rawClient struct {
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{c: c, br: bufio.NewReader(c)}
}

// do sends method path with X-Req: id (and body, if any) and reads one response. It
// returns the status, the X-Req of the response, its body, and the error reading the
// response or its body (nil only for a complete, well-framed response).
func (rc *rawClient) do(method, path, id, body string) (status int, respID, respBody string, err error) {
	_ = rc.c.SetDeadline(time.Now().Add(10 * time.Second))
	var sb strings.Builder
	sb.WriteString(method + " " + path + " HTTP/1.1\r\nHost: lb.test\r\nX-Req: " + id + "\r\n")
	if body != "" || method == "POST" {
		sb.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	sb.WriteString("\r\n" + body)
	if _, err = io.WriteString(rc.c, sb.String()); err != nil {
		return 0, "", "", err
	}
	req, _ := http.NewRequest(method, "http://lb.test"+path, nil)
	resp, err := http.ReadResponse(rc.br, req)
	if err != nil {
		return 0, "", "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Req"), string(b), err
}
