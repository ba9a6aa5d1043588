package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runHealthcheck runs the binary with -healthcheck and args and returns its exit code and
// output.
func runHealthcheck(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"-healthcheck"}, args...)...)
	cmd.Env = os.Environ()
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// adminAddr is the admin address a running process logged.
func (p *process) adminAddr(t *testing.T) string {
	t.Helper()
	a := p.logField("go-loadbalancer serving", "admin")
	if a == "" {
		t.Fatalf("no admin address logged:\n%s", p.log())
	}
	return a
}

// -healthcheck, as Docker's HEALTHCHECK runs it, against a live instance: healthy while it
// serves, unhealthy once it is gone, and pointed at the right port by -admin or -config.
func TestHealthcheckAgainstLiveInstance(t *testing.T) {
	t.Parallel()
	p, cfg := startOne(t)
	admin := p.adminAddr(t)

	if code, out := runHealthcheck(t, "-admin", admin); code != 0 || !strings.Contains(out, "200 OK") {
		t.Fatalf("-healthcheck -admin %s: got exit %d (%s); want 0", admin, code, out)
	}
	// A wildcard admin address is reached on loopback.
	_, port, _ := strings.Cut(admin, ":")
	if code, out := runHealthcheck(t, "-admin", ":"+port); code != 0 {
		t.Fatalf("-healthcheck -admin :%s: got exit %d (%s); want 0", port, code, out)
	}
	// With -config: the config's admin.listen.
	fixed := filepath.Join(t.TempDir(), "fixed.yaml")
	body, _ := os.ReadFile(cfg)
	os.WriteFile(fixed, []byte(strings.Replace(string(body), `admin: { listen: "127.0.0.1:0" }`, `admin: { listen: "`+admin+`" }`, 1)), 0o644)
	if code, out := runHealthcheck(t, "-config", fixed); code != 0 {
		t.Fatalf("-healthcheck -config: got exit %d (%s); want 0", code, out)
	}
	// A file the config names that went away since the start (a JWKS, a CA, an mmdb) does
	// not make the running instance unhealthy: -healthcheck opens none of them.
	gone := filepath.Join(t.TempDir(), "gone.yaml")
	os.WriteFile(gone, append(mustRead(t, fixed), "geo: { mmdb_file: \"/nonexistent/geo.mmdb\" }\n"...), 0o644)
	if code, out := runHealthcheck(t, "-config", gone); code != 0 {
		t.Fatalf("-healthcheck -config naming a missing mmdb: got exit %d (%s); want 0", code, out)
	}
	// A stopped instance is unhealthy.
	p.stop(t)
	if code, out := runHealthcheck(t, "-admin", admin); code != 1 || !strings.Contains(out, "connection refused") {
		t.Fatalf("-healthcheck after the instance stopped: got exit %d (%s); want 1, connection refused", code, out)
	}
	// An invalid config is unhealthy too, with the config error.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("pools: []\nbogus: 1\n"), 0o644)
	if code, out := runHealthcheck(t, "-config", bad); code != 1 || !strings.Contains(out, bad+":") {
		t.Fatalf("-healthcheck -config (invalid): got exit %d (%s); want 1 naming the file", code, out)
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
