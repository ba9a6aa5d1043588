// Package testtool finds the external programs tests run (redis-server, promtool,
// prometheus, chromium, wrk). A missing one skips the test on a developer's machine, but
// fails it under CI=true: a suite that silently skips its real-parts tests in CI would
// pass without testing anything, so CI must install them (scripts/install-deps.sh).
package testtool

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// Need returns the path of the command name (from Debian package pkg).
func Need(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found; CI must install it (scripts/install-deps.sh: Debian package %s)", name, pkg)
		}
		t.Skipf("%s not found (Debian package %s; scripts/install-deps.sh installs it)", name, pkg)
	}
	return p
}

// WaitFor polls cond every 5 ms until it holds, failing t once d has passed: tests wait
// for what they expect instead of sleeping and hoping.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
