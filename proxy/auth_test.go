package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/rs/zerolog"

	"go-loadbalancer/auth"
	"go-loadbalancer/config"
	"go-loadbalancer/internal/testtool"
)

// hs256Verifier returns a verifier of HS256 tokens (a secret in a file) with jc's other
// settings, and a function that signs claims into a token for it.
func hs256Verifier(t testing.TB, jc config.JWT) (*auth.Verifier, func(claims map[string]any) string) {
	t.Helper()
	secret := []byte("0123456789abcdef0123456789abcdef")
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	jc.Enabled, jc.Algorithms, jc.HMACSecretFile = true, []string{"HS256"}, file
	v, err := auth.New(auth.Options{Config: jc, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return v, func(claims map[string]any) string { return testtool.SignJWT(t, jose.HS256, secret, "", claims) }
}

// aliceClaims are the claims of a token of user alice valid for an hour.
func aliceClaims() map[string]any {
	return map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
}

func TestJWTAtTheEdge(t *testing.T) {
	t.Parallel()
	be := startBackend(t, echoHeaders)
	v, sign := hs256Verifier(t, config.JWT{Audience: "lb", SkipPaths: []string{"/public"},
		ForwardClaims: map[string]string{"sub": "X-User-Id"}})
	px := startProxy(t, poolConfig(t, "", be.url), func(o *Options) { o.Auth = v })

	good := sign(map[string]any{"sub": "alice", "aud": "lb", "exp": time.Now().Add(time.Hour).Unix()})
	other := sign(map[string]any{"sub": "alice", "aud": "other", "exp": time.Now().Add(time.Hour).Unix()})

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
