package proxy

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"go-loadbalancer/config"
)

// NewServer returns the data-plane fasthttp.Server for p with the limits of s. Serve it
// on a Listener-wrapped listener, so that client errors close lingering. These limits are
// fixed for the server's life: a reload that changes them takes effect after a restart
// (main logs a warning).
func (p *Proxy) NewServer(s config.Server, log zerolog.Logger) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:      p.ServeHTTP,
		ErrorHandler: p.serverError,
		// Expect: 100-continue is answered only once the request passed every check
		// (admit): a refused client gets the final status and its body is never read.
		ExpectHandler: p.expect,
		Name:          "go-loadbalancer",
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

// admission is what expect found of a request it let through, for serve.
type admission struct {
	flags int
	local fasthttp.RequestHandler
}

type admissionKey struct{}

// expect is the server's ExpectHandler, run for a request with Expect: 100-continue
// before its body is read: admit's checks (framing, target, size, JWT, rate limit) run
// now, and only a request that passes them is told 100 Continue. A refused one gets its
// final status (fasthttp then closes the connection) without the body being read.
func (p *Proxy) expect(ctx *fasthttp.RequestCtx) int {
	t := p.store.Load()
	if t == nil {
		writeError(ctx, errNoConfig)
		return ctx.Response.StatusCode()
	}
	flags, local, r := p.admit(ctx, tableExt(t))
	if r != nil {
		if r != &answered {
			p.reject(ctx, r)
		}
		lingerOnClose(ctx.Conn())    // the client may have started sending its body
		p.finish(ctx, t, time.Now()) // serve never runs for it
		return ctx.Response.StatusCode()
	}
	ctx.SetUserValue(admissionKey{}, admission{flags: flags, local: local})
	// The 100 is ours; the backend gets the body without being asked to confirm.
	ctx.Request.Header.Del("Expect")
	return fasthttp.StatusContinue
}

// admittedEarly returns what expect admitted this request with, if it did. A plain
// request has at most a user value or two to look through.
func admittedEarly(ctx *fasthttp.RequestCtx) (admission, bool) {
	a, ok := ctx.UserValue(admissionKey{}).(admission)
	return a, ok
}

type fasthttpLogger struct{ log zerolog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug().Msg(fmt.Sprintf(format, args...))
}

// ServerCert is the front listener's certificate, reloadable: the TLS config asks it for
// the certificate at each handshake, so Reload (on SIGHUP) rotates it without a restart.
type ServerCert struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// Reload reads the certificate and key files again; on error the old pair stays in use.
func (c *ServerCert) Reload() error {
	cert, err := LoadKeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls.cert_file: %w", err)
	}
	c.cert.Store(&cert)
	return nil
}

// ServerTLS returns the front listener's TLS config (TLS 1.2 or newer; client certificates
// required and verified when client_ca_file is set) and its reloadable certificate, or
// nils when TLS is off.
func ServerTLS(c config.TLS) (*tls.Config, *ServerCert, error) {
	if !c.Enabled() {
		return nil, nil, nil
	}
	sc := &ServerCert{certFile: c.CertFile, keyFile: c.KeyFile}
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
