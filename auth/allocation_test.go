//go:build !race

package auth

import (
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/rs/zerolog"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/testtool"
)

// TestCachedVerifyAllocatesNothing: a token answered from the cache costs no allocation.
func TestCachedVerifyAllocatesNothing(t *testing.T) {
	kp := newKeyPair(t, "k1")
	v, err := New(Options{Config: config.JWT{Enabled: true, Algorithms: []string{"RS256"},
		JWKSFile: writeFile(t, "jwks.json", kp.jwks)}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok := []byte("Bearer " + testtool.SignJWT(t, jose.RS256, kp.priv, "k1", stdClaims(now)))
	if _, err := v.Verify(tok, now); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := v.Verify(tok, now); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("got %.1f allocs per cached verification; want 0", n)
	}
}
