package proxy

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"

	"github.com/valyala/fasthttp"
)

// Header flags found by one pass over the raw request header block.
const (
	hdrBad              = 1 << iota // bare LF, obs-fold, CL with TE: rejected
	hdrConnection                   // Connection: its tokens name more hop-by-hop headers
	hdrHopByHop                     // Keep-Alive, Proxy-*, TE, Trailer, Upgrade
	hdrUpgrade                      // Upgrade
	hdrContentLength                // Content-Length
	hdrTransferEncoding             // Transfer-Encoding
)

// scanRequestHeaders makes one pass over the header block exactly as the client sent it
// (fasthttp accepts and repairs some framing that we must refuse, RFC 9112 §5.2, §6.3):
// obs-fold continuation lines, bare-LF line ends, and Content-Length together with
// Transfer-Encoding are hdrBad. It also notes the hop-by-hop headers present, so the
// common request with none of them skips the deletions.
func scanRequestHeaders(raw []byte) int {
	flags := 0
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
		if line[0] == ' ' || line[0] == '\t' {
			return flags | hdrBad // obs-fold
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		flags |= classifyHeader(line[:colon])
	}
	if flags&hdrContentLength != 0 && flags&hdrTransferEncoding != 0 {
		flags |= hdrBad
	}
	return flags
}

func classifyHeader(k []byte) int {
	switch k[0] | 0x20 {
	case 'c':
		if eqFold(k, "connection") {
			return hdrConnection
		}
		if eqFold(k, "content-length") {
			return hdrContentLength
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
	case 'u':
		if eqFold(k, "upgrade") {
			return hdrHopByHop | hdrUpgrade
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
)

// hopByHop are removed from both directions (RFC 9110 §7.6.1); Proxy-* is handled apart.
var hopByHop = []string{"Connection", "Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization"}

// prepareRequest removes hop-by-hop headers and sets the forwarding headers (SPEC §5).
// For a WebSocket upgrade, Connection and Upgrade are kept for the backend.
func prepareRequest(ctx *fasthttp.RequestCtx, flags int, ext *tableData, upgrade bool) {
	h := &ctx.Request.Header
	if flags&(hdrConnection|hdrHopByHop) != 0 {
		// Slow path: the client sent hop-by-hop headers.
		removeHopByHop(h, upgrade)
	}

	peer := clientAddr(ctx)
	trusted := ext.trusted(peer)

	var buf [64]byte
	ip := peer.AppendTo(buf[:0])
	if prev := h.PeekBytes(hXForwardedFor); trusted && len(prev) > 0 {
		// Append to the chain: prev + ", " + peer. Written through the header's own
		// buffer-reusing setter; scratch only for the joined value.
		sc := getScratch()
		sc.b = append(append(append(sc.b[:0], prev...), ", "...), ip...)
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
	if len(h.PeekBytes(hXRequestID)) == 0 {
		var id [32]byte
		newRequestID(&id)
		h.SetCanonical(hXRequestID, id[:])
	}
	// The backend connection is ours to keep alive whatever the client asked.
	h.ResetConnectionClose()
}

func removeHopByHop(h *fasthttp.RequestHeader, upgrade bool) {
	// Headers named by Connection are hop-by-hop too (RFC 9110 §7.6.1).
	if conn := h.PeekBytes(hConnection); len(conn) > 0 {
		sc := getScratch()
		sc.b = append(sc.b[:0], conn...)
		forEachToken(sc.b, func(tok []byte) {
			if upgrade && eqFold(tok, "upgrade") {
				return
			}
			h.DelBytes(tok)
		})
		putScratch(sc)
	}
	for _, name := range hopByHop {
		if upgrade && (name == "Connection" || name == "Upgrade") {
			continue
		}
		h.Del(name)
	}
	removeProxyHeaders(h)
}

// headerSet is what removeProxyHeaders needs of a request or response header.
type headerSet interface {
	VisitAll(f func(k, v []byte))
	DelBytes(k []byte)
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
	// Slow path.
	if conn := h.PeekBytes(hConnection); len(conn) > 0 {
		sc := getScratch()
		sc.b = append(sc.b[:0], conn...)
		forEachToken(sc.b, func(tok []byte) { h.DelBytes(tok) })
		putScratch(sc)
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
	removeProxyHeaders(h)
}

func isWebSocket(req *fasthttp.Request) bool {
	return eqFold(req.Header.PeekBytes(hUpgrade), "websocket")
}
