package sticky

import (
	"bytes"
	"testing"
)

// FuzzParseCookie: no input panics; whatever parses re-serialises to itself and only a value
// this signer made verifies.
func FuzzParseCookie(f *testing.F) {
	s := NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	good := s.AppendCookieValue(nil, []byte("AAAAAAAAAAAAAAAAAAAAAA"), s.Ref(0, "web-127.0.0.1_8081"))
	f.Add(good)
	f.Add([]byte(`"` + string(good) + `"`))
	f.Add([]byte(""))
	f.Add([]byte("AAAAAAAAAAAAAAAAAAAAAA..AAAAAAAAAAAAAAAAAAAAAA"))
	f.Fuzz(func(t *testing.T, v []byte) {
		c, ok := ParseCookie(v)
		if !ok {
			return
		}
		re := append(append(append(append(append([]byte{}, c.SID...), '.'), c.Ref...), '.'), c.Sig...)
		want := v
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			want = v[1 : len(v)-1]
		}
		if !bytes.Equal(re, want) {
			t.Fatalf("parsed %q into %+v, which reads back as %q", v, c, re)
		}
		if s.Verify(c) && !bytes.Equal(s.AppendCookieValue(nil, c.SID, string(c.Ref)), re) {
			t.Fatalf("%q verified but is not what the signer makes", v)
		}
	})
}
