package proxy

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/sticky"
)

// streamSize is what TestStreamingBodiesUseBoundedMemory moves each way: four times the
// heap growth it allows, so a body held whole fails it.
const streamSize = 256 << 20

// zeros is an io.Reader of n zero bytes.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > z.n {
		p = p[:z.n]
	}
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

// heapWatch samples the heap in use until stopped and reports the peak above the start.
func heapWatch() (stop func() uint64) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapInuse > base && m.HeapInuse-base > peak.Load() {
					peak.Store(m.HeapInuse - base)
				}
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return peak.Load()
	}
}

// TestStreamingBodiesUseBoundedMemory sends 256 MiB up and twice 256 MiB down (with a
// Content-Length, then chunked) through the proxy (client, proxy and backend all in this
// process) and checks the heap never grows by 64 MiB: bodies stream, they are never
// buffered whole. The heap is the process's, so this test does not run in parallel.
func TestStreamingBodiesUseBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 768 MiB")
	}
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/download":
			ctx.SetBodyStream(&zeros{n: streamSize}, streamSize)
		case "/download-chunked":
			ctx.SetBodyStream(&zeros{n: streamSize}, -1)
		case "/upload":
			n, err := io.Copy(io.Discard, ctx.RequestBodyStream())
			if err != nil {
				ctx.SetStatusCode(500)
				return
			}
			ctx.SetBodyString(strconv.FormatInt(n, 10))
		}
	})
	px := startProxy(t, poolConfig(t, "server: { max_body_bytes: 2147483648 }\n", be.url))
	client := &http.Client{Timeout: 5 * time.Minute}

	stop := heapWatch()
	for _, path := range []string{"/download", "/download-chunked"} {
		resp, err := client.Get("http://" + px.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != streamSize {
			t.Fatalf("GET %s: got %d bytes, err %v; want %d", path, n, err, streamSize)
		}
	}
	req, _ := http.NewRequest("POST", "http://"+px.addr+"/upload", &zeros{n: streamSize})
	req.ContentLength = streamSize
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != strconv.Itoa(streamSize) {
		t.Fatalf("upload: backend got %q bytes; want %d", body, streamSize)
	}
	peak := stop()
	t.Logf("peak heap growth while streaming %d MiB: %.1f MiB", 3*streamSize>>20, float64(peak)/(1<<20))
	if peak > 64<<20 {
		t.Fatalf("heap grew by %d MiB; want under 64 MiB", peak>>20)
	}
}

// TestStreamedResponseKeepsConnections checks that a streamed (large) response returns its
// backend connection to the pool: many sequential large responses use one connection.
func TestStreamedResponseKeepsConnections(t *testing.T) {
	t.Parallel()
	var conns atomic.Int64
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if ctx.ConnRequestNum() == 1 {
			conns.Add(1)
		}
		if string(ctx.Path()) == "/chunked" {
			ctx.SetBodyStream(strings.NewReader(strings.Repeat("y", 200<<10)), -1)
			return
		}
		ctx.SetBodyString(strings.Repeat("x", 200<<10))
	})
	px := startProxy(t, poolConfig(t, "", be.url))
	for _, path := range []string{"/", "/chunked"} {
		for i := 0; i < 20; i++ {
			resp := px.get(t, path)
			if resp.StatusCode() != 200 || len(resp.Body()) != 200<<10 {
				t.Fatalf("GET %s: got %d with %d bytes; want 200 with %d", path, resp.StatusCode(), len(resp.Body()), 200<<10)
			}
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("backend saw %d connections for 40 sequential requests; want 1 (kept alive)", n)
	}
}

// wsEcho is a minimal RFC 6455 server: it completes the handshake, then echoes raw bytes.
func wsEcho(ctx *fasthttp.RequestCtx) {
	key := ctx.Request.Header.Peek("Sec-WebSocket-Key")
	if !strings.EqualFold(string(ctx.Request.Header.Peek("Upgrade")), "websocket") || len(key) == 0 {
		ctx.SetStatusCode(400)
		return
	}
	h := sha1.Sum([]byte(string(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	ctx.SetStatusCode(fasthttp.StatusSwitchingProtocols)
	ctx.Response.Header.Set("Upgrade", "websocket")
	ctx.Response.Header.Set("Connection", "Upgrade")
	ctx.Response.Header.Set("Sec-WebSocket-Accept", base64.StdEncoding.EncodeToString(h[:]))
	ctx.Hijack(func(c net.Conn) { _, _ = io.Copy(c, c) })
}

func TestWebSocketTunnel(t *testing.T) {
	t.Parallel()
	be := startBackend(t, wsEcho)
	px := startProxy(t, poolConfig(t, "", be.url))
	c, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	r := bufio.NewReader(c)
	status, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101") {
		t.Fatalf("got status line %q (%v); want 101", status, err)
	}
	accept := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Sec-WebSocket-Accept") {
			accept = strings.TrimSpace(v)
		}
	}
	if accept != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" { // RFC 6455 §1.3's example
		t.Fatalf("got Sec-WebSocket-Accept %q; want the RFC's s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", accept)
	}
	// A masked text frame "hello" (RFC 6455 §5.7), echoed back byte for byte.
	frame := []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}
	for i := 0; i < 3; i++ {
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(frame))
		if _, err := io.ReadFull(r, got); err != nil {
			t.Fatal(err)
		}
		if string(got) != string(frame) {
			t.Fatalf("got echo %x; want %x", got, frame)
		}
	}
}

// slowReader yields n chunks of 1 KiB, pausing before each.
type slowReader struct {
	n     int
	pause time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.n == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.pause)
	s.n--
	return copy(p, strings.Repeat("z", 1024)), nil
}

// TestSlowStreamsOutliveServerTimeouts: read_timeout and write_timeout bound each read or
// write of a streamed body, not the whole of it (nginx's client_body_timeout and
// send_timeout). A download and an upload that take 2.5 s, with data every 100 ms, pass a
// proxy whose timeouts are 1 s; fasthttp's own timeouts cut both at 1 s.
func TestSlowStreamsOutliveServerTimeouts(t *testing.T) {
	t.Parallel()
	const chunks, pause = 25, 100 * time.Millisecond
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/upload" {
			n, err := io.Copy(io.Discard, ctx.RequestBodyStream())
			if err != nil {
				ctx.SetStatusCode(500)
				return
			}
			ctx.SetBodyString(strconv.FormatInt(n, 10))
			return
		}
		ctx.SetBodyStream(&slowReader{n: chunks, pause: pause}, -1)
	})
	px := startProxy(t, poolConfig(t, "server: { read_timeout: 1s, write_timeout: 1s }\n", be.url))
	client := &http.Client{Timeout: time.Minute}

	resp, err := client.Get("http://" + px.addr + "/download")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != chunks*1024 {
		t.Fatalf("slow download: got %d bytes, err %v; want %d", n, err, chunks*1024)
	}

	req, _ := http.NewRequest("POST", "http://"+px.addr+"/upload", &slowReader{n: chunks, pause: pause})
	req.ContentLength = -1 // chunked: streamed through, never read ahead whole
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != strconv.Itoa(chunks*1024) {
		t.Fatalf("slow upload: got %d %q; want 200 %d", resp.StatusCode, body, chunks*1024)
	}
}

// TestRefusedUpgradeIsNotATunnel: a backend that answers an upgrade request with anything
// but 101 gets an ordinary response relayed, and the client connection is not left as a
// raw pipe to it — a request sent after it on the same connection must not reach the
// backend unfiltered (it would skip forwarding headers, policies and logging).
func TestRefusedUpgradeIsNotATunnel(t *testing.T) {
	t.Parallel()
	be := startBackend(t, echoHeaders) // answers 200 to everything, keep-alive
	px := startProxy(t, poolConfig(t, "", be.url))
	resp, closed := px.raw(t, "GET /not-ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"+
		"GET /admin HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
	if !strings.HasPrefix(resp, "HTTP/1.1 200") {
		t.Fatalf("got %q; want the backend's 200 relayed", resp)
	}
	if strings.Contains(resp, "6.6.6.6") || strings.Count(resp, "HTTP/1.1 ") != 1 {
		t.Fatalf("got %q; the request after a refused upgrade went through unfiltered", resp)
	}
	if !closed {
		t.Fatal("the client connection stayed open after a refused upgrade")
	}
}

// TestWebSocketFollowsStickySessions: an upgrade gets the session cookie on its 101, and
// later upgrades with that cookie reach the same backend.
func TestWebSocketFollowsStickySessions(t *testing.T) {
	t.Parallel()
	a, b := startBackend(t, wsEcho), startBackend(t, wsEcho)
	px := startProxy(t, poolConfig(t, "sticky: { enabled: true }\n", a.url, b.url),
		withSticky(newMemoryStore(t, sticky.Options{})))
	upgrade := func(cookie string) string {
		t.Helper()
		c, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n", cookie)
		r := bufio.NewReader(c)
		status, _ := r.ReadString('\n')
		if !strings.HasPrefix(status, "HTTP/1.1 101") {
			t.Fatalf("got %q; want 101", status)
		}
		setCookie := ""
		for {
			line, err := r.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
			if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Set-Cookie") {
				setCookie = strings.TrimSpace(v)
			}
		}
		return setCookie
	}
	sc := upgrade("")
	if !strings.HasPrefix(sc, "lb_sticky=") {
		t.Fatalf("got Set-Cookie %q on the 101; want the session cookie", sc)
	}
	cookie := "Cookie: " + strings.SplitN(sc, ";", 2)[0] + "\r\n"
	first := map[bool]int64{true: a.hits.Load(), false: b.hits.Load()}
	onA := first[true] == 1
	for range 4 {
		upgrade(cookie)
	}
	if onA && a.hits.Load() != 5 || !onA && b.hits.Load() != 5 {
		t.Fatalf("a got %d, b got %d upgrades; want all 5 on the session's backend", a.hits.Load(), b.hits.Load())
	}
}
