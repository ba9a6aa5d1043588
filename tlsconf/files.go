package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"go-loadbalancer/config"
)

// LoadCertPool reads a PEM file of CA certificates. Every PEM block must be a certificate
// that parses: a file with one good and one broken certificate is an error, not half a
// trust store. Used for tls.client_ca_file and upstream_tls.ca_file, at start, reload and
// by -check-config.
func LoadCertPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %w", file, config.PathErr(err))
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("cannot use %q: certificate %d does not parse: %w", file, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("cannot use %q: no PEM certificates in it", file)
	}
	return pool, nil
}

// LoadKeyPair reads a certificate chain and its private key (PEM) and checks that they
// belong together.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return cert, fmt.Errorf("cannot load certificate %q with key %q: %w", certFile, keyFile, config.PathErr(err))
	}
	return cert, nil
}
