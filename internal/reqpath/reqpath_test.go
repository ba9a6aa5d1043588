package reqpath

import (
	"testing"
)

func TestCanonical(t *testing.T) {
	const bad, esc = "<invalid>", "<escaped>"
	for _, c := range []struct {
		in                  string
		reject, keep, unesc string
	}{
		{"/", "/", "/", "/"},
		{"/a/b", "/a/b", "/a/b", "/a/b"},
		{"/a/b/", "/a/b/", "/a/b/", "/a/b/"},
		{"/a//b", "/a//b", "/a//b", "/a//b"},
		{"/a/./b", "/a/b", "/a/b", "/a/b"},
		{"/a/.", "/a/", "/a/", "/a/"},
		{"/a/b/..", "/a/", "/a/", "/a/"},
		{"/a/b/../c", "/a/c", "/a/c", "/a/c"},
		{"/..", "/", "/", "/"},
		{"/../../a", "/a", "/a", "/a"},
		{"/a//../b", "/a/b", "/a/b", "/a/b"},
		{"/%61%7E%2d", "/a~-", "/a~-", "/a~-"},
		{"/a%20b%c3%a9", "/a%20b%C3%A9", "/a%20b%C3%A9", "/a%20b%C3%A9"},
		{"/a%25", "/a%25", "/a%25", "/a%25"},
		// The attack cases of the issue.
		{"/admin/x/..%2F..%2Fpublic", esc, "/admin/x/..%2F..%2Fpublic", "/public"},
		{"/admin/x/%2e%2e/%2e%2e/public", esc, "/public", "/public"},
		{"/admin%2f..%2fpublic", esc, "/admin%2F..%2Fpublic", "/public"},
		{"/public/..;/admin/secret", bad, bad, bad},
		{"/public/.;/x", bad, bad, bad},
		{"/a%5C..%5Cb", esc, "/a%5C..%5Cb", "/b"},
		{"/file%2Etxt", esc, "/file.txt", "/file.txt"},
		{"/public;x/../admin", "/admin", "/admin", "/admin"},
		{"/a\\b", bad, bad, bad},
		{"/a b", bad, bad, bad},
		{"/a\x00", bad, bad, bad},
		{"/a%00", bad, bad, bad},
		{"/a%1f", bad, bad, bad},
		{"/a%", bad, bad, bad},
		{"/a%2", bad, bad, bad},
		{"/a%zz", bad, bad, bad},
		{"/a#b", bad, bad, bad},
		{"//evil/x", bad, bad, bad},
		{"/a/..//x", bad, bad, bad},
		{"a", bad, bad, bad},
		{"", bad, bad, bad},
		{"/...", "/...", "/...", "/..."},
		{"/.a/..b", "/.a/..b", "/.a/..b", "/.a/..b"},
	} {
		for _, m := range []struct {
			mode Escaped
			want string
		}{{EscapedReject, c.reject}, {EscapedKeep, c.keep}, {EscapedUnescape, c.unesc}} {
			got, err := Canonical(nil, []byte(c.in), m.mode)
			s := string(got)
			switch err {
			case ErrInvalid:
				s = bad
			case ErrEscaped:
				s = esc
			}
			if s != m.want {
				t.Errorf("Canonical(%q, mode %d) = %q, %v; want %q", c.in, m.mode, got, err, m.want)
			}
			if err == nil {
				// Canonical is idempotent: the forwarded path re-reads as itself.
				again, err := Canonical(nil, got, m.mode)
				if err != nil || string(again) != s {
					t.Errorf("Canonical(Canonical(%q)) = %q, %v; want it unchanged", c.in, again, err)
				}
			}
		}
	}
}

func TestHasPrefix(t *testing.T) {
	for _, c := range []struct {
		path, prefix string
		want         bool
	}{
		{"/public", "/public", true},
		{"/public/", "/public", true},
		{"/public/x", "/public", true},
		{"/publicity", "/public", false},
		{"/publicity-admin", "/public", false},
		{"/public;x", "/public", false},
		{"/pub", "/public", false},
		{"/api/x", "/api/", true},
		{"/api", "/api/", false},
		{"/anything", "/", true},
		{"/", "/", true},
	} {
		if got := HasPrefix([]byte(c.path), []byte(c.prefix)); got != c.want {
			t.Errorf("HasPrefix(%q, %q) = %v, want %v", c.path, c.prefix, got, c.want)
		}
	}
}

func TestCanonicalNoAlloc(t *testing.T) {
	buf := make([]byte, 0, 256)
	in := []byte("/a/b/%2e%2e/c/./d%41")
	if n := testing.AllocsPerRun(100, func() { _, _ = Canonical(buf[:0], in, EscapedKeep) }); n != 0 {
		t.Fatalf("Canonical allocates %v times per call", n)
	}
}
