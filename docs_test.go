package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"go-loadbalancer/config"
)

// TestConfigDocRestartColumn: each key docs/config.md marks "restart" is one a reload
// reports as "changed: restart to apply" (restartChanges), and each key marked "reload"
// is not; every restart-only environment variable is marked "restart".
func TestConfigDocRestartColumn(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([A-Za-z0-9_.\\[\\]]+)` \\|.*\\| (reload|restart) \\|$")
	rows := row.FindAllStringSubmatch(string(b), -1)
	if len(rows) < 100 {
		t.Fatalf("docs/config.md: found %d rows with an Applied column; want every key", len(rows))
	}
	for _, r := range rows {
		key, applied := r[1], r[2]
		if key == strings.ToUpper(key) { // an environment variable
			if slices.Contains(restartOnly, key) && applied != "restart" {
				t.Errorf("docs/config.md marks %s %q; restartOnly lists it", key, applied)
			}
			continue
		}
		old, next := docTestConfig(), docTestConfig()
		changeSetting(t, next, key)
		got := "reload"
		if slices.Contains(restartChanges(old, next), strings.ReplaceAll(key, "[]", "")) {
			got = "restart"
		}
		if got != applied {
			t.Errorf("docs/config.md marks %s %q; a reload that changes it is %q", key, applied, got)
		}
	}
}

// docTestConfig is a config with one pool (a backend and a standby) and one split route,
// so that every documented key path exists.
func docTestConfig() *config.Config {
	c := &config.Config{
		Pools:  []config.Pool{{Backends: []config.Backend{{URL: "http://127.0.0.1:1"}}, Standby: []config.Backend{{URL: "http://127.0.0.1:2"}}}},
		Routes: []config.Route{{Split: []config.SplitEntry{{Pool: "default", Weight: 1}}}},
	}
	c.ApplyDefaults()
	return c
}

// changeSetting gives the setting at key ("server.read_timeout", "pools[].retry.on") in c
// another value; a list ("[]") is entered at its first element.
func changeSetting(t *testing.T, c *config.Config, key string) {
	t.Helper()
	v := reflect.ValueOf(c).Elem()
	for part := range strings.SplitSeq(key, ".") {
		name, list := strings.CutSuffix(part, "[]")
		f, ok := fieldByYAML(v, name)
		if !ok {
			t.Fatalf("docs/config.md documents %s; config.Config has no %q", key, name)
		}
		v = f
		if list {
			v = v.Index(0)
		}
	}
	switch {
	case v.Type() == reflect.TypeOf(time.Duration(0)):
		v.SetInt(v.Int() + 1)
	case v.Kind() == reflect.String:
		v.SetString(v.String() + "x")
	case v.Kind() == reflect.Int || v.Kind() == reflect.Int64:
		v.SetInt(v.Int() + 1)
	case v.Kind() == reflect.Float64:
		v.SetFloat(v.Float() + 0.5)
	case v.Kind() == reflect.Bool:
		v.SetBool(!v.Bool())
	case v.Kind() == reflect.Pointer: // *bool, *float64: set where it was unset
		v.Set(reflect.New(v.Type().Elem()))
	case v.Kind() == reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
	case v.Kind() == reflect.Map:
		m := reflect.MakeMap(v.Type())
		m.SetMapIndex(reflect.Zero(v.Type().Key()), reflect.Zero(v.Type().Elem()))
		v.Set(m)
	default:
		t.Fatalf("changeSetting: %s has kind %s", key, v.Kind())
	}
}

func fieldByYAML(v reflect.Value, name string) (reflect.Value, bool) {
	for i := range v.NumField() {
		if yamlName(v.Type().Field(i)) == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// TestDocAnchorsExist: every docs/NAME.md#anchor that code, README or docs cite (and every
// #anchor within a docs page) is a heading of that page, so a renamed section cannot leave
// a dangling citation.
func TestDocAnchorsExist(t *testing.T) {
	t.Parallel()
	anchors := map[string]map[string]bool{} // page -> anchors
	for _, page := range []string{"behaviour.md", "config.md"} {
		b, err := os.ReadFile("docs/" + page)
		if err != nil {
			t.Fatal(err)
		}
		anchors[page] = headingAnchors(string(b))
	}
	cite := regexp.MustCompile(`docs/(behaviour\.md|config\.md)#([A-Za-z0-9_-]+)`)
	local := regexp.MustCompile(`\]\(((?:behaviour|config)\.md)?#([A-Za-z0-9_-]+)\)`)
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != "." || d.Name() == "k8s") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, ".md") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range cite.FindAllStringSubmatch(string(b), -1) {
			if !anchors[m[1]][m[2]] {
				t.Errorf("%s cites docs/%s#%s, which has no such heading", path, m[1], m[2])
			}
		}
		if page, ok := strings.CutPrefix(path, "docs/"); ok {
			for _, m := range local.FindAllStringSubmatch(string(b), -1) {
				target := m[1]
				if target == "" {
					target = page
				}
				if !anchors[target][m[2]] {
					t.Errorf("%s links to %s#%s, which has no such heading", path, target, m[2])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// headingAnchors returns the anchors GitHub makes of a Markdown page's headings: lower
// case, spaces to '-', punctuation other than '-' and '_' dropped.
func headingAnchors(page string) map[string]bool {
	a := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllStringSubmatch(page, -1) {
		var sb strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				sb.WriteByte('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				sb.WriteRune(r)
			}
		}
		a[sb.String()] = true
	}
	return a
}
