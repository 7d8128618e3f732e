// Package storetest is the contract suite every store.Store passes: run it
// from the implementation's tests with a factory that opens an empty
// store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/store"
)

// Todos is the schema the suite migrates.
var Todos = store.Table{Name: "todos", Columns: []store.Column{
	{Name: "title", Type: store.String},
	{Name: "body", Type: store.Text},
	{Name: "done", Type: store.Bool},
	{Name: "rank", Type: store.Int},
	{Name: "score", Type: store.Float},
	{Name: "due", Type: store.Datetime},
	{Name: "meta", Type: store.JSON},
	{Name: "slug", Type: store.String, Unique: true},
}}

// Run runs the suite; open returns a new, empty store, closed by the
// caller's cleanup.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	setup := func(t *testing.T) store.Store {
		t.Helper()
		s := open(t)
		if err := s.Migrate(ctx, []store.Table{Todos}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("round trip of every type", func(t *testing.T) {
		s := setup(t)
		due := time.Date(2026, 11, 23, 12, 0, 0, 123000000, time.UTC)
		in := store.Row{"title": "Buy milk", "body": "two litres", "done": true, "rank": int64(3), "score": 2.5, "due": due, "meta": []byte(`{"tags":["x"]}`), "slug": "milk"}
		row, ch, err := s.Insert(ctx, "todos", in)
		if err != nil {
			t.Fatal(err)
		}
		id := row["id"].(int64)
		if ch.Op != store.OpCreate || ch.ID != id || ch.Seq < 1 || ch.Table != "todos" {
			t.Fatalf("change %+v", ch)
		}
		got, err := s.Get(ctx, "todos", id)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range in {
			if fmt.Sprint(got[k]) != fmt.Sprint(v) {
				t.Errorf("%s: got %v (%T), want %v (%T)", k, got[k], got[k], v, v)
			}
		}
		if !got["due"].(time.Time).Equal(due) {
			t.Errorf("due %v", got["due"])
		}
	})
	t.Run("values are stored verbatim", func(t *testing.T) {
		s := setup(t)
		evil := `Robert'); DROP TABLE todos;-- "quoted" \ % _`
		row, _, err := s.Insert(ctx, "todos", store.Row{"title": evil})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := s.Get(ctx, "todos", row["id"].(int64))
		if got["title"] != evil {
			t.Fatalf("stored %q", got["title"])
		}
		rows, n, err := s.List(ctx, "todos", store.Query{Search: `'); drop`, SearchColumns: []string{"title"}})
		if err != nil || n != 1 || len(rows) != 1 {
			t.Fatalf("search for metacharacters: %d %v", n, err)
		}
		if _, n, _ := s.List(ctx, "todos", store.Query{Search: "%", SearchColumns: []string{"title"}}); n != 1 {
			t.Fatalf("%% must match literally: %d", n)
		}
		if _, n, _ := s.List(ctx, "todos", store.Query{Search: "x%y", SearchColumns: []string{"title"}}); n != 0 {
			t.Fatalf("x%%y matched %d", n)
		}
	})
	t.Run("update delete not found", func(t *testing.T) {
		s := setup(t)
		row, _, _ := s.Insert(ctx, "todos", store.Row{"title": "a", "rank": int64(1)})
		id := row["id"].(int64)
		up, ch, err := s.Update(ctx, "todos", id, store.Row{"rank": int64(2), "body": nil})
		if err != nil || up["rank"] != int64(2) || up["title"] != "a" || ch.Op != store.OpUpdate {
			t.Fatalf("update: %v %v %+v", up, err, ch)
		}
		if _, _, err := s.Update(ctx, "todos", id+100, store.Row{"rank": int64(1)}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("update missing: %v", err)
		}
		ch, err = s.Delete(ctx, "todos", id)
		if err != nil || ch.Op != store.OpDelete || ch.Row != nil {
			t.Fatalf("delete: %+v %v", ch, err)
		}
		if _, err := s.Get(ctx, "todos", id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("get deleted: %v", err)
		}
		if _, err := s.Delete(ctx, "todos", id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("delete twice: %v", err)
		}
		if _, err := s.Get(ctx, "nope", 1); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown table: %v", err)
		}
	})
	t.Run("schema errors never reach SQL", func(t *testing.T) {
		s := setup(t)
		var se *store.SchemaError
		if _, _, err := s.Insert(ctx, "todos", store.Row{"titel": "x"}); !errors.As(err, &se) || se.Column != "titel" {
			t.Fatalf("unknown column: %v", err)
		}
		if _, _, err := s.Insert(ctx, "todos", store.Row{"rank": "three"}); !errors.As(err, &se) {
			t.Fatalf("wrong type: %v", err)
		}
		if _, _, err := s.Insert(ctx, "todos", store.Row{"meta": []byte("{nope")}); !errors.As(err, &se) {
			t.Fatalf("bad JSON: %v", err)
		}
		if _, _, err := s.List(ctx, "todos", store.Query{OrderBy: []store.Order{{Column: "title; DROP TABLE todos"}}}); !errors.As(err, &se) {
			t.Fatalf("order by an unknown column: %v", err)
		}
		if _, _, err := s.List(ctx, "todos", store.Query{Where: []store.Cond{{Column: "nope", Value: "x"}}}); !errors.As(err, &se) {
			t.Fatalf("filter on an unknown column: %v", err)
		}
		if _, _, err := s.List(ctx, "todos", store.Query{Search: "x", SearchColumns: []string{"rank"}}); !errors.As(err, &se) {
			t.Fatalf("search a non-text column: %v", err)
		}
	})
	t.Run("unique", func(t *testing.T) {
		s := setup(t)
		if _, _, err := s.Insert(ctx, "todos", store.Row{"slug": "a"}); err != nil {
			t.Fatal(err)
		}
		var ce *store.ConflictError
		if _, _, err := s.Insert(ctx, "todos", store.Row{"slug": "a"}); !errors.As(err, &ce) || ce.Column != "slug" {
			t.Fatalf("duplicate: %v", err)
		}
		// The failed insert left no change behind.
		chs, _ := s.Changes(ctx, 0, 100)
		if len(chs) != 1 {
			t.Fatalf("%d changes after a failed insert", len(chs))
		}
	})
	t.Run("list filter search order page", func(t *testing.T) {
		s := setup(t)
		for i, title := range []string{"apple pie", "Banana split", "cherry tart", "apple juice", "date"} {
			s.Insert(ctx, "todos", store.Row{"title": title, "rank": int64(i % 2), "done": i%2 == 0})
		}
		rows, n, err := s.List(ctx, "todos", store.Query{Where: []store.Cond{{Column: "done", Value: true}}, OrderBy: []store.Order{{Column: "title", Desc: true}}})
		if err != nil || n != 3 || rows[0]["title"] != "date" || rows[2]["title"] != "apple pie" {
			t.Fatalf("filter+order: %d %v %v", n, rows, err)
		}
		rows, n, _ = s.List(ctx, "todos", store.Query{Search: "APPLE", SearchColumns: []string{"title", "body"}})
		if n != 2 || len(rows) != 2 {
			t.Fatalf("search: %d", n)
		}
		rows, n, _ = s.List(ctx, "todos", store.Query{Limit: 2, Offset: 2})
		if n != 5 || len(rows) != 2 || rows[0]["title"] != "cherry tart" {
			t.Fatalf("page: %d %v", n, rows)
		}
		rows, _, _ = s.List(ctx, "todos", store.Query{Where: []store.Cond{{Column: "body", Value: nil}}})
		if len(rows) != 5 {
			t.Fatalf("IS NULL: %d", len(rows))
		}
	})
	t.Run("change log in commit order", func(t *testing.T) {
		s := setup(t)
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 25 {
					if _, _, err := s.Insert(ctx, "todos", store.Row{"title": fmt.Sprintf("%d-%d", w, i)}); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		chs, err := s.Changes(ctx, 0, 1000)
		if err != nil || len(chs) != 100 {
			t.Fatalf("%d changes, %v", len(chs), err)
		}
		for i, c := range chs {
			if i > 0 && c.Seq <= chs[i-1].Seq {
				t.Fatalf("seq not increasing at %d", i)
			}
			if c.Row["title"] == nil {
				t.Fatalf("change without its row: %+v", c)
			}
		}
		later, _ := s.Changes(ctx, chs[49].Seq, 1000)
		if len(later) != 50 || later[0].Seq != chs[50].Seq {
			t.Fatalf("changes after: %d", len(later))
		}
	})
	t.Run("each change names the row's previous one", func(t *testing.T) {
		s := setup(t)
		a, ca, err := s.Insert(ctx, "todos", store.Row{"title": "a"})
		if err != nil || ca.Prev != 0 {
			t.Fatalf("a create: prev %d, %v", ca.Prev, err)
		}
		_, cb, _ := s.Insert(ctx, "todos", store.Row{"title": "b"})
		id := a["id"].(int64)
		_, c1, err := s.Update(ctx, "todos", id, store.Row{"title": "a1"})
		if err != nil || c1.Prev != ca.Seq {
			t.Fatalf("first update: prev %d, want %d (%v)", c1.Prev, ca.Seq, err)
		}
		s.Update(ctx, "todos", cb.ID, store.Row{"title": "b1"}) // another row's change in between
		_, c2, _ := s.Update(ctx, "todos", id, store.Row{"title": "a2"})
		if c2.Prev != c1.Seq {
			t.Fatalf("second update: prev %d, want %d", c2.Prev, c1.Seq)
		}
		cd, err := s.Delete(ctx, "todos", id)
		if err != nil || cd.Prev != c2.Seq {
			t.Fatalf("delete: prev %d, want %d (%v)", cd.Prev, c2.Seq, err)
		}
		if pos, err := s.Position(ctx); err != nil || pos != cd.Seq {
			t.Fatalf("position %d, want the last change's %d (%v)", pos, cd.Seq, err)
		}
		if err := s.TrimChanges(ctx, cd.Seq); err != nil {
			t.Fatal(err)
		}
		if pos, _ := s.Position(ctx); pos != cd.Seq {
			t.Fatalf("position %d after trimming everything, want %d", pos, cd.Seq)
		}
		// Racing writers of one row: every change names the one just
		// before it, so the changes form one chain in commit order.
		r, _, _ := s.Insert(ctx, "todos", store.Row{"title": "raced"})
		rid := r["id"].(int64)
		var mu sync.Mutex
		prevOf := map[int64]int64{}
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 10 {
					_, c, err := s.Update(ctx, "todos", rid, store.Row{"title": fmt.Sprintf("%d-%d", w, i)})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					prevOf[c.Seq] = c.Prev
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		rl, err := s.RowChanges(ctx, "todos", rid, 0, 0)
		if err != nil || len(rl.Changes) != 41 {
			t.Fatalf("%d changes of the raced row, %v", len(rl.Changes), err)
		}
		for i, c := range rl.Changes[1:] {
			if prevOf[c.Seq] != rl.Changes[i].Seq {
				t.Fatalf("change %d names %d as its previous, the log has %d", c.Seq, prevOf[c.Seq], rl.Changes[i].Seq)
			}
		}
	})
	t.Run("row changes and trimming", func(t *testing.T) {
		s := setup(t)
		a, c1, _ := s.Insert(ctx, "todos", store.Row{"title": "a", "rank": int64(1)})
		id := a["id"].(int64)
		_, c2, _ := s.Update(ctx, "todos", id, store.Row{"rank": int64(2)})
		_, c3, _ := s.Update(ctx, "todos", id, store.Row{"rank": int64(3)})
		b, c4, _ := s.Insert(ctx, "todos", store.Row{"title": "b"})
		c5, err := s.Delete(ctx, "todos", id)
		if err != nil {
			t.Fatal(err)
		}
		rl, err := s.RowChanges(ctx, "todos", id, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(rl.Changes) != 4 || rl.Row != nil || rl.Last != c5.Seq || rl.Trimmed != 0 {
			t.Fatalf("deleted row: %+v", rl)
		}
		for i, want := range []store.Change{c1, c2, c3, c5} {
			got := rl.Changes[i]
			if got.Seq != want.Seq || got.Op != want.Op || got.ID != id || got.Table != "todos" || fmt.Sprint(got.Row["rank"]) != fmt.Sprint(want.Row["rank"]) {
				t.Fatalf("change %d: %+v, want %+v", i, got, want)
			}
		}
		if rl.LastRow["rank"] != int64(3) || rl.LastRow["title"] != "a" {
			t.Fatalf("the deleted row's last state: %v", rl.LastRow)
		}
		if rl, _ = s.RowChanges(ctx, "todos", id, c2.Seq, 1); len(rl.Changes) != 1 || rl.Changes[0].Seq != c3.Seq {
			t.Fatalf("after c2, limit 1: %+v", rl.Changes)
		}
		rl, _ = s.RowChanges(ctx, "todos", b["id"].(int64), c4.Seq, 0)
		if len(rl.Changes) != 0 || rl.Row["title"] != "b" || rl.LastRow != nil || rl.Last != c5.Seq {
			t.Fatalf("existing row, nothing after: %+v", rl)
		}
		if rl, err = s.RowChanges(ctx, "todos", 999, 0, 0); err != nil || rl.Row != nil || len(rl.Changes) != 0 || rl.LastRow != nil {
			t.Fatalf("a row never written: %+v %v", rl, err)
		}
		if _, err := s.RowChanges(ctx, "nope", 1, 0, 0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown table: %v", err)
		}
		// Trimming drops the oldest changes and says how far.
		if err := s.TrimChanges(ctx, c2.Seq); err != nil {
			t.Fatal(err)
		}
		rl, _ = s.RowChanges(ctx, "todos", id, 0, 0)
		if rl.Trimmed != c2.Seq || rl.Last != c5.Seq || len(rl.Changes) != 2 || rl.Changes[0].Seq != c3.Seq {
			t.Fatalf("trimmed to c2: %+v", rl)
		}
		if chs, _ := s.Changes(ctx, 0, 100); len(chs) != 3 || chs[0].Seq != c3.Seq {
			t.Fatalf("the log after trimming: %+v", chs)
		}
		if err := s.TrimChanges(ctx, c5.Seq+10); err != nil {
			t.Fatal(err)
		}
		rl, _ = s.RowChanges(ctx, "todos", id, 0, 0)
		if rl.Trimmed != c5.Seq || rl.Last != c5.Seq || len(rl.Changes) != 0 {
			t.Fatalf("trimmed of everything: %+v", rl)
		}
		// The next change continues the sequence.
		_, c6, _ := s.Insert(ctx, "todos", store.Row{"title": "c"})
		if rl, _ = s.RowChanges(ctx, "todos", c6.ID, 0, 0); c6.Seq <= c5.Seq || rl.Last != c6.Seq || rl.Trimmed != c5.Seq || len(rl.Changes) != 1 {
			t.Fatalf("after trimming everything, a new change: %+v (%+v)", rl, c6)
		}
	})
	t.Run("migrations", func(t *testing.T) {
		s := setup(t)
		s.Insert(ctx, "todos", store.Row{"title": "kept"})
		// Additive: a new column and a new table.
		more := Todos
		more.Columns = append(append([]store.Column(nil), Todos.Columns...), store.Column{Name: "owner", Type: store.String})
		if err := s.Migrate(ctx, []store.Table{more, {Name: "notes", Columns: []store.Column{{Name: "text", Type: store.Text}}}}); err != nil {
			t.Fatal(err)
		}
		rows, _, _ := s.List(ctx, "todos", store.Query{})
		if len(rows) != 1 || rows[0]["title"] != "kept" || rows[0]["owner"] != nil {
			t.Fatalf("after adding a column: %v", rows)
		}
		// Destructive: a removed column, a changed type.
		var me *store.MigrationError
		if err := s.Migrate(ctx, []store.Table{Todos}); !errors.As(err, &me) || me.Column != "owner" || me.Fix == "" {
			t.Fatalf("removing a column: %v", err)
		}
		changed := more
		changed.Columns = append([]store.Column(nil), more.Columns...)
		changed.Columns[3] = store.Column{Name: "rank", Type: store.String}
		if err := s.Migrate(ctx, []store.Table{changed}); !errors.As(err, &me) || me.Column != "rank" {
			t.Fatalf("changing a type: %v", err)
		}
		// Refused migrations changed nothing.
		if err := s.Migrate(ctx, []store.Table{more}); err != nil {
			t.Fatalf("the same schema again: %v", err)
		}
	})
}
