package config

import "fmt"

// unavailableFeatures lists the features that the config can switch on but that this build
// does not implement yet. Validate rejects a config that switches one on, saying so, rather
// than silently ignoring the setting. When a feature lands, delete its entry.
var unavailableFeatures = []unavailableFeature{
	{
		what: "tracing is",
		on: func(c *Config) []switchedOn {
			return onIf(c.Tracing.Enabled, "tracing.enabled", "set enabled: false")
		},
	},
	{
		what: "Consul discovery is",
		on: func(c *Config) []switchedOn {
			var on []switchedOn
			for i, p := range c.Pools {
				path := indexPath("pools", i) + ".discovery.consul.service"
				on = append(on, onIf(p.Discovery.Consul.Service != "", path, `set service: ""`)...)
			}
			return on
		},
	},
	{
		what: "Consul support is",
		on: func(c *Config) []switchedOn {
			return envOnIf(c.Env.ConsulEnabled, "CONSUL_ENABLED")
		},
	},
}

type unavailableFeature struct {
	what string                       // subject and verb, e.g. "sticky sessions are"
	on   func(c *Config) []switchedOn // where c switches the feature on; none if off
}

// switchedOn is one place that switches a feature on: a config key or an environment
// variable.
type switchedOn struct {
	path string // config key path, e.g. "sticky.enabled"
	env  string // or environment variable name, e.g. "REDIS_ENABLED"
	fix  string // how to switch it off
}

func onIf(cond bool, path, fix string) []switchedOn {
	if !cond {
		return nil
	}
	return []switchedOn{{path: path, fix: fix}}
}

func envOnIf(cond bool, name string) []switchedOn {
	if !cond {
		return nil
	}
	return []switchedOn{{env: name, fix: fmt.Sprintf("unset %s or set it to false", name)}}
}

func (v *validator) unavailable() {
	for _, f := range unavailableFeatures {
		for _, on := range f.on(v.c) {
			msg := fmt.Sprintf("%s not available in this build yet (%s)", f.what, on.fix)
			if on.env != "" {
				v.errs = append(v.errs, envError(on.env, msg))
			} else {
				v.errorf(on.path, "%s", msg)
			}
		}
	}
}
