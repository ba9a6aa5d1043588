package auth

import (
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/rs/zerolog"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/testtool"
)

// BenchmarkVerify compares a token answered from the verification cache ("hit") with a full
// verification (parse, RS256 signature, claims: "full"), the cost every request paid before.
func BenchmarkVerify(b *testing.B) {
	kp := newKeyPair(b, "k1")
	v, err := New(Options{Config: config.JWT{Enabled: true, Algorithms: []string{"RS256"},
		JWKSFile: writeFile(b, "jwks.json", kp.jwks)}, Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	tok := []byte("Bearer " + testtool.SignJWT(b, jose.RS256, kp.priv, kp.kid, stdClaims(now)))
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
