package proxy

import (
	"testing"

	"go-loadbalancer/state"
)

// The proxy's data is published with its table: after every change the proxy reads the
// builder's current table, with each backend's own client at its Slot; a kept backend
// keeps its client; a build that fails publishes neither.
func TestTablesPublishWithTheTable(t *testing.T) {
	ts := NewTables(nil, nil)
	b := state.NewBuilder(nil, ts.Hooks())
	check := func(when string) *tableData {
		t.Helper()
		d, cur := ts.cur.Load(), b.Store.Load()
		if d == nil || d.table != cur {
			t.Fatalf("%s: the proxy's data is of another table than the builder's", when)
		}
		bs := cur.Backends()
		if len(d.ups) != len(bs) {
			t.Fatalf("%s: %d clients for %d backends", when, len(d.ups), len(bs))
		}
		for _, be := range bs {
			if d.upstream(be) != be.Upstream {
				t.Fatalf("%s: backend %s has another backend's client", when, be.ID)
			}
		}
		return d
	}
	if _, err := b.Apply(poolConfig(t, "", "http://127.0.0.1:1", "http://127.0.0.1:2")); err != nil {
		t.Fatal(err)
	}
	first := check("first table")
	kept := first.ups[1]
	if _, err := b.Apply(poolConfig(t, "", "http://127.0.0.1:3", "http://127.0.0.1:2")); err != nil {
		t.Fatal(err)
	}
	if d := check("after a reload"); d.ups[1] != kept {
		t.Fatal("a backend whose settings did not change got a new client")
	}
	bad := poolConfig(t, "", "http://127.0.0.1:4")
	bad.Geo.MMDBFile = t.TempDir() + "/missing.mmdb"
	if _, err := b.Apply(bad); err == nil {
		t.Fatal("a build with a missing mmdb_file was accepted")
	}
	check("after a failed build")
}
