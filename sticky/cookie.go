package sticky

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"time"
)

// SessionIDLen is the length of a session ID: 128 random bits in unpadded base64url.
const SessionIDLen = 22

// CookieLen is the length of a cookie value: "<sid>.<ref>.<sig>".
const CookieLen = SessionIDLen + 1 + RefLen + 1 + sigLen

// Cookie is a parsed session cookie value "<sid>.<ref>.<sig>". Its fields are sub-slices of
// the parsed value: valid only as long as that buffer (for fasthttp, until the request is
// released).
type Cookie struct {
	SID []byte // session ID: the store key
	Ref []byte // opaque reference to the session's backend (Signer.Ref); trust it only after Signer.Verify
	Sig []byte // base64url truncated HMAC
}

// ParseCookie splits a cookie value into its parts and checks their syntax (not the
// signature: see Signer.Verify). A value wrapped in double quotes (RFC 6265 §4.1.1
// cookie-value) is unwrapped. ok is false for anything else, which the caller treats as no
// cookie. Allocation-free.
func ParseCookie(v []byte) (c Cookie, ok bool) {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	if len(v) != CookieLen || v[SessionIDLen] != '.' || v[SessionIDLen+1+RefLen] != '.' {
		return Cookie{}, false
	}
	c = Cookie{SID: v[:SessionIDLen], Ref: v[SessionIDLen+1 : SessionIDLen+1+RefLen], Sig: v[CookieLen-sigLen:]}
	if !isBase64URL(c.SID) || !isBase64URL(c.Ref) || !isBase64URL(c.Sig) {
		return Cookie{}, false
	}
	return c, true
}

func isBase64URL(b []byte) bool {
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// AppendSessionID appends a new random session ID (SessionIDLen bytes of base64url, 128 bits
// from crypto/rand) to dst and returns the extended buffer. Allocation-free when dst has
// room for SessionIDLen+16 more bytes.
func AppendSessionID(dst []byte) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, SessionIDLen+16)...) // does not allocate when cap allows
	raw := dst[n+SessionIDLen:]
	// crypto/rand.Read never returns an error (Go 1.24+: it crashes the program instead).
	_, _ = rand.Read(raw)
	base64.RawURLEncoding.Encode(dst[n:n+SessionIDLen], raw)
	return dst[:n+SessionIDLen]
}

// CookieSpec is the session cookie's name and attributes (config sticky.cookie, sticky.ttl).
// Build one per table (one with Secure for a TLS listener); read-only after, so safe for
// concurrent use.
type CookieSpec struct {
	Name   string        // cookie name, e.g. "lb_sticky"
	MaxAge time.Duration // Max-Age; <= 0 omits it (a browser-session cookie)
	Secure bool          // add Secure: the listener is TLS
}

// Validate reports whether Name is a valid cookie name (an RFC 9110 token, RFC 6265 §4.1.1).
func (c *CookieSpec) Validate() error {
	if c.Name == "" {
		return fmt.Errorf("cannot use empty sticky cookie name")
	}
	for i := 0; i < len(c.Name); i++ {
		if !isTokenChar(c.Name[i]) {
			return fmt.Errorf("cannot use sticky cookie name %q: only token characters (RFC 9110 §5.6.2)", c.Name)
		}
	}
	return nil
}

func isTokenChar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// AppendSetCookie appends a whole Set-Cookie header value for the session to dst:
//
//	<name>=<sid>.<ref>.<sig>; Path=/; Max-Age=<s>; HttpOnly; SameSite=Lax[; Secure]
//
// (ref is s.Ref(0, backendID)) and returns the extended buffer. Allocation-free when dst has
// room.
func (c *CookieSpec) AppendSetCookie(dst []byte, s *Signer, sid []byte, ref string) []byte {
	dst = append(dst, c.Name...)
	dst = append(dst, '=')
	dst = s.AppendCookieValue(dst, sid, ref)
	dst = append(dst, "; Path=/"...)
	if c.MaxAge > 0 {
		dst = append(dst, "; Max-Age="...)
		dst = strconv.AppendInt(dst, int64((c.MaxAge+time.Second-1)/time.Second), 10)
	}
	dst = append(dst, "; HttpOnly; SameSite=Lax"...)
	if c.Secure {
		dst = append(dst, "; Secure"...)
	}
	return dst
}
