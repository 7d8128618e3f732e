package postgres

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/switchyardhq/switchyard/store"
	"github.com/switchyardhq/switchyard/store/storetest"
)

// WriteTx: what inTx does commits with the write, or neither does; the
// write must be exactly one, made with the context WriteTx gives.
func TestWriteTx(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, testSchema(t))
	if err := db.Migrate(ctx, []store.Table{storetest.Todos}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.pool.Exec(ctx, "CREATE TABLE side (todo BIGINT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	count := func(q string) int {
		var n int
		if err := db.pool.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	insertWith := func(title string, inTx func(ctx context.Context, tx pgx.Tx, ch store.Change) error) (store.Change, error) {
		var ch store.Change
		err := db.WriteTx(ctx, func(ctx context.Context) error {
			var err error
			_, ch, err = db.Insert(ctx, "todos", store.Row{"title": title})
			return err
		}, func(ctx context.Context, tx store.Tx) error {
			return inTx(ctx, tx.(pgx.Tx), ch)
		})
		return ch, err
	}
	side := func(ctx context.Context, tx pgx.Tx, ch store.Change) error {
		_, err := tx.Exec(ctx, "INSERT INTO side (todo) VALUES ($1)", ch.ID)
		return err
	}

	// Rolled back by inTx's error: no row, no change, no side row.
	before, _ := db.Position(ctx)
	boom := errors.New("boom")
	if _, err := insertWith("rolled back", func(ctx context.Context, tx pgx.Tx, ch store.Change) error {
		if err := side(ctx, tx, ch); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("WriteTx: %v, want inTx's error", err)
	}
	if n := count("SELECT count(*) FROM todos"); n != 0 {
		t.Fatalf("%d rows after a rollback", n)
	}
	if n := count("SELECT count(*) FROM side"); n != 0 {
		t.Fatalf("%d side rows after a rollback", n)
	}
	if after, _ := db.Position(ctx); after != before {
		t.Fatalf("position %d after a rollback, was %d", after, before)
	}

	// Committed: the row, its change and the side row.
	ch, err := insertWith("committed", side)
	if err != nil {
		t.Fatal(err)
	}
	if n := count("SELECT count(*) FROM side WHERE todo = " + strconv.FormatInt(ch.ID, 10)); n != 1 {
		t.Fatalf("%d side rows for the committed write", n)
	}
	changes, err := db.Changes(ctx, before, 10)
	if err != nil || len(changes) != 1 || changes[0].ID != ch.ID || changes[0].Seq != ch.Seq || changes[0].Row["title"] != "committed" {
		t.Fatalf("changes %+v %v", changes, err)
	}

	// A write that fails (unknown row) is the error, and inTx never runs.
	ran := false
	err = db.WriteTx(ctx, func(ctx context.Context) error {
		_, _, err := db.Update(ctx, "todos", 999999, store.Row{"title": "x"})
		return err
	}, func(context.Context, store.Tx) error { ran = true; return nil })
	if !errors.Is(err, store.ErrNotFound) || ran {
		t.Fatalf("update of a missing row: %v (inTx ran: %v)", err, ran)
	}

	// Exactly one write with the given context.
	for name, write := range map[string]func(ctx context.Context) error{
		"none": func(context.Context) error { return nil },
		"two": func(ctx context.Context) error {
			db.Insert(ctx, "todos", store.Row{"title": "a"})
			_, _, err := db.Insert(ctx, "todos", store.Row{"title": "b"})
			return err
		},
		"outside": func(context.Context) error {
			_, _, err := db.Insert(context.Background(), "todos", store.Row{"title": "outside"})
			return err
		},
	} {
		err := db.WriteTx(ctx, write, func(context.Context, store.Tx) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "want exactly 1") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if n := count("SELECT count(*) FROM todos WHERE title IN ('a', 'b')"); n != 0 {
		t.Errorf("two writes in one WriteTx committed %d rows", n)
	}
}
