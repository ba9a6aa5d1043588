package state

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// writeGeoDB writes a small Country-shaped MaxMind database: 81.2.69.0/24 in Europe,
// 216.160.83.0/24 in North America.
func writeGeoDB(t *testing.T) string {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-Country", RecordSize: 24})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, continent := range map[string]string{"81.2.69.0/24": "EU", "216.160.83.0/24": "NA"} {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		rec := mmdbtype.Map{"continent": mmdbtype.Map{"code": mmdbtype.String(continent)}}
		if err := w.Insert(n, rec); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "geo.mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

func TestGeoIPRegions(t *testing.T) {
	g, err := OpenGeoIP(writeGeoDB(t))
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

func TestGeoIPFromConfig(t *testing.T) {
	path := writeGeoDB(t)
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
