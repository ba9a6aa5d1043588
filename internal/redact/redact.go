// Package redact keeps secrets and runaway input out of error messages and logs: it hides
// the userinfo of URLs (a Redis password) and truncates long text.
package redact

import (
	"errors"
	"net/url"
	"strings"
	"unicode/utf8"
)

// URL returns s with the userinfo of its authority, if any, replaced by "xxxxx" — the
// whole userinfo, since a password is sometimes put where the user name goes. It works on
// the text, so a URL that does not parse is redacted too.
func URL(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	auth := s[i+3:]
	if j := strings.IndexAny(auth, "/?#"); j >= 0 {
		auth = auth[:j]
	}
	at := strings.LastIndexByte(auth, '@')
	if at < 0 {
		return s
	}
	return s[:i+3] + "xxxxx" + s[i+3+at:]
}

// Err returns err without the URL a *url.Error carries (it would print the userinfo);
// other errors are returned as they are.
func Err(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Truncate returns s cut to at most n bytes (on a UTF-8 boundary) with "… (N bytes)"
// appended when it was longer.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "… (" + itoa(len(s)) + " bytes)"
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
