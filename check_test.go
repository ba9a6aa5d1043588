package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/maxmind/mmdbwriter"

	"go-loadbalancer/internal/testtool"
)

// testFiles are the files a full config names, all valid, in one directory.
type testFiles struct {
	dir                       string
	cert, key, otherKey, ca   string
	jwks, ecJWKS, privateJWKS string
	hmac, shortHMAC, mmdb     string
	token, garbage, badCA     string
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newTestFiles(t *testing.T) *testFiles {
	t.Helper()
	dir := t.TempDir()
	f := &testFiles{dir: dir}
	at := func(name string) string { return filepath.Join(dir, name) }
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lb.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, DNSNames: []string{"lb.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := func(k *ecdsa.PrivateKey) []byte {
		b, _ := x509.MarshalECPrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: b})
	}
	f.cert = writeFile(t, at("cert.pem"), certPEM)
	f.key = writeFile(t, at("key.pem"), keyPEM(key))
	f.otherKey = writeFile(t, at("other-key.pem"), keyPEM(other))
	f.ca = f.cert
	bad := append([]byte{}, certPEM...)
	bad = append(bad, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})...)
	f.badCA = writeFile(t, at("bad-ca.pem"), bad)

	rsaJWKS := func(k any, alg string) []byte {
		b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k, KeyID: "k1", Algorithm: alg, Use: "sig"}}})
		return b
	}
	rk := testtool.RSAKey(t)
	f.jwks = writeFile(t, at("jwks.json"), rsaJWKS(&rk.PublicKey, "RS256"))
	f.ecJWKS = writeFile(t, at("ec-jwks.json"), rsaJWKS(&key.PublicKey, "ES256"))
	f.privateJWKS = writeFile(t, at("private-jwks.json"), rsaJWKS(rk, "RS256"))
	f.hmac = writeFile(t, at("hmac"), []byte(strings.Repeat("s", 32)+"\n"))
	f.shortHMAC = writeFile(t, at("short-hmac"), []byte("secret\n"))
	f.token = writeFile(t, at("token"), []byte("t0ken\n"))
	f.garbage = writeFile(t, at("garbage"), []byte("this is not what you are looking for\n"))

	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-Country", RecordSize: 24})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f.mmdb = writeFile(t, at("geo.mmdb"), buf.Bytes())
	return f
}

// TestCheckConfigOpensFiles: every config in the table either passes -check-config and
// starts, or fails both in the same words — FILE:LINE: key: message, or environment:
// VARIABLE: message for a file named by the environment.
func TestCheckConfigOpensFiles(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t)
	jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/jwks" {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, f.jwks)
	}))
	t.Cleanup(jwksSrv.Close) // after the parallel subtests

	type tc struct {
		name string
		yaml string   // after the listeners and the pool
		env  []string // extra environment
		want string   // regexp of the error line; "" means valid
		tls  bool     // the pool's backend is https:// (a client certificate needs TLS)
	}
	// c.yaml starts on line 5, so pool keys may come first; an admin section is added
	// after it unless c.yaml has its own, then a short server.drain_grace (a valid config
	// is started and stopped).
	base := "listen: \"127.0.0.1:0\"\npools:\n  - name: web\n    backends: [ { url: \"http://127.0.0.1:9\" } ]\n"
	jwt := func(extra string) string {
		return "auth:\n  jwt:\n    enabled: true\n" + extra
	}
	cases := []tc{
		{name: "all files good", yaml: "tls: { cert_file: " + q(f.cert) + ", key_file: " + q(f.key) + ", client_ca_file: " + q(f.ca) + " }\n" +
			"geo: { mmdb_file: " + q(f.mmdb) + " }\nadmin: { listen: \"127.0.0.1:0\", token_file: " + q(f.token) + " }\n" +
			jwt("    algorithms: [RS256, HS256]\n    jwks_file: "+q(f.jwks)+"\n    hmac_secret_file: "+q(f.hmac)+"\n")},
		{name: "jwks_url good", yaml: jwt("    jwks_url: " + q(jwksSrv.URL+"/jwks") + "\n")},
		{name: "MTLS files good", env: []string{"MTLS_ENABLED=true", "MTLS_CERT_FILE=" + f.cert, "MTLS_KEY_FILE=" + f.key, "MTLS_CA_FILE=" + f.ca}, tls: true},

		{name: "cert missing", yaml: "tls: { cert_file: " + q(f.dir+"/nope.pem") + ", key_file: " + q(f.key) + " }\n",
			want: `:5: tls.cert_file: cannot load certificate .*nope.pem.*no such file`},
		{name: "key missing", yaml: "tls: { cert_file: " + q(f.cert) + ", key_file: " + q(f.dir+"/nokey.pem") + " }\n",
			want: `:5: tls.key_file: cannot read .*nokey.pem.*no such file`},
		{name: "key of another cert", yaml: "tls: { cert_file: " + q(f.cert) + ", key_file: " + q(f.otherKey) + " }\n",
			want: `:5: tls.cert_file: .*private key does not match public key`},
		{name: "client CA garbage", yaml: "tls:\n  cert_file: " + q(f.cert) + "\n  key_file: " + q(f.key) + "\n  client_ca_file: " + q(f.garbage) + "\n",
			want: `:8: tls.client_ca_file: cannot use .*garbage.*no PEM certificates`},
		{name: "client CA with a broken certificate", yaml: "tls:\n  cert_file: " + q(f.cert) + "\n  key_file: " + q(f.key) + "\n  client_ca_file: " + q(f.badCA) + "\n",
			want: `:8: tls.client_ca_file: cannot use .*certificate 2 does not parse`},
		{name: "upstream CA missing", yaml: "    upstream_tls: { ca_file: " + q(f.dir+"/noca.pem") + " }\n",
			want: `:5: pools\[0\]\.upstream_tls\.ca_file: cannot read .*noca.pem`},
		{name: "MTLS cert from the environment missing", env: []string{"MTLS_ENABLED=true", "MTLS_CERT_FILE=" + f.dir + "/nope.pem", "MTLS_KEY_FILE=" + f.key},
			want: `^environment: MTLS_CERT_FILE: cannot load certificate`, tls: true},
		{name: "mmdb garbage", yaml: "geo: { mmdb_file: " + q(f.garbage) + " }\n",
			want: `:5: geo.mmdb_file: cannot open geo.mmdb_file .*garbage`},
		{name: "jwks_file garbage", yaml: jwt("    jwks_file: " + q(f.garbage) + "\n"),
			want: `:8: auth.jwt.jwks_file: cannot use .*not a JWKS document`},
		{name: "jwks_file without a key for the algorithms", yaml: jwt("    jwks_file: " + q(f.ecJWKS) + "\n"),
			want: `:8: auth.jwt.jwks_file: cannot use .*no key in the set can verify RS256`},
		{name: "jwks_file with a private key", yaml: jwt("    jwks_file: " + q(f.privateJWKS) + "\n"),
			want: `:8: auth.jwt.jwks_file: cannot use .*not a public key`},
		{name: "jwks_url not found", yaml: jwt("    jwks_url: " + q(jwksSrv.URL+"/missing") + "\n"),
			want: `:8: auth.jwt.jwks_url: cannot fetch .*status 404`},
		{name: "HMAC secret too short", yaml: jwt("    algorithms: [HS256]\n    hmac_secret_file: " + q(f.shortHMAC) + "\n"),
			want: `:9: auth.jwt.hmac_secret_file: cannot use .*the secret is 6 bytes; it must be at least 32`},
		{name: "token_file missing", yaml: "admin: { listen: \"127.0.0.1:0\", token_file: " + q(f.dir+"/notoken") + " }\n",
			want: `:5: admin.token_file: cannot read token file`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			yaml := base + c.yaml
			if c.tls {
				yaml = strings.Replace(yaml, "http://", "https://", 1)
			}
			if !strings.Contains(c.yaml, "admin:") {
				yaml += "admin: { listen: \"127.0.0.1:0\" }\n"
			}
			yaml += "server: { drain_grace: 100ms }\n" // the valid ones are stopped
			file := writeFile(t, filepath.Join(t.TempDir(), "lb.yaml"), []byte(yaml))
			env := append(append(os.Environ(), "LOG_LEVEL=info"), c.env...)

			check := exec.Command(binary, "-check-config", "-config", file)
			check.Env = env
			out, err := check.CombinedOutput()
			if c.want == "" {
				if err != nil {
					t.Fatalf("-check-config: got %v; want success\n%s\nconfig:\n%s", err, out, yaml)
				}
				p := startEnv(t, env, "-config", file)
				_ = p.cmd.Process.Signal(os.Interrupt)
				<-p.exited
				return
			}
			re := regexp.MustCompile(`(?m)` + strings.Replace(c.want, ":", regexp.QuoteMeta(file)+":", 1))
			if strings.HasPrefix(c.want, "^") {
				re = regexp.MustCompile(`(?m)` + c.want)
			}
			if err == nil || !re.Match(out) {
				t.Fatalf("-check-config: got %v %q; want exit 1 and a line matching %s\nconfig:\n%s", err, out, re, yaml)
			}
			run := exec.Command(binary, "-config", file)
			run.Env = env
			var stderr bytes.Buffer
			run.Stderr = &stderr
			if err := run.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- run.Wait() }()
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				_ = run.Process.Kill()
				t.Fatalf("the start did not fail\n%s", stderr.String())
			}
			if err == nil || !re.Match(stderr.Bytes()) {
				t.Fatalf("start: got %v %q; want a failure with a line matching %s", err, stderr.String(), re)
			}
		})
	}
}

func q(s string) string { b, _ := json.Marshal(s); return string(b) }
