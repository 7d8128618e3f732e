package postgres

import (
	"context"
	"errors"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard"

	"github.com/jackc/pgx/v5"

	"github.com/switchyardhq/switchyard/internal/testenv"
	"github.com/switchyardhq/switchyard/store"
	"github.com/switchyardhq/switchyard/store/storetest"
)

func testSchema(t testing.TB) string { return testenv.PostgresSchema(t) }

func openTest(t testing.TB, u string) *DB {
	t.Helper()
	db, err := Open(context.Background(), Config{URL: u, MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestContract(t *testing.T) {
	testenv.Postgres(t)
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t, testSchema(t)) })
}

// Data, schema and the trim mark survive a reopen; a reopened store
// refuses a destructive migration the same way.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	u := testSchema(t)
	db := openTest(t, u)
	if err := db.Migrate(ctx, []store.Table{storetest.Todos}); err != nil {
		t.Fatal(err)
	}
	_, c1, _ := db.Insert(ctx, "todos", store.Row{"title": "persisted", "meta": []byte(`{"a": [1, 2]}`)})
	db.Insert(ctx, "todos", store.Row{"title": "second"})
	if err := db.TrimChanges(ctx, c1.Seq); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openTest(t, u)
	if err := db.Migrate(ctx, []store.Table{{Name: "todos", Columns: storetest.Todos.Columns[:2]}}); err == nil {
		t.Fatal("dropping columns after a reopen was accepted")
	}
	if err := db.Migrate(ctx, []store.Table{storetest.Todos}); err != nil {
		t.Fatal(err)
	}
	rows, _, err := db.List(ctx, "todos", store.Query{Where: []store.Cond{{Column: "meta", Value: []byte(`{"a": [1, 2]}`)}}})
	if err != nil || len(rows) != 1 || rows[0]["title"] != "persisted" || string(rows[0]["meta"].([]byte)) != `{"a": [1, 2]}` {
		t.Fatalf("rows %v %v", rows, err)
	}
	rl, err := db.RowChanges(ctx, "todos", c1.ID, 0, 0)
	if err != nil || rl.Trimmed != c1.Seq || rl.Last != c1.Seq+1 || len(rl.Changes) != 0 {
		t.Fatalf("the trim mark after a reopen: %+v %v", rl, err)
	}
}

// Processes that start together migrate one at a time; none fails.
func TestConcurrentMigrations(t *testing.T) {
	ctx := context.Background()
	u := testSchema(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			db, err := Open(ctx, Config{URL: u, MaxConns: 2})
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			errs <- db.Migrate(ctx, []store.Table{storetest.Todos})
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// Writers on several stores (processes) get consecutive sequence numbers
// in commit order: the log read afterwards has no gap and no repeat.
func TestSequenceAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	u := testSchema(t)
	a, b := openTest(t, u), openTest(t, u)
	for _, db := range []*DB{a, b} {
		if err := db.Migrate(ctx, []store.Table{storetest.Todos}); err != nil {
			t.Fatal(err)
		}
	}
	row, _, err := a.Insert(ctx, "todos", store.Row{"rank": int64(0)})
	if err != nil {
		t.Fatal(err)
	}
	id := row["id"].(int64)
	errs := make(chan error, 8)
	for w := range 8 {
		db := []*DB{a, b}[w%2]
		go func() {
			for i := range 25 {
				if _, _, err := db.Update(ctx, "todos", id, store.Row{"rank": int64(w*100 + i)}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	chs, err := b.Changes(ctx, 0, 1000)
	if err != nil || len(chs) != 201 {
		t.Fatalf("%d changes, %v", len(chs), err)
	}
	for i, c := range chs {
		if c.Seq != int64(i+1) {
			t.Fatalf("change %d has seq %d", i, c.Seq)
		}
	}
	// The last change is the row as it is.
	got, _ := a.Get(ctx, "todos", id)
	if got["rank"] != chs[200].Row["rank"] {
		t.Fatalf("row %v, last change %v", got, chs[200].Row)
	}
}

// When PostgreSQL terminates the pool's connections, requests in the gap
// fail as unavailable (never a wrong answer), nothing acknowledged is
// lost, and service resumes by itself.
func TestTerminatedConnections(t *testing.T) {
	ctx := context.Background()
	u, err := url.Parse(testSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	app := testenv.Prefix(t)
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	db := openTest(t, u.String())
	if err := db.Migrate(ctx, []store.Table{storetest.Todos}); err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var acked []int64
	unavailable := 0
	for round := range 5 {
		// Open a few connections, then terminate every one of them.
		for i := range 4 {
			row, _, err := db.Insert(ctx, "todos", store.Row{"title": "r", "rank": int64(round*10 + i)})
			switch {
			case err == nil:
				acked = append(acked, row["id"].(int64))
			case switchyard.ErrorCode(err) == switchyard.CodeUnavailable:
				unavailable++
			default:
				t.Fatalf("insert during the fault: %v (want success or unavailable)", err)
			}
		}
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatal("no connection of the pool to terminate")
		}
	}
	// Service resumes without help.
	deadline := time.Now().Add(10 * time.Second)
	for {
		row, _, err := db.Insert(ctx, "todos", store.Row{"title": "after"})
		if err == nil {
			acked = append(acked, row["id"].(int64))
			break
		}
		if switchyard.ErrorCode(err) != switchyard.CodeUnavailable || time.Now().After(deadline) {
			t.Fatalf("after the fault: %v", err)
		}
	}
	for _, id := range acked {
		if _, err := db.Get(ctx, "todos", id); err != nil {
			t.Fatalf("acknowledged row %d: %v", id, err)
		}
	}
	if err := db.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d writes acknowledged, %d answered unavailable", len(acked), unavailable)
}

// BenchmarkInsert8 measures writes/s with 8 concurrent writers, each
// write one row and its change record.
func BenchmarkInsert8(b *testing.B) {
	ctx := context.Background()
	db := openTest(b, testSchema(b))
	if err := db.Migrate(ctx, []store.Table{storetest.Todos}); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(4) // 8 writers on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := db.Insert(ctx, "todos", store.Row{"title": "bench", "rank": int64(1)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// The trimmer keeps the newest MaxRows changes, in small batches, and the
// trim mark says how far it went.
func TestRetentionMaxRows(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, Config{URL: testSchema(t), MaxConns: 4, ChangeLogMaxRows: 50, TrimInterval: 10 * time.Millisecond, TrimBatch: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, []store.Table{storetest.Todos}); err != nil {
		t.Fatal(err)
	}
	var lastID int64
	for i := range 120 {
		row, _, err := db.Insert(ctx, "todos", store.Row{"rank": int64(i)})
		if err != nil {
			t.Fatal(err)
		}
		lastID = row["id"].(int64)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		rl, err := db.RowChanges(ctx, "todos", lastID, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		chs, _ := db.Changes(ctx, 0, 1000)
		if rl.Trimmed == rl.Last-50 && len(chs) == 50 && chs[0].Seq == rl.Trimmed+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: trimmed to %d of %d, %d changes kept", rl.Trimmed, rl.Last, len(chs))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// MaxAge drops the changes older than it, and only those.
func TestRetentionMaxAge(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, Config{URL: testSchema(t), MaxConns: 4, ChangeLogMaxAge: time.Hour, TrimInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, []store.Table{storetest.Todos}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		db.Insert(ctx, "todos", store.Row{"rank": int64(i)})
	}
	// Age the first four changes by two hours, behind the store's back.
	if _, err := db.pool.Exec(ctx, "UPDATE _switchyard_changes SET at = at - interval '2 hours' WHERE seq <= 4"); err != nil {
		t.Fatal(err)
	}
	n, upTo, err := db.trimPass(ctx)
	if err != nil || n != 4 || upTo != 4 {
		t.Fatalf("trim pass: %d dropped up to %d, %v; want 4 up to 4", n, upTo, err)
	}
	if chs, _ := db.Changes(ctx, 0, 100); len(chs) != 6 || chs[0].Seq != 5 {
		t.Fatalf("kept %d changes", len(chs))
	}
}

// The command a refused migration prints runs as printed: the shell hands
// psql SQL that drops the column and its record, and the next Migrate
// without the field passes.
func TestDropColumnHintRuns(t *testing.T) {
	ctx := context.Background()
	u := testSchema(t)
	db := openTest(t, u)
	if err := db.Migrate(ctx, []store.Table{storetest.Todos}); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Each refusal names one removed field; run each hint in turn.
	for range len(storetest.Todos.Columns) {
		err := db.Migrate(ctx, []store.Table{{Name: "todos", Columns: storetest.Todos.Columns[:2]}})
		if err == nil {
			return
		}
		var me *store.MigrationError
		if !errors.As(err, &me) || !strings.Contains(me.Fix, "psql") {
			t.Fatalf("dropping a field: %v", err)
		}
		cmd, ok := strings.CutPrefix(me.Fix[strings.Index(me.Fix, "psql"):], `psql "$DATABASE_URL" -c `)
		if !ok {
			t.Fatalf("hint %q", me.Fix)
		}
		// What the shell passes to psql -c: printf it instead.
		out, err := exec.Command("bash", "-c", "printf %s "+cmd).Output()
		if err != nil {
			t.Fatalf("the hint does not parse in a shell: %v (%s)", err, cmd)
		}
		if _, err := conn.Exec(ctx, string(out)); err != nil {
			t.Fatalf("the hint's SQL %q: %v", out, err)
		}
	}
	t.Fatal("Migrate still refuses after running every hint")
}
