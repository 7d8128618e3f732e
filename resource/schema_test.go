package resource

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/store"
)

func ptr[T any](v T) *T { return &v }

func todos(t *testing.T, perms config.ResourcePermissions) *Schema {
	t.Helper()
	s, err := NewSchema(config.Resource{
		Name: "todos",
		Fields: []config.Field{
			{Name: "title", Type: config.FieldString, Required: true, MaxLength: ptr(10)},
			{Name: "done", Type: config.FieldBool, Default: false},
			{Name: "rank", Type: config.FieldInt, Min: ptr(0.0), Max: ptr(10.0)},
			{Name: "score", Type: config.FieldFloat},
			{Name: "due", Type: config.FieldDatetime},
			{Name: "meta", Type: config.FieldJSON},
			{Name: "owner", Type: config.FieldString},
			{Name: "created_by", Type: config.FieldString, ReadOnly: true},
		},
		PKField:     "pk",
		Permissions: perms,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fields(t *testing.T, err error) map[string][]string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a ValidationError, got %v", err)
	}
	return ve.Fields
}

func TestDecodeValid(t *testing.T) {
	s := todos(t, config.ResourcePermissions{})
	row, err := s.Decode(json.RawMessage(`{"pk": 99, "title": "Milk", "rank": 3, "score": 1.5, "due": "2026-11-23T10:00:00+01:00", "meta": {"a": [1]}, "created_by": "ignored"}`), Create, As(""))
	if err != nil {
		t.Fatal(err)
	}
	if row["title"] != "Milk" || row["done"] != false || row["rank"] != int64(3) || row["score"] != 1.5 || string(row["meta"].([]byte)) != `{"a": [1]}` {
		t.Fatalf("row %v", row)
	}
	if !row["due"].(time.Time).Equal(time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)) {
		t.Fatalf("due %v", row["due"])
	}
	if _, ok := row["created_by"]; ok {
		t.Fatal("a read-only field was taken from the client")
	}
	if _, ok := row["id"]; ok {
		t.Fatal("the primary key was taken from the client")
	}
	// A patch takes only what it names; an update needs required fields.
	row, err = s.Decode(json.RawMessage(`{"rank": 4}`), Patch, As(""))
	if err != nil || len(row) != 1 || row["rank"] != int64(4) {
		t.Fatalf("patch %v %v", row, err)
	}
	if f := fields(t, func() error { _, err := s.Decode(json.RawMessage(`{"rank": 4}`), Update, As("")); return err }()); f["title"][0] != "This field is required." {
		t.Fatalf("update without a required field: %v", f)
	}
}

func TestDecodeErrorsAreDRFShaped(t *testing.T) {
	s := todos(t, config.ResourcePermissions{})
	cases := []struct {
		body, field, msg string
	}{
		{`{}`, "title", "This field is required."},
		{`{"title": null}`, "title", "This field may not be null."},
		{`{"title": ""}`, "title", "This field may not be blank."},
		{`{"title": "far too long a title"}`, "title", "Ensure this field has no more than 10 characters."},
		{`{"title": 5}`, "title", "Not a valid string."},
		{`{"title": "x", "rank": "three"}`, "rank", "A valid integer is required."},
		{`{"title": "x", "rank": 1.5}`, "rank", "A valid integer is required."},
		{`{"title": "x", "rank": 11}`, "rank", "Ensure this value is less than or equal to 10."},
		{`{"title": "x", "rank": -1}`, "rank", "Ensure this value is greater than or equal to 0."},
		{`{"title": "x", "score": "high"}`, "score", "A valid number is required."},
		{`{"title": "x", "done": "yes"}`, "done", "Must be a valid boolean."},
		{`{"title": "x", "due": "tomorrow"}`, "due", "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."},
		{`{"title": "x", "titel": "typo"}`, "titel", "Unknown field."},
		{`[1, 2]`, "non_field_errors", "Invalid data. Expected a dictionary, but got list."},
		{`{nope`, "non_field_errors", "Invalid data. Expected a dictionary, but got malformed JSON."},
	}
	for _, tc := range cases {
		_, err := s.Decode(json.RawMessage(tc.body), Create, As(""))
		f := fields(t, err)
		if len(f[tc.field]) == 0 || f[tc.field][0] != tc.msg {
			t.Errorf("%s: got %v, want %s: %s", tc.body, f, tc.field, tc.msg)
		}
	}
	// Several problems at once.
	_, err := s.Decode(json.RawMessage(`{"rank": 99, "done": 3}`), Create, As(""))
	if f := fields(t, err); len(f) != 3 {
		t.Fatalf("want title, rank and done: %v", f)
	}
	// SQL metacharacters are just text.
	row, err := s.Decode(json.RawMessage(`{"title": "a'; --"}`), Create, As(""))
	if err != nil || row["title"] != "a'; --" {
		t.Fatalf("%v %v", row, err)
	}
}

func TestEncode(t *testing.T) {
	s := todos(t, config.ResourcePermissions{})
	due := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	out := s.Encode(store.Row{"id": int64(7), "title": "Milk", "done": true, "rank": nil, "score": 2.0, "due": due, "meta": []byte(`{"a":1}`), "owner": "alice"})
	want := `{"pk":7,"title":"Milk","done":true,"rank":null,"score":2,"due":"2026-01-02T03:04:05Z","meta":{"a":1},"owner":"alice","created_by":null}`
	if string(out) != want {
		t.Fatalf("\n got %s\nwant %s", out, want)
	}
	if !json.Valid(out) {
		t.Fatal("invalid JSON")
	}
	if got := s.Table(); got.Name != "todos" || len(got.Columns) != 8 || got.Columns[0].Name != "title" {
		t.Fatalf("table %+v", got)
	}
}

func TestPermissions(t *testing.T) {
	s := todos(t, config.ResourcePermissions{Read: "owner:owner", Create: "owner:owner", Update: "owner:owner", Delete: "none"})
	mine := store.Row{"id": int64(1), "owner": "alice"}
	for _, tc := range []struct {
		action, user string
		row          store.Row
		ok           bool
	}{
		{"create", "alice", nil, true},
		{"create", "", nil, false},
		{"update", "bob", nil, true}, // the record decides
		{"update", "", nil, false},
		{"update", "alice", mine, true},
		{"update", "bob", mine, false},
		{"read", "alice", mine, true},
		{"read", "bob", mine, false},
		{"delete", "alice", mine, false},
		{"frobnicate", "alice", mine, false},
	} {
		if got := s.Allowed(tc.action, tc.user, tc.row); got != tc.ok {
			t.Errorf("%s by %q: %v", tc.action, tc.user, got)
		}
	}
	// Create fills the owner with the writer; a user cannot set it (400
	// naming the field), on create, update or patch; the server can.
	row, err := s.Decode(json.RawMessage(`{"title": "x"}`), Create, As("alice"))
	if err != nil || row["owner"] != "alice" {
		t.Fatalf("%v %v", row, err)
	}
	for _, m := range []Mode{Create, Update, Patch} {
		row, err = s.Decode(json.RawMessage(`{"title": "x", "owner": "mallory"}`), m, As("alice"))
		if f := fields(t, err); row != nil || len(f) != 1 || f["owner"][0] != "This field is read-only." {
			t.Fatalf("mode %d: a user sets the owner: %v %v", m, row, err)
		}
	}
	if _, err := s.Decode(json.RawMessage(`{"title": "x"}`), Create, As("")); fields(t, err)["owner"] == nil {
		t.Fatalf("an anonymous create of an owned record: %v", err)
	}
	row, err = s.Decode(json.RawMessage(`{"title": "x", "owner": "mallory"}`), Create, AsServer())
	if err != nil || row["owner"] != "mallory" {
		t.Fatalf("the server sets the owner: %v %v", row, err)
	}
	if row, err = s.Decode(json.RawMessage(`{"title": "x"}`), Create, AsServer()); err != nil || row["owner"] != nil {
		t.Fatalf("the server's create is nobody's unless it says: %v %v", row, err)
	}
	// Any owner rule makes the field the owner's, whatever create says.
	upd := todos(t, config.ResourcePermissions{Read: "anyone", Create: "authenticated", Update: "owner:owner", Delete: "owner:owner"})
	if row, err = upd.Decode(json.RawMessage(`{"title": "x"}`), Create, As("bob")); err != nil || row["owner"] != "bob" {
		t.Fatalf("create: authenticated with update: owner:owner: %v %v", row, err)
	}
	if c, ok := s.OwnerFilter(As("alice")); !ok || c.Column != "owner" || c.Value != "alice" {
		t.Fatalf("owner filter %v %v", c, ok)
	}
	open := todos(t, config.ResourcePermissions{Read: "anyone", Create: "authenticated"})
	if !open.Allowed("read", "", nil) || open.Allowed("create", "", nil) || !open.Allowed("create", "bob", nil) {
		t.Fatal("anyone/authenticated")
	}
	if _, ok := open.OwnerFilter(As("x")); ok {
		t.Fatal("owner filter without an owner permission")
	}
	if _, err := NewSchema(config.Resource{Name: "x", Fields: []config.Field{{Name: "id", Type: "int"}}}); err == nil || !strings.Contains(err.Error(), "primary key") {
		t.Fatalf("field named like the pk: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"title":"x","rank":3}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"meta":{"deep":[1,2,{"x":null}]}}`))
	s, _ := NewSchema(config.Resource{Name: "t", Fields: []config.Field{
		{Name: "title", Type: "string", Required: true, MaxLength: ptr(5)},
		{Name: "rank", Type: "int", Min: ptr(0.0)},
		{Name: "meta", Type: "json"},
		{Name: "due", Type: "datetime"},
	}})
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, m := range []Mode{Create, Update, Patch} {
			row, err := s.Decode(body, m, As("u"))
			if err == nil {
				if !json.Valid(s.Encode(row)) {
					t.Fatalf("a decoded row encodes to invalid JSON: %q", body)
				}
			}
		}
	})
}
