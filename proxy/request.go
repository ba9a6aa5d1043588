package proxy

import (
	"bytes"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/internal/reqpath"
)

// canonicalize makes the request's target and Host the ones every decision is made on and
// the ones forwarded (docs/behaviour.md#request-processing):
//
//   - the target is origin-form ("/path?query") or absolute-form ("http://authority/path",
//     RFC 9112 §3.2.2), whose authority replaces the Host header; anything else is refused;
//   - the path becomes its canonical form (reqpath.Canonical, escaped slashes as mode
//     says) and the query is kept as sent;
//   - the Host (or the authority) must be a valid host[:port] without userinfo, and is
//     lower-cased; HTTP/1.1 needs one (RFC 9112 §3.2), HTTP/1.0 without one is forwarded
//     with the backend's address (forward).
//
// Afterwards the request's RequestURI is the canonical origin-form target (requestPath
// reads the path from it) and fasthttp's URI forwards it byte for byte. A target that is
// already canonical origin-form is left alone; no allocation either way.
func canonicalize(req *fasthttp.Request, mode reqpath.Escaped) *reply {
	h := &req.Header
	target := h.RequestURI()
	absolute := false
	switch {
	case len(target) > 0 && target[0] == '/':
	case hasPrefixFold(target, "http://") || hasPrefixFold(target, "https://"):
		rest := target[bytes.IndexByte(target, ':')+3:]
		n := 0
		for n < len(rest) && rest[n] != '/' && rest[n] != '?' && rest[n] != '#' {
			n++
		}
		if !validHost(rest[:n]) {
			return &replyBadHost // empty, userinfo, or not host[:port]
		}
		h.SetHostBytes(rest[:n])
		target = rest[n:]
		absolute = true
	default:
		return &replyBadTarget // authority-form, asterisk-form, or garbage
	}
	host := h.Host()
	switch {
	case len(host) == 0 && !h.IsHTTP11():
		// HTTP/1.0 needs no Host; forward sends the backend's address.
	case !validHost(host):
		return &replyBadHost
	case hasUpper(host):
		// Slow path. A host is case-insensitive (RFC 3986 §3.2.2) and fasthttp sends it
		// in lower case: route on those bytes too.
		sc := getScratch()
		sc.b = append(sc.b[:0], host...)
		for i, c := range sc.b {
			if 'A' <= c && c <= 'Z' {
				sc.b[i] = c + 'a' - 'A'
			}
		}
		h.SetHostBytes(sc.b)
		putScratch(sc)
	}

	path, query := target, target[len(target):]
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		path, query = target[:q], target[q:]
	}
	for _, c := range query {
		if c <= ' ' || c == 0x7f || c == '#' {
			return &replyBadTarget
		}
	}
	sc := getScratch()
	defer putScratch(sc)
	if len(path) == 0 {
		path = slash // "http://host" or "http://host?q"
	}
	var err error
	sc.b, err = reqpath.Canonical(sc.b[:0], path, mode)
	switch {
	case err == reqpath.ErrEscaped:
		return &replyEscapedPath
	case err != nil:
		return &replyBadTarget
	case absolute || !bytes.Equal(sc.b, path):
		sc.b = append(sc.b, query...)
		req.SetRequestURIBytes(sc.b) // copied into the header's own buffer
	}
	// Forward the target as it now stands, not fasthttp's decoded rendering of it.
	req.URI().DisablePathNormalizing = true
	return nil
}

var slash = []byte("/")

// requestPath is the canonical path of a request canonicalize accepted: its target up to
// the query. It is what routes, skip_paths, the access log and the backend all see.
func requestPath(req *fasthttp.Request) []byte {
	t := req.Header.RequestURI()
	if q := bytes.IndexByte(t, '?'); q >= 0 {
		return t[:q]
	}
	return t
}

// validHost reports whether h is host[:port] (RFC 9110 §7.2, RFC 3986 §3.2.2): a name of
// letters, digits, '-', '.', '_' and '~', or an IP literal in brackets, then an optional
// port of 1 to 5 digits, at most 65535. Userinfo ('@'), percent-encoding and an empty host are refused.
func validHost(h []byte) bool {
	if len(h) == 0 {
		return false
	}
	i := 0
	if h[0] == '[' {
		i = 1
		for i < len(h) && (unhexDigit(h[i]) || h[i] == ':' || h[i] == '.') {
			i++
		}
		if i == 1 || i >= len(h) || h[i] != ']' {
			return false
		}
		i++
	} else {
		for i < len(h) && nameChar(h[i]) {
			i++
		}
		if i == 0 {
			return false
		}
	}
	if i == len(h) {
		return true
	}
	port := h[i:]
	if port[0] != ':' || len(port) < 2 || len(port) > 6 {
		return false
	}
	n := 0
	for _, c := range port[1:] {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535 // a TCP port
}

func hasUpper(b []byte) bool {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}

func nameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func unhexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// hasPrefixFold reports whether b starts with the lower-case ASCII string s, ignoring case.
func hasPrefixFold(b []byte, s string) bool {
	return len(b) >= len(s) && eqFold(b[:len(s)], s)
}
