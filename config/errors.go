package config

import (
	"fmt"
	"strings"
)

// Error is one problem in the configuration. Source is the file name or the
// environment variable the value came from ("" when unknown, e.g. a value
// set by a flag); Line is the 1-based line in that file, 0 when unknown or
// for environment variables; Key is the dotted key path such as
// "channels.namespaces.chat.permissions.publish" ("" for problems that are
// not about one key, e.g. a YAML syntax error or an unknown variable).
type Error struct {
	// Source is the file name or environment variable, "" when unknown.
	Source string
	// Line is the 1-based line in Source, 0 when unknown or not a file.
	Line int
	// Key is the dotted key path, "" when the problem is not about a key.
	Key string
	// Msg says what is wrong and what is expected.
	Msg string
}

// Error formats the problem as "source:line: key: message", leaving out the
// parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.Source != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.Source, e.Line)
	case e.Source != "":
		b.WriteString(e.Source)
		b.WriteString(": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found while loading or validating a
// configuration. Load, Parse and Config.Validate return a non-empty Errors
// (never an empty one) when the configuration is invalid.
type Errors []*Error

// Error joins the messages of all the errors, one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual errors, so that errors.As can reach each
// *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}
