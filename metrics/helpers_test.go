package metrics

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/testtool"
	"go-loadbalancer/state"
)

// newTestRegistry returns a Builder whose backends hold handles from a new Registry the
// way the proxy's upstreams do (a backend's Upstream holds its handle and gives it back on
// Close), with yaml applied.
func newTestRegistry(t testing.TB, yaml string) (*state.Builder, *Registry) {
	t.Helper()
	store := new(state.Store)
	reg := New(Options{Store: store})
	b := state.NewBuilder(store, state.Hooks{
		Upstream: func(be *state.Backend, _ *config.Pool, prev state.Upstream) (state.Upstream, error) {
			if prev != nil {
				return prev, nil
			}
			return &handleUpstream{reg: reg, h: reg.Acquire(be.ID, be.Pool)}, nil
		},
	})
	apply(t, b, yaml)
	return b, reg
}

// handleUpstream is a state.Upstream that only holds a backend's metrics handle.
type handleUpstream struct {
	reg *Registry
	h   *Backend
}

func (u *handleUpstream) Check(string, time.Duration) (int, error) {
	return 0, errors.New("handleUpstream sends no health checks")
}

func (u *handleUpstream) Close() { u.reg.Release(u.h) }

// handle returns the handle of backend i of the first pool of the current table.
func handle(b *state.Builder, i int) *Backend {
	return b.Store.Load().Pools[0].Backends[i].Upstream.(*handleUpstream).h
}

func apply(t testing.TB, b *state.Builder, yaml string) *state.Table {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("cannot parse test config: %v", err)
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatalf("invalid test config: %v", errs)
	}
	tb, err := b.Apply(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// poolYAML is a config with pool "web" of the given backend addresses.
func poolYAML(addrs ...string) string {
	var sb strings.Builder
	sb.WriteString("pools:\n  - name: web\n    backends:\n")
	for _, a := range addrs {
		fmt.Fprintf(&sb, "      - url: \"http://%s\"\n", a)
	}
	return sb.String()
}

// needTool returns a command's path: see testtool.Need.
func needTool(t testing.TB, name, pkg string) string {
	t.Helper()
	return testtool.Need(t, name, pkg)
}
