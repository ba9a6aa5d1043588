package config

import (
	"bufio"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// configDoc is the configuration reference that must list every key and variable.
const configDoc = "../docs/config.md"

// TestConfigDocListsEveryKey: docs/config.md has a row for every YAML key of Config and
// for no key that does not exist, so the reference cannot drift from the structs.
func TestConfigDocListsEveryKey(t *testing.T) {
	want := KeyPaths()
	got := DocumentedKeys(t, configDoc, false)
	if missing := minus(want, got); len(missing) > 0 {
		t.Errorf("%s has no row for %q; add one", configDoc, missing)
	}
	if extra := minus(got, want); len(extra) > 0 {
		t.Errorf("%s documents %q, which config.Config does not have", configDoc, extra)
	}
}

// TestConfigDocListsEveryVariable: docs/config.md has a row for every environment variable
// ApplyEnv reads, and for no other.
func TestConfigDocListsEveryVariable(t *testing.T) {
	read := map[string]bool{}
	c := Default()
	c.Pools = []Pool{{Backends: []Backend{{URL: "http://127.0.0.1:1"}}}}
	c.ApplyEnv(func(name string) string {
		read[name] = true
		if name == "MTLS_ENABLED" {
			return "true" // so that the MTLS_* files are read too
		}
		return ""
	})
	var want []string
	for name := range read {
		want = append(want, name)
	}
	slices.Sort(want)
	got := DocumentedKeys(t, configDoc, true)
	if missing := minus(want, got); len(missing) > 0 {
		t.Errorf("%s has no row for the variable(s) %q; add one", configDoc, missing)
	}
	if extra := minus(got, want); len(extra) > 0 {
		t.Errorf("%s documents the variable(s) %q, which ApplyEnv does not read", configDoc, extra)
	}
}

func minus(a, b []string) []string {
	var d []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			d = append(d, s)
		}
	}
	return d
}

// KeyPaths returns every leaf key of Config as docs/config.md writes it: "server.read_timeout",
// "pools[].backends[].url"; a map or a list of scalars is one key ("geo.cidrs").
func KeyPaths() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			ft := f.Type
			switch {
			case ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Duration(0)):
				walk(ft, prefix+name+".")
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				walk(ft.Elem(), prefix+name+"[].")
			default:
				keys = append(keys, prefix+name)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	slices.Sort(keys)
	return keys
}

// DocumentedKeys returns the first cells of the table rows of the reference at path that
// hold a key in backquotes: the YAML keys (lower case), or the environment variables
// (upper case) when env is true.
func DocumentedKeys(t *testing.T, path string, env bool) []string {
	t.Helper()
	rows := DocumentedRows(t, path)
	var keys []string
	for _, r := range rows {
		if isVariable(r[0]) == env {
			keys = append(keys, r[0])
		}
	}
	slices.Sort(keys)
	return keys
}

// DocumentedRows returns the cells of every table row of the reference at path whose
// first cell is one name in backquotes, with the backquotes of the first cell removed.
func DocumentedRows(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		first := strings.Trim(cells[0], "`")
		if strings.ContainsAny(first, "` ,") || strings.HasPrefix(first, "-") { // prose, or a flag
			continue
		}
		cells[0] = first
		rows = append(rows, cells)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

func isVariable(s string) bool { return s == strings.ToUpper(s) }
