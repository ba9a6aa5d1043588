package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzParse checks that no input makes Parse panic, that a failure is always a non-empty
// Errors with sane lines, and that a config Parse accepts stays valid.
func FuzzParse(f *testing.F) {
	seeds := []string{
		specExample,
		basePool,
		envTestDoc,
		"",
		"~",
		"pools:\n  - backends:\n      - url: http://a\n        weight: 0\n",
		"pools: [{backends: [{url: 'http://a'}], health_check: {interval: 5}}]",
		"pools:\n  - &p {backends: [{url: 'http://a'}]}\n  - *p\n",
		"pools:\n  - backends: [{url: 'http://a'}]\n    timeouts:\n      <<: &t {connect: 2s}\n",
		"pools: *x",
		"a: &a {<<: *a}",
		"pools: [{<<: [*a]}]",
		"listen: !!binary aGVsbG8=\npools: []",
		"pools:\n- backends:\n  - url: |\n      http://a\n",
		"? pools\n: []",
		"{pools: [{backends: [{url: \"http://a\", weight: 99999999999999999999}]}]}",
		"pools:\n  - backends: [{url: 'http://a'}]\n---\n---\nlisten: x",
		"\t",
		"pools:\n  - backends: [{url: 'http://a'}]\ngeo: {cidrs: {eu: [1.2.3.4/40]}}\n",
		" \r0", // the YAML library also ends lines at \r
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		var c *Config
		var err error
		done := make(chan struct{})
		go func() { c, err = Parse("lb.yaml", []byte(doc)); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second): // a hang, not a slow machine
			t.Fatalf("Parse did not return for %q", doc)
		}
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("got error %T %q; want non-empty Errors", err, err)
			}
			lines := strings.Count(doc, "\n") + strings.Count(doc, "\r") + 1
			for _, e := range errs {
				if e.File != "lb.yaml" || e.Line < 0 || e.Line > lines {
					t.Fatalf("got error %+v; want file lb.yaml and a line from 0 to %d", e, lines)
				}
			}
			return
		}
		if c == nil {
			t.Fatalf("got nil config and nil error")
		}
		if errs := c.Validate(); errs != nil {
			t.Fatalf("Parse accepted a config that Validate rejects: %v", errs)
		}
		_ = c.ApplyEnv(func(string) string { return "" })
		for _, p := range c.Pools {
			for _, b := range p.Backends {
				if addr, _ := b.Addr(); addr == "" {
					t.Fatalf("accepted backend %q has no address", b.URL)
				}
			}
		}
		_ = c.Server.TrustedNets()
	})
}
