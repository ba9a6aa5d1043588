// Package reqpath is the one definition of a request path the load balancer decides on
// and forwards (docs/behaviour.md#request-processing): Canonical turns the path of a request
// target into its canonical form, and HasPrefix matches a canonical path against a
// configured prefix on whole segments. Routing, skip_paths, the access log and the bytes
// sent to the backend all use the canonical form, so no decision is made on one path
// while the backend serves another.
package reqpath

import "errors"

// Escaped says what Canonical does with a percent-encoded '/', '\' or '.' (%2F, %5C, %2E
// in either case) in a path (server.escaped_slashes, like Envoy's
// path_with_escaped_slashes_action).
type Escaped uint8

const (
	// EscapedReject refuses the path (400).
	EscapedReject Escaped = iota
	// EscapedKeep keeps %2F and %5C as data inside their segment (upper-case hex) and
	// decodes %2E, which RFC 3986 §2.3 makes equivalent to '.'.
	EscapedKeep
	// EscapedUnescape decodes %2F and %5C to '/' (a segment separator) and %2E to '.'
	// before dot segments are resolved.
	EscapedUnescape
)

// ParseEscaped maps a server.escaped_slashes value to an Escaped.
func ParseEscaped(s string) (Escaped, bool) {
	switch s {
	case "reject":
		return EscapedReject, true
	case "keep":
		return EscapedKeep, true
	case "unescape":
		return EscapedUnescape, true
	}
	return 0, false
}

// Errors Canonical returns.
var (
	ErrInvalid = errors.New("invalid request path")
	ErrEscaped = errors.New("percent-encoded '/', '\\' or '.' in the path")
)

// Canonical appends to dst the canonical form of path, the path of a request target (it
// must start with '/'; no query). The rules, applied left to right in one pass:
//
//   - a byte below 0x21, DEL, '\', '#' or '?' is invalid, and so is a '%' not followed by
//     two hex digits, or an encoded control byte (%00-%1F, %7F);
//   - a percent-encoded unreserved character (ALPHA DIGIT - . _ ~) is decoded (RFC 3986
//     §6.2.2.2), except that an encoded '.' is subject to mode like '/' and '\'; other
//     escapes are kept, with upper-case hex digits (§6.2.2.1);
//   - the segments "." and ".." are resolved (RFC 3986 §5.2.4) — a ".." above the root
//     stays at the root — and a segment that is "." or ".." followed by ';' parameters
//     ("..;x") is invalid: some servers treat it as a dot segment, others do not;
//   - a path that starts with "//" is invalid: it is not an origin-form path any
//     intermediary reads the same way (some take the first segment as a host).
//
// Empty segments inside the path ("/a//b") are kept. A path that is already canonical
// comes out unchanged, byte for byte. Canonical does not allocate when dst has room.
func Canonical(dst, path []byte, mode Escaped) ([]byte, error) {
	if len(path) == 0 || path[0] != '/' {
		return dst, ErrInvalid
	}
	base := len(dst)
	i := 1 // after the separator at path[0]
	for {
		start := len(dst)
		dst = append(dst, '/')
		sep := false // the segment ended at a separator (raw or, unescaping, decoded)
	segment:
		for i < len(path) {
			c := path[i]
			switch {
			case c == '/':
				i++
				sep = true
				break segment
			case c == '%':
				if i+2 >= len(path) {
					return dst, ErrInvalid
				}
				h, l := unhex(path[i+1]), unhex(path[i+2])
				if h < 0 || l < 0 {
					return dst, ErrInvalid
				}
				d := byte(h<<4 | l)
				i += 3
				switch {
				case d < 0x20 || d == 0x7f:
					return dst, ErrInvalid
				case (d == '/' || d == '\\' || d == '.') && mode == EscapedReject:
					return dst, ErrEscaped
				case (d == '/' || d == '\\') && mode == EscapedUnescape:
					sep = true
					break segment
				case unreserved(d): // '.' included
					dst = append(dst, d)
				default:
					dst = append(dst, '%', upperHex[d>>4], upperHex[d&15])
				}
			case c <= ' ' || c == 0x7f || c == '\\' || c == '#' || c == '?':
				return dst, ErrInvalid
			default:
				dst = append(dst, c)
				i++
			}
		}
		seg := dst[start+1:]
		switch {
		case len(seg) == 1 && seg[0] == '.':
			dst = dst[:start+1] // "." goes; the separator before it stays for what follows
			if sep {
				dst = dst[:start]
			}
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			dst = dst[:start]
			if j := lastSlash(dst[base:]); j >= 0 {
				dst = dst[:base+j]
			}
			if !sep {
				dst = append(dst, '/')
			}
		case len(seg) > 1 && seg[0] == '.' && (seg[1] == ';' || len(seg) > 2 && seg[1] == '.' && seg[2] == ';'):
			return dst, ErrInvalid
		}
		if !sep {
			break
		}
	}
	if len(dst) == base {
		dst = append(dst, '/')
	}
	if len(dst)-base > 1 && dst[base+1] == '/' {
		return dst, ErrInvalid
	}
	return dst, nil
}

// HasPrefix reports whether the canonical path matches prefix on whole segments: path
// equals prefix, or continues it after a '/' (a prefix that ends in '/' already ends a
// segment). "/public" matches "/public" and "/public/x", never "/publicity" or
// "/public;x".
func HasPrefix(path, prefix []byte) bool {
	if len(path) < len(prefix) || string(path[:len(prefix)]) != string(prefix) {
		return false
	}
	return len(path) == len(prefix) || len(prefix) > 0 && prefix[len(prefix)-1] == '/' || path[len(prefix)] == '/'
}

func lastSlash(b []byte) int {
	for j := len(b) - 1; j >= 0; j-- {
		if b[j] == '/' {
			return j
		}
	}
	return -1
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

const upperHex = "0123456789ABCDEF"
