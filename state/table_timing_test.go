package state

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go-loadbalancer/config"
)

// benchSizes are the pool sizes of the table benchmarks: the demo's 3, a large fleet,
// and the 10,000 backends of issue 6.
var benchSizes = []int{3, 100, 10_000}

// benchConfig returns a valid config with one pool of n backends weighted 1..100
// (3:2:1 for n = 3). Nothing is dialled: the builders here have no Upstream hook.
func benchConfig(n int) *config.Config {
	cfg := config.Default()
	p := config.Pool{Name: "bench"}
	for i := 0; i < n; i++ {
		w := 1 + i%100
		if n == 3 {
			w = 3 - i
		}
		p.Backends = append(p.Backends, config.Backend{
			URL:    fmt.Sprintf("http://10.%d.%d.%d:8080", i>>16&255, i>>8&255, i&255),
			Weight: w,
		})
	}
	cfg.Pools = []config.Pool{p}
	cfg.ApplyDefaults()
	return cfg
}

// BenchmarkBuilderApply is a config reload: build a whole table (backends, IDs, breakers,
// the smooth WRR schedule) and swap it in. At 10,000 backends this is the cost of every
// reload, health change or admin action; it runs off the request path.
func BenchmarkBuilderApply(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			cfg := benchConfig(n)
			bl := NewBuilder(nil, Hooks{})
			if _, err := bl.Apply(cfg); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bl.Apply(cfg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBuilderSetHealthy is a health-check verdict flipping one backend of 10,000:
// the most frequent rebuild in an outage.
func BenchmarkBuilderSetHealthy(b *testing.B) {
	bl := NewBuilder(nil, Hooks{})
	t, err := bl.Apply(benchConfig(10_000))
	if err != nil {
		b.Fatal(err)
	}
	id := t.Pools[0].Backends[5000].ID
	healthy := false
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bl.SetHealthy(id, healthy); err != nil {
			b.Fatal(err)
		}
		healthy = !healthy
	}
}

// BenchmarkPick is the request path's table read and pick: Store.Load, DefaultPool,
// Pool.Pick (health, drain and breaker checks through the picker) and the ticket back.
// It must stay flat from 3 to 10,000 backends and allocate nothing.
func BenchmarkPick(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			bl := NewBuilder(nil, Hooks{})
			if _, err := bl.Apply(benchConfig(n)); err != nil {
				b.Fatal(err)
			}
			now := time.Now().UnixNano()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					be, ticket := bl.Store.Load().DefaultPool().Pick(0, now)
					if be == nil {
						b.Fatal("no backend")
					}
					be.Stats.Breaker.Release(ticket)
				}
			})
		})
	}
}

// BenchmarkPickWhileSwapping is BenchmarkPick at 10,000 backends while another goroutine
// swaps two prebuilt tables as fast as it can: readers never wait for a writer.
func BenchmarkPickWhileSwapping(b *testing.B) {
	bl := NewBuilder(nil, Hooks{})
	t1, err := bl.Apply(benchConfig(10_000))
	if err != nil {
		b.Fatal(err)
	}
	t2, err := bl.Apply(benchConfig(10_000))
	if err != nil {
		b.Fatal(err)
	}
	var s Store
	s.Swap(t1)
	stop := make(chan struct{})
	var swaps atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				s.Swap(t2)
			} else {
				s.Swap(t1)
			}
			swaps.Add(1)
		}
	}()
	now := time.Now().UnixNano()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			be, ticket := s.Load().DefaultPool().Pick(0, now)
			if be == nil {
				b.Fatal("no backend")
			}
			be.Stats.Breaker.Release(ticket)
		}
	})
	b.StopTimer()
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(swaps.Load())/float64(b.N), "swaps/op")
}

// BenchmarkBreaker is the per-request breaker work of a closed breaker: Acquire before
// the request, Record (success, into the sliding window) after.
func BenchmarkBreaker(b *testing.B) {
	bl := NewBuilder(nil, Hooks{})
	t, err := bl.Apply(benchConfig(3))
	if err != nil {
		b.Fatal(err)
	}
	br := &t.Pools[0].Backends[0].Stats.Breaker
	now := time.Now().UnixNano()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tk := br.Acquire(now)
			br.Record(now, tk, false)
		}
	})
}
