package proxy

import "testing"

// TestScanHead: a head with a bare-LF line end is caught wherever the reads split it;
// bytes after the head, or bytes that do not start with a request line (the rest of a
// pipelined body), are never judged.
func TestScanHead(t *testing.T) {
	for _, c := range []struct {
		in string
		ok bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody\nwith bare\n\nLFs", true},
		{"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"GET / HTTP/1.1\nHost: a\n\n", false},
		{"GET / HTTP/1.1\nHost: a\r\n\r\n", false},
		{"GET / HTTP/1.0\r\nHost: a\nX: y\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\n\n", false},
		{"rest of a pipelined body\nmore\n\n", true},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", true},
	} {
		for split := 0; split <= len(c.in); split++ {
			var sc scanConn
			sc.head = true
			ok := sc.scanHead([]byte(c.in[:split]))
			if ok && sc.head {
				ok = sc.scanHead([]byte(c.in[split:]))
			}
			if ok != c.ok {
				t.Fatalf("%q split at %d: got %v; want %v", c.in, split, ok, c.ok)
			}
		}
	}
}
