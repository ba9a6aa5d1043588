package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// testCA issues certificates for the mTLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate signed by the CA for tmpl's names, and its DER.
func (ca *testCA) issue(t *testing.T, tmpl *x509.Certificate, usage x509.ExtKeyUsage) (tls.Certificate, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, der
}

func writePEM(t *testing.T, dir, name string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	kb, _ := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestClientCertForwarded: with front mTLS the verified client certificate reaches the
// backend in one X-Forwarded-Client-Cert header (Envoy's format: hash, subject, URI and DNS
// SANs), and the copy the client sent is dropped (before: the backend learnt nothing of
// the certificate, and got the client's own header).
func TestClientCertForwarded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newTestCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	srvCert, _ := ca.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "lb"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, x509.ExtKeyUsageServerAuth)
	certFile, keyFile := writePEM(t, dir, "server", srvCert)
	spiffe, _ := url.Parse("spiffe://example.org/ns/web/sa/frontend")
	cliCert, cliDER := ca.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "frontend", Organization: []string{"Example, Inc."}},
		URIs: []*url.URL{spiffe}, DNSNames: []string{"frontend.example", "fe.example"}}, x509.ExtKeyUsageClientAuth)

	be := startBackend(t, echoHeaders)
	px := startProxy(t, poolConfig(t, "tls: { cert_file: "+certFile+", key_file: "+keyFile+", client_ca_file: "+caFile+" }\n", be.url))
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	c := &fasthttp.HostClient{Addr: px.addr, IsTLS: true, TLSConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cliCert}}}
	sum := sha256.Sum256(cliDER)
	want := "Hash=" + hex.EncodeToString(sum[:]) + `;Subject="CN=frontend,O=Example\, Inc.";URI=spiffe://example.org/ns/web/sa/frontend;DNS=frontend.example;DNS=fe.example`
	for i := range 3 { // one connection: the value is computed once and reused
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("https://" + px.addr + "/")
		req.Header.Set("X-Forwarded-Client-Cert", "Hash=forged;Subject=\"CN=admin\"")
		if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		h := decodeHeaders(t, resp)
		if got := h["X-Forwarded-Client-Cert"]; got != want {
			t.Fatalf("request %d: got X-Forwarded-Client-Cert %q; want %q", i, got, want)
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
}

func TestAppendXFCCValue(t *testing.T) {
	t.Parallel()
	f := func(v string, quote bool, want string) {
		t.Helper()
		if got := string(appendXFCCValue(nil, v, quote)); got != want {
			t.Fatalf("appendXFCCValue(%q, %v) = %s; want %s", v, quote, got, want)
		}
	}
	f("a.example", false, "a.example")
	f("CN=x", true, `"CN=x"`)
	f(`a"b\c`, false, `"a\"b\c"`)
	f("a;b", false, `"a;b"`)
	f("a\r\nb", false, `"a??b"`)
}
