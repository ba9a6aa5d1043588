package main

import (
	"bytes"
	"reflect"
	"slices"
	"strings"

	"go-loadbalancer/config"
)

// restartOnly lists every setting a reload cannot apply, by key (an environment variable
// by its name). A section stands for each of its keys except those in reloadable, so a
// key added to it later is restart-only until someone makes it reloadable. A reload warns
// "KEY changed: restart to apply" for each one that changed; README.md's list is checked
// against this one (TestReadmeRestartOnly).
var restartOnly = []string{
	"listen",
	"admin.listen",
	"admin.pprof",
	"tls.cert_file", "tls.key_file", "tls.client_ca_file", // a rotated cert and key are reloaded; the CA bundle is not
	"server",
	"sticky.enabled", "sticky.secret_file", "sticky.previous_secret_file", // the store is made at startup
	"redis",
	"rate_limit.scope",
	"tracing.enabled", "tracing.otlp_endpoint", "tracing.service_name",
	"REDIS_ENABLED", "CONSUL_ENABLED", "CONSUL_ADDR", "STICKY_SECRET", "STICKY_PREVIOUS_SECRET",
}

// reloadable are the keys of a restartOnly section that a reload does apply.
var reloadable = []string{
	"server.trusted_proxies",       // the table's
	"server.max_body_bytes",        // checked by the handler against the table's
	"server.shutdown_timeout",      // read from the table in use at shutdown
	"server.max_headers",           // checked by the handler against the table's
	"server.escaped_slashes",       // the table's
	"server.drain_grace",           // read from the table in use at shutdown
	"server.request_buffer_bytes",  // the table's
	"server.min_request_body_rate", // the table's
	"server.request_body_grace",    // the table's
}

// envFields are the restart-only environment variables and where ApplyEnv puts them.
var envFields = map[string]func(*config.Config) reflect.Value{
	"REDIS_ENABLED":  func(c *config.Config) reflect.Value { return reflect.ValueOf(&c.Env.RedisEnabled).Elem() },
	"CONSUL_ENABLED": func(c *config.Config) reflect.Value { return reflect.ValueOf(&c.Env.ConsulEnabled).Elem() },
	"CONSUL_ADDR":    func(c *config.Config) reflect.Value { return reflect.ValueOf(&c.Env.ConsulAddr).Elem() },
	// The secret in use, from the variable or else the file.
	"STICKY_SECRET":          func(c *config.Config) reflect.Value { return reflect.ValueOf(&c.Sticky.Secret).Elem() },
	"STICKY_PREVIOUS_SECRET": func(c *config.Config) reflect.Value { return reflect.ValueOf(&c.Sticky.PreviousSecret).Elem() },
}

// restartChanges returns the restart-only keys whose value differs between old and next,
// in restartOnly's order.
func restartChanges(old, next *config.Config) []string {
	var changed []string
	eachRestartOnly(old, next, func(key string, a, b reflect.Value) {
		if !sameValue(a, b) {
			changed = append(changed, key)
		}
	})
	return changed
}

// keepRunning sets each restart-only setting of next to its value in old, the running
// config, so that the table built from next says what the process runs with: the proxy
// reads server.read_timeout, server.write_timeout, sticky.enabled and tls.client_ca_file
// from the table, and a reload must not apply them halfway.
func keepRunning(old, next *config.Config) {
	eachRestartOnly(old, next, func(_ string, a, b reflect.Value) { b.Set(a) })
}

// eachRestartOnly calls f with each restart-only key (a section's keys one by one, but
// the reloadable ones) and its value in old and in next (settable).
func eachRestartOnly(old, next *config.Config, f func(key string, a, b reflect.Value)) {
	for _, key := range restartOnly {
		if field, ok := envFields[key]; ok {
			f(key, field(old), field(next))
			continue
		}
		a, b := settingValue(old, key), settingValue(next, key)
		if a.Kind() != reflect.Struct {
			f(key, a, b)
			continue
		}
		t := a.Type()
		for i := range t.NumField() {
			name := yamlName(t.Field(i))
			sub := key + "." + name
			if name == "" || slices.Contains(reloadable, sub) {
				continue
			}
			f(sub, a.Field(i), b.Field(i))
		}
	}
}

// sameValue is reflect.DeepEqual, but a nil and an empty secret are the same.
func sameValue(a, b reflect.Value) bool {
	if a.Kind() == reflect.Slice && a.Type().Elem().Kind() == reflect.Uint8 {
		return bytes.Equal(a.Bytes(), b.Bytes())
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// settingValue returns the (settable) value at a key path such as "tls.cert_file" (yaml names).
// An unknown key is a bug in restartOnly.
func settingValue(c *config.Config, key string) reflect.Value {
	v := reflect.ValueOf(c).Elem()
	for part := range strings.SplitSeq(key, ".") {
		t := v.Type()
		found := false
		for i := range t.NumField() {
			if yamlName(t.Field(i)) == part {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			panic("BUG: restartOnly names an unknown setting " + key)
		}
	}
	return v
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}
