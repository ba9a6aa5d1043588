package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"go-loadbalancer/config"
)

// NewServer returns the data-plane fasthttp.Server for handler with the limits of s.
// These limits are fixed for the server's life: a reload that changes them takes effect
// after a restart (main logs a warning).
func NewServer(handler fasthttp.RequestHandler, s config.Server, log zerolog.Logger) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:      handler,
		ErrorHandler: serverError,
		Name:         "go-loadbalancer",
		// fasthttp rejects a header block larger than its read buffer with ErrSmallBuffer,
		// which serverError answers with 431.
		ReadBufferSize: s.MaxHeaderBytes,
		ReadTimeout:    s.ReadTimeout,
		WriteTimeout:   s.WriteTimeout,
		IdleTimeout:    s.IdleTimeout,
		// Bodies up to bufferLimit are read before the handler (and can be retried); larger
		// ones stream through. max_body_bytes is enforced by the handler.
		MaxRequestBodySize:           bufferLimit,
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		NoDefaultDate:                true,
		CloseOnShutdown:              true,
		SecureErrorLogMessage:        true,
		Logger:                       fasthttpLogger{log},
	}
}

type fasthttpLogger struct{ log zerolog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug().Msg(fmt.Sprintf(format, args...))
}

// ServerTLS returns the front listener's TLS config (TLS 1.2 or newer; client certificates
// required and verified when client_ca_file is set), or nil when TLS is off.
func ServerTLS(c config.TLS) (*tls.Config, error) {
	if !c.Enabled() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cannot load tls certificate %q: %w", c.CertFile, err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read tls.client_ca_file %q: %w", c.ClientCAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cannot use tls.client_ca_file %q: no PEM certificates in it", c.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}
