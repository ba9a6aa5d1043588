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
