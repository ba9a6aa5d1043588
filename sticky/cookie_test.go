package sticky

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestSessionID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := AppendSessionID([]byte("prefix:"))
		if !bytes.HasPrefix(id, []byte("prefix:")) {
			t.Fatalf("got %q; want the prefix kept", id)
		}
		id = id[len("prefix:"):]
		if len(id) != SessionIDLen || !isBase64URL(id) {
			t.Fatalf("got session ID %q; want %d base64url bytes", id, SessionIDLen)
		}
		if seen[string(id)] {
			t.Fatalf("session ID %q repeated", id)
		}
		seen[string(id)] = true
	}
}

func TestSetCookie(t *testing.T) {
	s := NewSigner([]byte("0123456789abcdef"))
	sid := []byte("AAAAAAAAAAAAAAAAAAAAAA")
	ref := s.Ref(0, "web-127.0.0.1_8081")
	value := string(s.AppendCookieValue(nil, sid, ref))
	f := func(spec CookieSpec, want string) {
		t.Helper()
		got := string(spec.AppendSetCookie(nil, s, sid, ref))
		if got != want {
			t.Fatalf("got %q; want %q", got, want)
		}
	}
	f(CookieSpec{Name: "lb_sticky", MaxAge: 30 * time.Minute},
		"lb_sticky="+value+"; Path=/; Max-Age=1800; HttpOnly; SameSite=Lax")
	f(CookieSpec{Name: "lb_sticky", MaxAge: 1500 * time.Millisecond, Secure: true},
		"lb_sticky="+value+"; Path=/; Max-Age=2; HttpOnly; SameSite=Lax; Secure")
	f(CookieSpec{Name: "s"},
		"s="+value+"; Path=/; HttpOnly; SameSite=Lax")
	if !strings.HasPrefix(value, string(sid)+"."+ref+".") || len(value) != CookieLen {
		t.Fatalf("got cookie value %q; want <sid>.<ref>.<sig>", value)
	}
}

// TestCookieNamesNoBackend: the reference in a cookie is opaque — it holds nothing of the
// backend's ID, address or port — yet every signer with the same key makes the same one,
// and a different key a different one.
func TestCookieNamesNoBackend(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	s1, s2 := NewSigner(key), NewSigner(key)
	other := NewSigner([]byte("another key, just as long......."))
	for _, id := range []string{"web-127.0.0.1_8081", "web-10.0.0.7_80", "a"} {
		ref := s1.Ref(0, id)
		if len(ref) != RefLen || !isBase64URL([]byte(ref)) {
			t.Fatalf("Ref(%q) = %q; want %d base64url characters", id, ref, RefLen)
		}
		if s2.Ref(0, id) != ref {
			t.Fatalf("two signers with one key: got refs %q and %q for %q; want equal", ref, s2.Ref(0, id), id)
		}
		if other.Ref(0, id) == ref {
			t.Fatalf("signers with different keys made the same ref %q", ref)
		}
		// A fixed session ID: a random one may spell "web" or "8081" by chance, and what is
		// checked here is what the cookie derives from the backend.
		sid := bytes.Repeat([]byte("A"), len(AppendSessionID(nil)))
		v := string(s1.AppendCookieValue(nil, sid, ref))
		for _, part := range []string{id, "127.0.0.1", "10.0.0.7", "8081", "web"} {
			if len(part) > 2 && strings.Contains(v, part) {
				t.Fatalf("cookie %q contains %q of backend %q", v, part, id)
			}
		}
	}
}

func TestCookieSpecValidate(t *testing.T) {
	for _, name := range []string{"lb_sticky", "SID", "a.b-c"} {
		if err := (&CookieSpec{Name: name}).Validate(); err != nil {
			t.Fatalf("got %v for %q; want valid", err, name)
		}
	}
	for _, name := range []string{"", "a b", "a;b", "a=b", "é"} {
		if err := (&CookieSpec{Name: name}).Validate(); err == nil {
			t.Fatalf("got no error for cookie name %q", name)
		}
	}
}

func TestParseCookie(t *testing.T) {
	s := NewSigner([]byte("0123456789abcdef"))
	sid := AppendSessionID(nil)
	ref := s.Ref(0, "web-127.0.0.1_8081")
	good := s.AppendCookieValue(nil, sid, ref)
	c, ok := ParseCookie(good)
	if !ok || string(c.SID) != string(sid) || string(c.Ref) != ref || len(c.Sig) != sigLen {
		t.Fatalf("got %+v, %v for %q", c, ok, good)
	}
	if c, ok := ParseCookie([]byte(`"` + string(good) + `"`)); !ok || string(c.Ref) != ref {
		t.Fatal("quoted cookie value not accepted")
	}
	bad := func(v string) {
		t.Helper()
		if c, ok := ParseCookie([]byte(v)); ok {
			t.Fatalf("got %+v, ok for %q; want rejected", c, v)
		}
	}
	g := string(good)
	bad("")
	bad("x")
	bad(g[:len(g)-1])                                                    // short signature
	bad(g[1:])                                                           // short sid
	bad(string(sid) + "..AAAAAAAAAAAAAAAAAAAAAA")                        // empty ref
	bad(string(sid) + "." + ref[:RefLen-1] + "/.AAAAAAAAAAAAAAAAAAAAAA") // '/' in ref
	bad(string(sid) + ".web-127.0.0.1_8081.AAAAAAAAAAAAAAAAAAAAAA")      // a backend ID, not a ref
	bad(strings.Replace(g, ".", ":", 1))                                 // separator
	bad(string(sid[:21]) + "!" + g[22:])                                 // sid alphabet
	bad(g[:len(g)-1] + "=")                                              // sig alphabet
	bad(g + "A")                                                         // long
}

// TestTamperedHintIgnored: any change to sid, backend or signature fails verification; so
// does a signature made with another key.
func TestTamperedHintIgnored(t *testing.T) {
	s := NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	sid := AppendSessionID(nil)
	ref := s.Ref(0, "web-127.0.0.1_8081")
	good := s.AppendCookieValue(nil, sid, ref)
	if c, _ := ParseCookie(good); !s.Verify(c) {
		t.Fatal("a fresh hint does not verify")
	}
	tampered := func(what string, v []byte) {
		t.Helper()
		c, ok := ParseCookie(v)
		if ok && s.Verify(c) {
			t.Fatalf("tampered %s %q verified", what, v)
		}
	}
	swap := func(i int) []byte {
		v := bytes.Clone(good)
		if v[i] == 'A' {
			v[i] = 'B'
		} else {
			v[i] = 'A'
		}
		return v
	}
	tampered("sid", swap(0))
	tampered("backend", bytes.Replace(good, []byte(ref), []byte(s.Ref(0, "web-127.0.0.1_8082")), 1))
	tampered("signature", swap(len(good)-2))
	tampered("other backend, same signature", append(append(append([]byte{}, sid...), "."+s.Ref(0, "web-127.0.0.1_8083")+"."...), good[len(good)-sigLen:]...))
	other := NewSigner([]byte("another key, just as long......."))
	tampered("other key", other.AppendCookieValue(nil, sid, other.Ref(0, "web-127.0.0.1_8081")))
	if s.Verify(Cookie{SID: sid, Ref: []byte(ref), Sig: []byte("short")}) {
		t.Fatal("short signature verified")
	}
}

func TestSignerKeyRotation(t *testing.T) {
	old := NewSigner([]byte("old key old key old key"))
	cur := old.with([]byte("new key new key new key"))
	sid := AppendSessionID(nil)
	c1, _ := ParseCookie(old.AppendCookieValue(nil, sid, old.Ref(0, "web-1")))
	c2, _ := ParseCookie(cur.AppendCookieValue(nil, sid, cur.Ref(0, "web-1")))
	if !cur.Verify(c1) || !cur.Verify(c2) || old.Verify(c2) {
		t.Fatal("want the new signer to verify old and new hints, the old one only its own")
	}
	s := cur
	for i := range 5 {
		s = s.with([]byte("rotated key number " + string(rune('a'+i))))
	}
	if cur.Ref(1, "web-1") != old.Ref(0, "web-1") {
		t.Fatal("want the new signer's Ref(1) to be the old key's reference")
	}
	if len(s.keys) != maxKeys {
		t.Fatalf("got %d keys after rotations; want %d", len(s.keys), maxKeys)
	}
}
