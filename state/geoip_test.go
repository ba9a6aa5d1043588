package state

import (
	"net/netip"
	"testing"

	"go-loadbalancer/internal/testtool"
)

func TestGeoIPFromConfig(t *testing.T) {
	path := testtool.GeoDB(t)
	b, tb := testTable(t, 1)
	cfg := *tb.Config
	cfg.Geo.MMDBFile = path
	tb, err := b.Apply(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(tb.Geo.Region(netip.MustParseAddr("216.160.83.1"), nil)); got != "na" {
		t.Fatalf("got region %q; want na from the database", got)
	}
	// A rebuild keeps the same open database; a missing file fails the build.
	tb2, _ := b.SetHealthy(tb.Backends()[0].ID, false)
	if tb2.Geo.db != tb.Geo.db {
		t.Fatal("a rebuild reopened an unchanged database")
	}
	cfg.Geo.MMDBFile = path + ".missing"
	if _, err := b.Apply(&cfg); err == nil {
		t.Fatal("a missing mmdb_file was accepted")
	}
}
