package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Load reads the YAML file at path and returns its configuration, checked and with
// defaults applied (see Parse).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: fmt.Sprintf("cannot read config: %v", errorText(err))}}
	}
	return Parse(path, data)
}

// errorText drops the path that *os.PathError repeats.
func errorText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// Parse decodes the YAML config data, read from file (used in error messages and to
// resolve relative paths), fills in defaults and validates the result. The error, when not
// nil, is of type Errors and lists every problem found, each with its line.
//
// Parse does not look at the environment; call ApplyEnv and then Validate for that.
func Parse(file string, data []byte) (*Config, error) {
	c, errs := decode(file, data)
	if errs != nil {
		return nil, errs
	}
	c.File = file
	c.resolvePaths(filepath.Dir(file))
	c.ApplyDefaults()
	if errs := c.Validate(); errs != nil {
		return nil, errs
	}
	return c, nil
}

// decode parses data and decodes it into a Config without defaults.
func decode(file string, data []byte) (c *Config, errs Errors) {
	// The YAML library is large and parses untrusted text; a panic in it must not take a
	// running load balancer down on reload.
	defer func() {
		if r := recover(); r != nil {
			c, errs = nil, Errors{{File: file, Msg: fmt.Sprintf("cannot parse YAML: %v", r)}}
		}
	}()

	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, Errors{yamlError(file, err)}
	}
	var body ast.Node
	for _, doc := range f.Docs {
		if doc.Body == nil {
			continue
		}
		if body != nil {
			return nil, Errors{{File: file, Line: nodeLine(doc.Body), Msg: "a config file holds one YAML document; remove the second ---"}}
		}
		body = doc.Body
	}

	w := newWalker(file)
	body = w.resolve(body, "")
	if isNull(body) {
		return nil, Errors{{File: file, Path: "pools", Msg: "no pools configured"}}
	}
	w.walk(body, "", reflect.TypeFor[Config]())
	if w.errs != nil {
		return nil, w.errs
	}

	// The walker has checked every key and value; the decoder now fills the structs. It
	// stays strict as a second line of defence.
	c = &Config{}
	if err := yaml.UnmarshalWithOptions(data, c, yaml.Strict()); err != nil {
		return nil, Errors{yamlError(file, err)}
	}
	c.src = w.src
	return c, nil
}

// yamlError converts an error of the YAML library into an Error with the line of the token
// it names, without the library's multi-line source excerpt.
func yamlError(file string, err error) Error {
	var ye yaml.Error
	if errors.As(err, &ye) {
		e := Error{File: file, Msg: ye.GetMessage()}
		var se *yaml.SyntaxError
		if errors.As(err, &se) {
			e.Msg = "syntax error: " + e.Msg
		}
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			e.Line = tk.Position.Line
		}
		return e
	}
	return Error{File: file, Msg: err.Error()}
}

// resolvePaths joins the relative file paths in c onto dir, the directory of the config
// file, so that they no longer depend on the working directory.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Admin.TokenFile)
	abs(&c.Sticky.SecretFile)
	abs(&c.Sticky.PreviousSecretFile)
	abs(&c.TLS.CertFile)
	abs(&c.TLS.KeyFile)
	abs(&c.TLS.ClientCAFile)
	for i := range c.Pools {
		t := &c.Pools[i].UpstreamTLS
		abs(&t.CAFile)
		abs(&t.CertFile)
		abs(&t.KeyFile)
	}
	abs(&c.Geo.MMDBFile)
	abs(&c.Auth.JWT.JWKSFile)
	abs(&c.Auth.JWT.HMACSecretFile)
}
