package proxy

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"

	"github.com/valyala/fasthttp"
)

// Header flags found by one pass over the raw request header block.
const (
	hdrBad              = 1 << iota // bare LF or CR, obs-fold, bad name or value, CL with TE, Host twice: 400
	hdrConnection                   // Connection: its tokens name more hop-by-hop headers
	hdrHopByHop                     // Keep-Alive, Proxy-*, TE, Trailer, Upgrade
	hdrUpgrade                      // Upgrade
	hdrContentLength                // Content-Length
	hdrTransferEncoding             // Transfer-Encoding
	hdrForwarded                    // Forwarded, an X-Forwarded-* other than -For, X-Real-IP and the like
	hdrXFF                          // X-Forwarded-For
	hdrMultiXFF                     // X-Forwarded-For more than once
	hdrUnderscore                   // a header name with '_' (dropped, as nginx does)
	hdrHost                         // Host
	hdrTooMany                      // more than server.max_headers lines: 431
	hdrPathOverride                 // X-Original-URL or X-Rewrite-URL (dropped from every peer)
	hdrRequestID                    // X-Request-Id
	hdrBadRequestID                 // X-Request-Id twice, or not 1 to maxRequestID token characters: replaced
)

// maxRequestID is the longest X-Request-Id kept from a client: backends echo it in their
// answers and logs, so a longer one could push a response head over max_header_bytes.
const maxRequestID = 200

// scanRequestHeaders makes one pass over the header block exactly as the client sent it
// (fasthttp accepts and repairs some framing that we must refuse, RFC 9112 §5, §6.1,
// §6.3, RFC 9110 §5.5): bare-LF line ends, obs-fold continuation lines, a line without a
// colon, a name that is not a token (a space before the colon included), a value with a
// control character, Content-Length together with Transfer-Encoding, a Transfer-Encoding
// other than exactly "chunked", and Host or Transfer-Encoding twice are hdrBad. More than maxHeaders lines are hdrTooMany. It also notes the hop-by-hop headers
// present, so the common request with none of them skips the deletions.
func scanRequestHeaders(raw []byte, maxHeaders int) int {
	flags, n := 0, 0
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			break // the block's end (fasthttp has validated it)
		}
		line := raw[:i]
		raw = raw[i+1:]
		if len(line) == 0 || line[len(line)-1] != '\r' {
			return flags | hdrBad // bare LF
		}
		line = line[:len(line)-1]
		if len(line) == 0 {
			break // blank line: end of headers
		}
		if n++; n > maxHeaders {
			return flags | hdrTooMany
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) || !fieldValueOK(line[colon+1:]) {
			return flags | hdrBad // obs-fold (a leading space is no token), junk, or CTLs
		}
		f := classifyHeader(line[:colon])
		if f&hdrXFF != 0 && flags&hdrXFF != 0 {
			f |= hdrMultiXFF
		}
		if f&(hdrHost|hdrTransferEncoding) != 0 && flags&f != 0 {
			return flags | hdrBad // two Hosts (RFC 9112 §3.2) or two framing lists
		}
		if f&hdrTransferEncoding != 0 && !eqFold(bytes.TrimSpace(line[colon+1:]), "chunked") {
			// The one coding the proxy forwards. chunked not last leaves the body's length
			// unknown (RFC 9112 §6.3); fasthttp refuses codings it does not know, but lets
			// "identity" through and then reads the body as the next request.
			return flags | hdrBad
		}
		if f&hdrRequestID != 0 && (flags&hdrRequestID != 0 || !requestIDOK(line[colon+1:])) {
			f |= hdrBadRequestID
		}
		if bytes.IndexByte(line[:colon], '_') >= 0 {
			// X_Forwarded_For and the like become HTTP_X_FORWARDED_FOR in CGI-style
			// stacks, aliasing the headers we control.
			f |= hdrUnderscore
		}
		flags |= f
	}
	if flags&hdrContentLength != 0 && flags&hdrTransferEncoding != 0 {
		flags |= hdrBad
	}
	return flags
}

// requestIDOK reports whether an X-Request-Id value (with its optional whitespace) is one
// to maxRequestID token characters (RFC 9110 §5.6.2).
func requestIDOK(v []byte) bool {
	v = bytes.Trim(v, " \t")
	return len(v) > 0 && len(v) <= maxRequestID && isToken(v)
}

// isToken reports whether b is a token (RFC 9110 §5.6.2), as a field name must be.
func isToken(b []byte) bool {
	for _, c := range b {
		if !tokenChar[c] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// fieldValueOK reports whether a field value holds no control character but HTAB (RFC
// 9110 §5.5: CR, LF and NUL must be refused; the others have no business there either).
func fieldValueOK(v []byte) bool {
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func classifyHeader(k []byte) int {
	switch k[0] | 0x20 {
	case 'h':
		if eqFold(k, "host") {
			return hdrHost
		}
	case 'c':
		if eqFold(k, "connection") {
			return hdrConnection
		}
		if eqFold(k, "content-length") {
			return hdrContentLength
		}
		if eqFold(k, "cf-connecting-ip") {
			return hdrForwarded // Cloudflare's client address
		}
	case 'k':
		if eqFold(k, "keep-alive") {
			return hdrHopByHop
		}
	case 'p':
		if len(k) > 6 && eqFold(k[:6], "proxy-") {
			return hdrHopByHop
		}
	case 't':
		if eqFold(k, "te") || eqFold(k, "trailer") {
			return hdrHopByHop
		}
		if eqFold(k, "transfer-encoding") {
			return hdrTransferEncoding
		}
		if eqFold(k, "true-client-ip") {
			return hdrForwarded // Akamai's and Cloudflare's client address
		}
	case 'u':
		if eqFold(k, "upgrade") {
			return hdrHopByHop | hdrUpgrade
		}
	case 'f':
		if eqFold(k, "forwarded") {
			return hdrForwarded // RFC 7239
		}
		if eqFold(k, "fastly-client-ip") {
			return hdrForwarded
		}
	case 'x':
		if len(k) > 12 && eqFold(k[:12], "x-forwarded-") {
			if eqFold(k[12:], "for") {
				return hdrXFF
			}
			return hdrForwarded
		}
		if eqFold(k, "x-request-id") {
			return hdrRequestID
		}
		if eqFold(k, "x-real-ip") || eqFold(k, "x-client-ip") {
			return hdrForwarded // nginx's realip module, and others
		}
		if eqFold(k, "x-original-url") || eqFold(k, "x-rewrite-url") {
			// IIS URL Rewrite and Symfony serve the path these name instead of the target's.
			return hdrPathOverride
		}
	}
	return 0
}

// eqFold reports whether b equals the lower-case ASCII string s, ignoring case.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if b[i]|0x20 != s[i] {
			return false
		}
	}
	return true
}

// Header names, built once.
var (
	hXForwardedFor   = []byte("X-Forwarded-For")
	hXForwardedProto = []byte("X-Forwarded-Proto")
	hXForwardedHost  = []byte("X-Forwarded-Host")
	hXRequestID      = []byte("X-Request-Id")
	hConnection      = []byte("Connection")
	hUpgrade         = []byte("Upgrade")
	vHTTP            = []byte("http")
	vHTTPS           = []byte("https")
	vHTTP11          = []byte("HTTP/1.1")
)

// hopByHop are removed from both directions (RFC 9110 §7.6.1); Proxy-* is handled apart.
var hopByHop = []string{"Connection", "Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization"}

// prepareRequest removes hop-by-hop headers and sets the forwarding headers
// (docs/behaviour.md#forwarded-headers).
// For a WebSocket upgrade, Connection and Upgrade are kept for the backend.
// removeUntrusted deletes the fields no decision may see and no backend may get: underscore
// aliases, path overrides (from any peer: the proxy decided on the path it forwards, and a
// backend serving another one would bypass every path decision), and — from a peer not in
// trusted_proxies — the forwarded family and the geo header, every copy. Called once the
// client's identity is resolved (it reads a trusted peer's X-Forwarded-For) and before any
// routing, rate-limit or auth decision, so those decide on the fields that are forwarded.
func removeUntrusted(h *fasthttp.RequestHeader, flags int, ext *tableData, trusted bool) {
	if flags&hdrUnderscore != 0 {
		removeUnderscoreHeaders(h)
	}
	if flags&hdrPathOverride != 0 {
		removeClassified(h, hdrPathOverride)
	}
	if !trusted {
		if flags&(hdrXFF|hdrForwarded) != 0 {
			removeClassified(h, hdrForwarded|hdrXFF)
		}
		if ext.geoHeader != nil {
			h.DelBytes(ext.geoHeader)
		}
	}
}

func prepareRequest(ctx *fasthttp.RequestCtx, flags int, ext *tableData, id *identity, upgrade bool) {
	h := &ctx.Request.Header
	if flags&(hdrConnection|hdrHopByHop) != 0 {
		// Slow path: the client sent hop-by-hop headers.
		removeHopByHop(h, upgrade)
	}

	trusted := id.trusted
	var buf [64]byte
	ip := id.peer.AppendTo(buf[:0])
	if trusted && flags&hdrXFF != 0 {
		// The chain from the client's entry on (what a client wrote left of it is its
		// own claim, dropped), then the peer: the backend's leftmost address is the
		// client's identity.
		// One line: resolveIdentity folded a chain that came in several.
		sc := getScratch()
		sc.b = append(sc.b[:0], h.PeekBytes(hXForwardedFor)...)
		chain := sc.b[:0]
		// id.from is an offset into the value resolveIdentity read; nothing changes the
		// field since (Connection's tokens went before it), the check only keeps a
		// future change from slicing out of range.
		if id.from <= len(sc.b) {
			chain = bytes.TrimRight(sc.b[id.from:], " \t,")
		}
		n := copy(sc.b, chain)
		sc.b = sc.b[:n]
		if n > 0 {
			sc.b = append(sc.b, ", "...)
		}
		sc.b = append(sc.b, ip...)
		h.SetCanonical(hXForwardedFor, sc.b)
		putScratch(sc)
	} else {
		h.SetCanonical(hXForwardedFor, ip)
	}
	if !trusted || len(h.PeekBytes(hXForwardedProto)) == 0 {
		if ctx.IsTLS() {
			h.SetCanonical(hXForwardedProto, vHTTPS)
		} else {
			h.SetCanonical(hXForwardedProto, vHTTP)
		}
	}
	if !trusted || len(h.PeekBytes(hXForwardedHost)) == 0 {
		if host := h.Host(); len(host) > 0 {
			h.SetCanonical(hXForwardedHost, host)
		} else {
			h.DelBytes(hXForwardedHost)
		}
	}
	if flags&hdrBadRequestID != 0 {
		// Slow path: every copy goes, and the request gets one of ours.
		h.DelBytes(hXRequestID)
	}
	if len(h.PeekBytes(hXRequestID)) == 0 {
		var id [32]byte
		newRequestID(&id)
		h.SetCanonical(hXRequestID, id[:])
	}
	// The backend connection is ours to keep alive whatever the client asked.
	h.ResetConnectionClose()
	// fasthttp would send a Content-Type the client never did (application/octet-stream).
	h.SetNoDefaultContentType(true)
	if !h.IsHTTP11() {
		// An intermediary sends its own version (RFC 9110 §6.2); Host is always set.
		h.SetProtocolBytes(vHTTP11)
	}
}

// removeClassified deletes every field of the request whose classifyHeader flags meet
// mask, every copy: for an untrusted client the forwarding family — Forwarded (RFC 7239),
// every X-Forwarded-* (-For, -Proto, -Host, -Port, -Prefix, -Ssl, -Server, -Client-Cert,
// ...), and the client-address fields X-Real-IP, X-Client-IP, True-Client-IP,
// CF-Connecting-IP and Fastly-Client-IP — which backends and frameworks believe as if a
// proxy had set them; for every client the path overrides. The names come from the raw
// head, so nothing is allocated.
func removeClassified(h *fasthttp.RequestHeader, mask int) {
	raw := h.RawHeaders()
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			break
		}
		line := raw[:i]
		raw = raw[i+1:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		if classifyHeader(line[:colon])&mask != 0 {
			h.DelBytes(line[:colon])
		}
	}
}

// removeConnectionTokens deletes the fields the Connection header names: hop-by-hop too
// (RFC 9110 §7.6.1). admit calls it before the proxy sets any field of its own (the JWT
// claim headers, X-Forwarded-*), so a token names only what the client sent.
func removeConnectionTokens(h *fasthttp.RequestHeader, upgrade bool) {
	if conn := h.PeekBytes(hConnection); len(conn) > 0 {
		sc := getScratch()
		sc.b = append(sc.b[:0], conn...)
		forEachToken(sc.b, func(tok []byte) {
			if upgrade && eqFold(tok, "upgrade") || protected(tok) {
				return
			}
			h.DelBytes(tok)
		})
		putScratch(sc)
	}
}

// removeHopByHop deletes the hop-by-hop fields of a request or response, every Proxy-* one
// included; for an upgrade, Connection and Upgrade stay.
func removeHopByHop(h hopHeaders, upgrade bool) {
	for _, name := range hopByHop {
		if upgrade && (name == "Connection" || name == "Upgrade") {
			continue
		}
		h.Del(name)
	}
	removeProxyHeaders(h)
}

// protected reports whether a Connection token names a header that framing or forwarding
// depends on; a client must not be able to strip those (RFC 9110 §7.6.1 lets an
// intermediary ignore such tokens).
func protected(name []byte) bool {
	return eqFold(name, "host") || eqFold(name, "content-length") || eqFold(name, "transfer-encoding")
}

// removeUnderscoreHeaders drops every header whose name holds '_'. Slow path.
func removeUnderscoreHeaders(h *fasthttp.RequestHeader) {
	var names [][]byte
	h.VisitAll(func(k, _ []byte) {
		if bytes.IndexByte(k, '_') >= 0 {
			names = append(names, append([]byte(nil), k...))
		}
	})
	for _, k := range names {
		h.DelBytes(k)
	}
}

// headerSet is what removeProxyHeaders needs of a request or response header.
type headerSet interface {
	VisitAll(f func(k, v []byte))
	DelBytes(k []byte)
}

// hopHeaders is what removeHopByHop needs of a request or response header.
type hopHeaders interface {
	headerSet
	Del(k string)
}

// removeProxyHeaders deletes every Proxy-* header. Slow path: it allocates, and runs only
// when one was seen.
func removeProxyHeaders(h headerSet) {
	var names [][]byte
	h.VisitAll(func(k, _ []byte) {
		if len(k) > 6 && eqFold(k[:6], "proxy-") {
			names = append(names, append([]byte(nil), k...))
		}
	})
	for _, k := range names {
		h.DelBytes(k)
	}
}

// forEachToken calls f with each comma-separated token of v, trimmed of spaces.
func forEachToken(v []byte, f func(tok []byte)) {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var tok []byte
		if i < 0 {
			tok, v = v, nil
		} else {
			tok, v = v[:i], v[i+1:]
		}
		tok = bytes.TrimSpace(tok)
		if len(tok) > 0 {
			f(tok)
		}
	}
}

// newRequestID fills id with 128 random bits in hex. math/rand/v2's top-level source is
// per-thread ChaCha8 in the runtime: no lock, no allocation.
func newRequestID(id *[32]byte) {
	var raw [16]byte
	a, b := rand.Uint64(), rand.Uint64()
	for i := 0; i < 8; i++ {
		raw[i] = byte(a >> (8 * i))
		raw[8+i] = byte(b >> (8 * i))
	}
	hex.Encode(id[:], raw[:])
}

// cleanResponse removes hop-by-hop headers from a backend response. fasthttp keeps
// Connection: close as a flag (cleared here so the client connection stays open) and
// writes its own framing headers.
func cleanResponse(resp *fasthttp.Response) {
	h := &resp.Header
	h.ResetConnectionClose()
	found := false
	h.VisitAll(func(k, _ []byte) {
		if classifyHeader(k)&(hdrConnection|hdrHopByHop) != 0 {
			found = true
		}
	})
	if !found {
		return
	}
	removeResponseHopByHop(h, false) // slow path
}

// cleanSwitch is cleanResponse for a backend's 101 to a WebSocket upgrade: the same
// hop-by-hop fields go, but Upgrade stays and Connection is exactly Upgrade (RFC 9110
// §7.8: a 101 that switches protocols carries them), so the client can switch.
func cleanSwitch(resp *fasthttp.Response) {
	h := &resp.Header
	h.ResetConnectionClose()
	removeResponseHopByHop(h, true)
	h.SetCanonical(hConnection, hUpgrade)
}

// removeResponseHopByHop deletes the fields a response's Connection names and the other
// hop-by-hop fields (RFC 9110 §7.6.1); for an upgrade, Connection and Upgrade stay.
func removeResponseHopByHop(h *fasthttp.ResponseHeader, upgrade bool) {
	if conn := h.PeekBytes(hConnection); len(conn) > 0 {
		sc := getScratch()
		sc.b = append(sc.b[:0], conn...)
		forEachToken(sc.b, func(tok []byte) {
			if !upgrade || !eqFold(tok, "upgrade") {
				h.DelBytes(tok)
			}
		})
		putScratch(sc)
	}
	removeHopByHop(h, upgrade)
}

func isWebSocket(req *fasthttp.Request) bool {
	return eqFold(req.Header.PeekBytes(hUpgrade), "websocket")
}
