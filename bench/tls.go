package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// certFiles are the front certificate of the -tls targets: an ECDSA P-256 key and a
// self-signed certificate for 127.0.0.1, made at run time.
type certFiles struct {
	cert, key string // PEM files (go-loadbalancer, nginx)
	combined  string // certificate and key in one PEM file (HAProxy's crt)
}

// writeCert makes the key and certificate and writes them to dir/tls/.
func writeCert(dir string) (*certFiles, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "go-loadbalancer bench"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	d := filepath.Join(dir, "tls")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return nil, err
	}
	c := &certFiles{cert: filepath.Join(d, "cert.pem"), key: filepath.Join(d, "key.pem"), combined: filepath.Join(d, "combined.pem")}
	for file, data := range map[string][]byte{c.cert: certPEM, c.key: keyPEM, c.combined: append(append([]byte{}, certPEM...), keyPEM...)} {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// tlsParams connects to a -tls target as wrk's OpenSSL client would (X25519 key share,
// all TLS 1.3 suites offered) and says what was negotiated, for the report: the targets
// must agree for their costs to compare.
func tlsParams(t *target) (string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", t.addr, &tls.Config{
		InsecureSkipVerify: true,
		CurvePreferences:   []tls.CurveID{tls.X25519},
	})
	if err != nil {
		return "", fmt.Errorf("cannot connect to %s with TLS: %w", t.name, err)
	}
	defer c.Close()
	st := c.ConnectionState()
	pub := "?"
	if len(st.PeerCertificates) > 0 {
		if k, ok := st.PeerCertificates[0].PublicKey.(*ecdsa.PublicKey); ok {
			pub = "ECDSA " + k.Curve.Params().Name
		}
	}
	return fmt.Sprintf("%s, %s, %s, %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.CurveID, pub), nil
}

// hsRun is one run of the handshake pass.
type hsRun struct {
	target  string
	rep     int
	resume  bool // clients kept their sessions and offered them
	wrk     wrkResult
	resumed int64   // exchanges whose handshake resumed a session
	cpu     cpuTime // of the target's process tree
}

// handshakes returns how many handshakes the run made: one per request.
func (r hsRun) handshakes() int64 { return r.wrk.requests }

// measureHandshakes loads each -tls target (not an A/A twin) with handshakeLoad: every
// request opens a new connection with a TLS handshake, carries one request and is closed.
// Full handshakes first; with -hs-resume a second set of runs where each client keeps its
// session and resumes it. Interleaved like the closed loop; CPU per handshake is the
// proxy's, request included. (wrk cannot do the full ones: with "Connection: close" it
// resumes its TLS sessions.)
func measureHandshakes(ctx context.Context, o *options, rep *report, targets []*target, beProc *proc) error {
	if o.handshakes <= 0 {
		return nil
	}
	var ts []*target
	for _, t := range targets {
		if t.v.tls && !strings.Contains(t.name, "#") {
			ts = append(ts, t)
		}
	}
	modes := []bool{false}
	if o.hsResume {
		modes = append(modes, true)
	}
	for r := 0; r < o.reps && len(ts) > 0; r++ {
		for _, resume := range modes {
			for _, t := range rotate(r, ts) {
				if err := handshakeRun(ctx, o, rep, t, r, resume); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// handshakeRun is one run of the handshake pass against t.
func handshakeRun(ctx context.Context, o *options, rep *report, t *target, r int, resume bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cpu0, err := treeCPU(t.proc.pid())
	if err != nil {
		return err
	}
	w, resumed := handshakeLoad(ctx, t.addr, o.hsConns, o.handshakes, resume)
	cpu1, err := treeCPU(t.proc.pid())
	if err != nil {
		return err
	}
	cpu := cpu1.sub(cpu0)
	if w.requests == 0 {
		return fmt.Errorf("handshakes with %s: none succeeded (%d errors)", t.name, w.errors)
	}
	run := hsRun{target: t.name, rep: r, resume: resume, wrk: w, resumed: resumed, cpu: cpu}
	rep.hs = append(rep.hs, run)
	o.progress("rep %d handshakes %-12s resume=%-5t %7.0f /s  %7.1f µs CPU each  %d resumed  errors %d",
		r+1, t.name, resume, w.rps, perReq(cpu.total(), run.handshakes()), resumed, w.errors)
	return nil
}

// handshakeLoad runs conns clients in the harness (on the load core) for d against addr;
// each, in a loop, connects, makes a TLS 1.3 handshake (X25519 only, the key share wrk's
// OpenSSL offers), sends one GET with "Connection: close", reads the response to its end
// and closes. Without resume there is no session cache, so every handshake is full; with
// it each client keeps the session ticket of its last connection and offers it. requests
// counts the exchanges that got a 200, resumed those whose handshake resumed.
func handshakeLoad(ctx context.Context, addr string, conns int, d time.Duration, resume bool) (wrkResult, int64) {
	base := &tls.Config{InsecureSkipVerify: true, CurvePreferences: []tls.CurveID{tls.X25519}, MinVersion: tls.VersionTLS13}
	req := []byte("GET / HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n\r\n")
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var ok, bad, resumed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			dialer := &net.Dialer{Timeout: 2 * time.Second}
			cfg := base
			if resume {
				cfg = base.Clone()
				cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			}
			for ctx.Err() == nil {
				if good, didResume := exchangeOnce(dialer, addr, cfg, req, buf); good {
					ok.Add(1)
					if didResume {
						resumed.Add(1)
					}
				} else if ctx.Err() == nil {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	return wrkResult{requests: ok.Load(), errors: bad.Load(), elapsed: el, rps: float64(ok.Load()) / el.Seconds()}, resumed.Load()
}

// exchangeOnce is one connection of handshakeLoad: it reports whether the response was a
// 200, and whether the handshake resumed a session.
func exchangeOnce(dialer *net.Dialer, addr string, cfg *tls.Config, req, buf []byte) (bool, bool) {
	raw, err := dialer.Dial("tcp", addr)
	if err != nil {
		return false, false
	}
	c := tls.Client(raw, cfg)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(req); err != nil { // the handshake runs first
		return false, false
	}
	n, checked, ok := 0, false, false
	for {
		m, err := c.Read(buf[n:])
		if !checked {
			if n += m; n >= 12 {
				checked, ok = true, string(buf[9:12]) == "200"
			}
		}
		if checked {
			n = 0
		}
		if err != nil {
			// The session ticket came before the response: reading to the end took it in.
			return ok && errors.Is(err, io.EOF), c.ConnectionState().DidResume
		}
	}
}
