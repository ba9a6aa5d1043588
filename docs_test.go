package main

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go-loadbalancer/config"
)

// TestConfigDocRestartColumn: each key docs/config.md marks "restart" is one a reload
// reports as "changed: restart to apply" (restartChanges), and each key marked "reload"
// is not; every restart-only environment variable is marked "restart".
func TestConfigDocRestartColumn(t *testing.T) {
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
