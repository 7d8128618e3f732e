package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyardhq/switchyard/store"
)

// djangoTable is app_todo as Django's migrations would create it.
const djangoTable = `CREATE TABLE app_todo (
	id serial PRIMARY KEY,
	title varchar(200) NOT NULL,
	done boolean NOT NULL DEFAULT false,
	due timestamptz,
	price numeric(10,2),
	owner_id integer NOT NULL,
	meta jsonb,
	tags text[],
	state mood,
	ref uuid,
	shape point
)`

// externalTable creates app_todo with plain SQL in a fresh schema and
// returns the schema's URL and a connection that is not Switchyard's.
func externalTable(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	u := testSchema(t)
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy'); "+djangoTable); err != nil {
		t.Fatal(err)
	}
	return u, conn
}

// catalog is what the catalog holds about app_todo: columns, triggers,
// constraints, indexes (to compare before and after).
func catalog(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var out string
	err := conn.QueryRow(context.Background(), `
		SELECT concat_ws(E'\n',
			(SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || ' ' || attnotnull::text || ' ' || COALESCE(pg_get_expr(d.adbin, d.adrelid), ''), ', ' ORDER BY attnum)
				FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
				WHERE attrelid = 'app_todo'::regclass AND attnum > 0 AND NOT attisdropped),
			(SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'app_todo'::regclass),
			(SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), ',' ORDER BY conname) FROM pg_constraint WHERE conrelid = 'app_todo'::regclass),
			(SELECT string_agg(indexdef, ',' ORDER BY indexdef) FROM pg_indexes WHERE tablename = 'app_todo' AND schemaname = current_schema()),
			(SELECT relacl::text FROM pg_class WHERE oid = 'app_todo'::regclass))`).Scan(&out)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func todoTable(t *testing.T, db *DB) []store.Column {
	t.Helper()
	cols, err := db.Describe(context.Background(), "app_todo")
	if err != nil {
		t.Fatal(err)
	}
	var out []store.Column
	for _, c := range cols {
		if !c.PK {
			out = append(out, store.Column{Name: c.Name, Type: c.Type})
		}
	}
	return out
}

// attachTodos attaches app_todo as the resource todos, with capture
// installed when install.
func attachTodos(t *testing.T, db *DB, install bool) {
	t.Helper()
	ctx := context.Background()
	if err := db.Migrate(ctx, []store.Table{{Name: "todos", Source: "app_todo", Columns: todoTable(t, db)}}); err != nil {
		t.Fatal(err)
	}
	if install {
		if err := db.InstallCapture(ctx, "todos"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDescribeMapsTypes(t *testing.T) {
	u, _ := externalTable(t)
	db := openTest(t, u)
	cols, err := db.Describe(context.Background(), "app_todo")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cols {
		got = append(got, fmt.Sprintf("%s:%s:pk=%v:notnull=%v:default=%v:max=%d:known=%v:cast=%s:enum=%v", c.Name, c.Type, c.PK, c.NotNull, c.HasDefault, c.MaxLength, c.Known, c.Cast, c.Enum))
	}
	want := []string{
		"id:int:pk=true:notnull=true:default=true:max=0:known=true:cast=:enum=[]",
		"title:string:pk=false:notnull=true:default=false:max=200:known=true:cast=:enum=[]",
		"done:bool:pk=false:notnull=true:default=true:max=0:known=true:cast=:enum=[]",
		"due:datetime:pk=false:notnull=false:default=false:max=0:known=true:cast=:enum=[]",
		"price:string:pk=false:notnull=false:default=false:max=0:known=true:cast=numeric(10,2):enum=[]",
		"owner_id:int:pk=false:notnull=true:default=false:max=0:known=true:cast=:enum=[]",
		"meta:json:pk=false:notnull=false:default=false:max=0:known=true:cast=jsonb:enum=[]",
		"tags:json:pk=false:notnull=false:default=false:max=0:known=true:cast=text[]:enum=[]",
		"state:string:pk=false:notnull=false:default=false:max=0:known=true:cast=mood:enum=[sad ok happy]",
		"ref:string:pk=false:notnull=false:default=false:max=0:known=true:cast=uuid:enum=[]",
		"shape:string:pk=false:notnull=false:default=false:max=0:known=false:cast=point:enum=[]",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("catalog mapping:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := db.Describe(context.Background(), "no_such_table"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a missing table: %v", err)
	}
}

// Values of every mapped type go in and come back exactly, through
// Switchyard and from rows another program wrote.
func TestExistingTableRoundTrip(t *testing.T) {
	ctx := context.Background()
	u, conn := externalTable(t)
	db := openTest(t, u)
	before := catalog(t, conn)
	tbl := store.Table{Name: "todos", Source: "app_todo", Columns: todoTable(t, db)}
	if err := db.Migrate(ctx, []store.Table{tbl}); err != nil {
		t.Fatal(err)
	}
	due := time.Date(2026, 12, 2, 10, 30, 0, 123456000, time.UTC)
	row, ch, err := db.Insert(ctx, "todos", store.Row{
		"title": "milk", "owner_id": int64(42), "due": due, "price": "12.50",
		"meta": []byte(`{"b": 1, "a": [true, null]}`), "tags": []byte(`["x", "y z"]`), "state": "happy",
		"ref": "7f1f8e0c-2c1d-4f55-9a51-5d1f1b0e8a10", "shape": "(1,2)",
	})
	if err != nil {
		t.Fatal(err)
	}
	if ch.Seq == 0 || ch.ID != row["id"] {
		t.Fatalf("change %+v row %v", ch, row)
	}
	got, err := db.Get(ctx, "todos", row["id"].(int64))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"title": "milk", "owner_id": int64(42), "price": "12.50", "done": false, "state": "happy", "ref": "7f1f8e0c-2c1d-4f55-9a51-5d1f1b0e8a10", "shape": "(1,2)"} {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if !got["due"].(time.Time).Equal(due) {
		t.Errorf("due %v", got["due"])
	}
	if string(got["meta"].([]byte)) != `{"a": [true, null], "b": 1}` || string(got["tags"].([]byte)) != `["x","y z"]` {
		t.Errorf("json %s, array %s", got["meta"], got["tags"])
	}
	// What the app sees of Switchyard's write, at once.
	var title string
	var price string
	if err := conn.QueryRow(ctx, "SELECT title, price::text FROM app_todo WHERE id = $1", row["id"]).Scan(&title, &price); err != nil || title != "milk" || price != "12.50" {
		t.Fatalf("the app reads %q %q %v", title, price, err)
	}
	// Bad input for a type is the client's error, not the server's.
	_, _, err = db.Insert(ctx, "todos", store.Row{"title": "x", "owner_id": int64(1), "state": "furious"})
	var se *store.SchemaError
	if !errors.As(err, &se) || !strings.Contains(se.Problem, "mood") {
		t.Fatalf("a bad enum label: %v", err)
	}
	_, _, err = db.Insert(ctx, "todos", store.Row{"title": "x"})
	if !errors.As(err, &se) || se.Column != "owner_id" {
		t.Fatalf("a missing NOT NULL column: %v", err)
	}
	rows, n, err := db.List(ctx, "todos", store.Query{Where: []store.Cond{{Column: "price", Value: "12.5"}, {Column: "owner_id", Value: int64(42)}}, OrderBy: []store.Order{{Column: "id", Desc: true}}})
	if err != nil || n != 1 || len(rows) != 1 {
		t.Fatalf("list by numeric %v %d %v", rows, n, err)
	}
	if _, err := db.Delete(ctx, "todos", row["id"].(int64)); err != nil {
		t.Fatal(err)
	}
	if after := catalog(t, conn); after != before {
		t.Fatalf("serving the table changed it:\n%s\n%s", before, after)
	}
}

func TestAttachRefusesWhatIsNotThere(t *testing.T) {
	ctx := context.Background()
	u, conn := externalTable(t)
	db := openTest(t, u)
	for _, c := range []struct {
		tbl  store.Table
		want string
	}{
		{store.Table{Name: "todos", Source: "app_nothing"}, "app_nothing"},
		{store.Table{Name: "todos", Source: "app_todo", Columns: []store.Column{{Name: "colour", Type: store.String}}}, "colour"},
		{store.Table{Name: "todos", Source: "app_todo", Columns: []store.Column{{Name: "title", Type: store.Int}}}, "character varying(200)"},
	} {
		err := db.Migrate(ctx, []store.Table{c.tbl})
		var me *store.MigrationError
		if !errors.As(err, &me) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v", c.tbl, err)
		}
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE nopk (a int)"); err != nil {
		t.Fatal(err)
	}
	err := db.Migrate(ctx, []store.Table{{Name: "x", Source: "nopk"}})
	if err == nil || !strings.Contains(err.Error(), "primary key") {
		t.Fatalf("a table without a primary key: %v", err)
	}
}

// follower collects what FollowCaptured hands over.
type follower struct {
	mu   sync.Mutex
	chs  []store.Change
	stop context.CancelFunc
	done chan struct{}
}

func follow(t *testing.T, db *DB, o FollowOptions) *follower {
	f := &follower{done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	f.stop = cancel
	if o.Poll == 0 {
		o.Poll = 200 * time.Millisecond
	}
	o.Retry = 100 * time.Millisecond
	go func() {
		defer close(f.done)
		db.FollowCaptured(ctx, o, func(_ context.Context, chs []store.Change) {
			f.mu.Lock()
			f.chs = append(f.chs, chs...)
			f.mu.Unlock()
		})
	}()
	t.Cleanup(func() { cancel(); <-f.done })
	return f
}

// wait returns once n changes arrived, or after a minute (a loaded
// machine moves a burst slowly; a change that never comes fails anyway).
func (f *follower) wait(t *testing.T, n int) []store.Change {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		f.mu.Lock()
		got := append([]store.Change(nil), f.chs...)
		f.mu.Unlock()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCaptureExternalWrites(t *testing.T) {
	ctx := context.Background()
	u, conn := externalTable(t)
	db := openTest(t, u)
	before := catalog(t, conn)
	attachTodos(t, db, true)
	st, err := db.CaptureStatus(ctx, "todos")
	if err != nil || !st.Installed || !st.Enabled || st.Resource != "todos" {
		t.Fatalf("status %+v %v", st, err)
	}
	f := follow(t, db, FollowOptions{})
	time.Sleep(300 * time.Millisecond) // the follower is listening

	mustExec := func(q string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	mustExec("INSERT INTO app_todo (title, owner_id, price) VALUES ('ext', 7, 3.10)")
	mustExec("UPDATE app_todo SET done = true, title = 'ext2' WHERE title = 'ext'")
	// A transaction rolled back records nothing.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.Exec(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ('ghost', 1)")
	tx.Rollback(ctx)
	// A write through Switchyard is logged once, by Switchyard.
	own, ownCh, err := db.Insert(ctx, "todos", store.Row{"title": "own", "owner_id": int64(9)})
	if err != nil || ownCh.Captured {
		t.Fatal(err, ownCh)
	}
	mustExec("DELETE FROM app_todo WHERE title = 'ext2'")
	got := f.wait(t, 3)
	if len(got) != 3 {
		t.Fatalf("captured %d changes, want 3: %+v", len(got), got)
	}
	ops := []store.Op{store.OpCreate, store.OpUpdate, store.OpDelete}
	for i, c := range got {
		if c.Op != ops[i] || c.Table != "todos" || !c.Captured || c.ID != got[0].ID {
			t.Fatalf("change %d: %+v", i, c)
		}
		if i > 0 && (c.Seq <= got[i-1].Seq || c.Prev != got[i-1].Seq) {
			t.Fatalf("change %d out of order or without its prev: %+v after %+v", i, c, got[i-1])
		}
	}
	if got[0].Row["title"] != "ext" || got[0].Row["price"] != "3.10" || got[0].Before != nil || got[0].Prev != 0 {
		t.Fatalf("create %+v", got[0])
	}
	if got[1].Row["title"] != "ext2" || got[1].Before["title"] != "ext" || got[1].Row["done"] != true {
		t.Fatalf("update %+v", got[1])
	}
	if got[2].Row != nil || got[2].Before["title"] != "ext2" {
		t.Fatalf("delete %+v", got[2])
	}
	// Across records, sequence numbers follow the order changes reach the
	// log (Switchyard's own write may come before the captured changes
	// committed earlier); a record's changes keep their commit order.
	if ownCh.Seq == got[0].Seq || ownCh.Seq == got[1].Seq || ownCh.Seq == got[2].Seq {
		t.Fatalf("a sequence number given twice: own %d, captured %+v", ownCh.Seq, got)
	}
	// Catch-up sees captured changes like Switchyard's.
	rl, err := db.RowChanges(ctx, "todos", got[0].ID, 0, 0)
	if err != nil || len(rl.Changes) != 3 || rl.Changes[2].Op != store.OpDelete {
		t.Fatalf("row changes %+v %v", rl, err)
	}
	time.Sleep(500 * time.Millisecond) // anything more would have come by now
	for _, c := range f.wait(t, 3) {
		if c.ID == own["id"] {
			t.Fatalf("Switchyard's own write was captured: %+v", c)
		}
	}
	if n := len(f.wait(t, 3)); n != 3 {
		t.Fatalf("%d changes captured, want 3", n)
	}
	if err := db.RemoveCapture(ctx, "todos"); err != nil {
		t.Fatal(err)
	}
	if st, _ := db.CaptureStatus(ctx, "todos"); st.Installed {
		t.Fatalf("still installed: %+v", st)
	}
	mustExec("DELETE FROM app_todo")
	if after := catalog(t, conn); after != before {
		t.Fatalf("capture remove left the table changed:\n%s\n%s", before, after)
	}
}

// A burst of 10,000 external updates (100 statements of 100 rows, back to
// back) arrives whole and in order.
func TestCaptureBurst(t *testing.T) {
	ctx := context.Background()
	u, conn := externalTable(t)
	db := openTest(t, u)
	attachTodos(t, db, true)
	if _, err := conn.Exec(ctx, "INSERT INTO app_todo (title, owner_id) SELECT 't' || g, 1 FROM generate_series(1, 100) g"); err != nil {
		t.Fatal(err)
	}
	f := follow(t, db, FollowOptions{})
	time.Sleep(300 * time.Millisecond)
	if _, err := conn.Exec(ctx, "UPDATE app_todo SET owner_id = owner_id + 1 FROM generate_series(1, 100) g"); err != nil {
		t.Fatal(err)
	}
	// 100 statements × 100 rows = 10,000 updates, one transaction each.
	for i := range 99 {
		if _, err := conn.Exec(ctx, "UPDATE app_todo SET done = NOT done, title = $1 || id", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	// The 100 creates committed before the follower started wait in the
	// queue: they come first.
	got := f.wait(t, 10_100)
	if len(got) != 10_100 {
		t.Fatalf("%d changes of 10100", len(got))
	}
	last := map[int64]int64{}
	for i, c := range got {
		if i > 0 && c.Seq != got[i-1].Seq+1 {
			t.Fatalf("change %d: seq %d after %d", i, c.Seq, got[i-1].Seq)
		}
		if c.Prev != last[c.ID] && last[c.ID] != 0 {
			t.Fatalf("row %d: prev %d, its last change was %d", c.ID, c.Prev, last[c.ID])
		}
		last[c.ID] = c.Seq
	}
}

// With Leader, one follower of two publishes; when it stops, the other
// takes over where it stopped: each change is handed over once.
func TestCaptureLeader(t *testing.T) {
	ctx := context.Background()
	u, conn := externalTable(t)
	db1, db2 := openTest(t, u), openTest(t, u)
	for _, db := range []*DB{db1, db2} {
		attachTodos(t, db, false)
	}
	if err := db1.InstallCapture(ctx, "todos"); err != nil {
		t.Fatal(err)
	}
	f1 := follow(t, db1, FollowOptions{Leader: true})
	time.Sleep(300 * time.Millisecond)
	f2 := follow(t, db2, FollowOptions{Leader: true})
	for i := range 20 {
		if _, err := conn.Exec(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ($1, 1)", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	a := f1.wait(t, 20)
	if len(a) != 20 {
		t.Fatalf("the leader handed over %d of 20", len(a))
	}
	f1.stop()
	<-f1.done
	for i := range 20 {
		if _, err := conn.Exec(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ($1, 1)", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	b := f2.wait(t, 20)
	if len(b) != 20 || b[0].Seq != a[19].Seq+1 {
		t.Fatalf("the second follower handed over %d (from %v), want the 20 after %d", len(b), b, a[19].Seq)
	}
}

// withRole creates a login role of the test's own (dropped at the end,
// with what it owns and was granted) and returns u connecting as it.
func withRole(t *testing.T, u, role string, grants ...string) string {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE ROLE "+quote(role)+" LOGIN"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), u)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP OWNED BY "+quote(role)+"; DROP ROLE "+quote(role)); err != nil {
			t.Error(err)
		}
	})
	for _, g := range grants {
		if _, err := admin.Exec(ctx, strings.ReplaceAll(g, "ROLE", quote(role))); err != nil {
			t.Fatal(err)
		}
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	pu.User = url.User(role)
	return pu.String()
}

// The app writes as a role of its own, with its own search_path, and
// holds no privilege on Switchyard's tables: its writes succeed and are
// captured (the trigger's function runs as Switchyard's role).
func TestCaptureAppRoleAndSearchPath(t *testing.T) {
	ctx := context.Background()
	u, conn := externalTable(t)
	var schema string
	conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema)
	db := openTest(t, u)
	attachTodos(t, db, true)
	f := follow(t, db, FollowOptions{})
	time.Sleep(300 * time.Millisecond)
	appURL := withRole(t, u, schema+"_app", "GRANT USAGE ON SCHEMA "+quote(schema)+" TO ROLE",
		"GRANT SELECT, INSERT, UPDATE, DELETE ON app_todo TO ROLE", "GRANT USAGE ON SEQUENCE app_todo_id_seq TO ROLE")
	app, err := pgx.Connect(ctx, appURL)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(ctx)
	if _, err := app.Exec(ctx, "SET search_path TO public"); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Exec(ctx, "INSERT INTO "+quote(schema)+".app_todo (title, owner_id) VALUES ('by the app', 3)"); err != nil {
		t.Fatalf("the app's write failed: %v", err)
	}
	if _, err := app.Exec(ctx, "SELECT 1 FROM "+quote(schema)+"._switchyard_changes"); err == nil {
		t.Fatal("the app's role can read the change log; the test proves nothing")
	}
	if got := f.wait(t, 1); len(got) != 1 || got[0].Row["title"] != "by the app" {
		t.Fatalf("captured %+v", got)
	}
}

// Installing without the privilege says which one, and the SQL a DBA can
// run instead; nothing is left half-installed.
func TestCaptureInstallWithoutPrivilege(t *testing.T) {
	ctx := context.Background()
	u, conn := externalTable(t)
	var schema string
	conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema)
	lowURL := withRole(t, u, schema+"_low", "GRANT USAGE, CREATE ON SCHEMA "+quote(schema)+" TO ROLE",
		"GRANT SELECT, INSERT, UPDATE, DELETE ON app_todo TO ROLE")
	db := openTest(t, lowURL)
	attachTodos(t, db, false)
	err := db.InstallCapture(ctx, "todos")
	var pe *PrivilegeError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "to own the table") || !strings.Contains(pe.SQL, "CREATE OR REPLACE TRIGGER _switchyard_capture AFTER INSERT OR UPDATE OR DELETE ON \"app_todo\"") {
		t.Fatalf("install without the privilege: %v", err)
	}
	var n int
	conn.QueryRow(ctx, "SELECT count(*) FROM pg_proc WHERE proname = '_switchyard_capture'").Scan(&n)
	if n != 0 {
		t.Fatal("the function was left behind by a failed install")
	}
	// The DBA runs the SQL: capture works.
	if _, err := conn.Exec(ctx, pe.SQL); err != nil {
		t.Fatalf("the SQL given to the DBA: %v", err)
	}
	if st, err := db.CaptureStatus(ctx, "todos"); err != nil || !st.Installed {
		t.Fatalf("after the DBA ran it: %+v %v", st, err)
	}
}

// notifications counts the NOTIFYs on the capture channel that a
// connection of its own receives until stop is called.
type notifications struct {
	n    atomic.Int64
	stop func()
}

func listen(t *testing.T, u string) *notifications {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		t.Fatal(err)
	}
	l := &notifications{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := conn.WaitForNotification(ctx); err != nil {
				return
			}
			l.n.Add(1)
		}
	}()
	l.stop = func() { cancel(); <-done; conn.Close(context.Background()) }
	t.Cleanup(l.stop)
	return l
}

// While the follower moves changes, the app's transactions send no
// NOTIFY (it serialises their commits): the first change wakes the
// follower, which then marks itself awake and polls.
func TestCaptureSendsNoNotifyWhileFollowing(t *testing.T) {
	ctx := context.Background()
	u, conn := externalTable(t)
	db := openTest(t, u)
	attachTodos(t, db, true)
	// Leader: the follower itself sends no wake-up for other processes,
	// so every NOTIFY counted is a trigger's.
	f := follow(t, db, FollowOptions{Leader: true})
	l := listen(t, u)
	time.Sleep(200 * time.Millisecond)
	if _, err := conn.Exec(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ('wake', 1)"); err != nil {
		t.Fatal(err)
	}
	f.wait(t, 1)
	deadline := time.Now().Add(5 * time.Second)
	for l.n.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := l.n.Load(); n != 1 {
		t.Fatalf("%d notifications for the first change, want 1", n)
	}
	for i := range 150 {
		if _, err := conn.Exec(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ($1, 1)", fmt.Sprint("w", i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // the follower empties the queue between writes
	}
	if got := f.wait(t, 151); len(got) != 151 {
		t.Fatalf("%d changes, want 151", len(got))
	}
	time.Sleep(100 * time.Millisecond)
	if n := l.n.Load(); n != 1 {
		t.Fatalf("%d notifications, want only the first change's", n)
	}
}

// A transaction whose trigger saw the follower awake sends no NOTIFY;
// when it commits after the follower went quiet, polling finds it within
// Poll.
func TestCaptureLateCommitWithoutNotification(t *testing.T) {
	ctx := context.Background()
	u, conn := externalTable(t)
	db := openTest(t, u)
	attachTodos(t, db, true)
	if _, err := conn.Exec(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ('first', 1)"); err != nil {
		t.Fatal(err)
	}
	late, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close(ctx)
	tx, err := late.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	const poll = 300 * time.Millisecond
	// Quiet 2 s: the follower marks itself awake for 1 s after each move.
	f := follow(t, db, FollowOptions{Poll: poll, Quiet: 2 * time.Second, Leader: true})
	if got := f.wait(t, 1); len(got) != 1 || got[0].Row["title"] != "first" {
		t.Fatalf("first: %+v", got)
	}
	l := listen(t, u)
	time.Sleep(50 * time.Millisecond)
	// The follower is awake: this transaction's trigger sends no
	// notification.
	if _, err := tx.Exec(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ('late', 1)"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // the follower goes quiet: it polls every Poll
	committed := time.Now()
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got := f.wait(t, 2)
	if len(got) != 2 || got[1].Row["title"] != "late" {
		t.Fatalf("late: %+v", got)
	}
	if d := time.Since(committed); d > 2*poll {
		t.Fatalf("the late commit arrived after %v, want within Poll (%v)", d, poll)
	}
	if n := l.n.Load(); n != 0 {
		t.Fatalf("the late transaction sent %d notifications: the test proves nothing", n)
	}
}

// tableWrites sums what PostgreSQL's statistics count of inserts,
// updates and deletes on Switchyard's capture and log tables in the
// test's schema.
func tableWrites(t *testing.T, conn *pgx.Conn) int64 {
	t.Helper()
	var n int64
	if err := conn.QueryRow(context.Background(), `SELECT COALESCE(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_user_tables
		WHERE schemaname = current_schema() AND relname IN ('_switchyard_capture', '_switchyard_log', '_switchyard_row_seq', '_switchyard_changes', '_switchyard_capture_queue')`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// rowVersions is the transaction IDs that last wrote the capture row
// (awake mark, published position) and the log's counter row.
func rowVersions(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), `SELECT (SELECT xmin::text FROM _switchyard_capture WHERE id = 1) || '/' || (SELECT xmin::text FROM _switchyard_log WHERE id = 1)`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// A move that finds the queue empty writes nothing: no flush (no
// transaction ID), no awake mark, no row of Switchyard's tables, however
// often the follower polls.
func TestCaptureEmptyReadWritesNothing(t *testing.T) {
	ctx := context.Background()
	u, conn := externalTable(t)
	db := openTest(t, u)
	attachTodos(t, db, true)

	// The flush statement itself takes a transaction ID only for the
	// round whose move moved something.
	if _, err := conn.Exec(ctx, "SELECT set_config('switchyard.moved', '7', false)"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		round string
		xid   bool
	}{{"8", false}, {"7", true}} {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rows, _ := tx.Query(ctx, flushCaptured, c.round)
		rows.Close()
		var assigned *string
		if err := tx.QueryRow(ctx, "SELECT pg_current_xact_id_if_assigned()::text").Scan(&assigned); err != nil {
			t.Fatal(err)
		}
		tx.Rollback(ctx)
		if (assigned != nil) != c.xid {
			t.Fatalf("flush for round %s with round 7 moved: transaction ID %v, want one: %v", c.round, assigned, c.xid)
		}
	}

	var flushes atomic.Int64
	// Quiet 4 s: the follower polls every 2 ms all through the test.
	f := follow(t, db, FollowOptions{Quiet: 4 * time.Second, flushed: func(int64) { flushes.Add(1) }})
	time.Sleep(300 * time.Millisecond)
	if _, err := conn.Exec(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ('one', 1)"); err != nil {
		t.Fatal(err)
	}
	if got := f.wait(t, 1); len(got) != 1 {
		t.Fatalf("captured %+v", got)
	}
	if flushes.Load() == 0 {
		t.Fatal("no flush for a move that moved a change")
	}
	time.Sleep(1500 * time.Millisecond) // the statistics of that move are reported
	n0, v0, w0 := flushes.Load(), rowVersions(t, conn), tableWrites(t, conn)
	time.Sleep(1500 * time.Millisecond) // hundreds of empty polls
	if n, v, w := flushes.Load(), rowVersions(t, conn), tableWrites(t, conn); n != n0 || v != v0 || w != w0 {
		t.Fatalf("empty polls wrote: flushes %d -> %d, row versions %s -> %s, rows written %d -> %d", n0, n, v0, v, w0, w)
	}
	// The next change is flushed, and renews the awake mark (more than
	// half its life has passed).
	if _, err := conn.Exec(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ('two', 1)"); err != nil {
		t.Fatal(err)
	}
	if got := f.wait(t, 2); len(got) != 2 {
		t.Fatalf("captured %+v", got)
	}
	if n, v := flushes.Load(), rowVersions(t, conn); n == n0 || v == v0 {
		t.Fatalf("the second change: flushes %d -> %d, row versions %s -> %s", n0, n, v0, v)
	}
}

// fn publishing a batch does not hold up the moves: while fn is busy, the
// changes committed meanwhile are moved into the log (and made durable);
// fn is never called for two batches at once, and gets them in order.
func TestCaptureMovesWhileFnIsBusy(t *testing.T) {
	ctx := context.Background()
	u, conn := externalTable(t)
	db := openTest(t, u)
	attachTodos(t, db, true)
	release := make(chan struct{})
	var mu sync.Mutex
	var got []store.Change
	var busy, overlapped atomic.Int32
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		db.FollowCaptured(fctx, FollowOptions{Poll: 100 * time.Millisecond, Retry: 100 * time.Millisecond}, func(_ context.Context, chs []store.Change) {
			if busy.Add(1) > 1 {
				overlapped.Add(1)
			}
			defer busy.Add(-1)
			mu.Lock()
			first := len(got) == 0
			got = append(got, chs...)
			mu.Unlock()
			if first {
				<-release // the first batch's publishing takes its time
			}
		})
	}()
	t.Cleanup(func() { stop(); <-done })
	time.Sleep(300 * time.Millisecond)
	if _, err := conn.Exec(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ('first', 1)"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for busy.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if busy.Load() == 0 {
		close(release)
		t.Fatal("fn was not called for the first change")
	}
	if _, err := conn.Exec(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ('second', 1), ('third', 1)"); err != nil {
		t.Fatal(err)
	}
	var queued, logged int
	for time.Now().Before(deadline) {
		if err := conn.QueryRow(ctx, "SELECT (SELECT count(*) FROM _switchyard_capture_queue), (SELECT count(*) FROM _switchyard_changes WHERE captured)").Scan(&queued, &logged); err != nil {
			t.Fatal(err)
		}
		if queued == 0 && logged == 3 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stillBusy := busy.Load() == 1
	close(release)
	if queued != 0 || logged != 3 || !stillBusy {
		t.Fatalf("while fn was busy: %d changes still queued, %d in the log (want 0 and 3); fn busy all along: %v", queued, logged, stillBusy)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 || got[0].Row["title"] != "first" || got[1].Row["title"] != "second" || got[2].Row["title"] != "third" {
		t.Fatalf("handed over %+v", got)
	}
	if n := overlapped.Load(); n != 0 {
		t.Fatalf("fn ran for two batches at once %d times", n)
	}
}

// While changes flow, the awake mark is renewed once half its life has
// passed, not at every move, and never runs out: the app's transactions
// send no NOTIFY after the first change's.
func TestCaptureAwakeMarkRenewal(t *testing.T) {
	ctx := context.Background()
	u, conn := externalTable(t)
	db := openTest(t, u)
	attachTodos(t, db, true)
	// Leader: the follower sends no wake-up of its own. Quiet 2 s: a mark
	// lives 1 s and is renewed after 0.5 s.
	f := follow(t, db, FollowOptions{Leader: true, Quiet: 2 * time.Second})
	l := listen(t, u)
	time.Sleep(300 * time.Millisecond)
	sampler, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer sampler.Close(ctx)
	const flow = 3 * time.Second
	writes := 0
	marks := map[time.Time]bool{}
	ranOut := 0
	start := time.Now()
	for time.Since(start) < flow {
		if _, err := conn.Exec(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ('w', 1)"); err != nil {
			t.Fatal(err)
		}
		writes++
		if writes == 1 {
			f.wait(t, 1) // the follower is awake
			continue
		}
		var until *time.Time
		var live bool
		if err := sampler.QueryRow(ctx, "SELECT awake_until, awake_until > clock_timestamp() FROM _switchyard_capture WHERE id = 1").Scan(&until, &live); err != nil {
			t.Fatal(err)
		}
		if until != nil {
			marks[*until] = true
		}
		if !live {
			ranOut++
		}
		time.Sleep(3 * time.Millisecond)
	}
	if got := f.wait(t, writes); len(got) != writes {
		t.Fatalf("%d changes of %d", len(got), writes)
	}
	t.Logf("%d writes in %v, %d awake marks seen", writes, flow, len(marks))
	if len(marks) < 3 || len(marks) > 12 {
		t.Fatalf("%d awake marks over %v of changes, want one per half-life (about 6)", len(marks), flow)
	}
	if ranOut > 0 {
		t.Fatalf("the awake mark had run out at %d samples while changes flowed", ranOut)
	}
	if n := l.n.Load(); n > 1 {
		t.Fatalf("%d notifications, want only the first change's", n)
	}
}

// A leader that takes the lead again resumes from the furthest position
// it knows, its own or the published one (which is written after the
// changes are handed over, without waiting for the disk): no change is
// handed over twice by it.
func TestCaptureLeaderResumesFromFurthest(t *testing.T) {
	ctx := context.Background()
	u, conn := externalTable(t)
	db := openTest(t, u)
	attachTodos(t, db, true)
	f := follow(t, db, FollowOptions{Leader: true})
	time.Sleep(300 * time.Millisecond)
	if _, err := conn.Exec(ctx, "INSERT INTO app_todo (title, owner_id) SELECT 'a' || g, 1 FROM generate_series(1, 10) g"); err != nil {
		t.Fatal(err)
	}
	a := f.wait(t, 10)
	if len(a) != 10 {
		t.Fatalf("%d of 10", len(a))
	}
	last := a[9].Seq
	deadline := time.Now().Add(10 * time.Second)
	var published int64
	for time.Now().Before(deadline) {
		conn.QueryRow(ctx, "SELECT published FROM _switchyard_capture WHERE id = 1").Scan(&published)
		if published == last {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if published != last {
		t.Fatalf("published %d, want %d", published, last)
	}
	// The published position is lost (as in a crash of PostgreSQL before
	// its flush), and the leader's connection breaks.
	if _, err := conn.Exec(ctx, "UPDATE _switchyard_capture SET published = $1 WHERE id = 1", a[4].Seq); err != nil {
		t.Fatal(err)
	}
	var killed bool
	if err := conn.QueryRow(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1
		AND objid::bigint = (hashtext(current_schema())::bigint & 4294967295) AND objsubid = 2`, int64(captureLock)).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminating the leader's connection: %v %v", killed, err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO app_todo (title, owner_id) SELECT 'b' || g, 1 FROM generate_series(1, 5) g"); err != nil {
		t.Fatal(err)
	}
	f.wait(t, 15)
	time.Sleep(300 * time.Millisecond) // anything handed over twice would have come by now
	got := f.wait(t, 15)
	if len(got) != 15 {
		t.Fatalf("%d changes handed over, want 15 (10, then the 5 after the reconnection)", len(got))
	}
	for i, c := range got[10:] {
		if c.Row["title"] != fmt.Sprint("b", i+1) {
			t.Fatalf("after the reconnection: %+v", got[10:])
		}
	}
}

// After a move that found changes the mover reads the queue again at
// once, not after the poll interval: here the changes committed while it
// waited to hand a batch over are moved as soon as fn takes that batch.
func TestCaptureRereadsAfterMove(t *testing.T) {
	ctx := context.Background()
	u, conn := externalTable(t)
	db := openTest(t, u)
	attachTodos(t, db, true)
	release := make(chan struct{})
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Leader: the mover's flush does not notify its own connection.
		// Polls 1 s apart; the awake mark lives 5 s (no NOTIFY from the
		// app's transactions after the first).
		db.FollowCaptured(fctx, FollowOptions{Leader: true, Poll: time.Second, Active: time.Second, Quiet: 10 * time.Second, Retry: 100 * time.Millisecond},
			func(_ context.Context, chs []store.Change) {
				mu.Lock()
				for _, c := range chs {
					arrived[c.Row["title"].(string)] = time.Now()
				}
				mu.Unlock()
				if chs[0].Row["title"] == "a" {
					<-release
				}
			})
	}()
	t.Cleanup(func() { stop(); <-done })
	time.Sleep(1200 * time.Millisecond) // the follower leads
	at := func(title string) (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		when, ok := arrived[title]
		return when, ok
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				close(release)
				t.Fatal(what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	queued := func() int {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM _switchyard_capture_queue").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	insert := func(title string) {
		if _, err := conn.Exec(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ($1, 1)", title); err != nil {
			t.Fatal(err)
		}
	}
	insert("a")
	waitFor("a never reached fn", func() bool { _, ok := at("a"); return ok })
	insert("b") // moved at the next poll, then waits for fn to take it
	waitFor("b was not moved", func() bool { return queued() == 0 })
	insert("c") // waits in the queue while the mover waits for fn
	time.Sleep(100 * time.Millisecond)
	if _, ok := at("b"); ok {
		t.Fatal("b was handed over while fn was busy with a")
	}
	released := time.Now()
	close(release)
	waitFor("c never arrived", func() bool { _, ok := at("c"); return ok })
	if c, _ := at("c"); c.Sub(released) > 500*time.Millisecond {
		t.Fatalf("c arrived %v after fn took b, want at once (the poll interval is 1 s)", c.Sub(released))
	}
}

// The mover's flush notifies the other processes' followers (no Leader);
// that notification does not wake the mover itself: after a change it
// moves, reads again once, and then waits for the poll interval.
func TestCaptureMoverSleepsThroughItsOwnNotify(t *testing.T) {
	ctx := context.Background()
	u, conn := externalTable(t)
	db := openTest(t, u)
	attachTodos(t, db, true)
	var rounds, moved atomic.Int64
	f := follow(t, db, FollowOptions{Poll: 2 * time.Second, Active: 2 * time.Second, Quiet: 10 * time.Second, moved: func(n int) {
		rounds.Add(1)
		moved.Add(int64(n))
	}})
	l := listen(t, u)
	time.Sleep(500 * time.Millisecond) // the first rounds are done; the next poll is 2 s away
	rounds.Store(0)
	if _, err := conn.Exec(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ('one', 1)"); err != nil {
		t.Fatal(err)
	}
	if got := f.wait(t, 1); len(got) != 1 {
		t.Fatalf("captured %+v", got)
	}
	time.Sleep(500 * time.Millisecond)
	if l.n.Load() < 2 {
		t.Fatalf("%d notifications: the trigger's and the mover's flush's expected; the test proves nothing", l.n.Load())
	}
	if n := rounds.Load(); n != 2 || moved.Load() != 1 {
		t.Fatalf("%d round trips moving %d changes after one change, want 2 (the move, one read again at once)", n, moved.Load())
	}
}
