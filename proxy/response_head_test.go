package proxy

import (
	"net"
	"net/http"
	"testing"
	"time"
)

// TestInterimAnswerAddsNoFields: a final answer after a 1xx (103 Early Hints) reaches the
// client with the backend's fields only, as one without it does: no Content-Type appears.
func TestInterimAnswerAddsNoFields(t *testing.T) {
	t.Parallel()
	resp := getRawAnswer(t, func(id string) string {
		return "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + "HTTP/1.1 200 OK\r\nX-Req: " + id + "\r\nContent-Length: 2\r\n\r\nok"
	})
	if resp.StatusCode != 200 {
		t.Fatalf("got status %d; want 200", resp.StatusCode)
	}
	if ct, ok := resp.Header["Content-Type"]; ok {
		t.Fatalf("got Content-Type %q after a 103; want none (the backend sent none)", ct)
	}
}

// TestBareLFResponseHeadFailsAtOnce: a head with bare-LF line ends from a backend that keeps
// its connection open is a 502 at once, not a 504 at the response timeout.
func TestBareLFResponseHeadFailsAtOnce(t *testing.T) {
	t.Parallel()
	// Waiting for the response timeout (2 s here) would answer 504.
	resp := getRawAnswer(t, func(id string) string {
		return "HTTP/1.1 200 OK\nX-Req: " + id + "\nContent-Length: 2\n\nok"
	})
	if resp.StatusCode != 502 {
		t.Fatalf("got status %d; want 502", resp.StatusCode)
	}
}

// getRawAnswer GETs / through a proxy to a raw backend that answers each request with
// answer(its X-Req id), and returns the response with its body closed.
func getRawAnswer(t *testing.T, answer func(id string) string) *http.Response {
	t.Helper()
	be := startRawBackend(t, "", func(r *backendRequest, c net.Conn) {
		_, _ = c.Write([]byte(answer(r.id)))
	})
	px := startProxy(t, parseConfig(t, rawPoolConfig(t, be.addr, "")))
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + px.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestBareLFInHead(t *testing.T) {
	t.Parallel()
	f := func(raw string, want bool) {
		t.Helper()
		if got := bareLFInHead([]byte(raw)); got != want {
			t.Fatalf("bareLFInHead(%q): got %v; want %v", raw, got, want)
		}
	}
	f("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false)
	f("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n\n\n\n", false) // LFs in the body
	f("HTTP/1.1 200 OK\nContent-Length: 2\n\nok", true)
	f("HTTP/1.1 200 OK\r\nX: 1\nContent-Length: 2\r\n\r\nok", true)
	f("HTTP/1.1 200 OK\r\nX: 1", false) // the rest has not arrived
	f("", false)
}
