// Package resource turns declared resources (config.Resource, or the Go
// API) into rules: the table a resource is stored in, validation of what
// clients send (with Django REST framework's error shapes and messages, so
// DCRF clients show them unchanged), the JSON a record is shown as, and
// permissions.
//
// This file holds the schema; the CRUD service with change events and the
// DCRF and REST adapters build on it (issue 5).
package resource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/store"
)

// Mode says which write a body is for.
type Mode int

// Write modes: a create fills defaults and needs required fields; an
// update replaces every writable field (required ones must be there); a
// patch changes only the fields it names.
const (
	Create Mode = iota
	Update
	Patch
)

// ValidationError maps fields to their problems, as DRF's serializer
// errors: {"title": ["This field is required."]}. The key
// "non_field_errors" holds problems of the body as a whole.
type ValidationError struct {
	Fields map[string][]string
}

func (e *ValidationError) Error() string {
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("resource: invalid")
	for _, k := range keys {
		fmt.Fprintf(&b, " %s: %s;", k, strings.Join(e.Fields[k], " "))
	}
	return strings.TrimSuffix(b.String(), ";")
}

// Unwrap makes a ValidationError a bad request for switchyard.ErrorCode,
// so every adapter maps it to 400 (DCRF and REST then show Fields).
func (e *ValidationError) Unwrap() error {
	return switchyard.Errorf(switchyard.CodeBadRequest, "invalid data")
}

func (e *ValidationError) add(field, msg string) {
	if e.Fields == nil {
		e.Fields = map[string][]string{}
	}
	e.Fields[field] = append(e.Fields[field], msg)
}

// Schema is a resource's rules. It is immutable and safe for concurrent
// use.
type Schema struct {
	r     config.Resource
	pk    string
	owner map[string]string // action → owner field, for owner:<field> permissions
	// ownerFields are the fields any owner:<field> rule names: a create by
	// a user fills them with that user, and clients cannot set or change
	// them (the server can).
	ownerFields map[string]bool
	// hidden are the fields clients never see nor set.
	hidden map[string]bool
}

// NewSchema checks a resource declaration (the config package already
// validated files; this guards the Go API) and returns its schema.
func NewSchema(r config.Resource) (*Schema, error) {
	s := &Schema{r: r, pk: r.PKField, owner: map[string]string{}, ownerFields: map[string]bool{}, hidden: map[string]bool{}}
	if s.pk == "" {
		s.pk = "id"
	}
	if r.Name == "" {
		return nil, fmt.Errorf("resource: a resource needs a name")
	}
	for _, f := range r.Fields {
		if f.Name == s.pk {
			return nil, fmt.Errorf("resource %s: field %q is the primary key's name", r.Name, f.Name)
		}
		if f.Hidden {
			s.hidden[f.Name] = true
		}
	}
	for action, perm := range map[string]string{"read": r.Permissions.Read, "create": r.Permissions.Create, "update": r.Permissions.Update, "delete": r.Permissions.Delete} {
		if field, ok := config.OwnerField(perm); ok {
			if f, ok := r.Field(field); !ok || (f.Type != config.FieldString && f.Type != config.FieldInt) || f.Hidden {
				return nil, fmt.Errorf("resource %s: permission %s %q needs a string or int field that is not hidden", r.Name, action, perm)
			}
			s.owner[action] = field
			s.ownerFields[field] = true
		}
	}
	return s, nil
}

// Name returns the resource's name.
func (s *Schema) Name() string { return s.r.Name }

// Field returns a declared field that clients see (not hidden).
func (s *Schema) Field(name string) (config.Field, bool) {
	f, ok := s.r.Field(name)
	if !ok || f.Hidden {
		return config.Field{}, false
	}
	return *f, true
}

// Fields returns the declared fields, in declaration order.
func (s *Schema) Fields() []config.Field { return append([]config.Field(nil), s.r.Fields...) }

// Writable reports whether a client may set a field: a declared field
// that is neither read-only nor an owner field (those belong to the
// server).
func (s *Schema) Writable(name string) bool {
	f, ok := s.r.Field(name)
	return ok && !f.ReadOnly && !f.Hidden && !s.ownerFields[name]
}

// PageSize returns the resource's page size (default 25).
func (s *Schema) PageSize() int {
	if s.r.PageSize > 0 {
		return s.r.PageSize
	}
	return 25
}

// PK returns the name of the primary key in JSON ("id" by default, "pk"
// for dcrf-client's defaults).
func (s *Schema) PK() string { return s.pk }

// Table returns the store table of the resource.
func (s *Schema) Table() store.Table {
	t := store.Table{Name: s.r.Name, Source: s.r.Table}
	for _, f := range s.r.Fields {
		t.Columns = append(t.Columns, store.Column{Name: f.Name, Type: f.Type, Unique: f.Unique})
	}
	return t
}

// OwnerFields returns the fields that owner:<field> permissions name
// (sorted; none when the resource has no owner rule).
func (s *Schema) OwnerFields() []string {
	out := make([]string, 0, len(s.ownerFields))
	for f := range s.ownerFields {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// Decode validates a JSON object sent for a write and returns the row to
// store.
//
// Owner fields (those an owner:<field> permission names) belong to the
// server: a create by a user fills them with that user, whatever the
// create permission, and a user who sends one is refused (400, "This
// field is read-only."); an anonymous user cannot create a record that
// needs an owner. The server (who.Server) sets them like any field, and
// may write read-only fields. Other read-only fields and the primary key
// are ignored when a user sends them, as DRF does; undeclared fields are
// refused (DRF ignores them, which hides typos).
func (s *Schema) Decode(body json.RawMessage, mode Mode, who Actor) (store.Row, error) {
	verr := &ValidationError{}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		trimmed = []byte("{}")
	}
	if trimmed[0] != '{' {
		verr.add("non_field_errors", "Invalid data. Expected a dictionary, but got "+jsonKind(trimmed)+".")
		return nil, verr
	}
	var in map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &in); err != nil {
		verr.add("non_field_errors", "Invalid data. Expected a dictionary, but got malformed JSON.")
		return nil, verr
	}
	row := store.Row{}
	for name := range in {
		if name == s.pk {
			continue
		}
		if f, ok := s.r.Field(name); !ok || (f.Hidden && !who.Server) {
			verr.add(name, "Unknown field.")
		} else if s.ownerFields[name] && !who.Server {
			verr.add(name, "This field is read-only.")
		}
	}
	for i := range s.r.Fields {
		f := &s.r.Fields[i]
		raw, present := in[f.Name]
		if (f.ReadOnly || f.Hidden || s.ownerFields[f.Name]) && !who.Server {
			continue
		}
		if !present {
			switch {
			case mode == Patch:
			case mode == Create && f.Default != nil:
				v, err := defaultValue(f)
				if err != nil {
					return nil, fmt.Errorf("resource %s: default of %s: %w", s.r.Name, f.Name, err)
				}
				row[f.Name] = v
			case f.Required && !s.ownerFields[f.Name]:
				verr.add(f.Name, "This field is required.")
			}
			continue
		}
		v, msg := decodeValue(f, raw)
		if msg != "" {
			verr.add(f.Name, msg)
			continue
		}
		row[f.Name] = v
	}
	if mode == Create && !who.Server {
		for _, field := range s.OwnerFields() {
			if who.User == "" {
				verr.add(field, "An authenticated user is required to own this record.")
			} else if _, sent := in[field]; !sent {
				v, ok := s.ownerValue(field, who.User)
				if !ok {
					verr.add(field, fmt.Sprintf("The user id %q is not an integer, which this owner field holds.", who.User))
					continue
				}
				row[field] = v
			}
		}
	}
	if len(verr.Fields) > 0 {
		return nil, verr
	}
	return row, nil
}

func jsonKind(b []byte) string {
	switch b[0] {
	case '[':
		return "list"
	case '"':
		return "str"
	case 't', 'f':
		return "bool"
	}
	return "int"
}

// decodeValue checks one field's JSON value; msg is DRF's message for
// what is wrong.
func decodeValue(f *config.Field, raw json.RawMessage) (any, string) {
	if string(bytes.TrimSpace(raw)) == "null" {
		if f.Required {
			return nil, "This field may not be null."
		}
		return nil, ""
	}
	switch f.Type {
	case config.FieldString, config.FieldText:
		var v string
		if json.Unmarshal(raw, &v) != nil {
			return nil, "Not a valid string."
		}
		if f.Required && strings.TrimSpace(v) == "" {
			return nil, "This field may not be blank."
		}
		if f.MaxLength != nil && utf8.RuneCountInString(v) > *f.MaxLength {
			return nil, fmt.Sprintf("Ensure this field has no more than %d characters.", *f.MaxLength)
		}
		return v, ""
	case config.FieldInt:
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var n json.Number
		if dec.Decode(&n) != nil {
			return nil, "A valid integer is required."
		}
		i, err := n.Int64()
		if err != nil {
			f64, ferr := n.Float64()
			if ferr != nil || f64 != math.Trunc(f64) || math.Abs(f64) > 1<<53 {
				return nil, "A valid integer is required."
			}
			i = int64(f64)
		}
		if msg := bounds(f, float64(i)); msg != "" {
			return nil, msg
		}
		return i, ""
	case config.FieldFloat:
		var v float64
		if json.Unmarshal(raw, &v) != nil {
			return nil, "A valid number is required."
		}
		if msg := bounds(f, v); msg != "" {
			return nil, msg
		}
		return v, ""
	case config.FieldBool:
		var v bool
		if json.Unmarshal(raw, &v) != nil {
			return nil, "Must be a valid boolean."
		}
		return v, ""
	case config.FieldDatetime:
		var v string
		if json.Unmarshal(raw, &v) != nil {
			return nil, "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
		}
		return t.UTC(), ""
	case config.FieldJSON:
		return []byte(bytes.TrimSpace(raw)), ""
	}
	return nil, "Unsupported field type."
}

func bounds(f *config.Field, v float64) string {
	if f.Min != nil && v < *f.Min {
		return fmt.Sprintf("Ensure this value is greater than or equal to %s.", trimFloat(*f.Min))
	}
	if f.Max != nil && v > *f.Max {
		return fmt.Sprintf("Ensure this value is less than or equal to %s.", trimFloat(*f.Max))
	}
	return ""
}

func trimFloat(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprint(v)
}

// defaultValue converts a declared default (YAML-typed) to the field's
// store type.
func defaultValue(f *config.Field) (any, error) {
	raw, err := json.Marshal(f.Default)
	if err != nil {
		return nil, err
	}
	v, msg := decodeValue(f, raw)
	if msg != "" {
		return nil, fmt.Errorf("%s", msg)
	}
	return v, nil
}

// Encode shows a stored row as the JSON object clients see: the primary
// key under PK(), then the fields in declaration order.
func (s *Schema) Encode(row store.Row) json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('{')
	writeKey := func(k string) {
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
	}
	writeKey(s.pk)
	idb, _ := json.Marshal(row["id"])
	b.Write(idb)
	for _, f := range s.r.Fields {
		if f.Hidden {
			continue
		}
		b.WriteByte(',')
		writeKey(f.Name)
		switch v := row[f.Name].(type) {
		case nil:
			b.WriteString("null")
		case []byte: // json
			b.Write(v)
		case time.Time:
			vb, _ := json.Marshal(v.UTC().Format(time.RFC3339Nano))
			b.Write(vb)
		default:
			vb, err := json.Marshal(v)
			if err != nil {
				b.WriteString("null")
			} else {
				b.Write(vb)
			}
		}
	}
	b.WriteByte('}')
	return b.Bytes()
}

// Allowed applies the permission of an action ("read", "create",
// "update", "delete") to a user ("" when anonymous) and, for owner:<field>
// permissions, to the record (nil before it is loaded: then any
// authenticated user passes, and the record decides).
func (s *Schema) Allowed(action, user string, row store.Row) bool {
	return s.allowed(action, As(user), row)
}

// allowed is Allowed for an actor: the server may do anything.
func (s *Schema) allowed(action string, who Actor, row store.Row) bool {
	if who.Server {
		return true
	}
	user := who.User
	var perm string
	switch action {
	case "read":
		perm = s.r.Permissions.Read
	case "create":
		perm = s.r.Permissions.Create
	case "update":
		perm = s.r.Permissions.Update
	case "delete":
		perm = s.r.Permissions.Delete
	default:
		return false
	}
	switch perm {
	case "", config.AccessAnyone:
		return true
	case config.AccessAuthenticated:
		return user != ""
	case config.AccessNone:
		return false
	}
	field, ok := config.OwnerField(perm)
	if !ok || user == "" {
		return false
	}
	if row == nil {
		// Before the record is loaded (or for a create, or a list, which
		// OwnerFilter narrows) an owner permission needs a user.
		return true
	}
	owner, ok := ownerID(row[field])
	return ok && owner == user
}

// ownerID is an owner field's value as a user id: a string as it is, an
// integer in decimal (an app's integer owner_id matches the user "42").
func ownerID(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case int64:
		return strconv.FormatInt(x, 10), true
	}
	return "", false
}

// ownerValue is a user id as an owner field stores it; false when the
// field holds integers and the user id is not one.
func (s *Schema) ownerValue(field, user string) (any, bool) {
	if f, ok := s.r.Field(field); ok && f.Type == config.FieldInt {
		n, err := strconv.ParseInt(user, 10, 64)
		if err != nil || strconv.FormatInt(n, 10) != user {
			return nil, false
		}
		return n, true
	}
	return user, true
}

// readable reports whether an actor may read a record as row holds it. A
// nil row (a state the change log no longer keeps, or no record) is
// readable only when reading is not limited to owners.
func (s *Schema) readable(who Actor, row store.Row) bool {
	if _, owned := s.owner["read"]; owned && row == nil && !who.Server {
		return false
	}
	return s.allowed("read", who, row)
}

// OwnerFilter returns the condition that limits a list to the actor's
// records when reading is owner:<field>, and false when reading is not
// owner-limited (or the actor is the server).
func (s *Schema) OwnerFilter(who Actor) (store.Cond, bool) {
	c, limited, _ := s.ownerCond(who)
	return c, limited
}

// ownerCond is OwnerFilter, and none reports that the actor can own no
// record (a user id that is not an integer, for an integer owner field).
func (s *Schema) ownerCond(who Actor) (c store.Cond, limited, none bool) {
	field, ok := s.owner["read"]
	if !ok || who.Server {
		return store.Cond{}, false, false
	}
	v, ok := s.ownerValue(field, who.User)
	if !ok {
		return store.Cond{}, true, true
	}
	return store.Cond{Column: field, Value: v}, true, false
}
