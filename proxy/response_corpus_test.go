package proxy

import (
	"net"
	"strings"
	"testing"
)

// respCase is one raw backend answer to a first client's request, what that client must
// get, and whether the upstream connection may carry the next client's request.
type respCase struct {
	name   string
	method string // the first client's method; GET if empty
	// answer is written in answer to the first request, with ID replaced by its id; late
	// is written after the first client has its answer (or gave up on it).
	answer, late string
	closeAfter   bool // the backend closes the connection after answer

	status int    // what the first client gets; 0: no response at all
	body   string // its body (ID replaced)
	abort  bool   // the head arrives, then the connection is closed before the body ends
	reuse  bool   // the second request may go over the first one's upstream connection
}

// responseCorpus is every backend-response case of issue 9 and of the upstream hygiene
// rules of docs/behaviour.md#backend-responses, each with the outcome the proxy must produce.
var responseCorpus = []respCase{
	{name: "well-framed", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nContent-Length: 5\r\n\r\nid=ID", status: 200, body: "id=ID", reuse: true},

	// Bytes after a complete response: never the next client's response.
	{name: "HEAD answer with a body", method: "HEAD", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nContent-Length: 124\r\n\r\n" + forged, status: 200},
	{name: "HEAD answer, body arrives later", method: "HEAD", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nContent-Length: 124\r\n\r\n", late: forged, status: 200},
	{name: "HEAD answer, chunked, no body", method: "HEAD", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nTransfer-Encoding: chunked\r\n\r\n", status: 200, reuse: true},
	{name: "204 with a body", answer: "HTTP/1.1 204 No Content\r\nX-Req: ID\r\n\r\n" + forged, status: 204},
	{name: "204 with Content-Length and no body", answer: "HTTP/1.1 204 No Content\r\nX-Req: ID\r\nContent-Length: 7\r\n\r\n", status: 204, reuse: true},
	{name: "304 with a body", answer: "HTTP/1.1 304 Not Modified\r\nX-Req: ID\r\n\r\n" + forged, status: 304},
	{name: "more bytes than Content-Length", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nContent-Length: 5\r\n\r\nid=ID" + forged, status: 200, body: "id=ID"},
	{name: "bytes on the idle connection later", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nContent-Length: 5\r\n\r\nid=ID", late: forged, status: 200, body: "id=ID"},
	{name: "bytes after the last chunk", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nid=ID\r\n0\r\n\r\n" + forged, status: 200, body: "id=ID"},
	{name: "bytes after a large body", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nContent-Length: 70000\r\n\r\n" + strings.Repeat("b", 70000) + forged, status: 200, body: strings.Repeat("b", 70000)},
	{name: "late bytes after a close-delimited body", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\n\r\nid=ID", closeAfter: true, status: 200, body: "id=ID"},

	// Ambiguous framing: the connection is closed after the response.
	{name: "Content-Length and chunked", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nid=ID\r\n0\r\n\r\n", status: 200, body: "id=ID"},
	{name: "chunked and Content-Length", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nTransfer-Encoding: chunked\r\ncontent-length : 40\r\n\r\n5\r\nid=ID\r\n0\r\n\r\n", status: 200, body: "id=ID"},
	{name: "two different Content-Lengths", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\nid=ID" + forged, status: 502},
	{name: "the same Content-Length twice", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nid=ID", status: 502},
	{name: "Content-Length with a sign", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nContent-Length: +5\r\n\r\nid=ID", status: 502},
	{name: "Transfer-Encoding identity", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nTransfer-Encoding: identity\r\n\r\nid=ID", status: 502},
	{name: "Transfer-Encoding gzip, chunked", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nid=ID\r\n0\r\n\r\n", status: 502},
	{name: "bad first chunk size", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + forged, status: 502},
	{name: "bad chunk size after the head was sent", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nid=ID\r\n-1\r\n" + forged, status: 200, abort: true},
	{name: "chunk longer than its size", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nid=ID\r\n0\r\n\r\n", status: 200, abort: true},
	{name: "chunked body cut off", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nid=ID\r\n", closeAfter: true, status: 200, abort: true},
	{name: "small body cut off", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nContent-Length: 50\r\n\r\nid=ID", closeAfter: true, status: 502},
	{name: "large body cut off", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nContent-Length: 700000\r\n\r\n" + strings.Repeat("b", 70000), closeAfter: true, status: 200, abort: true},

	// Status lines.
	{name: "101 to a request that asked for no upgrade", answer: "HTTP/1.1 101 Switching Protocols\r\nX-Req: ID\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n" + forged, status: 502},
	{name: "100 Continue before the answer", answer: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-Req: ID\r\nContent-Length: 5\r\n\r\nid=ID", status: 200, body: "id=ID", reuse: true},
	{name: "103 Early Hints before the answer", answer: "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nX-Req: ID\r\nContent-Length: 5\r\n\r\nid=ID", status: 200, body: "id=ID", reuse: true},
	{name: "not HTTP", answer: "<html>hello</html>\r\n\r\n", status: 502},
	{name: "Connection: close", answer: "HTTP/1.1 200 OK\r\nX-Req: ID\r\nConnection: close\r\nContent-Length: 5\r\n\r\nid=ID" + forged, status: 200, body: "id=ID"},
	{name: "HTTP/1.0 answer", answer: "HTTP/1.0 200 OK\r\nX-Req: ID\r\nContent-Length: 5\r\n\r\nid=ID" + forged, status: 200, body: "id=ID"},
	{name: "closed without an answer", answer: "", closeAfter: true, status: 502},
	// A version other than HTTP/1.0 or 1.1 is not an answer we can relay: the client would
	// frame it by that version's rules (an HTTP/0.x body ends at close), not ours.
	{name: "HTTP/1.0 answer, close-delimited", answer: "HTTP/1.0 200 OK\r\nX-Req: ID\r\n\r\nid=ID", closeAfter: true, status: 200, body: "id=ID"},
	{name: "HTTP/0.1 answer", answer: "HTTP/0.1 200 OK\r\nX-Req: ID\r\nContent-Length: 5\r\n\r\nid=ID", status: 502},
	{name: "HTTP/2.0 answer", answer: "HTTP/2.0 200 OK\r\nX-Req: ID\r\nContent-Length: 5\r\n\r\nid=ID", status: 502},
	{name: "HTTP/1.2 answer", answer: "HTTP/1.2 200 OK\r\nX-Req: ID\r\nContent-Length: 5\r\n\r\nid=ID", status: 502},
}

// TestResponseCorpus plays each raw backend answer to a first client, then sends a second
// client's request: the first client gets exactly the expected outcome, the second its own
// answer — never a byte the backend produced for the first — and the upstream connection
// is reused only when the first exchange was framed exactly.
func TestResponseCorpus(t *testing.T) {
	t.Parallel()
	for _, tc := range responseCorpus {
		t.Run(tc.name, func(t *testing.T) {
			const idA, idB = "AA", "BB" // two bytes, as "ID" in the answers
			lateGo, lateDone := make(chan struct{}), make(chan struct{})
			be := startRawBackend(t, "", func(r *backendRequest, c net.Conn) {
				if r.id != idA {
					_, _ = c.Write([]byte(goodAnswer(r.id)))
					return
				}
				_, _ = c.Write([]byte(strings.ReplaceAll(tc.answer, "ID", r.id)))
				if tc.closeAfter {
					c.Close()
				}
				if tc.late != "" {
					select {
					case <-lateGo:
					case <-t.Context().Done(): // the test failed before it
						return
					}
					_, _ = c.Write([]byte(tc.late))
					close(lateDone)
				}
			})
			px := startProxy(t, parseConfig(t, rawPoolConfig(t, be.addr, "")))
			method := tc.method
			if method == "" {
				method = "GET"
			}
			a := dialRaw(t, px.addr)
			status, _, body, err := a.do(method, "/", idA, "")
			wantBody := strings.ReplaceAll(tc.body, "ID", idA)
			switch {
			case tc.status == 0 && err == nil:
				t.Fatalf("first client: got status %d; want no response", status)
			case tc.abort && (status != tc.status || err == nil):
				t.Fatalf("first client: got status %d, body %q, err %v; want status %d and a body that ends in an error",
					status, body, err, tc.status)
			case !tc.abort && tc.status != 0 && (status != tc.status || err != nil || tc.status != 502 && body != wantBody):
				t.Fatalf("first client: got status %d, body %q, err %v; want %d %q", status, body, err, tc.status, wantBody)
			}
			if tc.late != "" {
				close(lateGo)
				<-lateDone
			}
			b := dialRaw(t, px.addr)
			status, id, body, err := b.do("GET", "/", idB, "")
			if err != nil || status != 200 || id != idB || body != "id="+idB {
				t.Fatalf("second client: got status %d, X-Req %q, body %q, err %v; want its own answer", status, id, body, err)
			}
			if conns := be.accepted.Load(); tc.reuse != (conns == 1) {
				t.Fatalf("the backend accepted %d connections; want the second request on the first's connection: %v", conns, tc.reuse)
			}
		})
	}
}
