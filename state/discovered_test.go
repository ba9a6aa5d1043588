package state

import (
	"testing"

	"go-loadbalancer/config"
)

// A pool that takes its backends from Consul may have none until Consul answers: it
// builds, picks nothing (the proxy answers 503) with either algorithm, and fills in.
func TestDiscoveredPoolStartsEmpty(t *testing.T) {
	f := func(balance string) {
		t.Helper()
		cfg := config.Default()
		cfg.Pools = []config.Pool{{Name: "web", Balance: balance,
			Discovery: config.Discovery{Consul: config.ConsulDiscovery{Service: "web"}}}}
		cfg.ApplyDefaults()
		b := NewBuilder(nil, Hooks{})
		tb, err := b.Apply(cfg)
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		p := tb.Pool("web")
		if be, _ := p.Pick(0, 0); be != nil {
			t.Fatalf("%s: got %s from an empty pool; want nil", balance, be.ID)
		}
		if be, _ := p.PickLocal([]byte("eu"), 0, 0); be != nil {
			t.Fatalf("%s: PickLocal got %s from an empty pool; want nil", balance, be.ID)
		}
		if !p.Panic(0) {
			t.Fatalf("%s: got Panic false for an empty pool; want true", balance)
		}
		tb, err = b.SetDiscovered("web", []config.Backend{{URL: "http://127.0.0.1:7001", Region: "eu"}})
		if err != nil {
			t.Fatalf("SetDiscovered: %v", err)
		}
		be, tk := tb.Pool("web").Pick(0, 0)
		if be == nil || be.ID != "web-127.0.0.1_7001" || be.Weight != 1 {
			t.Fatalf("%s: got %+v; want web-127.0.0.1_7001 with weight 1", balance, be)
		}
		be.Stats.Breaker.Release(tk)
		if tb, err = b.SetDiscovered("web", nil); err != nil || len(tb.Pool("web").Backends) != 0 {
			t.Fatalf("%s: got %v, err %v; want an empty pool again", balance, tb.Pool("web").Backends, err)
		}
	}
	f(config.BalanceSmoothWeighted)
	f(config.BalanceLeastInflight)

	// Without discovery an empty pool is still a broken config.
	cfg := config.Default()
	cfg.Pools = []config.Pool{{Name: "web"}}
	cfg.ApplyDefaults()
	if _, err := NewBuilder(nil, Hooks{}).Apply(cfg); err == nil {
		t.Fatal("got no error for a pool without backends or discovery; want one")
	}
}
