package proxy

import "testing"

// TestScanHead: a head with a bare-LF line end is caught wherever the reads split it,
// the second and later heads of a pipelined series too; body bytes (Content-Length or
// chunked, trailers included) are never judged, nor what follows an Upgrade. Unsplit, the
// failing read hands on the bytes before the bad head and one byte of it.
func TestScanHead(t *testing.T) {
	t.Parallel()
	const get = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
	const post = "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nline\nline\n\n"
	const chunked = "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\na\nb\nc\r\n3;x=y\r\n\n\n\n\r\n0\r\nX-T: 1\r\n\r\n"
	for _, c := range []struct {
		in  string
		bad int // where the bad head starts; -1: none
	}{
		{get, -1},
		{"\r\n" + get, -1},
		{"\n" + get, -1},
		{"GET / HTTP/1.1\nHost: a\n\n", 0},
		{"GET / HTTP/1.1\nHost: a\r\n\r\n", 0},
		{"GET / HTTP/1.0\r\nHost: a\nX: y\r\n\r\n", 0},
		{"GET / HTTP/1.1\r\nHost: a\r\n\n", 0},
		{post + get, -1},
		{chunked + get, -1},
		{post + chunked + post + get, -1},
		{get + "GET /b HTTP/1.1\nHost: a\r\n\r\n", len(get)},
		{post + "GET /b HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", len(post)},
		{chunked + "GET /b HTTP/1.1\nHost: a\r\n\r\n", len(chunked)},
		{get + "body of a GET\nwithout a length\n", len(get)},
		{"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n\x81\x05a\nb\nc", -1},
		{"POST /u HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx\nnot scanned\n", -1},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", -1},
	} {
		for split := 0; split <= len(c.in); split++ {
			var sc scanConn
			sc.startHead()
			cut := sc.scan([]byte(c.in[:split]))
			if cut < 0 {
				cut = sc.scan([]byte(c.in[split:]))
			}
			if (cut >= 0) != (c.bad >= 0) {
				t.Fatalf("%q split at %d: got cut %d; want bad head at %d", c.in, split, cut, c.bad)
			}
			if split == len(c.in) && c.bad >= 0 && cut != c.bad+1 {
				t.Fatalf("%q: handed on %d bytes; want %d (up to the bad head and one byte of it)", c.in, cut, c.bad+1)
			}
		}
	}
}

// The scan's chunk-size reading and the backend side's strict one share hexSize; both
// take 1 to 15 hex digits, and only the strict one judges what follows them.
func TestChunkSizeParsers(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		line   string
		size   int64
		scanOK bool // chunkSize
		strict bool // parseChunkSize, the line ended by CRLF
	}{
		{"0", 0, true, true},
		{"1a", 26, true, true},
		{"FfFf", 0xffff, true, true},
		{"10;ext=1", 16, true, true},
		{"10 ;ext", 16, true, true},
		{"10\t", 16, true, true},
		{"7fffffffffffffff"[1:], 0xfffffffffffffff, true, true},
		{"1000000000000000", 0, false, false}, // 16 digits
		{"", 0, false, false},
		{";ext", 0, false, false},
		{"-1", 0, false, false},
		{"0x10", 0, true, false},
		{"5z", 5, true, false},
	} {
		size, ok := chunkSize([]byte(c.line))
		if ok != c.scanOK || ok && size != c.size {
			t.Errorf("chunkSize(%q) = %d, %v; want %d, %v", c.line, size, ok, c.size, c.scanOK)
		}
		size, err := parseChunkSize([]byte(c.line + "\r\n"))
		if (err == nil) != c.strict || err == nil && size != c.size {
			t.Errorf("parseChunkSize(%q) = %d, %v; want %d, ok %v", c.line, size, err, c.size, c.strict)
		}
	}
}
