package reqpath

import (
	"bytes"
	"testing"
)

// FuzzCanonical: whatever the input, a canonical path starts with one '/', holds no dot
// segment, no byte a request target cannot carry, no escape the mode removes, and is its
// own canonical form; HasPrefix on it agrees with a segment-by-segment comparison.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/admin/x/..%2F..%2Fpublic", "/admin/x/%2e%2e/%2e%2e/public",
		"/admin%2f..%2fpublic", "/public/..;/admin/secret", "/a//b/./c/", "/%41%7e%20", "//x", "/a%5c..%5cb"} {
		f.Add(s, uint8(0))
	}
	f.Fuzz(func(t *testing.T, in string, m uint8) {
		mode := Escaped(m % 3)
		out, err := Canonical(nil, []byte(in), mode)
		if err != nil {
			return
		}
		if len(out) == 0 || out[0] != '/' || len(out) > 1 && out[1] == '/' {
			t.Fatalf("%q -> %q: not a rooted path with one leading slash", in, out)
		}
		for _, seg := range bytes.Split(out[1:], []byte("/")) {
			if string(seg) == "." || string(seg) == ".." {
				t.Fatalf("%q -> %q: dot segment left", in, out)
			}
			if bytes.HasPrefix(seg, []byte(".;")) || bytes.HasPrefix(seg, []byte("..;")) {
				t.Fatalf("%q -> %q: dot segment with parameters left", in, out)
			}
		}
		for i, c := range out {
			if c <= ' ' || c == 0x7f || c == '\\' || c == '?' || c == '#' {
				t.Fatalf("%q -> %q: byte %q at %d", in, out, c, i)
			}
			if c == '%' {
				if i+2 >= len(out) || unhex(out[i+1]) < 0 || unhex(out[i+2]) < 0 {
					t.Fatalf("%q -> %q: bad escape at %d", in, out, i)
				}
				d := byte(unhex(out[i+1])<<4 | unhex(out[i+2]))
				if d == '.' || unreserved(d) || (d == '/' || d == '\\') && mode != EscapedKeep {
					t.Fatalf("%q -> %q: escape %%%02X left in mode %d", in, out, d, mode)
				}
			}
		}
		again, err := Canonical(nil, out, mode)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("%q -> %q -> %q, %v: not idempotent", in, out, again, err)
		}
		// HasPrefix against every prefix of whole segments of out, and one that is not.
		for i := 1; i <= len(out); i++ {
			whole := i == len(out) || out[i] == '/' || out[i-1] == '/'
			if got := HasPrefix(out, out[:i]); got != whole {
				t.Fatalf("HasPrefix(%q, %q) = %v; want %v", out, out[:i], got, whole)
			}
		}
	})
}
