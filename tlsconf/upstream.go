package tlsconf

import (
	"crypto/tls"
	"fmt"

	"go-loadbalancer/config"
)

// Upstream returns the TLS config of a pool's connections to its https backends
// (upstream_tls): TLS 1.2 or newer; backends verified against ca_file, or the system's
// roots when it is empty; server_name, when set, as the name sent and verified; a client
// certificate when cert_file is set (mTLS); and a session cache, so that new connections
// to a backend resume a session instead of a full handshake.
func Upstream(c config.UpstreamTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
	if c.CAFile != "" {
		pool, err := LoadCertPool(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream_tls.ca_file: %w", err)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := LoadKeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("upstream_tls.cert_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
