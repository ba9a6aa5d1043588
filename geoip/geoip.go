// Package geoip maps client addresses to regions with a MaxMind database file
// (geo.mmdb_file): opening it, keeping it open across table builds while the file is
// unchanged, and the allocation-free lookup. The routing decision that uses the region is
// package state's.
package geoip

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/oschwald/maxminddb-golang/v2"
)

// DB maps addresses to regions with a MaxMind database (GeoLite2 or GeoIP2 Country/City):
// the region is the lower-case continent code ("eu", "na", "as", ...), the same names
// geo.cidrs and routes[].match.regions use. Safe for concurrent use.
//
// A lookup costs no allocation once warm: the database's record offset is mapped to its
// region through a copy-on-write map that gains an entry the first time a record is seen
// (a Country database has a few hundred records), so the request path decodes nothing.
type DB struct {
	db      *maxminddb.Reader
	regions atomic.Pointer[map[uintptr][]byte]
	mu      sync.Mutex // serialises the copy-on-write updates
}

// Open opens a MaxMind database file.
func Open(path string) (*DB, error) {
	db, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open geo.mmdb_file %q: %w", path, err)
	}
	g := &DB{db: db}
	g.regions.Store(&map[uintptr][]byte{})
	return g, nil
}

// Region returns addr's region, or nil when the database does not know it.
func (g *DB) Region(addr netip.Addr) []byte {
	res := g.db.Lookup(addr)
	if !res.Found() {
		return nil
	}
	off := res.Offset()
	if r, ok := (*g.regions.Load())[off]; ok {
		return r
	}
	// Slow path: a record seen for the first time.
	var code string
	if err := res.DecodePath(&code, "continent", "code"); err != nil || code == "" {
		return g.remember(off, nil)
	}
	return g.remember(off, []byte(strings.ToLower(code)))
}

func (g *DB) remember(off uintptr, region []byte) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := *g.regions.Load()
	m := make(map[uintptr][]byte, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[off] = region
	g.regions.Store(&m)
	return region
}

// Close releases the database.
func (g *DB) Close() error { return g.db.Close() }

// Cache keeps one open database per file version across table builds. Not safe for
// concurrent use (the builder calls it under its lock).
type Cache struct {
	key string
	db  *DB
}

// Open returns the database for path (nil for ""), reopening it only when the file's size
// or modification time changed.
func (c *Cache) Open(path string) (*DB, error) {
	if path == "" {
		return nil, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open geo.mmdb_file %q: %w", path, err)
	}
	key := fmt.Sprintf("%s|%d|%d", path, fi.Size(), fi.ModTime().UnixNano())
	if c.db != nil && c.key == key {
		return c.db, nil
	}
	db, err := Open(path)
	if err != nil {
		return nil, err
	}
	// The old database may still serve requests of the old table: it is left to the
	// garbage collector rather than closed under them.
	c.key, c.db = key, db
	return db, nil
}
