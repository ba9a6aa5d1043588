package tlsconf

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/testtool"
)

// TestUpstream: upstream_tls's files become the client's roots and certificate, and a file
// that does not load is reported under the key that names it.
func TestUpstream(t *testing.T) {
	t.Parallel()
	cert, key, _ := testtool.SelfSignedCert(t)
	tc, err := Upstream(config.UpstreamTLS{CAFile: cert, CertFile: cert, KeyFile: key, ServerName: "api.internal"})
	if err != nil {
		t.Fatal(err)
	}
	if tc.MinVersion != tls.VersionTLS12 || tc.ServerName != "api.internal" || tc.RootCAs == nil ||
		len(tc.Certificates) != 1 || tc.ClientSessionCache == nil {
		t.Fatalf("got MinVersion %x, ServerName %q, RootCAs %v, %d certificates, session cache %v",
			tc.MinVersion, tc.ServerName, tc.RootCAs != nil, len(tc.Certificates), tc.ClientSessionCache != nil)
	}
	if tc, err := Upstream(config.UpstreamTLS{}); err != nil || tc.RootCAs != nil || len(tc.Certificates) != 0 {
		t.Fatalf("empty upstream_tls: got %v, %v; want the system's roots and no certificate", tc, err)
	}
	broken := filepath.Join(t.TempDir(), "broken.pem")
	if err := os.WriteFile(broken, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		conf config.UpstreamTLS
		want string
	}{
		{config.UpstreamTLS{CAFile: broken}, "upstream_tls.ca_file: "},
		{config.UpstreamTLS{CertFile: broken, KeyFile: key}, "upstream_tls.cert_file: "},
	} {
		if _, err := Upstream(c.conf); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%+v: got error %v; want one starting %q", c.conf, err, c.want)
		}
	}
}
