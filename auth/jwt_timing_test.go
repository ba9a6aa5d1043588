package auth

import "testing"

// BenchmarkVerify compares a token answered from the verification cache ("hit") with a full
// verification (parse, RS256 signature, claims: "full"), the cost every request paid before.
func BenchmarkVerify(b *testing.B) {
	v, tok, now := rs256Verifier(b)
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
