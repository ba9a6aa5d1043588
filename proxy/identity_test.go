package proxy

import (
	"net/netip"
	"testing"
)

// TestWalkXFF: the client is the rightmost X-Forwarded-For address not in trusted_proxies;
// the forwarded chain starts at its entry.
func TestWalkXFF(t *testing.T) {
	t.Parallel()
	trusted := func(a netip.Addr) bool {
		return netip.MustParsePrefix("10.0.0.0/8").Contains(a) || a == netip.MustParseAddr("2001:db8::7")
	}
	peer := netip.MustParseAddr("10.0.0.1")
	f := func(xff, wantClient, wantChain string) {
		t.Helper()
		client, from := walkXFF([]byte(xff), peer, trusted)
		if client.String() != wantClient || xff[from:] != wantChain {
			t.Fatalf("walkXFF(%q): got %s, chain %q; want %s, chain %q", xff, client, xff[from:], wantClient, wantChain)
		}
	}
	f("", "10.0.0.1", "")
	f("203.0.113.5", "203.0.113.5", "203.0.113.5")
	f("203.0.113.5, 10.0.0.2", "203.0.113.5", "203.0.113.5, 10.0.0.2")
	// A client that sends its own X-Forwarded-For cannot choose its identity: the trusted
	// hop appended the real address, and the walk stops there.
	f("1.1.1.1, 198.51.100.9, 203.0.113.5", "203.0.113.5", "203.0.113.5")
	f("1.1.1.1,203.0.113.5,10.0.0.3 , 10.0.0.2", "203.0.113.5", "203.0.113.5,10.0.0.3 , 10.0.0.2")
	f("10.0.0.9, 10.0.0.2", "10.0.0.9", "10.0.0.9, 10.0.0.2") // all trusted: the leftmost
	f("203.0.113.5, , 10.0.0.2,", "203.0.113.5", "203.0.113.5, , 10.0.0.2,")
	// Garbage written by a trusted hop: the client is that hop.
	f("203.0.113.5, unknown, 10.0.0.2", "10.0.0.2", "10.0.0.2")
	f("203.0.113.5, unknown", "10.0.0.1", "")
	f("203.0.113.5, 10.0.0.2, 1.2.3.4.5", "10.0.0.1", "")
	// Ports, brackets, IPv6, mapped IPv4, zones.
	f("203.0.113.5:4711, 10.0.0.2", "203.0.113.5", "203.0.113.5:4711, 10.0.0.2")
	f("[2001:db8::1]:80", "2001:db8::1", "[2001:db8::1]:80")
	f("[2001:db8::1], 2001:db8::7", "2001:db8::1", "[2001:db8::1], 2001:db8::7")
	f("::ffff:203.0.113.5", "203.0.113.5", "::ffff:203.0.113.5")
	f("::ffff:10.0.0.4", "10.0.0.4", "::ffff:10.0.0.4") // trusted once unmapped
	f("fe80::1%eth0", "10.0.0.1", "")
	f("203.0.113.5:99999", "10.0.0.1", "")
}

func FuzzWalkXFF(f *testing.F) {
	f.Add("1.1.1.1, 10.0.0.2, [2001:db8::1]:80, unknown,,")
	trusted := func(a netip.Addr) bool { return netip.MustParsePrefix("10.0.0.0/8").Contains(a) }
	peer := netip.MustParseAddr("10.0.0.1")
	f.Fuzz(func(t *testing.T, xff string) {
		client, from := walkXFF([]byte(xff), peer, trusted)
		if from < 0 || from > len(xff) || !client.IsValid() {
			t.Fatalf("walkXFF(%q) = %v, %d", xff, client, from)
		}
		if from < len(xff) {
			if a, ok := parseHop([]byte(firstEntry(xff[from:]))); !ok || a != client {
				t.Fatalf("walkXFF(%q): chain %q does not start with the client %s", xff, xff[from:], client)
			}
		}
	})
}

func firstEntry(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			s = s[:i]
			break
		}
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
