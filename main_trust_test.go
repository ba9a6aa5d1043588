package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"go-loadbalancer/config"
)

// TestStickyStoreSecret: two instances configured with one STICKY_SECRET make the same
// cookie references (and accept each other's cookies); without a secret each has its own
// random key and startup warns that instances will disagree.
func TestStickyStoreSecret(t *testing.T) {
	t.Parallel()
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

// TestCheckConfigMTLSNeedsTLS: MTLS_ENABLED=true with a plain http:// backend (as the
// demo's are) is a config error naming the pool and the backend,
// in -check-config too — it was accepted, and the traffic went out in plain text.
func TestCheckConfigMTLSNeedsTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "lb.yaml")
	if err := os.WriteFile(file, []byte("pools:\n  - name: web\n    backends:\n      - url: \"https://127.0.0.1:9\"\n      - url: \"http://127.0.0.1:8082\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "c.key")
	cmd := exec.Command(binary, "-check-config", "-config", file)
	cmd.Env = append(os.Environ(), "MTLS_ENABLED=true", "MTLS_CERT_FILE="+cert, "MTLS_KEY_FILE="+key)
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("-check-config with MTLS_ENABLED and an http:// backend: got %v; want exit 1\n%s", err, out)
	}
	want := file + `:5: pools[0].backends[1].url: pool "web": MTLS_CERT_FILE sets a client certificate (MTLS_ENABLED=true), but backend "http://127.0.0.1:8082" is plain http://`
	if !strings.Contains(string(out), want) {
		t.Fatalf("got %s; want it to contain %q", out, want)
	}
}
