package proxy

import (
	"strings"
	"testing"
)

// TestClientAddressAndPathOverrideFields: the client-address fields backends and
// frameworks take for the client (X-Real-IP, True-Client-IP, X-Client-IP,
// CF-Connecting-IP, Fastly-Client-IP) reach the backend only from a peer in
// trusted_proxies, every copy and case dropped otherwise; the path overrides IIS URL
// Rewrite and Symfony serve instead of the target (X-Original-URL, X-Rewrite-URL) never
// reach it, from any peer. The backend is a raw recording one: what it got is checked
// byte for byte.
func TestClientAddressAndPathOverrideFields(t *testing.T) {
	cases := []struct {
		field       string // as sent, twice, in two cases
		fromTrusted bool   // reaches the backend from a trusted peer
	}{
		{"X-Real-IP", true},
		{"True-Client-IP", true},
		{"X-Client-IP", true},
		{"CF-Connecting-IP", true},
		{"Fastly-Client-IP", true},
		{"X-Original-URL", false},
		{"X-Rewrite-URL", false},
	}
	for _, trusted := range []bool{false, true} {
		be := startTapBackend(t, func(string) string { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" })
		extra := ""
		if trusted {
			extra = "server: { trusted_proxies: [127.0.0.1/32] }\n"
		}
		px := startProxy(t, poolConfig(t, extra, be.url))
		for _, c := range cases {
			value := "203.0.113.9"
			if strings.HasSuffix(c.field, "-URL") {
				value = "/admin/secret"
			}
			resp, _ := px.raw(t, "GET /public HTTP/1.1\r\nHost: pub.example\r\n"+c.field+": "+value+"\r\n"+
				strings.ToLower(c.field)+": "+value+"\r\nX-Other: kept\r\nConnection: close\r\n\r\n")
			got := be.take()
			if !strings.HasPrefix(resp, "HTTP/1.1 200") || len(got) != 1 {
				t.Fatalf("trusted %v, %s: got %.40q, %d forwarded; want 200, 1", trusted, c.field, resp, len(got))
			}
			n := strings.Count(strings.ToLower(got[0]), "\r\n"+strings.ToLower(c.field)+":")
			want := 0
			if trusted && c.fromTrusted {
				want = 2
			}
			if n != want {
				t.Errorf("trusted %v: the backend got %d %s lines; want %d:\n%s", trusted, n, c.field, want, got[0])
			}
			if rawField(got[0], "X-Other") != "kept" || !strings.HasPrefix(got[0], "GET /public HTTP/1.1\r\n") {
				t.Errorf("trusted %v, %s: the rest of the request changed:\n%s", trusted, c.field, got[0])
			}
		}
	}
}

// TestClientRequestIDIsBounded: an X-Request-Id of 1 to 200 token characters is kept; a
// longer one, one with other characters, an empty one, or two of them are replaced by one
// the proxy generates (32 hex digits), so a backend that echoes it cannot be made to
// answer a head over max_header_bytes, nor echo markup or a second field.
func TestClientRequestIDIsBounded(t *testing.T) {
	be := startTapBackend(t, func(req string) string {
		return "HTTP/1.1 200 OK\r\nX-Request-Id: " + rawField(req, "X-Request-Id") + "\r\nContent-Length: 2\r\n\r\nok"
	})
	px := startProxy(t, poolConfig(t, "", be.url))
	ok200 := strings.Repeat("a", 200)
	cases := []struct {
		name, fields string
		kept         string // the id the backend must get; "" for a generated one
	}{
		{"short", "X-Request-Id: abc-123_x.Y~\r\n", "abc-123_x.Y~"},
		{"at the limit", "X-Request-Id: " + ok200 + "\r\n", ok200},
		{"over the limit", "X-Request-Id: " + ok200 + "b\r\n", ""},
		{"near max_header_bytes", "X-Request-Id: " + strings.Repeat("B", 13000) + "\r\n", ""},
		{"space inside", "X-Request-Id: a b\r\n", ""},
		{"markup", "x-request-id: <script>alert(1)</script>\r\n", ""},
		{"quote", "X-Request-Id: a\"b\r\n", ""},
		{"empty", "X-Request-Id: \r\n", ""},
		{"twice", "X-Request-Id: one\r\nX-Request-Id: two\r\n", ""},
		{"twice, second long", "X-Request-Id: one\r\nX-REQUEST-ID: " + strings.Repeat("C", 9000) + "\r\n", ""},
	}
	for _, c := range cases {
		resp, _ := px.raw(t, "GET / HTTP/1.1\r\nHost: x\r\n"+c.fields+"Connection: close\r\n\r\n")
		got := be.take()
		if !strings.HasPrefix(resp, "HTTP/1.1 200") || len(got) != 1 {
			t.Fatalf("%s: got %.60q, %d forwarded; want 200, 1", c.name, resp, len(got))
		}
		if n := strings.Count(strings.ToLower(got[0]), "\r\nx-request-id:"); n != 1 {
			t.Fatalf("%s: the backend got %d X-Request-Id lines; want 1", c.name, n)
		}
		id := rawField(got[0], "X-Request-Id")
		if c.kept != "" && id != c.kept {
			t.Errorf("%s: the backend got X-Request-Id %.40q; want the client's kept", c.name, id)
		}
		if c.kept == "" && !generatedID(id) {
			t.Errorf("%s: the backend got X-Request-Id %.40q; want a generated one (32 hex digits)", c.name, id)
		}
	}
}

func generatedID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range id {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}
