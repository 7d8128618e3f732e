package resource

import (
	"strconv"
	"strings"
	"testing"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/store"
)

var todoCatalog = []store.CatalogColumn{
	{Name: "id", Type: store.Int, PK: true, NotNull: true, HasDefault: true, Known: true},
	{Name: "title", Type: store.String, NotNull: true, MaxLength: 200, Known: true},
	{Name: "done", Type: store.Bool, NotNull: true, HasDefault: true, Known: true},
	{Name: "slug", Type: store.Text, Generated: true, Known: true},
	{Name: "owner_id", Type: store.Int, NotNull: true, Known: true},
	{Name: "secret", Type: store.String, Known: true},
	{Name: "shape", SQLType: "point", Type: store.String, Known: false},
}

func TestFromCatalog(t *testing.T) {
	max := 50
	r := config.Resource{Name: "todos", Table: "app_todo", PKField: "id",
		Fields:      []config.Field{{Name: "title", MaxLength: &max}, {Name: "secret", Hidden: true}},
		Permissions: config.ResourcePermissions{Read: "owner:owner_id", Create: "authenticated", Update: "owner:owner_id", Delete: "owner:owner_id"}}
	got, warnings, err := FromCatalog(r, todoCatalog)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "app_todo.shape has type point") {
		t.Fatalf("warnings %q", warnings)
	}
	want := map[string]string{
		"title":    "string required=true ro=false max=50 hidden=false",
		"done":     "bool required=false ro=false max=0 hidden=false",
		"slug":     "text required=false ro=true max=0 hidden=false",
		"owner_id": "int required=true ro=false max=0 hidden=false",
		"secret":   "string required=false ro=false max=0 hidden=true",
		"shape":    "string required=false ro=false max=0 hidden=false",
	}
	if len(got.Fields) != len(want) {
		t.Fatalf("fields %+v", got.Fields)
	}
	for _, f := range got.Fields {
		m := 0
		if f.MaxLength != nil {
			m = *f.MaxLength
		}
		if s := strings.Join([]string{f.Type, "required=" + strconv.FormatBool(f.Required), "ro=" + strconv.FormatBool(f.ReadOnly), "max=" + strconv.Itoa(m), "hidden=" + strconv.FormatBool(f.Hidden)}, " "); s != want[f.Name] {
			t.Errorf("%s: %s, want %s", f.Name, s, want[f.Name])
		}
	}
	sc, err := NewSchema(got)
	if err != nil {
		t.Fatal(err)
	}
	// The integer owner column: the user "42" owns owner_id 42, a create
	// by "42" fills it, a user id that is not an integer owns nothing.
	if !sc.Allowed("read", "42", store.Row{"owner_id": int64(42)}) || sc.Allowed("read", "7", store.Row{"owner_id": int64(42)}) {
		t.Fatal("the integer owner rule")
	}
	row, err := sc.Decode([]byte(`{"title": "x"}`), Create, As("42"))
	if err != nil || row["owner_id"] != int64(42) {
		t.Fatalf("create by 42: %v %v", row, err)
	}
	if _, err := sc.Decode([]byte(`{"title": "x"}`), Create, As("alice")); err == nil || !strings.Contains(err.Error(), "not an integer") {
		t.Fatalf("create by alice: %v", err)
	}
	if c, limited, none := sc.ownerCond(As("alice")); !limited || !none {
		t.Fatalf("alice's list condition %v %v %v", c, limited, none)
	}
	// Hidden: never shown, never settable by a client.
	if enc := string(sc.Encode(store.Row{"id": int64(1), "title": "x", "secret": "s"})); strings.Contains(enc, "secret") {
		t.Fatalf("a hidden field shown: %s", enc)
	}
	if _, err := sc.Decode([]byte(`{"title": "x", "secret": "s"}`), Create, As("42")); err == nil {
		t.Fatal("a client set a hidden field")
	}
}

func TestFromCatalogRefuses(t *testing.T) {
	for _, c := range []struct {
		mutate func(*config.Resource)
		want   string
	}{
		{func(r *config.Resource) { r.Fields = []config.Field{{Name: "colour"}} }, "(table app_todo): field colour: the table has no column colour"},
		{func(r *config.Resource) { r.Fields = []config.Field{{Name: "done", Type: "int"}} }, "field done is declared int"},
		{func(r *config.Resource) { r.Permissions.Read = "owner:owner" }, "owner:owner: the table has no column owner"},
		{func(r *config.Resource) { r.Permissions.Read = "owner:done" }, "owner:done: the column holds bool"},
		{func(r *config.Resource) {
			r.Fields = []config.Field{{Name: "owner_id", Hidden: true}}
			r.Permissions.Read = "owner:owner_id"
		}, "cannot be hidden"},
		{func(r *config.Resource) { r.Search = []string{"done"} }, "search field done"},
		{func(r *config.Resource) { r.Ordering = []string{"-nothing"} }, "ordering field nothing"},
		{func(r *config.Resource) { r.PKField = "title" }, `pk_field "title" is also a column`},
	} {
		r := config.Resource{Name: "todos", Table: "app_todo", PKField: "id"}
		c.mutate(&r)
		if _, _, err := FromCatalog(r, todoCatalog); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want %q, got %v", c.want, err)
		}
	}
	if _, _, err := FromCatalog(config.Resource{Name: "x", Table: "t", PKField: "id"}, todoCatalog[1:]); err == nil || !strings.Contains(err.Error(), "primary key") {
		t.Errorf("no primary key: %v", err)
	}
}
