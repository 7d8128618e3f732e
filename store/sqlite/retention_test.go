package sqlite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/store"
	"github.com/switchyardhq/switchyard/store/storetest"
)

func openWith(t *testing.T, cfg Config) *DB {
	t.Helper()
	cfg.Path = filepath.Join(t.TempDir(), "test.db")
	db, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background(), []store.Table{storetest.Todos}); err != nil {
		t.Fatal(err)
	}
	return db
}

func insertN(t testing.TB, db *DB, n int) (first, last store.Change) {
	t.Helper()
	for i := range n {
		_, ch, err := db.Insert(context.Background(), "todos", store.Row{"title": "x"})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = ch
		}
		last = ch
	}
	return first, last
}

// logExtent reads how far the log was trimmed and its newest Seq, as
// RowChanges reports them.
func logExtent(t testing.TB, db *DB) (trimmed, last int64) {
	t.Helper()
	rl, err := db.RowChanges(context.Background(), "todos", 1, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	return rl.Trimmed, rl.Last
}

func waitFor(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met in %v: %v", timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRetentionMaxRows: the background trimmer keeps the newest MaxRows
// changes and RowChanges reports the trimmed extent, so a since before it
// can tell it was trimmed.
func TestRetentionMaxRows(t *testing.T) {
	db := openWith(t, Config{ChangeLogMaxRows: 50, TrimInterval: 10 * time.Millisecond, TrimBatch: 7})
	_, last := insertN(t, db, 400)
	waitFor(t, 10*time.Second, func() error {
		if trimmed, newest := logExtent(t, db); trimmed != last.Seq-50 || newest != last.Seq {
			return errors.New("not trimmed to 50 rows yet")
		}
		return nil
	})
	rl, err := db.RowChanges(context.Background(), "todos", last.ID, last.Seq-10, 0)
	if err != nil || len(rl.Changes) != 1 || rl.Changes[0].Seq != last.Seq {
		t.Fatalf("recent changes lost: %+v %v", rl, err)
	}
	changes, err := db.Changes(context.Background(), 0, 0)
	if err != nil || len(changes) != 50 || changes[0].Seq != last.Seq-49 {
		t.Fatalf("%d changes kept from %v, want 50 from %d (%v)", len(changes), changes[0].Seq, last.Seq-49, err)
	}
}

// TestRetentionMaxAge: a pass drops exactly the changes older than MaxAge
// at its time, oldest first, and keeps the others.
func TestRetentionMaxAge(t *testing.T) {
	const age = time.Hour
	db := openWith(t, Config{ChangeLogMaxAge: age, TrimInterval: time.Hour}) // passes run by hand below
	before := time.Now()
	for !time.Now().After(before) {
	}
	_, oldLast := insertN(t, db, 30)
	between := time.Now()
	for !time.Now().After(between) {
	}
	newFirst, newLast := insertN(t, db, 20)
	if n, _, err := db.trimPass(context.Background(), before.Add(age)); err != nil || n != 0 {
		t.Fatalf("nothing is old yet: dropped %d, %v", n, err)
	}
	n, upTo, err := db.trimPass(context.Background(), between.Add(age))
	if err != nil || n != 30 || upTo != oldLast.Seq {
		t.Fatalf("dropped %d up to %d (%v), want 30 up to %d", n, upTo, err, oldLast.Seq)
	}
	if trimmed, last := logExtent(t, db); trimmed != oldLast.Seq || last != newLast.Seq {
		t.Fatalf("extent (%d, %d), want (%d, %d)", trimmed, last, oldLast.Seq, newLast.Seq)
	}
	changes, _ := db.Changes(context.Background(), 0, 0)
	if len(changes) != 20 || changes[0].Seq != newFirst.Seq {
		t.Fatalf("kept %d changes, want the 20 new ones", len(changes))
	}
	// Everything old: the log is empty and says it was trimmed to its end.
	if n, _, _ := db.trimPass(context.Background(), time.Now().Add(2*age)); n != 20 {
		t.Fatalf("dropped %d, want 20", n)
	}
	if trimmed, last := logExtent(t, db); trimmed != newLast.Seq || last != newLast.Seq {
		t.Fatalf("extent after dropping all (%d, %d)", trimmed, last)
	}
	// New writes go on numbering after the trimmed ones.
	_, next := insertN(t, db, 1)
	if next.Seq != newLast.Seq+1 {
		t.Fatalf("seq after trimming everything: %d, want %d", next.Seq, newLast.Seq+1)
	}
}

// TestRetentionDoesNotBlockWriters: a long trim (thousands of changes in
// batches) lets writes through between its batches instead of holding
// them for the whole pass.
func TestRetentionDoesNotBlockWriters(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 3,000 rows")
	}
	// The first pass runs at Open, on an empty log; the next is the one
	// that meets the backlog.
	db := openWith(t, Config{ChangeLogMaxRows: 10, TrimInterval: 300 * time.Millisecond, TrimBatch: 20})
	ctx := context.Background()
	bulkChanges(t, db, 3000)
	start, _ := logExtent(t, db)
	var interleaved, writes int
	done := false
	for !done {
		_, ch, err := db.Insert(ctx, "todos", store.Row{"title": "during"})
		if err != nil {
			t.Fatal(err)
		}
		writes++
		trimmed, _ := logExtent(t, db)
		// A write that returned while the trim was under way: the log was
		// trimmed some, but not yet down to its 10 newest rows.
		if trimmed > start && trimmed < ch.Seq-10-1 {
			interleaved++
		}
		done = trimmed >= ch.Seq-10-1 || writes > 100000
	}
	if interleaved == 0 {
		t.Fatalf("no write completed while the trim was under way (%d writes)", writes)
	}
	t.Logf("%d of %d writes completed during the trim", interleaved, writes)
}

// TestCloseStopsTheTrimmer: Close interrupts a pass between two batches
// and waits for the trimmer, which trims nothing after it.
func TestCloseStopsTheTrimmer(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	seed, err := Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	seed.Migrate(ctx, []store.Table{storetest.Todos})
	bulkChanges(t, seed, 2000)
	seed.Close()

	// One change per batch: the first pass, started by Open, has
	// about 2,000 batches to go when Close comes.
	db, err := Open(ctx, Config{Path: path, ChangeLogMaxRows: 1, TrimBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error {
		var oldest int64
		db.r.QueryRowContext(ctx, "SELECT min(seq) FROM _switchyard_changes").Scan(&oldest)
		if oldest < 2 {
			return errors.New("the trimmer has not started")
		}
		return nil
	})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-db.trimDone:
	default:
		t.Fatal("Close returned before the trimmer did")
	}
	check, err := Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	var left int
	check.r.QueryRowContext(ctx, "SELECT count(*) FROM _switchyard_changes").Scan(&left)
	if left <= 1 {
		t.Fatalf("the pass ran to its end (%d changes left): Close did not interrupt it", left)
	}
}

// TestNoRetentionKeepsEverything: without limits no trimmer runs.
func TestNoRetentionKeepsEverything(t *testing.T) {
	db := openWith(t, Config{TrimInterval: time.Millisecond})
	insertN(t, db, 20)
	if db.trimDone != nil {
		t.Fatal("a trimmer runs without a retention")
	}
	if trimmed, _ := logExtent(t, db); trimmed != 0 {
		t.Fatalf("trimmed to %d", trimmed)
	}
}

// TestDropColumn: the column Migrate refuses to drop goes, with its data
// and unique index, in one step, and Migrate then accepts the schema
// without it.
func TestDropColumn(t *testing.T) {
	ctx := context.Background()
	db := openWith(t, Config{})
	if _, _, err := db.Insert(ctx, "todos", store.Row{"title": "a", "slug": "s1"}); err != nil {
		t.Fatal(err)
	}
	without := store.Table{Name: "todos"}
	for _, c := range storetest.Todos.Columns {
		if c.Name != "slug" {
			without.Columns = append(without.Columns, c)
		}
	}
	err := db.Migrate(ctx, []store.Table{without})
	var me *store.MigrationError
	if !errors.As(err, &me) || !me.Drop || me.Column != "slug" || !strings.Contains(me.Fix, "switchyard migrate drop-column todos slug --yes") {
		t.Fatalf("Migrate without slug: %v", err)
	}
	if err := db.DropColumn(ctx, "todos", "slug"); err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, []store.Table{without}); err != nil {
		t.Fatalf("Migrate after the drop: %v", err)
	}
	rows, _, err := db.List(ctx, "todos", store.Query{})
	if err != nil || len(rows) != 1 || rows[0]["title"] != "a" {
		t.Fatalf("rows %v %v", rows, err)
	}
	if _, ok := rows[0]["slug"]; ok {
		t.Fatal("slug still read")
	}
	if err := db.DropColumn(ctx, "todos", "slug"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second drop: %v", err)
	}
	if err := db.DropColumn(ctx, "nope", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown table: %v", err)
	}
}

// TestOpenUnwritableNamesThePath: a database path that cannot be written
// is reported with the path, not as SQLite's code 14.
func TestOpenUnwritableNamesThePath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "not-a-dir")
	if err := writeTestFile(file); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), Config{Path: filepath.Join(file, "switchyard.db")})
	if err == nil || !strings.Contains(err.Error(), file) || strings.Contains(err.Error(), "(14)") {
		t.Fatalf("err = %v", err)
	}
}

func writeTestFile(path string) error {
	return os.WriteFile(path, []byte("x"), 0o600)
}

// bulkChanges adds n change records in one transaction (the write path
// would take too long under the race detector).
func bulkChanges(t testing.TB, db *DB, n int) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for range n {
		if _, err := tx.ExecContext(ctx, "INSERT INTO _switchyard_changes (tbl, row_id, op, row, at) VALUES ('todos', 1, 'update', NULL, ?)", time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}
