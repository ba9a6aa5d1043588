package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"go-loadbalancer/config"
)

// TestStickyStoreSecret: two instances configured with one STICKY_SECRET make the same
// cookie references (and accept each other's cookies); without a secret each has its own
// random key and startup warns that instances will disagree.
func TestStickyStoreSecret(t *testing.T) {
	store := func(env ...string) (ref string, logged string) {
		t.Helper()
		cfg, err := config.Parse("lb.yaml", []byte("pools:\n  - backends: [{url: \"http://127.0.0.1:1\"}]\nsticky: { enabled: true }\n"))
		if err != nil {
			t.Fatal(err)
		}
		vars := map[string]string{}
		for i := 0; i+1 < len(env); i += 2 {
			vars[env[i]] = env[i+1]
		}
		if errs := cfg.ApplyEnv(func(k string) string { return vars[k] }); errs != nil {
			t.Fatal(errs)
		}
		var buf bytes.Buffer
		st, err := newStickyStore(cfg, zerolog.New(&buf))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		return st.Signer().Ref(0, "web-127.0.0.1_8081"), buf.String()
	}
	const secret = "one secret for the whole fleet.."
	a, logA := store("STICKY_SECRET", secret)
	b, _ := store("STICKY_SECRET", secret)
	if a != b {
		t.Fatalf("two instances with one STICKY_SECRET: got references %q and %q; want equal", a, b)
	}
	if logA != "" {
		t.Fatalf("with a secret: got log %q; want no warning", logA)
	}
	c, logC := store()
	if c == a || !strings.Contains(logC, "random per-process key") {
		t.Fatalf("without a secret: got reference %q (shared one %q), log %q; want another key and a warning", c, a, logC)
	}
}
