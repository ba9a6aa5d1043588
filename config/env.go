package config

import (
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"
)

// ApplyEnv applies the environment overrides (flag > env > file > default; the variables
// are listed in docs/config.md#environment-variables), reading variables through getenv
// (os.Getenv when nil). Unset or empty variables change nothing.
//
//   - REDIS_ENABLED, TRAFFIC_POLICIES_ENABLED, CONSUL_ENABLED set c.Env; booleans take the
//     forms of strconv.ParseBool ("1", "true", "0", "false", ...). TRAFFIC_POLICIES_ENABLED
//     unset means true (routes apply).
//   - REDIS_URL sets redis.url; CONSUL_ADDR sets Env.ConsulAddr; LOG_LEVEL sets log.level
//     (case-insensitive).
//   - MTLS_ENABLED=true sets the upstream_tls cert_file and key_file of every pool from
//     MTLS_CERT_FILE and MTLS_KEY_FILE (both required), and ca_file from MTLS_CA_FILE when
//     set. These paths are used as given (relative to the working directory).
//   - ADMIN_TOKEN sets Admin.Token; without it the token is read from admin.token_file
//     (surrounding white space trimmed), if set.
//   - STICKY_SECRET sets Sticky.Secret; without it the secret is read from
//     sticky.secret_file (surrounding white space trimmed), if set. The same for
//     STICKY_PREVIOUS_SECRET, sticky.previous_secret_file and Sticky.PreviousSecret. Each
//     must be at least MinSecretLen bytes.
//
// ApplyEnv returns the problems with the variables it could not apply; the others are
// applied. It does not validate: call Validate afterwards, which then reports a bad value
// that came from a variable under the variable's name ("environment: LOG_LEVEL: ...").
func (c *Config) ApplyEnv(getenv func(string) string) Errors {
	if getenv == nil {
		getenv = os.Getenv
	}
	e := &envApplier{c: c, getenv: getenv, from: maps.Clone(c.envFrom)}
	if e.from == nil {
		e.from = map[string]string{}
	}

	e.boolVar("REDIS_ENABLED", &c.Env.RedisEnabled)
	e.stringVar("REDIS_URL", &c.Redis.URL, "redis.url")
	if on := true; e.boolVar("TRAFFIC_POLICIES_ENABLED", &on) {
		c.Env.TrafficPoliciesOff = !on
	}
	if mtls := false; e.boolVar("MTLS_ENABLED", &mtls) && mtls {
		e.mtls()
	}
	e.boolVar("CONSUL_ENABLED", &c.Env.ConsulEnabled)
	if s := getenv("CONSUL_ADDR"); s != "" {
		c.Env.ConsulAddr = s
	}
	if s := getenv("LOG_LEVEL"); s != "" {
		c.Log.Level = strings.ToLower(strings.TrimSpace(s))
		e.from["log.level"] = "LOG_LEVEL"
	}
	e.adminToken()
	c.Sticky.Secret = e.secret("STICKY_SECRET", "sticky.secret_file", c.Sticky.SecretFile)
	c.Sticky.PreviousSecret = e.secret("STICKY_PREVIOUS_SECRET", "sticky.previous_secret_file", c.Sticky.PreviousSecretFile)

	c.envFrom = e.from
	return e.errs
}

type envApplier struct {
	c      *Config
	getenv func(string) string
	from   map[string]string // key path -> variable that set it
	errs   Errors
}

// boolVar sets *dst from the boolean variable name and reports whether it did.
func (e *envApplier) boolVar(name string, dst *bool) bool {
	s := e.getenv(name)
	if s == "" {
		return false
	}
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		e.errs = append(e.errs, envError(name, fmt.Sprintf("invalid boolean %q (use true or false)", s)))
		return false
	}
	*dst = b
	return true
}

// stringVar sets *dst, the value at key path, from the variable name.
func (e *envApplier) stringVar(name string, dst *string, path string) {
	if s := e.getenv(name); s != "" {
		*dst = s
		e.from[path] = name
	}
}

func (e *envApplier) mtls() {
	cert, key, ca := e.getenv("MTLS_CERT_FILE"), e.getenv("MTLS_KEY_FILE"), e.getenv("MTLS_CA_FILE")
	if cert == "" || key == "" {
		e.errs = append(e.errs, envError("MTLS_ENABLED", "MTLS_ENABLED is true but MTLS_CERT_FILE and MTLS_KEY_FILE are not both set"))
		return
	}
	for i := range e.c.Pools {
		path := indexPath("pools", i) + ".upstream_tls."
		t := &e.c.Pools[i].UpstreamTLS
		t.CertFile, t.KeyFile = cert, key
		e.from[path+"cert_file"] = "MTLS_CERT_FILE"
		e.from[path+"key_file"] = "MTLS_KEY_FILE"
		if ca != "" {
			t.CAFile = ca
			e.from[path+"ca_file"] = "MTLS_CA_FILE"
		}
	}
}

func (e *envApplier) adminToken() {
	c := e.c
	if s := e.getenv("ADMIN_TOKEN"); s != "" {
		c.Admin.Token = s
		return
	}
	if c.Admin.TokenFile == "" {
		return
	}
	fail := func(msg string) {
		const path = "admin.token_file"
		e.errs = append(e.errs, Error{File: c.File, Line: c.src.line(path), Path: path, Msg: msg})
	}
	data, err := os.ReadFile(c.Admin.TokenFile)
	if err != nil {
		fail(fmt.Sprintf("cannot read token file %q: %v", c.Admin.TokenFile, errorText(err)))
		return
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		fail(fmt.Sprintf("token file %q is empty", c.Admin.TokenFile))
		return
	}
	c.Admin.Token = token
}

// secret returns the secret from the variable name, else from file (the value at key path),
// else nil. Neither the secret nor the file's content is ever put in an error.
func (e *envApplier) secret(name, path, file string) []byte {
	c := e.c
	if s := strings.TrimSpace(e.getenv(name)); s != "" {
		if len(s) < MinSecretLen {
			e.errs = append(e.errs, envError(name, fmt.Sprintf("secret is %d bytes; want at least %d", len(s), MinSecretLen)))
			return nil
		}
		return []byte(s)
	}
	if file == "" {
		return nil
	}
	fail := func(msg string) {
		e.errs = append(e.errs, Error{File: c.File, Line: c.src.line(path), Path: path, Msg: msg})
	}
	data, err := os.ReadFile(file)
	if err != nil {
		fail(fmt.Sprintf("cannot read secret file %q: %v", file, errorText(err)))
		return nil
	}
	s := strings.TrimSpace(string(data))
	if len(s) < MinSecretLen {
		fail(fmt.Sprintf("secret in %q is %d bytes; want at least %d", file, len(s), MinSecretLen))
		return nil
	}
	return []byte(s)
}
