package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/switchyardhq/switchyard/internal/testenv"
)

// switchyard capture status|install|remove on a table created by plain
// SQL: what is installed, its installation, and a removal that leaves the
// table's triggers as they were.
func TestCaptureCommand(t *testing.T) {
	ctx := context.Background()
	u := testenv.PostgresSchema(t)
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE app_todo (id bigserial PRIMARY KEY, title varchar(200) NOT NULL, owner_id integer NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	triggers := func() string {
		var s string
		conn.QueryRow(ctx, "SELECT COALESCE(string_agg(tgname, ','), '') FROM pg_trigger WHERE tgrelid = 'app_todo'::regclass").Scan(&s)
		return s
	}
	dir := t.TempDir()
	writeFile(t, dir, "switchyard.yaml", fmt.Sprintf(`
store: {driver: postgres, url: %q}
resources:
  todos:
    table: app_todo
    capture: trigger
    permissions: {read: owner:owner_id, create: authenticated, update: owner:owner_id, delete: owner:owner_id}
`, u))
	run := func(want int, args ...string) string {
		t.Helper()
		code, out, errOut := runCmd(t, dir, nil, args...)
		if code != want {
			t.Fatalf("switchyard %s: exit %d, want %d\n%s\n%s", strings.Join(args, " "), code, want, out, errOut)
		}
		return out + errOut
	}
	if out := run(0, "config", "check", "switchyard.yaml"); !strings.Contains(out, "switchyard.yaml: ok") {
		t.Fatalf("config check:\n%s", out)
	}
	writeFile(t, dir, "bad.yaml", fmt.Sprintf(`
store: {driver: postgres, url: %q}
resources:
  todos:
    table: app_todo
    fields: {colour: {max_length: 3}}
  gone:
    table: app_gone
`, u))
	if out := run(2, "config", "check", "bad.yaml"); !strings.Contains(out, "field colour: the table has no column colour") || !strings.Contains(out, "table app_gone does not exist") {
		t.Fatalf("config check of a column the table lacks:\n%s", out)
	}
	if out := run(0, "codegen", "ts"); !strings.Contains(out, "title: string;") || !strings.Contains(out, "owner_id: number;") {
		t.Fatalf("codegen ts of a resource on an existing table:\n%s", out)
	}
	if out := run(0, "capture", "status", "todos"); !strings.Contains(out, "capture:   not installed (configured: trigger)") {
		t.Fatalf("status before:\n%s", out)
	}
	if out := run(0, "capture", "install", "todos", "--sql"); !strings.Contains(out, "SECURITY DEFINER") || !strings.Contains(out, `ON "app_todo" FOR EACH ROW`) {
		t.Fatalf("install --sql:\n%s", out)
	}
	if triggers() != "" {
		t.Fatal("install --sql installed something")
	}
	run(0, "capture", "install", "todos")
	if out := run(0, "capture", "status", "todos"); !strings.Contains(out, "capture:   installed") || !strings.Contains(out, "pending:   0") {
		t.Fatalf("status after install:\n%s", out)
	}
	if triggers() != "_switchyard_capture" {
		t.Fatalf("triggers %q", triggers())
	}
	if _, err := conn.Exec(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ('x', 1)"); err != nil {
		t.Fatal(err)
	}
	if out := run(0, "capture", "status", "todos"); !strings.Contains(out, "pending:   1 ") {
		t.Fatalf("status with a change no process published:\n%s", out)
	}
	if out := run(0, "capture", "remove", "todos"); !strings.Contains(out, "capture removed from app_todo") {
		t.Fatalf("remove:\n%s", out)
	}
	if triggers() != "" {
		t.Fatalf("triggers after remove %q", triggers())
	}
	if out := run(2, "capture", "status", "nothing"); !strings.Contains(out, `no resource "nothing"`) {
		t.Fatalf("unknown resource:\n%s", out)
	}
}
