package signal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/config"
)

// schema validates the kwargs of a call.
type schema struct {
	args  []arg
	extra bool // undeclared arguments pass
}

type arg struct {
	config.SignalArg
	re *regexp.Regexp
}

func compileSchema(args []config.SignalArg, extra string) (*schema, error) {
	sc := &schema{extra: extra == config.SignalExtraAccept}
	seen := map[string]bool{}
	for _, a := range args {
		if a.Name == "" || seen[a.Name] {
			return nil, fmt.Errorf("argument %q: empty or duplicate name", a.Name)
		}
		seen[a.Name] = true
		switch a.Type {
		case "", config.ArgString, config.ArgInt, config.ArgFloat, config.ArgBool, config.ArgObject, config.ArgArray, config.ArgForm:
		default:
			return nil, fmt.Errorf("argument %q: unknown type %q", a.Name, a.Type)
		}
		c := arg{SignalArg: a}
		if a.Pattern != "" {
			re, err := regexp.Compile(a.Pattern)
			if err != nil {
				return nil, fmt.Errorf("argument %q: pattern: %w", a.Name, err)
			}
			c.re = re
		}
		sc.args = append(sc.args, c)
	}
	return sc, nil
}

// ArgsError refuses a call whose arguments do not fit the signal's
// schema: Args maps each bad argument to what is wrong with it. It
// unwraps to a *switchyard.Error with CodeBadRequest naming them all.
type ArgsError struct {
	Args map[string]string
	err  *switchyard.Error
}

func newArgsError(args map[string]string) *ArgsError {
	names := make([]string, 0, len(args))
	for n := range args {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + ": " + args[n]
	}
	return &ArgsError{Args: args, err: switchyard.Errorf(switchyard.CodeBadRequest, "invalid arguments: %s", strings.Join(parts, "; "))}
}

func (e *ArgsError) Error() string { return e.err.Error() }
func (e *ArgsError) Unwrap() error { return e.err }

// validate checks kwargs; nil when they fit.
func (sc *schema) validate(kwargs map[string]json.RawMessage) *ArgsError {
	bad := map[string]string{}
	for _, a := range sc.args {
		raw, ok := kwargs[a.Name]
		if !ok || bytes.Equal(raw, []byte("null")) {
			if a.Required {
				bad[a.Name] = "this argument is required"
			}
			continue
		}
		if msg := a.check(raw); msg != "" {
			bad[a.Name] = msg
		}
	}
	if !sc.extra {
		for name := range kwargs {
			if !slices.ContainsFunc(sc.args, func(a arg) bool { return a.Name == name }) {
				bad[name] = "this signal has no such argument"
			}
		}
	}
	if len(bad) > 0 {
		return newArgsError(bad)
	}
	return nil
}

// check validates one present, non-null value.
func (a *arg) check(raw json.RawMessage) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "not valid JSON"
	}
	switch a.Type {
	case config.ArgString:
		if _, ok := v.(string); !ok {
			return "must be a string"
		}
	case config.ArgInt:
		n, ok := v.(json.Number)
		if !ok {
			return "must be an integer"
		}
		if _, err := strconv.ParseInt(string(n), 10, 64); err != nil {
			f, ferr := n.Float64()
			if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
				return "must be an integer"
			}
		}
	case config.ArgFloat:
		if _, ok := v.(json.Number); !ok {
			return "must be a number"
		}
	case config.ArgBool:
		if _, ok := v.(bool); !ok {
			return "must be true or false"
		}
	case config.ArgObject:
		if _, ok := v.(map[string]any); !ok {
			return "must be an object"
		}
	case config.ArgArray:
		if _, ok := v.([]any); !ok {
			return "must be an array"
		}
	case config.ArgForm:
		if _, ok := formFields(v); !ok {
			return `must be a serialized form: a list of {"name": …, "value": …}`
		}
	}
	if n, ok := v.(json.Number); ok {
		f, err := n.Float64()
		if err != nil {
			return "must be a finite number"
		}
		if a.Min != nil && f < *a.Min {
			return fmt.Sprintf("must be at least %v", *a.Min)
		}
		if a.Max != nil && f > *a.Max {
			return fmt.Sprintf("must be at most %v", *a.Max)
		}
	}
	if a.MaxLength != nil {
		switch x := v.(type) {
		case string:
			if utf8.RuneCountInString(x) > *a.MaxLength {
				return fmt.Sprintf("must be at most %d characters", *a.MaxLength)
			}
		case []any:
			if len(x) > *a.MaxLength {
				return fmt.Sprintf("must have at most %d items", *a.MaxLength)
			}
		}
	}
	if a.re != nil {
		s, ok := v.(string)
		if !ok || !a.re.MatchString(s) {
			return fmt.Sprintf("must match %s", a.Pattern)
		}
	}
	if len(a.Choices) > 0 && !slices.ContainsFunc(a.Choices, func(c any) bool { return sameValue(c, v) }) {
		shown := make([]string, len(a.Choices))
		for i, c := range a.Choices {
			b, _ := json.Marshal(c)
			shown[i] = string(b)
		}
		return "must be one of " + strings.Join(shown, ", ")
	}
	return ""
}

// sameValue compares a declared choice (from YAML or Go: string, bool, an
// integer or float type) with a decoded JSON value.
func sameValue(choice, v any) bool {
	if n, ok := v.(json.Number); ok {
		f, err := n.Float64()
		if err != nil {
			return false
		}
		switch c := choice.(type) {
		case int:
			return f == float64(c)
		case int64:
			return f == float64(c)
		case float64:
			return f == c
		}
		return false
	}
	switch c := choice.(type) {
	case string:
		s, ok := v.(string)
		return ok && s == c
	case bool:
		b, ok := v.(bool)
		return ok && b == c
	}
	return false // objects and arrays are not choices
}

// formFields reads a serialized form ([{"name", "value"}, ...]) as an
// object: a name given once maps to its value, a repeated name to the
// list of its values, in order (Django's QueryDict.getlist).
func formFields(v any) (map[string]any, bool) {
	items, ok := v.([]any)
	if !ok {
		return nil, false
	}
	values := make(map[string][]any, len(items))
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			return nil, false
		}
		name, ok := m["name"].(string)
		if !ok {
			return nil, false
		}
		value, ok := m["value"]
		if !ok {
			return nil, false
		}
		values[name] = append(values[name], value)
	}
	out := make(map[string]any, len(values))
	for name, vs := range values {
		if len(vs) == 1 {
			out[name] = vs[0]
		} else {
			out[name] = vs
		}
	}
	return out, true
}

// canonical returns the kwargs a handler receives: the call's, with form
// arguments turned into objects (formFields). It runs after validate.
func (sc *schema) canonical(args map[string]json.RawMessage) json.RawMessage {
	var out map[string]json.RawMessage
	for _, a := range sc.args {
		raw, ok := args[a.Name]
		if a.Type != config.ArgForm || !ok || bytes.Equal(raw, []byte("null")) {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			continue
		}
		fields, ok := formFields(v)
		if !ok {
			continue
		}
		b, err := json.Marshal(fields)
		if err != nil {
			continue
		}
		if out == nil {
			out = maps.Clone(args)
		}
		out[a.Name] = b
	}
	if out == nil {
		out = args
	}
	b, _ := json.Marshal(out) // a JSON object, whatever the client sent ({} for null)
	return b
}
