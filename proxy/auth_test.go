package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/rs/zerolog"

	"go-loadbalancer/auth"
	"go-loadbalancer/config"
)

func TestJWTAtTheEdge(t *testing.T) {
	be := startBackend(t, echoHeaders)
	secret := []byte("0123456789abcdef0123456789abcdef")
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := auth.New(auth.Options{Config: config.JWT{Enabled: true, Algorithms: []string{"HS256"},
		HMACSecretFile: secretFile, Audience: "lb", SkipPaths: []string{"/public"},
		ForwardClaims: map[string]string{"sub": "X-User-Id"}}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	px := startProxy(t, poolConfig(t, "", be.url), func(o *Options) { o.Auth = v })

	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, nil)
	good, _ := jwt.Signed(signer).Claims(map[string]any{"sub": "alice", "aud": "lb", "exp": time.Now().Add(time.Hour).Unix()}).Serialize()
	other, _ := jwt.Signed(signer).Claims(map[string]any{"sub": "alice", "aud": "other", "exp": time.Now().Add(time.Hour).Unix()}).Serialize()

	resp := px.get(t, "/", "X-User-Id", "forged")
	if resp.StatusCode() != 401 || string(resp.Header.Peek("WWW-Authenticate")) != `Bearer realm="go-loadbalancer"` {
		t.Fatalf("no token: got %d %q; want 401 with a Bearer challenge", resp.StatusCode(), resp.Header.Peek("WWW-Authenticate"))
	}
	resp = px.get(t, "/", "Authorization", "Bearer "+other)
	if resp.StatusCode() != 401 || !strings.Contains(string(resp.Header.Peek("WWW-Authenticate")), `error="invalid_token"`) {
		t.Fatalf("wrong audience: got %d %q; want 401 invalid_token", resp.StatusCode(), resp.Header.Peek("WWW-Authenticate"))
	}
	if be.hits.Load() != 0 {
		t.Fatalf("backend got %d requests; want none without a valid token", be.hits.Load())
	}
	got := decodeHeaders(t, px.get(t, "/", "Authorization", "Bearer "+good, "X-User-Id", "forged"))
	if got["X-User-Id"] != "alice" {
		t.Fatalf("got X-User-Id %q; want the token's sub (alice), never the client's", got["X-User-Id"])
	}
	got = decodeHeaders(t, px.get(t, "/public/logo.png", "X-User-Id", "forged"))
	if _, ok := got["X-User-Id"]; ok {
		t.Fatalf("skip path: backend got X-User-Id %q; want the forged header dropped", got["X-User-Id"])
	}
}
