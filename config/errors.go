package config

import (
	"errors"
	"io/fs"
	"strconv"
	"strings"

	"go-loadbalancer/internal/redact"
)

// MaxMsgLen bounds the message of one Error as printed, and MaxPrinted the problems an
// Errors prints: a config error goes to logs and to the admin API, and must not echo a
// multi-megabyte line of the file it quotes a value from.
const (
	MaxMsgLen  = 256
	MaxPrinted = 20
)

// Error is one problem found in a configuration. It prints as "FILE:LINE: PATH: MSG", for
// example "lb.yaml:12: pools[0].backends[1].weight: weight must be between 1 and 10000".
// Line is 0 when unknown (then ":LINE" is left out), and Path is empty for problems that
// belong to no single key (then "PATH: " is left out). Problems that come from environment
// variables have File "environment" and the variable's name as Path.
type Error struct {
	File string // config file name, or "environment"
	Line int    // 1-based line in File, 0 if unknown
	Path string // key path such as "pools[0].backends[1].weight"
	Msg  string
}

// Error formats e as "FILE:LINE: PATH: MSG".
func (e Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "":
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	case e.Line > 0:
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(redact.Truncate(e.Msg, MaxMsgLen))
	return b.String()
}

// Errors is every problem found in a configuration, in the order found. Parse, Validate and
// ApplyEnv report all problems at once rather than stopping at the first.
//
// A nil Errors stored in an error variable is a non-nil error; use Err to convert.
type Errors []Error

// Error prints one problem per line, the first MaxPrinted of them.
func (es Errors) Error() string {
	lines := make([]string, 0, min(len(es), MaxPrinted+1))
	for i, e := range es {
		if i == MaxPrinted {
			lines = append(lines, "… and "+strconv.Itoa(len(es)-i)+" more problems")
			break
		}
		lines = append(lines, e.Error())
	}
	return strings.Join(lines, "\n")
}

// Err returns es as an error, or nil when es is empty.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// envFile is the File of errors caused by environment variables.
const envFile = "environment"

// envError reports a problem with the environment variable name.
func envError(name, msg string) Error {
	return Error{File: envFile, Path: name, Msg: msg}
}

// ErrorAt returns a problem with the value at path (such as "tls.client_ca_file") found
// after Validate — a file that does not open or parse, say — located like Validate's
// errors: on the key's line in File, or under the environment variable that set it.
func (c *Config) ErrorAt(path string, err error) Error {
	msg := err.Error()
	if name, ok := c.envFrom[path]; ok {
		return envError(name, msg)
	}
	return Error{File: c.File, Line: c.src.line(path), Path: path, Msg: msg}
}

// PathErr drops the "open FILE:" of an *fs.PathError, for messages about a file the
// configuration names that say which file themselves.
func PathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
