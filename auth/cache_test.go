package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/rs/zerolog"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/testtool"
)

// TestRequireExp: a token without exp is refused by default (it never expired before), and
// accepted with require_exp: false.
func TestRequireExp(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Now()
	claims := stdClaims(now)
	delete(claims, "exp")
	tok := "Bearer " + testtool.SignJWT(t, jose.HS256, secret, "", claims)
	f := func(require *bool, want error) {
		t.Helper()
		v, err := New(Options{Config: config.JWT{Enabled: true, Algorithms: []string{"HS256"},
			HMACSecretFile: writeFile(t, "s", secret), RequireExp: require}, Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify([]byte(tok), now); !errors.Is(err, want) {
			t.Fatalf("require_exp %v: got %v; want %v", require, err, want)
		}
	}
	no := false
	f(nil, ErrNoExpiry)
	f(&no, nil)
}

// TestVerifyCache: a verified token is answered from the cache (Cached) until its exp plus
// Leeway; a token that failed is never cached; a JWKS refresh starts the cache afresh.
func TestVerifyCache(t *testing.T) {
	v, k1, k2, rotate := rotatingJWKS(t, time.Hour)
	now := time.Now()
	claims := stdClaims(now)
	claims["exp"] = now.Add(time.Minute).Unix()
	tok := []byte("Bearer " + testtool.SignJWT(t, jose.RS256, k1.priv, "k1", claims))
	if _, ok := v.Cached(tok, now); ok {
		t.Fatal("Cached before any verification: got a hit")
	}
	if _, err := v.Verify(tok, now); err != nil {
		t.Fatal(err)
	}
	if c, ok := v.Cached(tok, now.Add(time.Minute+Leeway-time.Second)); !ok || c["sub"] != "alice" {
		t.Fatalf("Cached within exp+leeway: got %v, %v; want alice's claims", c, ok)
	}
	if _, ok := v.Cached([]byte("bearer  "+string(tok[len("Bearer "):])+" "), now); !ok {
		t.Fatal("Cached with another spelling of the scheme: got a miss")
	}
	if _, ok := v.Cached(tok, now.Add(time.Minute+Leeway)); ok {
		t.Fatal("Cached after exp+leeway: got a hit")
	}
	if _, err := v.Verify(tok, now.Add(time.Minute+Leeway+time.Second)); !errors.Is(err, ErrClaims) {
		t.Fatalf("Verify after exp+leeway: got %v; want ErrClaims", err)
	}
	bad := []byte("Bearer " + testtool.SignJWT(t, jose.RS256, k2.priv, "k1", stdClaims(now)))
	if _, err := v.Verify(bad, now); !errors.Is(err, ErrSignature) {
		t.Fatalf("bad signature: got %v", err)
	}
	if _, ok := v.Cached(bad, now); ok {
		t.Fatal("a token that failed verification was cached")
	}
	// The identity provider drops k1: after the refresh the cached k1 token is checked
	// again, and fails.
	rotate()
	if err := v.fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Cached(tok, now); ok {
		t.Fatal("Cached after the key set changed: got a hit")
	}
	if _, err := v.Verify(tok, now); !errors.Is(err, ErrSignature) {
		t.Fatalf("k1 token after k1 was removed: got %v; want ErrSignature", err)
	}
}

// TestCacheBounded: the cache holds at most its capacity; a full bucket replaces the entry
// that expires first.
func TestCacheBounded(t *testing.T) {
	c := newCache(64)
	now := int64(1)
	for i := range 10000 {
		c.put(string(rune(i))+"-token", map[string]any{}, nil, now+int64(i)+1000, now)
	}
	n := 0
	for i := range c.buckets {
		for j := range c.buckets[i].slots {
			if c.buckets[i].slots[j].Load() != nil {
				n++
			}
		}
	}
	if n > 64 {
		t.Fatalf("got %d entries in a cache of 64", n)
	}
}
