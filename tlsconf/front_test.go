package tlsconf

import (
	"crypto/tls"
	"net"
	"os"
	"testing"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/testtool"
)

// TestFrontCertReload: a certificate rotated in place is served after Reload (SIGHUP),
// without a restart; a broken file keeps the old certificate.
func TestFrontCertReload(t *testing.T) {
	certA, keyA, _ := testtool.SelfSignedCert(t)
	certB, keyB, _ := testtool.SelfSignedCert(t)
	tc, sc, err := Front(config.TLS{CertFile: certA, KeyFile: keyA})
	if err != nil {
		t.Fatal(err)
	}
	if tc.MinVersion != tls.VersionTLS12 {
		t.Fatalf("got MinVersion %x; want TLS 1.2", tc.MinVersion)
	}
	ln := serveTLS(t, tc)
	served := func() []byte {
		t.Helper()
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Raw
	}
	want, err := tls.LoadX509KeyPair(certA, keyA)
	if err != nil {
		t.Fatal(err)
	}
	first := served()
	if string(first) != string(want.Certificate[0]) {
		t.Fatal("not serving the configured certificate")
	}
	// Rotate in place: B's files copied over A's paths.
	copyFile(t, certB, certA)
	copyFile(t, keyB, keyA)
	if err := sc.Reload(); err != nil {
		t.Fatal(err)
	}
	if string(served()) == string(first) {
		t.Fatal("still serving the old certificate after Reload")
	}
	// A broken file is refused and the current certificate stays.
	current := served()
	if err := os.WriteFile(certA, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := sc.Reload(); err == nil {
		t.Fatal("Reload accepted a broken certificate file")
	}
	if string(served()) != string(current) {
		t.Fatal("a failed Reload changed the served certificate")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestFrontResumesSessions: the front config issues session tickets, so a client's second
// connection resumes its session (no certificate, no signature: a fraction of a full
// handshake's CPU), with TLS 1.3 and TLS 1.2. A config that set SessionTicketsDisabled, or
// changed the ticket keys per connection, would fail it.
func TestFrontResumesSessions(t *testing.T) {
	cert, key, _ := testtool.SelfSignedCert(t)
	tc, _, err := Front(config.TLS{CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	ln := serveTLS(t, tc)
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		cc := &tls.Config{InsecureSkipVerify: true, MaxVersion: version, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		resumed := func() bool {
			t.Helper()
			c, err := tls.Dial("tcp", ln.Addr().String(), cc)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// With TLS 1.2 the byte can come with the close_notify behind it: (1, EOF).
			if n, err := c.Read(make([]byte, 1)); n != 1 {
				t.Fatalf("read %d bytes: %v", n, err)
			}
			if st := c.ConnectionState(); st.Version != version {
				t.Fatalf("negotiated %s; want %s", tls.VersionName(st.Version), tls.VersionName(version))
			}
			return c.ConnectionState().DidResume
		}
		if resumed() {
			t.Fatalf("%s: the first connection resumed a session it never had", tls.VersionName(version))
		}
		if !resumed() {
			t.Fatalf("%s: the second connection did not resume the first one's session (session tickets off?)", tls.VersionName(version))
		}
	}
}

// serveTLS listens on loopback with tc until the test ends; each connection gets one byte
// of application data, then is closed. The byte makes the handshake complete on both
// sides, and a TLS 1.3 ticket is sent before it, so a client that reads the byte has the
// ticket.
func serveTLS(t *testing.T, tc *tls.Config) net.Listener {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte{1})
			c.Close()
		}
	}()
	return ln
}
