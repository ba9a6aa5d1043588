package proxy

import (
	"bytes"
	"net/netip"
	"unsafe"

	"github.com/valyala/fasthttp"
)

// identity is who the client of a request is, resolved once per request
// (docs/behaviour.md#trust-model): the TCP peer, or — when the peer is in server.trusted_proxies — the rightmost
// X-Forwarded-For address that is not itself a trusted proxy (HAProxy's and Envoy's
// trusted-hops model). Rate limiting (key ip), geo, the access log's "client" and the
// forwarded X-Forwarded-For all use it.
type identity struct {
	client  netip.Addr // the client; invalid only when the peer address is unknown
	peer    netip.Addr
	trusted bool // the peer is a trusted proxy: its forwarded headers are believed
	// from is where, in the X-Forwarded-For value (its lines joined by ", "), the chain to
	// forward begins: the client's entry. len(value) when the client is the peer itself
	// (then only the peer is forwarded).
	from int
}

// resolveIdentity resolves the identity of the request in ctx; flags are its header flags
// (scanRequestHeaders). A trusted peer's X-Forwarded-For in several lines is folded into
// one first (joinXFF), which is what every later step — routing, the rate limit's key,
// prepareRequest's forwarded chain — then reads. That slow path aside, allocation-free.
func resolveIdentity(ctx *fasthttp.RequestCtx, flags int, ext *tableData) identity {
	peer := clientAddr(ctx)
	id := identity{client: peer, peer: peer, trusted: ext.trusted(peer)}
	if !id.trusted || flags&hdrXFF == 0 {
		return id
	}
	h := &ctx.Request.Header
	if flags&hdrMultiXFF != 0 {
		// Slow path: the chain came in several lines.
		sc := getScratch()
		sc.b = joinXFF(sc.b[:0], h)
		h.DelBytes(hXForwardedFor)
		h.SetCanonical(hXForwardedFor, sc.b) // copied into the header
		putScratch(sc)
	}
	id.client, id.from = walkXFF(h.PeekBytes(hXForwardedFor), peer, ext.trusted)
	return id
}

// joinXFF appends the request's X-Forwarded-For lines to dst, in order, joined by ", "
// (RFC 9110 §5.3: a list split over several lines means the same as one line).
func joinXFF(dst []byte, h *fasthttp.RequestHeader) []byte {
	for i, v := range h.PeekAll(string(hXForwardedFor)) {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, v...)
	}
	return dst
}

// walkXFF walks the X-Forwarded-For list xff from the right, starting from peer (a trusted
// proxy): each trusted address is a hop to walk past; the first address that is not
// trusted is the client. When every address is trusted the leftmost is the client. An
// entry that is not an IP address ("unknown", a name, garbage), which a trusted hop wrote,
// ends the walk: the client is that hop — the last trusted address seen — as if it had
// sent no header, since what it claims about its own client cannot be read. Empty entries
// are skipped. Entries may carry a port ("192.0.2.1:4711", "[2001:db8::1]:80").
//
// It returns the client and the offset in xff of the client's entry (len(xff) when the
// client is peer). Allocation-free.
func walkXFF(xff []byte, peer netip.Addr, trusted func(netip.Addr) bool) (client netip.Addr, from int) {
	client, from = peer, len(xff)
	end := len(xff)
	for end > 0 {
		start := bytes.LastIndexByte(xff[:end], ',') + 1
		entry := xff[start:end]
		end = start - 1
		lead := len(entry) - len(bytes.TrimLeft(entry, " \t"))
		entry = bytes.TrimRight(entry[lead:], " \t")
		if len(entry) == 0 {
			continue
		}
		a, ok := parseHop(entry)
		if !ok {
			return client, from
		}
		client, from = a, start+lead
		if !trusted(a) {
			return client, from
		}
	}
	return client, from
}

// parseHop parses one X-Forwarded-For entry: an IPv4 or IPv6 address, bracketed or not,
// with an optional port; no zone. IPv4-mapped IPv6 addresses are unmapped.
func parseHop(b []byte) (netip.Addr, bool) {
	if len(b) == 0 || len(b) > 64 || bytes.IndexByte(b, '%') >= 0 {
		return netip.Addr{}, false
	}
	s := unsafe.String(unsafe.SliceData(b), len(b)) // not retained: no zone, so no substring kept
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && a.Is6() {
			return a.Unmap(), true
		}
		return netip.Addr{}, false
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}
