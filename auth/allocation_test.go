//go:build !race

package auth

import "testing"

// TestCachedVerifyAllocatesNothing: a token answered from the cache costs no allocation.
func TestCachedVerifyAllocatesNothing(t *testing.T) {
	v, tok, now := rs256Verifier(t)
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
