package auth

import (
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/rs/zerolog"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/testtool"
)

// keyPair is an RSA key with its public JWKS document.
type keyPair struct {
	priv *rsa.PrivateKey
	kid  string
	jwks []byte
}

func newKeyPair(t testing.TB, kid string) keyPair {
	t.Helper()
	priv := testtool.RSAKey(t)
	return keyPair{priv: priv, kid: kid, jwks: testtool.JWKS(t, map[string]*rsa.PrivateKey{kid: priv})}
}

// rs256Verifier returns a verifier of RS256 tokens whose key set (one key) is a file, and
// a token it accepts at now, after its Bearer scheme.
func rs256Verifier(t testing.TB) (v *Verifier, tok []byte, now time.Time) {
	t.Helper()
	kp := newKeyPair(t, "k1")
	v, err := New(Options{Config: config.JWT{Enabled: true, Algorithms: []string{"RS256"},
		JWKSFile: writeFile(t, "jwks.json", kp.jwks)}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	now = time.Now()
	return v, []byte("Bearer " + testtool.SignJWT(t, jose.RS256, kp.priv, kp.kid, stdClaims(now))), now
}

// rotatingJWKS starts a verifier whose jwks_url serves the key set of k1 until rotate
// switches it to k2's; the verifier refreshes every refresh.
func rotatingJWKS(t *testing.T, refresh time.Duration) (v *Verifier, k1, k2 keyPair, rotate func()) {
	t.Helper()
	k1, k2 = newKeyPair(t, "k1"), newKeyPair(t, "k2")
	var current atomic.Pointer[[]byte]
	current.Store(&k1.jwks)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(*current.Load()) }))
	t.Cleanup(srv.Close)
	v, err := New(Options{Config: config.JWT{Enabled: true, Algorithms: []string{"RS256"}, JWKSURL: srv.URL},
		Refresh: refresh, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v, k1, k2, func() { current.Store(&k2.jwks) }
}

func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func stdClaims(now time.Time) map[string]any {
	return map[string]any{"sub": "alice", "iss": "https://issuer.example", "aud": "lb",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "role": "admin"}
}

func TestVerify(t *testing.T) {
	kp := newKeyPair(t, "k1")
	other := newKeyPair(t, "k1") // same kid, different key
	secret := []byte("0123456789abcdef0123456789abcdef")
	v, err := New(Options{Config: config.JWT{
		Enabled: true, Algorithms: []string{"RS256", "HS256"},
		JWKSFile: writeFile(t, "jwks.json", kp.jwks), HMACSecretFile: writeFile(t, "secret", secret),
		Issuer: "https://issuer.example", Audience: "lb",
	}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	f := func(name, token string, want error) {
		t.Helper()
		claims, err := v.Verify([]byte("Bearer "+token), now)
		if !errors.Is(err, want) {
			t.Fatalf("%s: got %v; want %v", name, err, want)
		}
		if want == nil && claims["sub"] != "alice" {
			t.Fatalf("%s: got claims %v; want sub alice", name, claims)
		}
	}
	f("RS256 valid", testtool.SignJWT(t, jose.RS256, kp.priv, "k1", stdClaims(now)), nil)
	f("HS256 valid", testtool.SignJWT(t, jose.HS256, secret, "", stdClaims(now)), nil)
	f("wrong key", testtool.SignJWT(t, jose.RS256, other.priv, "k1", stdClaims(now)), ErrSignature)
	f("unknown kid", testtool.SignJWT(t, jose.RS256, kp.priv, "k9", stdClaims(now)), ErrSignature)
	f("algorithm not in the list", testtool.SignJWT(t, jose.RS512, kp.priv, "k1", stdClaims(now)), ErrAlgorithm)
	// Algorithm confusion: an HS256 token keyed with the RSA public key's bytes.
	pub, _ := json.Marshal(kp.priv.PublicKey)
	f("HS256 with the public key as secret", testtool.SignJWT(t, jose.HS256, pub, "k1", stdClaims(now)), ErrSignature)

	expired := stdClaims(now)
	expired["exp"] = now.Add(-time.Hour).Unix()
	f("expired", testtool.SignJWT(t, jose.RS256, kp.priv, "k1", expired), ErrClaims)
	wrongAud := stdClaims(now)
	wrongAud["aud"] = "someone-else"
	f("other audience", testtool.SignJWT(t, jose.RS256, kp.priv, "k1", wrongAud), ErrClaims)
	wrongIss := stdClaims(now)
	wrongIss["iss"] = "https://evil.example"
	f("other issuer", testtool.SignJWT(t, jose.RS256, kp.priv, "k1", wrongIss), ErrClaims)

	// alg "none", hand-made: header {"alg":"none"}, no signature.
	f("alg none", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.", ErrAlgorithm)
	f("garbage", "not.a.jwt", ErrMalformed)
	if _, err := v.Verify(nil, now); !errors.Is(err, ErrMissing) {
		t.Fatalf("no header: got %v; want ErrMissing", err)
	}
	if _, err := v.Verify([]byte("Basic YWxpY2U6cHc="), now); !errors.Is(err, ErrMissing) {
		t.Fatalf("Basic auth: got %v; want ErrMissing", err)
	}
}

func TestJWKSURLRefresh(t *testing.T) {
	v, k1, k2, rotate := rotatingJWKS(t, 20*time.Millisecond)
	now := time.Now()
	if _, err := v.Verify([]byte("Bearer "+testtool.SignJWT(t, jose.RS256, k1.priv, "k1", stdClaims(now))), now); err != nil {
		t.Fatalf("k1 token: %v", err)
	}
	// The identity provider rotates to k2: tokens signed with k2 pass once refreshed.
	rotate()
	tok := []byte("Bearer " + testtool.SignJWT(t, jose.RS256, k2.priv, "k2", stdClaims(now)))
	testtool.WaitFor(t, 5*time.Second, "the rotated key", func() bool {
		_, err := v.Verify(tok, now)
		return err == nil
	})
}

func TestNewRejectsBadKeys(t *testing.T) {
	kp := newKeyPair(t, "k1")
	privSet, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: kp.priv, KeyID: "k1"}}})
	for name, c := range map[string]config.JWT{
		"private key in JWKS": {JWKSFile: writeFile(t, "p.json", privSet)},
		"short HMAC secret":   {HMACSecretFile: writeFile(t, "s", []byte("short"))},
		"no key source":       {},
		"not JSON":            {JWKSFile: writeFile(t, "x.json", []byte("nope"))},
	} {
		c.Enabled, c.Algorithms = true, []string{"RS256", "HS256"}
		if _, err := New(Options{Config: c, Log: zerolog.Nop()}); err == nil {
			t.Errorf("%s: accepted; want an error", name)
		}
	}
}
