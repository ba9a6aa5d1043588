package geoip

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"go-loadbalancer/internal/testtool"
)

func TestRegions(t *testing.T) {
	g, err := Open(testtool.GeoDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	f := func(ip, want string) {
		t.Helper()
		if got := string(g.Region(netip.MustParseAddr(ip))); got != want {
			t.Fatalf("Region(%s) = %q; want %q", ip, got, want)
		}
	}
	f("81.2.69.142", "eu")
	f("216.160.83.56", "na")
	f("192.0.2.1", "")
	f("81.2.69.7", "eu") // a warm record
	addr := netip.MustParseAddr("81.2.69.142")
	if n := testing.AllocsPerRun(1000, func() { g.Region(addr) }); n != 0 {
		t.Fatalf("got %.1f allocs per warm lookup; want 0", n)
	}
}

// TestCacheReopensOnlyAChangedFile: the same file gives the same open database; a file
// rewritten in place gives a new one; a missing file is an error.
func TestCacheReopensOnlyAChangedFile(t *testing.T) {
	path := testtool.GeoDB(t)
	var c Cache
	a, err := c.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := c.Open(path); err != nil || b != a {
		t.Fatalf("got %p, %v; want the database already open (%p)", b, err, a)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if b, err := c.Open(path); err != nil || b == a {
		t.Fatalf("got %p, %v; want a database reopened for the changed file", b, err)
	}
	if db, err := c.Open(""); db != nil || err != nil {
		t.Fatalf("Open(\"\") = %v, %v; want nil, nil", db, err)
	}
	if _, err := c.Open(path + ".missing"); err == nil {
		t.Fatal("a missing file was accepted")
	}
}
