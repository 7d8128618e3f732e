package resource

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/internal/testenv"
	"github.com/switchyardhq/switchyard/store"
	"github.com/switchyardhq/switchyard/store/postgres"
	"github.com/switchyardhq/switchyard/store/sqlite"
)

// delayed is a real store whose inserts of a row named "late" return a
// while after they committed, as a write whose answer is slow to come
// back, and whose inserts of a row named "slow" start a while after they
// were called, as a write whose statement is slow to reach the database.
type delayed struct {
	store.Store
	committed chan struct{} // closed when the late insert committed
	started   chan struct{} // closed when the slow insert was called
}

func (d *delayed) Insert(ctx context.Context, table string, row store.Row) (store.Row, store.Change, error) {
	if row["name"] == "slow" {
		close(d.started)
		time.Sleep(300 * time.Millisecond)
	}
	r, ch, err := d.Store.Insert(ctx, table, row)
	if row["name"] == "late" {
		close(d.committed)
		time.Sleep(300 * time.Millisecond)
	}
	return r, ch, err
}

func delayedService(t *testing.T) (*Service, *delayed, *events) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "l.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := &delayed{Store: db, committed: make(chan struct{}), started: make(chan struct{})}
	ev := &events{}
	svc, err := NewService(context.Background(), ServiceConfig{Store: st, OnChange: ev.add,
		Resources: []config.Resource{{Name: "things", PKField: "pk", Fields: []config.Field{{Name: "name", Type: config.FieldString}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc, st, ev
}

func names(ev *events) []string {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var out []string
	for _, e := range ev.got {
		out = append(out, e.Row["name"].(string))
	}
	return out
}

// A write that committed first but returns last still has its event
// emitted first: events follow the change log's order, not the order the
// writes returned in.
func TestEventsFollowCommitOrderNotReturnOrder(t *testing.T) {
	svc, st, ev := delayedService(t)
	late := make(chan error, 1)
	go func() {
		_, err := svc.Create(context.Background(), "things", As(""), json.RawMessage(`{"name": "late"}`))
		late <- err
	}()
	<-st.committed
	if _, err := svc.Create(context.Background(), "things", As(""), json.RawMessage(`{"name": "early"}`)); err != nil {
		t.Fatal(err)
	}
	if err := <-late; err != nil {
		t.Fatal(err)
	}
	if got := names(ev); !slices.Equal(got, []string{"late", "early"}) {
		t.Fatalf("events %q, want late then early", got)
	}
}

// A write that started first but committed last has its event emitted
// last: the resource's writes run concurrently (none waits for another
// to commit), and their events follow the change log's order, not the
// order the writes started in.
func TestEventsFollowCommitOrderNotStartOrder(t *testing.T) {
	svc, st, ev := delayedService(t)
	slow := make(chan error, 1)
	go func() {
		_, err := svc.Create(context.Background(), "things", As(""), json.RawMessage(`{"name": "slow"}`))
		slow <- err
	}()
	<-st.started
	begin := time.Now()
	fast := make(chan error, 1)
	go func() {
		_, err := svc.Create(context.Background(), "things", As(""), json.RawMessage(`{"name": "fast"}`))
		fast <- err
	}()
	for _, c := range []chan error{slow, fast} {
		if err := <-c; err != nil {
			t.Fatal(err)
		}
	}
	if got := names(ev); !slices.Equal(got, []string{"fast", "slow"}) {
		t.Fatalf("events %q, want fast then slow", got)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if ev.got[0].Seq >= ev.got[1].Seq {
		t.Fatalf("seqs %d, %d", ev.got[0].Seq, ev.got[1].Seq)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Fatalf("took %s", d)
	}
}

// A failed write (no change) does not hold up the events of the writes
// that started while it ran.
func TestFailedWriteReleasesTheOrder(t *testing.T) {
	svc, ev := service(t, config.ResourcePermissions{})
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 30 {
				if i%3 == 0 {
					// an update of a record that does not exist: fails
					if _, err := svc.Write(ctx, "things", As(""), 1_000_000+int64(w), json.RawMessage(`{"name": "x"}`), Update); err == nil {
						t.Error("update of a missing record succeeded")
					}
					continue
				}
				if _, err := svc.Create(ctx, "things", As(""), json.RawMessage(fmt.Sprintf(`{"name": "w%d-%d"}`, w, i))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("writers stuck")
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.got) != 80 {
		t.Fatalf("%d events, want 80", len(ev.got))
	}
	inSeqOrder(t, ev.got, false)
}

// On PostgreSQL, racing writers of one resource (concurrent in this
// process) get every event exactly once, in the change log's order, with
// no gap in the sequence numbers.
func TestEventsInCommitOrderOnPostgres(t *testing.T) {
	db, err := postgres.Open(context.Background(), postgres.Config{URL: testenv.PostgresSchema(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ev := &events{}
	svc, err := NewService(context.Background(), ServiceConfig{Store: db, OnChange: ev.add,
		Resources: []config.Resource{{Name: "things", PKField: "pk", Fields: []config.Field{{Name: "name", Type: config.FieldString}, {Name: "counter", Type: config.FieldInt}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	out, err := svc.Create(ctx, "things", As(""), json.RawMessage(`{"name": "raced"}`))
	if err != nil {
		t.Fatal(err)
	}
	pk := int64(decode(t, out)["pk"].(float64))
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 60 {
				var err error
				if i%2 == 0 {
					_, err = svc.Write(ctx, "things", As(""), pk, json.RawMessage(fmt.Sprintf(`{"counter": %d}`, i)), Patch)
				} else {
					_, err = svc.Create(ctx, "things", As(""), json.RawMessage(fmt.Sprintf(`{"name": "w%d-%d"}`, w, i)))
				}
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.got) != 481 {
		t.Fatalf("%d events, want 481", len(ev.got))
	}
	inSeqOrder(t, ev.got, true)
}
