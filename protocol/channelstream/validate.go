package channelstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Validation answers 422 with marshmallow's error dictionary, the shape
// Channelstream applications already parse: {field: [messages]}, nested
// objects nested, list items keyed by their index as a string, dict
// values as {key: {"value": [...]}}, and a body of the wrong type as
// {"_schema": ["Invalid input type."]}. The messages are marshmallow's.
const (
	msgMissing     = "Missing data for required field."
	msgNull        = "Field may not be null."
	msgUUID        = "Not a valid UUID."
	msgList        = "Not a valid list."
	msgBool        = "Not a valid boolean."
	msgInt         = "Not a valid integer."
	msgString      = "Not a valid string."
	msgDatetime    = "Not a valid datetime."
	msgMapping     = "Not a valid mapping type."
	msgUnknown     = "Unknown field."
	msgInputType   = "Invalid input type."
	msgStateValue  = "Value is not type of string, integer, boolean or float."
	msgUnknownConn = "Unknown connection"
	msgUnknownUser = "Unknown user"
)

// fieldErrors is a marshmallow error dictionary: each value is a
// []string or a nested fieldErrors.
type fieldErrors map[string]any

func (e fieldErrors) add(field, msg string) {
	list, _ := e[field].([]string)
	e[field] = append(list, msg)
}

func (e fieldErrors) nest(field string, sub fieldErrors) {
	if len(sub) == 0 {
		return
	}
	if prev, ok := e[field].(fieldErrors); ok {
		for k, v := range sub {
			prev[k] = v
		}
		return
	}
	e[field] = sub
}

// merge adds another dictionary's errors at this level.
func (e fieldErrors) merge(o fieldErrors) {
	for k, v := range o {
		if list, ok := v.([]string); ok {
			for _, m := range list {
				e.add(k, m)
			}
		} else {
			e[k] = v
		}
	}
}

// kind is the JSON type of a raw value.
func kind(v json.RawMessage) byte {
	v = bytes.TrimLeft(v, " \t\r\n")
	if len(v) == 0 {
		return 0
	}
	switch c := v[0]; c {
	case '"', '{', '[', 'n':
		return c
	case 't', 'f':
		return 'b'
	}
	return '0' // a number
}

// reader decodes one JSON object field by field, collecting errors the
// way a marshmallow schema does.
type reader struct {
	fields map[string]json.RawMessage
	used   map[string]bool
	errs   fieldErrors
}

// newReader reads an object; ok is false when v is not one.
func newReader(v json.RawMessage) (*reader, bool) {
	r := &reader{used: map[string]bool{}, errs: fieldErrors{}}
	if kind(v) != '{' || json.Unmarshal(v, &r.fields) != nil {
		return r, false
	}
	return r, true
}

// value returns a field's raw value; present is false when it is absent.
// A null is reported (and false returned) unless nullable.
func (r *reader) value(name string, required, nullable bool) (json.RawMessage, bool) {
	r.used[name] = true
	v, ok := r.fields[name]
	if !ok {
		if required {
			r.errs.add(name, msgMissing)
		}
		return nil, false
	}
	if kind(v) == 'n' {
		if !nullable {
			r.errs.add(name, msgNull)
		}
		return nil, false
	}
	return v, true
}

// unknown reports (strict) or returns the fields no reader asked for, in
// name order.
func (r *reader) unknown(strict bool) object {
	var names []string
	for k := range r.fields {
		if !r.used[k] {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var out object
	for _, k := range names {
		if strict {
			r.errs.add(k, msgUnknown)
		} else {
			out = append(out, member{k, r.fields[k]})
		}
	}
	return out
}

// lengthMsg is marshmallow's validate.Length message.
func lengthMsg(min, max int) string {
	if max > 0 {
		return fmt.Sprintf("Length must be between %d and %d.", min, max)
	}
	return fmt.Sprintf("Shorter than minimum length %d.", min)
}

// str decodes a string of min..max characters (max 0: no maximum).
func decodeString(v json.RawMessage, min, max int) (string, string) {
	var s string
	if kind(v) != '"' || json.Unmarshal(v, &s) != nil {
		return "", msgString
	}
	if n := utf8.RuneCountInString(s); n < min || (max > 0 && n > max) {
		return s, lengthMsg(min, max)
	}
	return s, ""
}

func (r *reader) str(name string, required, nullable bool, min, max int) (string, bool) {
	v, ok := r.value(name, required, nullable)
	if !ok {
		return "", false
	}
	s, msg := decodeString(v, min, max)
	if msg != "" {
		r.errs.add(name, msg)
		return "", false
	}
	return s, true
}

func decodeUUID(v json.RawMessage) (string, bool) {
	var s string
	if kind(v) != '"' || json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return parseUUID(s)
}

func (r *reader) uuid(name string, required bool) (string, bool) {
	v, ok := r.value(name, required, false)
	if !ok {
		return "", false
	}
	id, ok := decodeUUID(v)
	if !ok {
		r.errs.add(name, msgUUID)
	}
	return id, ok
}

// strList decodes a list of strings of min..max characters; minItems > 0
// requires that many.
func (r *reader) strList(name string, required, nullable bool, min, max, minItems int) ([]string, bool) {
	v, ok := r.value(name, required, nullable)
	if !ok {
		return nil, false
	}
	var items []json.RawMessage
	if kind(v) != '[' || json.Unmarshal(v, &items) != nil {
		r.errs.add(name, msgList)
		return nil, false
	}
	out := make([]string, 0, len(items))
	sub := fieldErrors{}
	for i, it := range items {
		if kind(it) == 'n' {
			sub.add(strconv.Itoa(i), msgNull)
			continue
		}
		s, msg := decodeString(it, min, max)
		if msg != "" {
			sub.add(strconv.Itoa(i), msg)
			continue
		}
		out = append(out, s)
	}
	if len(sub) > 0 {
		r.errs.nest(name, sub)
		return nil, false
	}
	if len(items) < minItems {
		r.errs.add(name, lengthMsg(minItems, 0))
		return nil, false
	}
	return out, true
}

// decodeBool is marshmallow's Boolean: true/false, 1/0 and its truthy and
// falsy strings.
func decodeBool(v json.RawMessage) (bool, bool) {
	switch kind(v) {
	case 'b':
		return bytes.HasPrefix(bytes.TrimSpace(v), []byte("true")), true
	case '0':
		f, err := strconv.ParseFloat(string(bytes.TrimSpace(v)), 64)
		if err == nil && (f == 0 || f == 1) {
			return f == 1, true
		}
	case '"':
		var s string
		json.Unmarshal(v, &s)
		switch s {
		case "t", "T", "true", "True", "TRUE", "on", "On", "ON", "y", "Y", "yes", "Yes", "YES", "1":
			return true, true
		case "f", "F", "false", "False", "FALSE", "off", "Off", "OFF", "n", "N", "no", "No", "NO", "0":
			return false, true
		}
	}
	return false, false
}

func (r *reader) boolean(name string, def bool) bool {
	v, ok := r.value(name, false, false)
	if !ok {
		return def
	}
	b, ok := decodeBool(v)
	if !ok {
		r.errs.add(name, msgBool)
		return def
	}
	return b
}

// integer is marshmallow's Integer (not strict): numbers are truncated,
// strings of digits accepted, booleans refused; min is a Range minimum.
func (r *reader) integer(name string, def, min int) int {
	v, ok := r.value(name, false, false)
	if !ok {
		return def
	}
	var n int
	switch kind(v) {
	case '0':
		f, err := strconv.ParseFloat(string(bytes.TrimSpace(v)), 64)
		if err != nil || math.IsInf(f, 0) || math.Abs(f) > 1<<53 {
			r.errs.add(name, msgInt)
			return def
		}
		n = int(f)
	case '"':
		var s string
		json.Unmarshal(v, &s)
		i, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			r.errs.add(name, msgInt)
			return def
		}
		n = i
	default:
		r.errs.add(name, msgInt)
		return def
	}
	if n < min {
		r.errs.add(name, fmt.Sprintf("Must be greater than or equal to %d.", min))
		return def
	}
	return n
}

// datetime returns the field as Python's isoformat() writes it.
func (r *reader) datetime(name string) (string, bool) {
	v, ok := r.value(name, false, false)
	if !ok {
		return "", false
	}
	var s string
	if kind(v) != '"' || json.Unmarshal(v, &s) != nil {
		r.errs.add(name, msgDatetime)
		return "", false
	}
	t, ok := parseDatetime(s)
	if !ok {
		r.errs.add(name, msgDatetime)
	}
	return t, ok
}

// dict returns an object field as it was sent.
func (r *reader) dict(name string) (json.RawMessage, bool) {
	v, ok := r.value(name, false, false)
	if !ok {
		return nil, false
	}
	if kind(v) != '{' {
		r.errs.add(name, msgMapping)
		return nil, false
	}
	return v, true
}

// eachValue decodes a {key: value} field, checking each value with fn
// (which returns a message list or a nested dictionary on error); errors
// are reported as {key: {"value": …}}.
func (r *reader) eachValue(name string, fn func(json.RawMessage) any) (map[string]json.RawMessage, []string, bool) {
	v, ok := r.value(name, false, false)
	if !ok {
		return nil, nil, false
	}
	var m map[string]json.RawMessage
	if kind(v) != '{' || json.Unmarshal(v, &m) != nil {
		r.errs.add(name, msgMapping)
		return nil, nil, false
	}
	sub := fieldErrors{}
	for k, item := range m {
		if e := fn(item); e != nil {
			sub[k] = fieldErrors{"value": e}
		}
	}
	if len(sub) > 0 {
		r.errs.nest(name, sub)
		return nil, nil, false
	}
	return m, keyOrder(v), true
}

// keyOrder returns an object's keys in the order they were sent (the
// last occurrence of a repeated key wins its value, as in Python, but the
// first fixes its place).
func keyOrder(v json.RawMessage) []string {
	dec := json.NewDecoder(bytes.NewReader(v))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var keys []string
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return keys
		}
		k, _ := t.(string)
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return keys
		}
	}
	return keys
}

// stateValue checks a user state value: a string, number, boolean or null.
func stateValue(v json.RawMessage) any {
	switch kind(v) {
	case '"', '0', 'b', 'n':
		return nil
	}
	return []string{msgStateValue}
}

// nested reads an object field with fn; a value that is not an object is
// {"_schema": ["Invalid input type."]} under the field.
func (r *reader) nested(name string, required bool, fn func(*reader)) bool {
	v, ok := r.value(name, required, false)
	if !ok {
		return false
	}
	sub, ok := newReader(v)
	if !ok {
		r.errs.nest(name, fieldErrors{"_schema": []string{msgInputType}})
		return false
	}
	fn(sub)
	r.errs.nest(name, sub.errs)
	return len(sub.errs) == 0
}
