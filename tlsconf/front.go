// Package tlsconf builds TLS settings from the files the configuration names: the front
// listener's TLS config with its reloadable certificate (tls.*), a pool's client TLS config
// towards its backends (upstream_tls.*), and the certificate and CA-bundle loaders that
// both use and -check-config runs.
package tlsconf

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"

	"go-loadbalancer/config"
)

// Cert is the front listener's certificate, reloadable: the TLS config asks it for
// the certificate at each handshake, so Reload (on SIGHUP) rotates it without a restart.
type Cert struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// Reload reads the certificate and key files again; on error the old pair stays in use.
func (c *Cert) Reload() error {
	cert, err := LoadKeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls.cert_file: %w", err)
	}
	c.cert.Store(&cert)
	return nil
}

// Front returns the front listener's TLS config (TLS 1.2 or newer; client certificates
// required and verified when client_ca_file is set) and its reloadable certificate, or
// nils when TLS is off.
func Front(c config.TLS) (*tls.Config, *Cert, error) {
	if !c.Enabled() {
		return nil, nil, nil
	}
	sc := &Cert{certFile: c.CertFile, keyFile: c.KeyFile}
	if err := sc.Reload(); err != nil {
		return nil, nil, err
	}
	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return sc.cert.Load(), nil
		},
	}
	if c.ClientCAFile != "" {
		pool, err := LoadCertPool(c.ClientCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("tls.client_ca_file: %w", err)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, sc, nil
}
