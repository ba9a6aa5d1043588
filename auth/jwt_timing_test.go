package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/rs/zerolog"

	"go-loadbalancer/config"
)

// BenchmarkVerify compares a token answered from the verification cache ("hit") with a full
// verification (parse, RS256 signature, claims: "full"), the cost every request paid before.
func BenchmarkVerify(b *testing.B) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &priv.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	file := filepath.Join(b.TempDir(), "jwks.json")
	if err := os.WriteFile(file, set, 0o600); err != nil {
		b.Fatal(err)
	}
	v, err := New(Options{Config: config.JWT{Enabled: true, Algorithms: []string{"RS256"}, JWKSFile: file}, Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: priv}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	raw, err := jwt.Signed(s).Claims(stdClaims(now)).Serialize()
	if err != nil {
		b.Fatal(err)
	}
	tok := []byte("Bearer " + raw)
	b.Run("hit", func(b *testing.B) {
		if _, err := v.Verify(tok, now); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(tok, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.verify(tok, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}
