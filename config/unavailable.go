package config

import "fmt"

// unavailableFeatures lists the features that the config can switch on but that this build
// does not implement yet. Validate rejects a config that switches one on, saying so, rather
// than silently ignoring the setting. When a feature lands, delete its entry.
// Every feature of the spec is built now; the list stays for the next one.
var unavailableFeatures = []unavailableFeature{}

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
