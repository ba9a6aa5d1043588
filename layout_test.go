package main

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const modulePath = "go-loadbalancer"

// TestReadmeLayout holds the code to README.md's layout table: every package of the module
// has a row, and imports only the packages of this module its row allows.
func TestReadmeLayout(t *testing.T) {
	t.Parallel()
	allowed := readmeLayout(t)
	imports := moduleImports(t)
	for pkg, imps := range imports {
		may, ok := allowed[pkg]
		if !ok {
			t.Errorf("README.md's layout table has no row for package %s", pkg)
			continue
		}
		for _, imp := range imps {
			if !may["any"] && !may[imp] {
				t.Errorf("%s imports %s, which README.md's layout table does not allow", pkg, imp)
			}
		}
	}
	for pkg := range allowed {
		if _, ok := imports[pkg]; !ok {
			t.Errorf("README.md's layout table has a row for %s, which is not a package", pkg)
		}
	}
}

// readmeLayout reads the table under "## Layout": package → the module's packages it may
// import ("any" for every one). "`x/`" names the package x, "`.`" the command.
func readmeLayout(t *testing.T) map[string]map[string]bool {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## Layout\n")
	if i < 0 {
		t.Fatal("README.md has no Layout section")
	}
	s = s[i+len("\n## Layout\n"):]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	names := func(cell string) []string {
		var out []string
		for _, f := range strings.Split(cell, ",") {
			f = strings.Trim(strings.TrimSpace(f), "`")
			f = strings.TrimSuffix(strings.TrimSpace(strings.TrimSuffix(f, "(command)")), "/")
			f = strings.Trim(f, "` ")
			if f != "" && f != "none" {
				out = append(out, f)
			}
		}
		return out
	}
	rows := map[string]map[string]bool{}
	for _, line := range strings.Split(s, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue // not a row of the table, or its header
		}
		may := map[string]bool{}
		for _, n := range names(cells[3]) {
			may[n] = true
		}
		for _, pkg := range names(cells[1]) {
			rows[pkg] = may
		}
	}
	if len(rows) == 0 {
		t.Fatal("README.md's Layout section has no table rows")
	}
	return rows
}

// moduleImports returns each package of the module (relative path, "." for the command;
// the k8s module apart) and the module's packages its non-test files import.
func moduleImports(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "k8s") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(filepath.Dir(path))
		if _, ok := out[pkg]; !ok {
			out[pkg] = nil
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if rel, ok := strings.CutPrefix(p, modulePath+"/"); ok && !slices.Contains(out[pkg], rel) {
				out[pkg] = append(out[pkg], rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
