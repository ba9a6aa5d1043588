package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml/ast"
)

// source remembers where every key of a parsed file is, so that problems found after
// decoding (defaults, validation) can name a line, and so that defaults can tell a key the
// file left out from one it set to zero.
type source struct {
	nodes map[string]srcNode // by path, e.g. "pools[0].backends[1].weight"
}

type srcNode struct {
	line int  // line of the key, or of the list item
	null bool // the key is written but its value is null ("~" or nothing)
}

// has reports whether the file sets path to a non-null value. It is false for a nil source
// (a config built in code).
func (s *source) has(path string) bool {
	if s == nil {
		return false
	}
	n, ok := s.nodes[path]
	return ok && !n.null
}

// line returns the line of path, or of its nearest ancestor written in the file (a missing
// key is reported on the line of the mapping that should hold it), or 0.
func (s *source) line(path string) int {
	if s == nil {
		return 0
	}
	for path != "" {
		if n, ok := s.nodes[path]; ok {
			return n.line
		}
		path = parentPath(path)
	}
	return 0
}

// parentPath returns "a.b" for "a.b.c" and for "a.b[3]", and "" for "a".
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// joinPath appends a key to a path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// indexPath appends a list index to a path.
func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// Limits that keep a hostile file (deep nesting, alias bombs) from exhausting the process.
const (
	maxWalkDepth  = 64
	maxWalkVisits = 1 << 18 // a config with 20,000 backends needs about 1 << 16
)

var durationType = reflect.TypeFor[time.Duration]()

// walker checks a YAML document against the shape of Config before it is decoded: every
// unknown key, wrongly typed value and bad duration is reported with its line, all at once
// (the decoder stops at the first problem and drops the position of bad durations). On the
// way it records the line of every key in src.
type walker struct {
	file    string
	src     *source
	anchors map[string]ast.Node
	errs    Errors
	depth   int
	visits  int
}

func newWalker(file string) *walker {
	return &walker{
		file:    file,
		src:     &source{nodes: map[string]srcNode{}},
		anchors: map[string]ast.Node{},
	}
}

func (w *walker) errorf(n ast.Node, path, format string, args ...any) {
	w.add(Error{File: w.file, Line: nodeLine(n), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (w *walker) add(e Error) {
	if w.visits > maxWalkVisits {
		return // only the "too large" error is reported; the rest was not checked
	}
	w.errs = append(w.errs, e)
}

// nodeLine returns the line of n, or 0.
func nodeLine(n ast.Node) int {
	if n == nil {
		return 0
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}

// resolve strips tags and anchors from n (remembering the anchors) and replaces an alias by
// the node it names. It returns nil for an unknown alias, after reporting it.
func (w *walker) resolve(n ast.Node, path string) ast.Node {
	for range maxWalkDepth {
		switch v := n.(type) {
		case *ast.TagNode:
			n = v.Value
		case *ast.AnchorNode:
			if v.Name != nil && v.Name.GetToken() != nil {
				w.anchors[v.Name.GetToken().Value] = v.Value
			}
			n = v.Value
		case *ast.AliasNode:
			name := ""
			if v.Value != nil && v.Value.GetToken() != nil {
				name = v.Value.GetToken().Value
			}
			target, ok := w.anchors[name]
			if !ok {
				w.errorf(v, path, "unknown alias *%s", name)
				return nil
			}
			n = target
		default:
			return n
		}
	}
	w.errorf(n, path, "aliases nested too deeply")
	return nil
}

func isNull(n ast.Node) bool {
	return n == nil || n.Type() == ast.NullType
}

// walk checks n, an already resolved node found at path, against type t.
func (w *walker) walk(n ast.Node, path string, t reflect.Type) {
	if isNull(n) {
		return
	}
	w.visits++
	if w.visits > maxWalkVisits {
		if w.visits == maxWalkVisits+1 {
			// Report only this: aliases to anchors in the skipped part would all be unknown.
			w.errs = Errors{{File: w.file, Line: nodeLine(n), Path: path, Msg: "document too large (after expanding aliases)"}}
		}
		return
	}
	w.depth++
	defer func() { w.depth-- }()
	if w.depth > maxWalkDepth {
		w.errorf(n, path, "nested too deeply")
		return
	}

	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		w.checkDuration(n, path)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		w.walkStruct(n, path, t)
	case reflect.Map:
		w.eachEntry(n, path, func(name string, key, val ast.Node) {
			p := joinPath(path, name)
			w.src.nodes[p] = srcNode{line: nodeLine(key), null: isNull(val)}
			w.walk(val, p, t.Elem())
		})
	case reflect.Slice:
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			w.errorf(n, path, "expected a list, got %s", describe(n))
			return
		}
		for i, item := range seq.Values {
			p := indexPath(path, i)
			val := w.resolve(item, p)
			w.src.nodes[p] = srcNode{line: nodeLine(item), null: isNull(val)}
			w.walk(val, p, t.Elem())
		}
	case reflect.String:
		switch n.(type) {
		case *ast.StringNode, *ast.LiteralNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode,
			*ast.InfinityNode, *ast.NanNode:
		default:
			w.errorf(n, path, "expected a string, got %s", describe(n))
		}
	case reflect.Int, reflect.Int64:
		v, ok := n.(*ast.IntegerNode)
		if !ok {
			w.errorf(n, path, "expected an integer, got %s", describe(n))
			return
		}
		if u, ok := v.Value.(uint64); ok && u > math.MaxInt64 {
			w.errorf(n, path, "number %s is too large", v.GetToken().Value)
		}
	case reflect.Float64:
		switch n.(type) {
		case *ast.IntegerNode, *ast.FloatNode:
		default:
			w.errorf(n, path, "expected a number, got %s", describe(n))
		}
	case reflect.Bool:
		if _, ok := n.(*ast.BoolNode); !ok {
			w.errorf(n, path, "expected true or false, got %s", describe(n))
		}
	}
}

func (w *walker) checkDuration(n ast.Node, path string) {
	s, ok := n.(*ast.StringNode)
	if !ok {
		if _, isInt := n.(*ast.IntegerNode); isInt {
			w.errorf(n, path, "duration %s needs a unit (use Go syntax such as 500ms, 2s or 1m30s)", describe(n))
			return
		}
		w.errorf(n, path, "expected a duration such as 500ms, 2s or 1m30s, got %s", describe(n))
		return
	}
	if _, err := time.ParseDuration(s.Value); err != nil {
		w.errorf(n, path, "invalid duration %q (use Go syntax such as 500ms, 2s or 1m30s)", s.Value)
	}
}

func (w *walker) walkStruct(n ast.Node, path string, t reflect.Type) {
	fields := yamlFields(t)
	w.eachEntry(n, path, func(name string, key, val ast.Node) {
		ft, ok := fields[name]
		if !ok {
			msg := fmt.Sprintf("unknown field %q", name)
			if s := suggest(name, fields); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			w.add(Error{File: w.file, Line: nodeLine(key), Path: path, Msg: msg})
			return
		}
		p := joinPath(path, name)
		w.src.nodes[p] = srcNode{line: nodeLine(key), null: isNull(val)}
		w.walk(val, p, ft)
	})
}

// eachEntry calls fn with the name, key node and resolved value of every entry of the
// mapping n, including entries merged in with "<<: *alias", which come after the explicit
// entries and never replace them. It reports n if it is not a mapping.
func (w *walker) eachEntry(n ast.Node, path string, fn func(name string, key, val ast.Node)) {
	seen := map[string]ast.Node{}
	w.entries(n, path, seen, false, fn)
}

// entries walks the entries of one mapping; seen holds the keys walked so far, merged says
// whether this mapping was merged in.
func (w *walker) entries(n ast.Node, path string, seen map[string]ast.Node, merged bool, fn func(name string, key, val ast.Node)) {
	var values []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		values = m.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{m}
	default:
		w.errorf(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	var merges []ast.Node
	for _, mv := range values {
		if _, ok := mv.Key.(*ast.MergeKeyNode); ok {
			merges = append(merges, mv.Value)
			continue
		}
		name := keyName(mv.Key)
		if first, dup := seen[name]; dup {
			if merged {
				// The YAML library rejects this with a confusing "duplicate key".
				w.errorf(first, path, "key %q is also merged in with <<, and overriding a merged key is not supported", name)
			}
			continue
		}
		seen[name] = mv.Key
		fn(name, mv.Key, w.resolve(mv.Value, joinPath(path, name)))
	}
	for _, m := range merges {
		target := w.resolve(m, path)
		if isNull(target) {
			continue
		}
		w.depth++
		if w.depth > maxWalkDepth {
			w.errorf(m, path, "merge keys nested too deeply")
		} else {
			w.entries(target, path, seen, true, fn)
		}
		w.depth--
	}
}

// keyName returns the text of a mapping key.
func keyName(k ast.Node) string {
	for {
		switch v := k.(type) {
		case *ast.StringNode:
			return v.Value
		case *ast.MappingKeyNode:
			k = v.Value
			continue
		case *ast.TagNode:
			k = v.Value
			continue
		case *ast.AnchorNode:
			k = v.Value
			continue
		}
		break
	}
	if k == nil {
		return ""
	}
	if tk := k.GetToken(); tk != nil {
		return tk.Value
	}
	return k.String()
}

// describe names the kind and value of a node for error messages.
func describe(n ast.Node) string {
	switch v := n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode:
		return strconv.Quote(v.Value)
	case *ast.LiteralNode:
		return "a block string"
	}
	if tk := n.GetToken(); tk != nil {
		return tk.Value
	}
	return n.Type().String()
}

var fieldsCache sync.Map // reflect.Type -> map[string]reflect.Type

// yamlFields maps the yaml names of t's fields to their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldsCache.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	fields := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || name == "" {
			continue
		}
		fields[name] = f.Type
	}
	fieldsCache.Store(t, fields)
	return fields
}

// suggest returns the field name closest to a misspelt one, or "".
func suggest(name string, fields map[string]reflect.Type) string {
	best, bestDist := "", 3 // suggest only within two edits
	lower := strings.ToLower(strings.ReplaceAll(name, "-", "_"))
	for f := range fields {
		d := editDistance(lower, f)
		if d < bestDist || (d == bestDist && f < best) {
			best, bestDist = f, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
