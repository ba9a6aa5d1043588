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

// rawServer accepts connections on a listener until the test ends and runs serve on each
// one in its own goroutine. stop (also run when the test ends) closes the listener and
// every open connection and waits for the goroutines: the backend process is gone.
type rawServer struct {
	ln       net.Listener
	addr     string
	accepted atomic.Int32 // connections accepted so far

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// serveConns starts a rawServer on ln; serve need not close c.
func serveConns(t testing.TB, ln net.Listener, serve func(c net.Conn)) *rawServer {
	s := &rawServer{ln: ln, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept(serve)
	t.Cleanup(s.stop)
	return s
}

// listenLoopback listens on 127.0.0.1:0 (or addr).
func listenLoopback(t testing.TB, addr string) net.Listener {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func (s *rawServer) accept(serve func(c net.Conn)) {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.accepted.Add(1)
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			serve(c)
		}()
	}
}

func (s *rawServer) stop() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close() // the proxy keeps its upstream connections
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// rawBackend is a loopback HTTP/1.1 "server" that writes whatever bytes its answer function
// returns, framing be damned: the sloppy, broken or hostile backend that a real server
// cannot be made to imitate on demand. It reads requests properly (Content-Length bodies
// only) so that it stays in step with what the proxy sends.
type rawBackend struct {
	*rawServer
}

// startRawBackend listens on 127.0.0.1:0 (or addr) until the test ends. answer writes the
// answer to r on c; it may keep c for later writes.
func startRawBackend(t testing.TB, addr string, answer func(r *backendRequest, c net.Conn)) *rawBackend {
	t.Helper()
	return serveRawBackend(t, listenLoopback(t, addr), answer)
}

// serveRawBackend is startRawBackend on a listener of the caller's (a TLS one, say).
func serveRawBackend(t testing.TB, ln net.Listener, answer func(r *backendRequest, c net.Conn)) *rawBackend {
	return &rawBackend{serveConns(t, ln, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			r := &backendRequest{method: req.Method, path: req.URL.RequestURI(), id: req.Header.Get("X-Req")}
			r.body, _ = io.ReadAll(io.LimitReader(req.Body, 1<<20))
			answer(r, c)
		}
	})}
}

// tapBackend is a raw TCP backend: it records each request exactly as it arrived (head and
// body, framed by Content-Length or chunked) and answers what respond returns for it
// (keep-alive unless the answer says otherwise).
type tapBackend struct {
	addr string
	url  string // http://addr
	hits atomic.Int64
	mu   sync.Mutex
	got  []string
}

func startTapBackend(t testing.TB, respond func(req string) string) *tapBackend {
	t.Helper()
	ln := listenLoopback(t, "")
	tb := &tapBackend{addr: ln.Addr().String(), url: "http://" + ln.Addr().String()}
	serveConns(t, ln, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		for {
			req, ok := readRawRequest(br)
			if !ok {
				return
			}
			tb.hits.Add(1)
			tb.mu.Lock()
			tb.got = append(tb.got, req)
			tb.mu.Unlock()
			if _, err := io.WriteString(c, respond(req)); err != nil {
				return
			}
		}
	})
	return tb
}

// answerOK is a tapBackend's respond that answers every request 200 "ok".
func answerOK(string) string { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" }

// tappedProxy runs a proxy in front of a tapBackend that answers 200 "ok"; with trusted,
// the test client (127.0.0.1) is a trusted proxy.
func tappedProxy(t *testing.T, trusted bool) (*tapBackend, *testProxy) {
	t.Helper()
	be := startTapBackend(t, answerOK)
	extra := ""
	if trusted {
		extra = "server: { trusted_proxies: [127.0.0.1/32] }\n"
	}
	return be, startProxy(t, poolConfig(t, extra, be.url))
}

// take returns the requests received since the last take.
func (tb *tapBackend) take() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	got := tb.got
	tb.got = nil
	return got
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

// readRawRequest reads one request's bytes: the head, then a Content-Length or chunked
// body (trailers included).
func readRawRequest(br *bufio.Reader) (string, bool) {
	var sb strings.Builder
	cl, chunked := 0, false
	for {
		line, err := br.ReadString('\n')
		sb.WriteString(line)
		if err != nil {
			return "", false
		}
		if line == "\r\n" {
			break
		}
		k, v, _ := strings.Cut(strings.TrimRight(line, "\r\n"), ":")
		switch strings.ToLower(k) {
		case "content-length":
			cl, _ = strconv.Atoi(strings.TrimSpace(v))
		case "transfer-encoding":
			chunked = strings.EqualFold(strings.TrimSpace(v), "chunked")
		}
	}
	if chunked {
		for {
			line, err := br.ReadString('\n')
			sb.WriteString(line)
			if err != nil {
				return "", false
			}
			n, err := strconv.ParseInt(strings.TrimRight(line, "\r\n"), 16, 64)
			if err != nil {
				return "", false
			}
			if n == 0 {
				for { // trailers, then the blank line
					line, err := br.ReadString('\n')
					sb.WriteString(line)
					if err != nil {
						return "", false
					}
					if line == "\r\n" {
						return sb.String(), true
					}
				}
			}
			buf := make([]byte, n+2)
			if _, err := io.ReadFull(br, buf); err != nil {
				return "", false
			}
			sb.Write(buf)
		}
	}
	buf := make([]byte, cl)
	if _, err := io.ReadFull(br, buf); err != nil {
		return "", false
	}
	sb.Write(buf)
	return sb.String(), true
}
