package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/valyala/fasthttp"
)

// hXFCC is the header that tells backends which client certificate front mTLS verified,
// in Envoy's x-forwarded-client-cert format:
//
//	Hash=<hex SHA-256 of the DER certificate>;Subject="<RFC 2253 subject>";URI=<URI SAN>;DNS=<DNS SAN>
//
// with one URI= or DNS= pair per SAN, values quoted when they hold , ; = or " (a " inside
// a quoted value becomes \", as Envoy writes it). The copy a client sends is dropped unless
// it comes from a trusted proxy; a verified certificate replaces any copy.
var hXFCC = []byte("X-Forwarded-Client-Cert")

// xfccCache remembers the header value of recent client certificates, so that the requests
// of one mTLS connection (one *x509.Certificate) format it once: a direct-mapped table
// indexed by the certificate's address. Lock-free; a collision only costs a recomputation.
type xfccCache struct {
	slots [256]atomic.Pointer[xfccEntry]
}

type xfccEntry struct {
	cert  *x509.Certificate
	value []byte // read-only
}

// connStater is what a TLS connection offers (*tls.Conn).
type connStater interface{ ConnectionState() tls.ConnectionState }

// verifiedCert returns the client certificate front mTLS verified on ctx's connection, or
// nil (plain HTTP, or TLS without client certificates).
func verifiedCert(ctx *fasthttp.RequestCtx) *x509.Certificate {
	if cs, ok := ctx.Conn().(connStater); ok {
		if st := cs.ConnectionState(); len(st.VerifiedChains) > 0 && len(st.PeerCertificates) > 0 {
			return st.PeerCertificates[0]
		}
		return nil
	}
	if !ctx.IsTLS() {
		return nil
	}
	// Slow path: a connection fasthttp wraps (server.max_conns_per_ip); this copy allocates.
	if st := ctx.TLSConnectionState(); st != nil && len(st.VerifiedChains) > 0 && len(st.PeerCertificates) > 0 {
		return st.PeerCertificates[0]
	}
	return nil
}

// setClientCert sets X-Forwarded-Client-Cert to the client certificate front mTLS verified
// on ctx's connection, replacing any copy; without one it changes nothing.
func (p *Proxy) setClientCert(ctx *fasthttp.RequestCtx) {
	if cert := verifiedCert(ctx); cert != nil {
		h := &ctx.Request.Header
		h.DelBytes(hXFCC)
		h.SetCanonical(hXFCC, p.xfcc.value(cert))
	}
}

// value returns cert's header value. Allocation-free for a certificate seen just before.
func (c *xfccCache) value(cert *x509.Certificate) []byte {
	slot := &c.slots[(uintptr(unsafe.Pointer(cert))>>6)%uintptr(len(c.slots))]
	if e := slot.Load(); e != nil && e.cert == cert {
		return e.value
	}
	e := &xfccEntry{cert: cert, value: appendXFCC(nil, cert)}
	slot.Store(e)
	return e.value
}

// appendXFCC appends the header value for cert to dst.
func appendXFCC(dst []byte, cert *x509.Certificate) []byte {
	sum := sha256.Sum256(cert.Raw)
	dst = append(dst, "Hash="...)
	dst = hex.AppendEncode(dst, sum[:])
	dst = append(dst, `;Subject=`...)
	dst = appendXFCCValue(dst, cert.Subject.String(), true)
	for _, u := range cert.URIs {
		dst = append(dst, ";URI="...)
		dst = appendXFCCValue(dst, u.String(), false)
	}
	for _, d := range cert.DNSNames {
		dst = append(dst, ";DNS="...)
		dst = appendXFCCValue(dst, d, false)
	}
	return dst
}

// appendXFCCValue appends v, quoted when quote is set or v holds a separator or a quote.
func appendXFCCValue(dst []byte, v string, quote bool) []byte {
	if !quote && !strings.ContainsAny(v, `,;="`) && !hasCTL(v) {
		return append(dst, v...)
	}
	dst = append(dst, '"')
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			dst = append(dst, '\\', c)
		case c < ' ' || c == 0x7f:
			dst = append(dst, '?') // a header value must hold no control character
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

func hasCTL(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < ' ' || v[i] == 0x7f {
			return true
		}
	}
	return false
}
