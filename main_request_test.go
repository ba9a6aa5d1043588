package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestClientErrorsCounted: the binary's listener stack refuses a bare-LF request at once
// (400, not a 408 after read_timeout), and requests broken by the client are counted by
// reason in lb_client_errors_total (TestRequestCorpus shows a backend receives none of them).
func TestClientErrorsCounted(t *testing.T) {
	t.Parallel()
	p, _ := startOne(t)
	status := func(raw string) int {
		t.Helper()
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // read_timeout is 30 s
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for raw, want := range map[string]int{
		"GET /public HTTP/1.1\nHost: x\n\n":            400,
		"GET /a/%2e%2e/b HTTP/1.1\r\nHost: x\r\n\r\n":  400,
		"GET /a HTTP/1.1\r\nHost: x@internal\r\n\r\n":  400,
		"GET /a HTTP/1.1\r\n" + "X-A: b\r\n" + "\r\n":  400,
		"GET http:///a HTTP/1.1\r\nHost: x\r\n\r\n":    400,
		"GET /a HTTP/1.1\r\nHost: x\r\nX Y: z\r\n\r\n": 400,
	} {
		if got := status(raw); got != want {
			t.Errorf("%q: got %d; want %d", raw, got, want)
		}
	}
	for reason, want := range map[string]float64{"framing": 2, "escaped_path": 1, "host": 3} {
		if got := p.metric(t, `lb_client_errors_total{reason="`+reason+`"}`); got != want {
			t.Errorf(`lb_client_errors_total{reason=%q} = %v; want %v`, reason, got, want)
		}
	}
}
