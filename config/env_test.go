package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// envMap returns a getenv function that reads from kv ("NAME", "value", ...).
func envMap(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(name string) string { return m[name] }
}

const envTestDoc = `redis: { url: "redis://file:6379/1" }
log: { level: debug }
pools:
  - name: a
    backends: [{url: "https://a"}]
    upstream_tls: { ca_file: /file/ca.pem, server_name: a.internal }
  - name: b
    backends: [{url: "https://b"}]
`

func TestApplyEnvTrafficPolicies(t *testing.T) {
	f := func(value string, wantOff bool) {
		t.Helper()
		c := mustParse(t, envTestDoc)
		if errs := c.ApplyEnv(envMap("TRAFFIC_POLICIES_ENABLED", value)); errs != nil {
			t.Fatalf("ApplyEnv: %v", errs)
		}
		if c.Env.TrafficPoliciesOff != wantOff {
			t.Fatalf("TRAFFIC_POLICIES_ENABLED=%q: got TrafficPoliciesOff %v; want %v", value, c.Env.TrafficPoliciesOff, wantOff)
		}
	}
	f("", false)
	f("true", false)
	f("1", false)
	f("false", true)
	f("0", true)
}

func TestApplyEnv(t *testing.T) {
	c := mustParse(t, envTestDoc)
	errs := c.ApplyEnv(envMap(
		"REDIS_URL", "rediss://env:6380/0",
		"LOG_LEVEL", "WARN",
		"TRAFFIC_POLICIES_ENABLED", "1",
		"MTLS_ENABLED", "TRUE",
		"MTLS_CERT_FILE", "certs/client.pem",
		"MTLS_KEY_FILE", "/abs/client.key",
		"CONSUL_ADDR", "127.0.0.1:8500",
		"ADMIN_TOKEN", "s3cret",
		"REDIS_ENABLED", "false",
		"CONSUL_ENABLED", "0",
	))
	if errs != nil {
		t.Fatalf("ApplyEnv: %v", errs)
	}
	if errs := c.Validate(); errs != nil {
		t.Fatalf("Validate after ApplyEnv: %v", errs)
	}
	wantEnv := EnvSettings{ConsulAddr: "127.0.0.1:8500"}
	if c.Env != wantEnv {
		t.Fatalf("got Env %+v; want %+v", c.Env, wantEnv)
	}
	// Environment over file.
	if c.Redis.URL != "rediss://env:6380/0" || c.Log.Level != "warn" || c.Admin.Token != "s3cret" {
		t.Fatalf("got redis %q, log level %q, token %q; want the environment's", c.Redis.URL, c.Log.Level, c.Admin.Token)
	}
	// MTLS fills every pool; MTLS_CA_FILE is unset, so the file's ca_file stays.
	want := []UpstreamTLS{
		{CAFile: "/file/ca.pem", CertFile: "certs/client.pem", KeyFile: "/abs/client.key", ServerName: "a.internal"},
		{CertFile: "certs/client.pem", KeyFile: "/abs/client.key"},
	}
	for i, p := range c.Pools {
		if p.UpstreamTLS != want[i] {
			t.Fatalf("pool %s: got upstream_tls %+v; want %+v", p.Name, p.UpstreamTLS, want[i])
		}
	}

	c = mustParse(t, envTestDoc)
	if errs := c.ApplyEnv(envMap("MTLS_ENABLED", "1", "MTLS_CERT_FILE", "c", "MTLS_KEY_FILE", "k", "MTLS_CA_FILE", "ca")); errs != nil {
		t.Fatalf("ApplyEnv: %v", errs)
	}
	for _, p := range c.Pools {
		if p.UpstreamTLS.CAFile != "ca" {
			t.Fatalf("pool %s: got ca_file %q; want ca from MTLS_CA_FILE", p.Name, p.UpstreamTLS.CAFile)
		}
	}
}

func TestApplyEnvUnsetChangesNothing(t *testing.T) {
	for _, getenv := range []func(string) string{envMap(), envMap("REDIS_URL", "", "LOG_LEVEL", "", "REDIS_ENABLED", "")} {
		c := mustParse(t, envTestDoc)
		if errs := c.ApplyEnv(getenv); errs != nil {
			t.Fatalf("ApplyEnv: %v", errs)
		}
		checkSameConfig(t, c, mustParse(t, envTestDoc))
	}
	// MTLS files without MTLS_ENABLED are ignored.
	c := mustParse(t, envTestDoc)
	if errs := c.ApplyEnv(envMap("MTLS_ENABLED", "false", "MTLS_CERT_FILE", "c", "MTLS_KEY_FILE", "k")); errs != nil {
		t.Fatalf("ApplyEnv: %v", errs)
	}
	checkSameConfig(t, c, mustParse(t, envTestDoc))
}

func TestApplyEnvOSGetenv(t *testing.T) {
	t.Setenv("LOG_LEVEL", "error")
	c := mustParse(t, envTestDoc)
	if errs := c.ApplyEnv(nil); errs != nil {
		t.Fatalf("ApplyEnv: %v", errs)
	}
	if c.Log.Level != "error" {
		t.Fatalf("got log level %q; want error from LOG_LEVEL", c.Log.Level)
	}
}

func TestApplyEnvBadValues(t *testing.T) {
	f := func(getenv func(string) string, want ...string) {
		t.Helper()
		c := mustParse(t, envTestDoc)
		got := errorLines(c.ApplyEnv(getenv))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got errors\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	f(envMap("REDIS_ENABLED", "yes", "TRAFFIC_POLICIES_ENABLED", "on", "MTLS_ENABLED", "maybe", "CONSUL_ENABLED", "2"),
		`environment: REDIS_ENABLED: invalid boolean "yes" (use true or false)`,
		`environment: TRAFFIC_POLICIES_ENABLED: invalid boolean "on" (use true or false)`,
		`environment: MTLS_ENABLED: invalid boolean "maybe" (use true or false)`,
		`environment: CONSUL_ENABLED: invalid boolean "2" (use true or false)`)
	f(envMap("MTLS_ENABLED", "true", "MTLS_CERT_FILE", "c.pem"),
		`environment: MTLS_ENABLED: MTLS_ENABLED is true but MTLS_CERT_FILE and MTLS_KEY_FILE are not both set`)
	f(envMap("MTLS_ENABLED", "true", "MTLS_KEY_FILE", "c.key", "MTLS_CA_FILE", "ca.pem"),
		`environment: MTLS_ENABLED: MTLS_ENABLED is true but MTLS_CERT_FILE and MTLS_KEY_FILE are not both set`)
}

// TestEnvValidate checks that Validate names the variable when a bad value came from the
// environment, and that the env-only switches of features not built yet are rejected.
func TestEnvValidate(t *testing.T) {
	f := func(getenv func(string) string, want ...string) {
		t.Helper()
		c := mustParse(t, envTestDoc)
		if errs := c.ApplyEnv(getenv); errs != nil {
			t.Fatalf("ApplyEnv: %v", errs)
		}
		for range 2 { // Validate may be called again with the same result
			got := errorLines(c.Validate())
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got errors\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		}
	}
	f(envMap("LOG_LEVEL", "verbose"),
		`environment: LOG_LEVEL: log level must be one of trace, debug, info, warn, error (got "verbose")`)
	f(envMap("REDIS_URL", "http://redis:6379"),
		`environment: REDIS_URL: url "http://redis:6379": scheme must be redis or rediss`)

	// Without the environment, the file's bad value is reported on its line.
	c, err := Parse("lb.yaml", []byte(strings.Replace(envTestDoc, "level: debug", "level: verbose", 1)))
	if err == nil || err.Error() != `lb.yaml:2: log.level: log level must be one of trace, debug, info, warn, error (got "verbose")` {
		t.Fatalf("got %v, %v; want a log.level error on line 2", c, err)
	}
}

func TestConsulDiscoveryNeedsConsulEnabled(t *testing.T) {
	// A pool may take all its backends from Consul. The file alone is valid (Parse does not
	// see the environment); with the environment applied, CONSUL_ENABLED must be true.
	const doc = "pools:\n  - name: web\n    discovery:\n      consul: { service: web, tag: v2 }\n"
	f := func(getenv func(string) string, want ...string) {
		t.Helper()
		c := mustParse(t, doc)
		if errs := c.ApplyEnv(getenv); errs != nil {
			t.Fatalf("ApplyEnv: %v", errs)
		}
		if got := errorLines(c.Validate()); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("got errors %q; want %q", got, want)
		}
	}
	f(envMap("CONSUL_ENABLED", "true"))
	f(envMap("CONSUL_ENABLED", "false"),
		"lb.yaml:4: pools[0].discovery.consul.service: Consul discovery needs CONSUL_ENABLED=true (and CONSUL_ADDR unless Consul is at 127.0.0.1:8500)")
	f(envMap(),
		"lb.yaml:4: pools[0].discovery.consul.service: Consul discovery needs CONSUL_ENABLED=true (and CONSUL_ADDR unless Consul is at 127.0.0.1:8500)")
}

func TestAdminToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "lb.yaml")
	doc := "pools:\n  - backends: [{url: \"http://a\"}]\nadmin:\n  token_file: token\n"
	tokenFile := filepath.Join(dir, "token")

	// Unreadable: the error names the file, on the line of token_file.
	c := mustParseFile(t, file, doc)
	errs := c.ApplyEnv(envMap())
	want := file + `:4: admin.token_file: cannot read token file "` + tokenFile + `": no such file or directory`
	if errs.Error() != want {
		t.Fatalf("got %q; want %q", errs, want)
	}

	if err := os.WriteFile(tokenFile, []byte("  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c = mustParseFile(t, file, doc)
	errs = c.ApplyEnv(envMap())
	want = file + `:4: admin.token_file: token file "` + tokenFile + `" is empty`
	if errs.Error() != want {
		t.Fatalf("got %q; want %q", errs, want)
	}

	if err := os.WriteFile(tokenFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c = mustParseFile(t, file, doc)
	if errs := c.ApplyEnv(envMap()); errs != nil {
		t.Fatalf("ApplyEnv: %v", errs)
	}
	if c.Admin.Token != "from-file" {
		t.Fatalf("got token %q; want from-file", c.Admin.Token)
	}

	// ADMIN_TOKEN wins over the file.
	c = mustParseFile(t, file, doc)
	if errs := c.ApplyEnv(envMap("ADMIN_TOKEN", "from-env")); errs != nil {
		t.Fatalf("ApplyEnv: %v", errs)
	}
	if c.Admin.Token != "from-env" {
		t.Fatalf("got token %q; want from-env", c.Admin.Token)
	}

	// No token anywhere: no token, no error.
	c = mustParse(t, basePool)
	if errs := c.ApplyEnv(envMap()); errs != nil || c.Admin.Token != "" {
		t.Fatalf("got token %q, errors %v; want none", c.Admin.Token, errs)
	}
}

// TestStickySecret: the sticky signing key comes from STICKY_SECRET, else from
// sticky.secret_file; the previous key likewise; a short or unreadable one is an error that
// never shows the secret.
func TestStickySecret(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "lb.yaml")
	doc := "pools:\n  - backends: [{url: \"http://a\"}]\nsticky:\n  secret_file: s\n  previous_secret_file: p\n"
	write := func(name, v string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := mustParseFile(t, file, doc)
	errs := c.ApplyEnv(envMap())
	want := file + `:4: sticky.secret_file: cannot read secret file "` + filepath.Join(dir, "s") + `": no such file or directory` + "\n" +
		file + `:5: sticky.previous_secret_file: cannot read secret file "` + filepath.Join(dir, "p") + `": no such file or directory`
	if errs.Error() != want {
		t.Fatalf("got %q; want %q", errs, want)
	}
	write("s", "short-secret\n")
	write("p", "the previous secret, 32 bytes...\n")
	c = mustParseFile(t, file, doc)
	errs = c.ApplyEnv(envMap())
	want = file + `:4: sticky.secret_file: secret in "` + filepath.Join(dir, "s") + `" is 12 bytes; want at least 16`
	if errs.Error() != want || strings.Contains(errs.Error(), "short-secret") {
		t.Fatalf("got %q; want %q", errs, want)
	}
	write("s", "  the current secret, 32 bytes..\n")
	c = mustParseFile(t, file, doc)
	if errs := c.ApplyEnv(envMap()); errs != nil {
		t.Fatalf("ApplyEnv: %v", errs)
	}
	if string(c.Sticky.Secret) != "the current secret, 32 bytes.." || string(c.Sticky.PreviousSecret) != "the previous secret, 32 bytes..." {
		t.Fatalf("got secrets %q, %q; want the files' trimmed contents", c.Sticky.Secret, c.Sticky.PreviousSecret)
	}
	// The environment wins over the files.
	c = mustParseFile(t, file, doc)
	if errs := c.ApplyEnv(envMap("STICKY_SECRET", "from the environment..", "STICKY_PREVIOUS_SECRET", "previous from the environment")); errs != nil {
		t.Fatalf("ApplyEnv: %v", errs)
	}
	if string(c.Sticky.Secret) != "from the environment.." || string(c.Sticky.PreviousSecret) != "previous from the environment" {
		t.Fatalf("got secrets %q, %q; want the variables'", c.Sticky.Secret, c.Sticky.PreviousSecret)
	}
	c = mustParseFile(t, file, doc)
	errs = c.ApplyEnv(envMap("STICKY_SECRET", "tooshort"))
	if want := "environment: STICKY_SECRET: secret is 8 bytes; want at least 16"; errs.Error() != want {
		t.Fatalf("got %q; want %q", errs, want)
	}
	// Neither: no secret, no error (a random per-process key, with a warning at startup).
	c = mustParse(t, basePool)
	if errs := c.ApplyEnv(envMap()); errs != nil || c.Sticky.Secret != nil {
		t.Fatalf("got secret %q, errors %v; want none", c.Sticky.Secret, errs)
	}
}
