package resource

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/store"
	"github.com/switchyardhq/switchyard/store/sqlite"
)

type events struct {
	mu  sync.Mutex
	got []Event
}

func (e *events) add(_ context.Context, ev Event) {
	e.mu.Lock()
	e.got = append(e.got, ev)
	e.mu.Unlock()
}

func service(t *testing.T, perms config.ResourcePermissions) (*Service, *events) {
	t.Helper()
	svc, ev, _ := serviceDB(t, perms)
	return svc, ev
}

// serviceDB is service with its store, for tests that trim the change log.
func serviceDB(t *testing.T, perms config.ResourcePermissions) (*Service, *events, *sqlite.DB) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "r.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ev := &events{}
	svc, err := NewService(context.Background(), ServiceConfig{Store: db, OnChange: ev.add, Resources: []config.Resource{{
		Name: "things",
		Fields: []config.Field{
			{Name: "name", Type: config.FieldString, Required: true, MaxLength: ptr(50)},
			{Name: "counter", Type: config.FieldInt, Default: 0},
			{Name: "slug", Type: config.FieldString, Unique: true},
			{Name: "owner", Type: config.FieldString},
		},
		PKField:     "pk",
		Search:      []string{"name"},
		Ordering:    []string{"-pk"},
		Permissions: perms,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return svc, ev, db
}

func decode(t *testing.T, b json.RawMessage) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m
}

func TestServiceCRUDAndEvents(t *testing.T) {
	svc, ev := service(t, config.ResourcePermissions{})
	ctx := context.Background()
	out, err := svc.Create(ctx, "things", As(""), json.RawMessage(`{"name": "Ma Thing", "slug": "a"}`))
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	pk := int64(m["pk"].(float64))
	if m["name"] != "Ma Thing" || m["counter"] != 0.0 {
		t.Fatalf("created %v", m)
	}
	if out, err = svc.Retrieve(ctx, "things", As(""), pk); err != nil || decode(t, out)["slug"] != "a" {
		t.Fatalf("retrieve %s %v", out, err)
	}
	if out, err = svc.Write(ctx, "things", As(""), pk, json.RawMessage(`{"counter": 5}`), Patch); err != nil || decode(t, out)["counter"] != 5.0 || decode(t, out)["name"] != "Ma Thing" {
		t.Fatalf("patch %s %v", out, err)
	}
	if _, err = svc.Write(ctx, "things", As(""), pk, json.RawMessage(`{"counter": 6}`), Update); switchyard.ErrorCode(err) != switchyard.CodeBadRequest {
		t.Fatalf("update without the required name: %v", err)
	}
	if err := svc.Delete(ctx, "things", As(""), pk); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Retrieve(ctx, "things", As(""), pk); switchyard.ErrorCode(err) != switchyard.CodeNotFound || switchyard.ErrorMessage(err) != "Not found." {
		t.Fatalf("retrieve deleted: %v", err)
	}
	if err := svc.Delete(ctx, "things", As(""), pk); switchyard.ErrorCode(err) != switchyard.CodeNotFound {
		t.Fatalf("delete twice: %v", err)
	}
	// One event per committed write, in order, none for the failed ones.
	ops := []string{}
	for _, e := range ev.got {
		ops = append(ops, string(e.Op))
		if e.PK != pk || (e.Op != store.OpDelete && decode(t, e.Data)["pk"] != float64(pk)) || (e.Op == store.OpDelete && e.Data != nil) {
			t.Fatalf("event %+v", e)
		}
	}
	if strings.Join(ops, ",") != "create,update,delete" {
		t.Fatalf("events %v", ops)
	}
}

func TestServiceValidationAndConflicts(t *testing.T) {
	svc, ev := service(t, config.ResourcePermissions{})
	ctx := context.Background()
	_, err := svc.Create(ctx, "things", As(""), json.RawMessage(`{"nam": "typo"}`))
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Fields["nam"] == nil || ve.Fields["name"] == nil || switchyard.ErrorCode(err) != switchyard.CodeBadRequest {
		t.Fatalf("typo: %v", err)
	}
	svc.Create(ctx, "things", As(""), json.RawMessage(`{"name": "x", "slug": "dup"}`))
	_, err = svc.Create(ctx, "things", As(""), json.RawMessage(`{"name": "y", "slug": "dup"}`))
	if !errors.As(err, &ve) || ve.Fields["slug"][0] != "things with this slug already exists." {
		t.Fatalf("unique: %v", err)
	}
	if len(ev.got) != 1 {
		t.Fatalf("%d events after one successful write", len(ev.got))
	}
	if _, err := svc.Create(ctx, "nope", As(""), json.RawMessage(`{}`)); switchyard.ErrorCode(err) != switchyard.CodeNotFound {
		t.Fatalf("unknown resource: %v", err)
	}
}

func TestServiceList(t *testing.T) {
	svc, _ := service(t, config.ResourcePermissions{})
	ctx := context.Background()
	for _, n := range []string{"apple", "banana", "apricot", "cherry"} {
		svc.Create(ctx, "things", As(""), json.RawMessage(`{"name": "`+n+`", "counter": `+map[string]string{"apple": "1", "banana": "2", "apricot": "1", "cherry": "3"}[n]+`}`))
	}
	res, err := svc.List(ctx, "things", As(""), ListQuery{})
	if err != nil || res.Count != 4 || decode(t, res.Results[0])["name"] != "cherry" {
		t.Fatalf("default ordering -pk: %v %v", res, err)
	}
	res, _ = svc.List(ctx, "things", As(""), ListQuery{Search: "AP", Ordering: []string{"name"}})
	if res.Count != 2 || decode(t, res.Results[0])["name"] != "apple" {
		t.Fatalf("search: %+v", res)
	}
	res, _ = svc.List(ctx, "things", As(""), ListQuery{Filter: map[string]json.RawMessage{"counter": json.RawMessage("1")}})
	if res.Count != 2 {
		t.Fatalf("filter: %+v", res)
	}
	res, _ = svc.List(ctx, "things", As(""), ListQuery{Limit: 2, Offset: 1, Ordering: []string{"pk"}})
	if res.Count != 4 || len(res.Results) != 2 || decode(t, res.Results[0])["name"] != "banana" {
		t.Fatalf("page: %+v", res)
	}
	for _, q := range []ListQuery{
		{Ordering: []string{"password"}},
		{Filter: map[string]json.RawMessage{"secret": json.RawMessage(`"x"`)}},
		{Filter: map[string]json.RawMessage{"counter": json.RawMessage(`"one"`)}},
		{Limit: -1},
	} {
		if _, err := svc.List(ctx, "things", As(""), q); switchyard.ErrorCode(err) != switchyard.CodeBadRequest {
			t.Errorf("%+v: %v", q, err)
		}
	}
}

func TestServiceOwnerPermissions(t *testing.T) {
	svc, _ := service(t, config.ResourcePermissions{Read: "owner:owner", Create: "owner:owner", Update: "owner:owner", Delete: "owner:owner"})
	ctx := context.Background()
	if _, err := svc.Create(ctx, "things", As(""), json.RawMessage(`{"name": "x"}`)); switchyard.ErrorCode(err) != switchyard.CodeForbidden {
		t.Fatalf("anonymous create: %v", err)
	}
	if _, err := svc.Create(ctx, "things", As("alice"), json.RawMessage(`{"name": "hers", "owner": "mallory"}`)); switchyard.ErrorCode(err) != switchyard.CodeBadRequest {
		t.Fatalf("a user sets the owner: %v", err)
	}
	out, err := svc.Create(ctx, "things", As("alice"), json.RawMessage(`{"name": "hers"}`))
	if err != nil || decode(t, out)["owner"] != "alice" {
		t.Fatalf("owner filled from the user: %s %v", out, err)
	}
	pk := int64(decode(t, out)["pk"].(float64))
	svc.Create(ctx, "things", As("bob"), json.RawMessage(`{"name": "his"}`))
	res, _ := svc.List(ctx, "things", As("alice"), ListQuery{})
	if res.Count != 1 || decode(t, res.Results[0])["name"] != "hers" {
		t.Fatalf("alice sees %+v", res)
	}
	if _, err := svc.Retrieve(ctx, "things", As("bob"), pk); switchyard.ErrorCode(err) != switchyard.CodeNotFound {
		t.Fatalf("bob retrieves alice's: %v", err)
	}
	if _, err := svc.Write(ctx, "things", As("bob"), pk, json.RawMessage(`{"name": "mine now"}`), Patch); switchyard.ErrorCode(err) != switchyard.CodeNotFound {
		t.Fatalf("bob patches alice's: %v", err)
	}
	if err := svc.Delete(ctx, "things", As("bob"), pk); switchyard.ErrorCode(err) != switchyard.CodeNotFound {
		t.Fatalf("bob deletes alice's: %v", err)
	}
	if err := svc.Delete(ctx, "things", As("alice"), pk); err != nil {
		t.Fatal(err)
	}
}

func TestServiceHooks(t *testing.T) {
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "h.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var after []string
	svc, err := NewService(context.Background(), ServiceConfig{Store: db,
		Resources: []config.Resource{{Name: "posts", Fields: []config.Field{{Name: "title", Type: "string"}, {Name: "slug", Type: "string", ReadOnly: true}}}},
		Hooks: map[string]Hooks{"posts": {
			Validate: func(ctx context.Context, w Write) error {
				if title, _ := w.Row["title"].(string); strings.Contains(title, "spam") {
					return &ValidationError{Fields: map[string][]string{"title": {"No spam."}}}
				}
				if w.Op == store.OpDelete && w.User != "admin" {
					return switchyard.Errorf(switchyard.CodeForbidden, "only admin deletes posts")
				}
				return nil
			},
			BeforeWrite: func(ctx context.Context, w *Write) error {
				if title, ok := w.Row["title"].(string); ok {
					w.Row["slug"] = strings.ToLower(strings.ReplaceAll(title, " ", "-"))
				}
				return nil
			},
			AfterWrite: func(ctx context.Context, ev Event) { after = append(after, string(ev.Op)) },
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	out, err := svc.Create(ctx, "posts", As("bob"), json.RawMessage(`{"title": "Hello World", "slug": "ignored"}`))
	if err != nil || decode(t, out)["slug"] != "hello-world" {
		t.Fatalf("computed field: %s %v", out, err)
	}
	pk := int64(decode(t, out)["id"].(float64))
	if _, err := svc.Create(ctx, "posts", As("bob"), json.RawMessage(`{"title": "buy spam"}`)); err == nil || !strings.Contains(err.Error(), "No spam.") {
		t.Fatalf("validate hook: %v", err)
	}
	if err := svc.Delete(ctx, "posts", As("bob"), pk); switchyard.ErrorCode(err) != switchyard.CodeForbidden {
		t.Fatalf("delete refused by the hook: %v", err)
	}
	if err := svc.Delete(ctx, "posts", As("admin"), pk); err != nil {
		t.Fatal(err)
	}
	if strings.Join(after, ",") != "create,delete" {
		t.Fatalf("after hooks %v", after)
	}
	if _, err := NewService(ctx, ServiceConfig{Store: db, Hooks: map[string]Hooks{"ghost": {}}}); err == nil {
		t.Fatal("hooks for an undeclared resource accepted")
	}
}
