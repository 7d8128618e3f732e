package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/internal/testenv"
)

// Two Queues on one PostgreSQL schema are one queue: a job enqueued
// through one that does not work (not started) runs on the other, and
// both see every job in Stats and Jobs.
func TestPostgresJobRunsOnAnotherProcess(t *testing.T) {
	url := testenv.PostgresSchema(t)
	a := testDB{driver: DriverPostgres, pool: testPool(t, url)}
	b := testDB{driver: DriverPostgres, pool: testPool(t, url)}
	qa, err := Open(context.Background(), a.config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qa.Close() })
	if err := qa.Handle("hello", func(context.Context, Job) error { return errors.New("a does not work") }); err != nil {
		t.Fatal(err)
	}
	ran := make(chan Job, 1)
	qb := b.open(t, nil, func(q *Queue) {
		q.Handle("hello", func(_ context.Context, j Job) error { ran <- j; return nil })
	})
	id, err := qa.Enqueue(context.Background(), Params{Queue: "default", Kind: "hello", Payload: json.RawMessage(`{"from": "a", "n": [1, 2]}`)})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case j := <-ran:
		if j.ID != id || string(j.Payload) != `{"n":[1,2],"from":"a"}` && string(j.Payload) != `{"from":"a","n":[1,2]}` {
			t.Fatalf("job %+v", j)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the job enqueued on a did not run on b")
	}
	waitState(t, qb, id, StateCompleted)
	for name, q := range map[string]*Queue{"a": qa, "b": qb} {
		stats, err := q.Stats(context.Background())
		if err != nil || stats[0].Jobs[StateCompleted] != 1 {
			t.Fatalf("%s: stats %+v %v", name, stats, err)
		}
		jobs, err := q.Jobs(context.Background(), ListParams{State: StateCompleted})
		if err != nil || len(jobs) != 1 || jobs[0].ID != id {
			t.Fatalf("%s: jobs %+v %v", name, jobs, err)
		}
	}
}

// EnqueueTx: a job inserted in a transaction that rolls back never
// exists; one in a transaction that commits runs once; a transaction
// still open hides its job from the workers.
func TestPostgresEnqueueTx(t *testing.T) {
	db := newBackend(t, DriverPostgres)
	runs := make(chan int64, 10)
	q := db.open(t, nil, func(q *Queue) {
		q.Handle("tx", func(_ context.Context, j Job) error { runs <- j.ID; return nil })
	})
	ctx := context.Background()

	tx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := q.EnqueueTx(ctx, tx, Params{Queue: "default", Kind: "tx"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Get(ctx, gone); !errors.Is(err, ErrNotFound) {
		t.Fatalf("job of a rolled-back transaction: %v", err)
	}

	tx, err = db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, err := q.EnqueueTx(ctx, tx, Params{Queue: "default", Kind: "tx"})
	if err != nil {
		t.Fatal(err)
	}
	// Not committed: invisible outside the transaction, so not run.
	if _, err := q.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("uncommitted job visible: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-runs:
		if got != id {
			t.Fatalf("ran job %d, want %d", got, id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the committed job did not run")
	}
	waitState(t, q, id, StateCompleted)
	select {
	case got := <-runs:
		t.Fatalf("another job ran: %d", got)
	default:
	}
	all, err := q.Jobs(ctx, ListParams{})
	if err != nil || len(all) != 1 {
		t.Fatalf("jobs: %+v %v, want the committed one only", all, err)
	}

	// Bad input: not a transaction, an unknown kind.
	if _, err := q.EnqueueTx(ctx, "tx", Params{Queue: "default", Kind: "tx"}); !errors.Is(err, ErrNoTx) {
		t.Errorf("a string as tx: %v", err)
	}
	if _, err := q.EnqueueTx(ctx, nil, Params{Queue: "default", Kind: "tx"}); !errors.Is(err, ErrNoTx) {
		t.Errorf("nil tx: %v", err)
	}
	tx, _ = db.pool.Begin(ctx)
	defer tx.Rollback(ctx)
	if _, err := q.EnqueueTx(ctx, tx, Params{Queue: "default", Kind: "nope"}); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("unknown kind: %v", err)
	}
}

// On SQLite, jobs live in a file of their own: no transaction of another
// database can hold them.
func TestSQLiteEnqueueTxRefused(t *testing.T) {
	q := newBackend(t, DriverSQLite).open(t, nil, func(q *Queue) {
		q.Handle("tx", func(context.Context, Job) error { return nil })
	})
	pgTx := fmt.Sprintf("%T", q) // anything: the driver refuses before looking
	if _, err := q.EnqueueTx(context.Background(), pgTx, Params{Queue: "default", Kind: "tx"}); !errors.Is(err, ErrNoTx) {
		t.Fatalf("EnqueueTx on sqlite: %v", err)
	}
}

// A job whose process died while running it (its session, and so its
// liveness lock, gone) runs again on a live process within the rescue
// interval, not after River's stuck-job horizon.
func TestPostgresRescuesJobsOfDeadProcess(t *testing.T) {
	db := newBackend(t, DriverPostgres)
	ctx := context.Background()
	started := make(chan struct{}, 1)
	// Concurrency 1: the blocked job holds the dying queue's only slot,
	// so it never fetches again (a dead process does not either).
	one := fastQueue("default")
	one.Concurrency = 1
	dying, err := Open(ctx, db.config(one))
	if err != nil {
		t.Fatal(err)
	}
	dying.Handle("k", func(ctx context.Context, j Job) error {
		started <- struct{}{}
		<-ctx.Done() // never finishes on its own
		return ctx.Err()
	})
	if err := dying.Start(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := dying.Enqueue(ctx, Params{Queue: "default", Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	// The process "dies": its liveness session ends while the job is
	// still marked running (River is left alone, as a killed process's
	// would be; its client is stopped at the end of the test).
	pb := dying.b.(*pgBackend)
	pb.stopLoops()
	pb.releaseLock()
	ran := make(chan int, 1)
	survivor := db.open(t, nil, func(q *Queue) {
		q.Handle("k", func(_ context.Context, j Job) error { ran <- j.Attempt; return nil })
	})
	select {
	case attempt := <-ran:
		if attempt != 2 {
			t.Errorf("attempt %d, want 2", attempt)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the job of the dead process was not run again")
	}
	in := waitState(t, survivor, id, StateCompleted)
	if len(in.Errors) != 1 || in.Errors[0].Attempt != 1 {
		t.Errorf("errors %+v: want the rescue recorded for attempt 1", in.Errors)
	}
	sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	dying.Stop(sctx) // cancels the blocked handler
}
