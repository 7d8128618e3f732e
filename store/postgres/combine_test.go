package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/internal/testenv"
	"github.com/switchyardhq/switchyard/store"
	"github.com/switchyardhq/switchyard/store/storetest"
)

// insertResult is one insert's answer.
type insertResult struct {
	in  store.Row
	row store.Row
	ch  store.Change
	err error
}

// combined inserts rows into table as one combined statement: it holds
// the table's group busy until every insert has queued, then hands the
// queue over, as a finishing statement would. The results come in the
// order the inserts queued (the statement's VALUES order).
func combined(t *testing.T, db *DB, table string, rows []store.Row) []insertResult {
	t.Helper()
	var cols []string
	for k := range rows[0] {
		cols = append(cols, k)
	}
	slices.Sort(cols)
	key := table + "\x00" + strings.Join(cols, "\x00")
	db.gmu.Lock()
	db.groups[key] = &insertGroup{busy: true}
	db.gmu.Unlock()

	results := make(chan insertResult, len(rows))
	for _, r := range rows {
		go func() {
			row, ch, err := db.Insert(context.Background(), table, r)
			results <- insertResult{in: r, row: row, ch: ch, err: err}
		}()
	}
	var order []string // the queue's order, by the rows' "title"
	deadline := time.Now().Add(10 * time.Second)
	for {
		db.gmu.Lock()
		q := db.groups[key].queue
		if len(q) == len(rows) {
			for _, p := range q {
				order = append(order, fmt.Sprint(p.args[slices.Index(cols, "title")]))
			}
			db.gmu.Unlock()
			break
		}
		db.gmu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d inserts queued", len(q), len(rows))
		}
		time.Sleep(time.Millisecond)
	}
	db.handOff(key, db.batchLimit(cols))
	byTitle := map[string]insertResult{}
	for range rows {
		r := <-results
		byTitle[r.in["title"].(string)] = r
	}
	out := make([]insertResult, len(rows))
	for i, title := range order {
		out[i] = byTitle[title]
	}
	return out
}

func migrateTodos(t *testing.T, db *DB) {
	t.Helper()
	if err := db.Migrate(context.Background(), []store.Table{storetest.Todos}); err != nil {
		t.Fatal(err)
	}
}

// Queued inserts run as one statement: each caller gets its own row and
// change, with consecutive sequence numbers in the statement's order, and
// the change log holds them as if they had run one by one.
func TestInsertsCombineInOneStatement(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, testSchema(t))
	migrateTodos(t, db)
	_, first, err := db.Insert(ctx, "todos", store.Row{"title": "before", "rank": int64(0)})
	if err != nil {
		t.Fatal(err)
	}
	var rows []store.Row
	for i := range 6 {
		rows = append(rows, store.Row{"title": fmt.Sprintf("row %d", i), "rank": int64(i * 10)})
	}
	res := combined(t, db, "todos", rows)
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("insert %q: %v", r.in["title"], r.err)
		}
		if want := first.Seq + 1 + int64(i); r.ch.Seq != want {
			t.Errorf("insert %d (%q) has seq %d, want %d", i, r.in["title"], r.ch.Seq, want)
		}
		if r.row["title"] != r.in["title"] || r.row["rank"] != r.in["rank"] || r.ch.Row["title"] != r.in["title"] {
			t.Errorf("insert %q got row %v, change row %v", r.in["title"], r.row, r.ch.Row)
		}
		if r.ch.ID != r.row["id"] || r.ch.Op != store.OpCreate || r.ch.Table != "todos" || r.ch.Time.IsZero() {
			t.Errorf("insert %q: change %+v", r.in["title"], r.ch)
		}
		got, err := db.Get(ctx, "todos", r.ch.ID)
		if err != nil || got["title"] != r.in["title"] {
			t.Errorf("Get(%d) = %v, %v; want %q", r.ch.ID, got, err, r.in["title"])
		}
	}
	chs, err := db.Changes(ctx, first.Seq, 0)
	if err != nil || len(chs) != len(rows) {
		t.Fatalf("changes after %d: %d %v, want %d", first.Seq, len(chs), err, len(rows))
	}
	for i, ch := range chs {
		if ch.Seq != res[i].ch.Seq || ch.ID != res[i].ch.ID || ch.Row["title"] != res[i].in["title"] {
			t.Errorf("logged change %d = %+v, want %+v", i, ch, res[i].ch)
		}
	}
	// The counter moved by the batch's size: the next write follows it.
	_, next, err := db.Insert(ctx, "todos", store.Row{"title": "after"})
	if err != nil || next.Seq != first.Seq+int64(len(rows))+1 {
		t.Fatalf("the insert after the batch: seq %d %v, want %d", next.Seq, err, first.Seq+int64(len(rows))+1)
	}
}

// A combined statement that one row breaks changes nothing; every insert
// then runs alone, so only the faulty one fails and the log has no gap.
func TestCombinedInsertWithAConflictRunsEachAlone(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, testSchema(t))
	migrateTodos(t, db)
	_, first, err := db.Insert(ctx, "todos", store.Row{"title": "taken", "slug": "dup"})
	if err != nil {
		t.Fatal(err)
	}
	res := combined(t, db, "todos", []store.Row{
		{"title": "a", "slug": "a"}, {"title": "clash", "slug": "dup"}, {"title": "b", "slug": "b"}, {"title": "c", "slug": "c"},
	})
	var ok []int64
	for _, r := range res {
		var ce *store.ConflictError
		switch {
		case r.in["title"] == "clash":
			if !errors.As(r.err, &ce) || ce.Column != "slug" {
				t.Errorf("the clashing insert: %v, want a conflict on slug", r.err)
			}
		case r.err != nil:
			t.Errorf("insert %q: %v", r.in["title"], r.err)
		default:
			ok = append(ok, r.ch.Seq)
		}
	}
	slices.Sort(ok)
	if !slices.Equal(ok, []int64{first.Seq + 1, first.Seq + 2, first.Seq + 3}) {
		t.Errorf("seqs %v, want the three after %d", ok, first.Seq)
	}
	list, n, err := db.List(ctx, "todos", store.Query{})
	if err != nil || n != 4 || len(list) != 4 {
		t.Fatalf("rows after: %d %v", n, err)
	}
}

// An insert whose caller gives up while it waits in the queue is not
// run.
func TestQueuedInsertCancelled(t *testing.T) {
	db := openTest(t, testSchema(t))
	migrateTodos(t, db)
	key := "todos\x00title"
	db.gmu.Lock()
	db.groups[key] = &insertGroup{busy: true}
	db.gmu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := db.Insert(ctx, "todos", store.Row{"title": "given up"})
		done <- err
	}()
	for {
		db.gmu.Lock()
		n := len(db.groups[key].queue)
		db.gmu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled insert returned %v", err)
	}
	db.handOff(key, 64)
	db.gmu.Lock()
	_, left := db.groups[key]
	db.gmu.Unlock()
	if left {
		t.Error("the group stays after its queue emptied")
	}
	if _, n, err := db.List(context.Background(), "todos", store.Query{}); err != nil || n != 0 {
		t.Fatalf("rows: %d %v, want none", n, err)
	}
}

// Racing inserts, combined as they overlap: every caller gets its own
// row, every change is reported to the caller's commit hook once, and the
// log's sequence numbers are consecutive.
func TestRacingInsertsCombine(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, testSchema(t))
	migrateTodos(t, db)
	const writers, each = 8, 60
	var (
		mu        sync.Mutex
		committed = map[int64]int{}
		seqs      []int64
		wg        sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				title := fmt.Sprintf("w%d-%d", w, i)
				var hooked store.Change
				cctx := store.WithCommitted(ctx, func(ch store.Change, _ bool) {
					hooked = ch
					mu.Lock()
					committed[ch.Seq]++
					mu.Unlock()
				})
				row, ch, err := db.Insert(cctx, "todos", store.Row{"title": title, "rank": int64(i)})
				if err != nil || row["title"] != title || ch.Row["title"] != title || hooked.Seq != ch.Seq {
					t.Errorf("insert %s: row %v change %+v hook %d err %v", title, row, ch, hooked.Seq, err)
					return
				}
				mu.Lock()
				seqs = append(seqs, ch.Seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(seqs)
	for i, s := range seqs {
		if s != seqs[0]+int64(i) || committed[s] != 1 {
			t.Fatalf("seq %d at %d (first %d), reported %d times", s, i, seqs[0], committed[s])
		}
	}
	if len(seqs) != writers*each {
		t.Fatalf("%d inserts returned, want %d", len(seqs), writers*each)
	}
	t.Logf("%d inserts in %d combined statements and %d alone", len(seqs), db.batches.Load(), int64(len(seqs))-db.batchRows.Load())
	if db.batches.Load() == 0 {
		t.Error("no two racing inserts were combined")
	}
}

// With combining off, an insert never waits for another's statement (the
// setting is honoured), and a negative setting is refused.
func TestInsertBatchSetting(t *testing.T) {
	testenv.Postgres(t)
	if _, err := Open(context.Background(), Config{URL: testSchema(t), InsertBatch: -1}); err == nil {
		t.Fatal("InsertBatch -1 was accepted")
	}
	db, err := Open(context.Background(), Config{URL: testSchema(t), InsertBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	migrateTodos(t, db)
	db.gmu.Lock()
	db.groups["todos\x00title"] = &insertGroup{busy: true}
	db.gmu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := db.Insert(ctx, "todos", store.Row{"title": "alone"}); err != nil {
		t.Fatalf("with combining off the insert waited for a statement: %v", err)
	}
}

// Switchyard's combined inserts into a captured table are recorded once,
// by Switchyard: the capture trigger sees them as its own.
func TestCombinedInsertsNotCaptured(t *testing.T) {
	ctx := context.Background()
	u, conn := externalTable(t)
	db := openTest(t, u)
	attachTodos(t, db, true)
	f := follow(t, db, FollowOptions{})
	time.Sleep(300 * time.Millisecond) // the follower is listening
	res := combined(t, db, "todos", []store.Row{
		{"title": "own 1", "owner_id": int64(1)}, {"title": "own 2", "owner_id": int64(1)}, {"title": "own 3", "owner_id": int64(1)},
	})
	for _, r := range res {
		if r.err != nil || r.ch.Captured {
			t.Fatalf("insert %q: %+v %v", r.in["title"], r.ch, r.err)
		}
	}
	if db.batches.Load() == 0 {
		t.Fatal("the inserts did not run as one statement")
	}
	// A fence: an external write after them, which the follower reports.
	if _, err := conn.Exec(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ('external', 2)"); err != nil {
		t.Fatal(err)
	}
	got := f.wait(t, 1)
	if len(got) != 1 || got[0].Row["title"] != "external" {
		t.Fatalf("the follower got %+v, want only the external insert", got)
	}
}
