// Package envconfig reads settings from environment variables: typed
// values with defaults and bounds, NAME_FILE for secrets kept in files, and
// errors that name the variable in one line. The app's configuration and
// each session store backend read their own variables through it.
package envconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Error is a configuration error about one variable.
type Error struct {
	Var, Problem string
}

func (e *Error) Error() string { return "config: " + e.Var + ": " + e.Problem }

// Reader reads variables through getenv and keeps the first error, so a
// caller reads everything top to bottom and checks Err once.
type Reader struct {
	getenv func(string) string
	err    error
}

// New returns a Reader over getenv (os.Getenv in the program, a map in
// tests).
func New(getenv func(string) string) *Reader { return &Reader{getenv: getenv} }

// Err returns the first problem found, or nil.
func (r *Reader) Err() error { return r.err }

// Fail records a problem with the variable name (the first one wins).
func (r *Reader) Fail(name, format string, args ...any) {
	if r.err == nil {
		r.err = &Error{Var: name, Problem: fmt.Sprintf(format, args...)}
	}
}

// Raw returns the variable as set (or read from NAME_FILE), untrimmed:
// for passwords, which may have meaningful spaces.
func (r *Reader) Raw(name string) string {
	v := r.getenv(name)
	path := strings.TrimSpace(r.getenv(name + "_FILE"))
	if path == "" {
		return v
	}
	if v != "" {
		r.Fail(name+"_FILE", "%s is set too; set one of them", name)
		return v
	}
	// NAME_FILE: the Docker and Kubernetes secrets convention, so secrets
	// need not sit in the environment. One trailing newline is dropped.
	b, err := os.ReadFile(path)
	if err != nil {
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			err = pe.Err // the path is in the message already
		}
		r.Fail(name+"_FILE", "cannot read %q: %v", path, err)
		return ""
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if strings.TrimSpace(s) == "" {
		r.Fail(name+"_FILE", "%q is empty", path)
	}
	return s
}

// Str returns the trimmed variable, or def when it is empty.
func (r *Reader) Str(name, def string) string {
	if v := strings.TrimSpace(r.Raw(name)); v != "" {
		return v
	}
	return def
}

// OneOf returns the lower-cased variable, which must be one of valid.
func (r *Reader) OneOf(name, def string, valid ...string) string {
	v := strings.ToLower(r.Str(name, def))
	if !slices.Contains(valid, v) {
		r.Fail(name, "%q is not valid; use one of: %s", v, strings.Join(valid, ", "))
	}
	return v
}

// Int returns a whole number from min to max.
func (r *Reader) Int(name string, def, min, max int) int {
	v := r.Str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		r.Fail(name, "%q is not a whole number from %d to %d", v, min, max)
		return def
	}
	return n
}

// Bool returns true or false.
func (r *Reader) Bool(name string, def bool) bool {
	v := r.Str(name, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.Fail(name, "%q is not a boolean (use true or false)", v)
		return def
	}
	return b
}

// Duration returns a Go duration of at least min.
func (r *Reader) Duration(name string, def, min time.Duration) time.Duration {
	v := r.Str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		r.Fail(name, "%q is not a duration (examples: 90s, 10m, 24h)", v)
		return def
	}
	if d < min {
		r.Fail(name, "%s is too short (minimum %s)", d, min)
		return def
	}
	return d
}

// List returns the comma-separated, trimmed, non-empty values.
func (r *Reader) List(name string) []string {
	var out []string
	for _, part := range strings.Split(r.Raw(name), ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}
