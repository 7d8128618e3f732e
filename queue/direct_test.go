package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
)

// isOpen makes the direct-start state of a queue readable by tests.
func (d *direct) isOpen() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.open
}

// A job enqueued on SQLite while its queue has a free slot is started by
// the enqueuing process, already claimed (attempt 1, attempted by this
// client); a failed attempt is retried with backoff by River and the job
// ends dead after MaxAttempts, with every attempt's error, and does not
// run again.
func TestDirectStartRetriedWithBackoffThenDead(t *testing.T) {
	b := newBackend(t, DriverSQLite)
	qc := fastQueue("default")
	qc.Backoff = config.Duration(100 * time.Millisecond)
	qc.MaxBackoff = config.Duration(time.Second)
	qc.MaxAttempts = 3
	var mu sync.Mutex
	var starts []time.Time
	var attempts []int
	q := b.open(t, nil, func(q *Queue) {
		q.Handle("fail", func(_ context.Context, j Job) error {
			mu.Lock()
			starts = append(starts, time.Now())
			attempts = append(attempts, j.Attempt)
			mu.Unlock()
			return fmt.Errorf("attempt %d: webhook down", j.Attempt)
		})
	}, qc)
	id, err := q.Enqueue(context.Background(), Params{Queue: "default", Kind: "fail"})
	if err != nil {
		t.Fatal(err)
	}
	dead := waitState(t, q, id, StateDiscarded)
	if n := q.d.started.Load(); n != 1 {
		t.Errorf("%d jobs started directly, want the first attempt only", n)
	}
	time.Sleep(300 * time.Millisecond) // a fourth run would come within this
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(attempts) != "[1 2 3]" {
		t.Fatalf("attempts %v, want [1 2 3] and no more", attempts)
	}
	// Backoff·2^(n-1) with jitter down to half of it.
	for i, min := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond} {
		if gap := starts[i+1].Sub(starts[i]); gap < min {
			t.Errorf("attempt %d started %s after attempt %d, want at least %s", i+2, gap, i+1, min)
		}
	}
	if dead.Attempt != 3 || len(dead.Errors) != 3 {
		t.Fatalf("dead job %+v", dead)
	}
	for i, e := range dead.Errors {
		if e.Attempt != i+1 || !strings.Contains(e.Error, fmt.Sprintf("attempt %d: webhook down", i+1)) {
			t.Errorf("error %d: %+v", i, e)
		}
	}
}

// A queue never runs more than Concurrency handlers, counting the jobs
// started directly and those River fetched; only the jobs that found a
// free slot start directly; every job runs once.
func TestDirectStartRespectsConcurrency(t *testing.T) {
	b := newBackend(t, DriverSQLite)
	qc := fastQueue("two")
	qc.Concurrency = 2
	var cur, peak atomic.Int32
	runs := map[int64]int{}
	var mu sync.Mutex
	release := make(chan struct{})
	q := b.open(t, nil, func(q *Queue) {
		q.Handle("k", func(_ context.Context, j Job) error {
			n := cur.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			mu.Lock()
			runs[j.ID]++
			mu.Unlock()
			<-release
			cur.Add(-1)
			return nil
		})
	}, qc)
	var ids []int64
	for range 6 {
		id, err := q.Enqueue(context.Background(), Params{Queue: "two", Kind: "k"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	eventually(t, 60*time.Second, func() error {
		if cur.Load() != 2 {
			return fmt.Errorf("%d running", cur.Load())
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond) // River's fetch of the others, if it were allowed to run them
	if n := q.d.started.Load(); n != 2 {
		t.Errorf("%d jobs started directly with 2 slots", n)
	}
	close(release)
	for _, id := range ids {
		waitState(t, q, id, StateCompleted)
	}
	if peak.Load() != 2 {
		t.Errorf("peak concurrency %d with concurrency 2", peak.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if runs[id] != 1 {
			t.Errorf("job %d ran %d times", id, runs[id])
		}
	}
}

// Stop waits for a directly started job to finish and records its end
// before closing; a job enqueued while Stop drains does not start on this
// process (it is committed, and runs after the restart); the finished job
// does not run again.
func TestDirectStartDrain(t *testing.T) {
	b := newBackend(t, DriverSQLite)
	started := make(chan int64, 2)
	var finished atomic.Bool
	q, err := Open(context.Background(), b.config())
	if err != nil {
		t.Fatal(err)
	}
	q.Handle("k", func(_ context.Context, j Job) error {
		started <- j.ID
		time.Sleep(300 * time.Millisecond) // the work itself
		finished.Store(true)
		return nil
	})
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	id, err := q.Enqueue(context.Background(), Params{Queue: "default", Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if q.d.started.Load() != 1 {
		t.Fatal("the job was not started directly")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- q.Stop(ctx) }()
	eventually(t, 5*time.Second, func() error {
		if q.d.isOpen() {
			return errors.New("Stop has not begun")
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond) // River's producers stop fetching too
	late, err := q.Enqueue(context.Background(), Params{Queue: "default", Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if !finished.Load() {
		t.Fatal("Stop returned before the directly started job finished")
	}
	if ctx.Err() != nil {
		t.Fatal("Stop waited for its deadline")
	}
	select {
	case got := <-started:
		t.Fatalf("job %d started while Stop drained", got)
	default:
	}

	ran := make(chan int64, 2)
	q2 := b.open(t, nil, func(q *Queue) {
		q.Handle("k", func(_ context.Context, j Job) error { ran <- j.ID; return nil })
	})
	if in, err := q2.Get(context.Background(), id); err != nil || in.State != StateCompleted || in.Attempt != 1 {
		t.Fatalf("the drained job after reopening: %+v %v", in, err)
	}
	select {
	case got := <-ran:
		if got != late {
			t.Fatalf("job %d ran after the restart, want %d (enqueued during the drain)", got, late)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the job enqueued during the drain did not run after the restart")
	}
	waitState(t, q2, late, StateCompleted)
	select {
	case got := <-ran:
		t.Fatalf("job %d ran again", got)
	case <-time.After(200 * time.Millisecond):
	}
}

// A directly started job still running at Stop's deadline is cancelled
// and put back (without counting the attempt): after the restart it runs
// again, and completes.
func TestDirectStartInterruptedAtDeadlineRunsAfterRestart(t *testing.T) {
	b := newBackend(t, DriverSQLite)
	started := make(chan struct{}, 1)
	q, err := Open(context.Background(), b.config())
	if err != nil {
		t.Fatal(err)
	}
	q.Handle("k", func(ctx context.Context, j Job) error {
		started <- struct{}{}
		<-ctx.Done() // longer than the shutdown allows
		return ctx.Err()
	})
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	id, err := q.Enqueue(context.Background(), Params{Queue: "default", Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if q.d.started.Load() != 1 {
		t.Fatal("the job was not started directly")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	q.Stop(ctx)
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Stop took %s with a 200ms deadline", d)
	}

	ran := make(chan Job, 2)
	q2 := b.open(t, nil, func(q *Queue) {
		q.Handle("k", func(_ context.Context, j Job) error { ran <- j; return nil })
	})
	select {
	case j := <-ran:
		if j.ID != id || j.Attempt != 1 {
			t.Errorf("after the restart: job %d attempt %d, want job %d attempt 1", j.ID, j.Attempt, id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the interrupted job did not run after the restart")
	}
	in := waitState(t, q2, id, StateCompleted)
	if len(in.Errors) != 0 {
		t.Errorf("an interrupted attempt recorded as an error: %+v", in.Errors)
	}
}

// A job River fetched while the queue's only slot was taken by a
// directly started job waits for the slot; if Stop begins meanwhile it
// does not start when the slot frees (Stop starts no new job): it is put
// back without counting the attempt and runs after the restart.
func TestDirectStartDrainLeavesWaitingJob(t *testing.T) {
	b := newBackend(t, DriverSQLite)
	one := fastQueue("default")
	one.Concurrency = 1
	release := make(chan struct{})
	started := make(chan int64, 2)
	q, err := Open(context.Background(), b.config(one))
	if err != nil {
		t.Fatal(err)
	}
	q.Handle("k", func(_ context.Context, j Job) error {
		started <- j.ID
		<-release
		return nil
	})
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	first, _ := q.Enqueue(context.Background(), Params{Queue: "default", Kind: "k"})
	if got := <-started; got != first {
		t.Fatalf("job %d started, want %d", got, first)
	}
	waiting, _ := q.Enqueue(context.Background(), Params{Queue: "default", Kind: "k"})
	waitState(t, q, waiting, StateRunning) // fetched by River, waiting for the slot
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- q.Stop(ctx)
	}()
	eventually(t, 5*time.Second, func() error {
		if q.d.isOpen() {
			return errors.New("Stop has not begun")
		}
		return nil
	})
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-started:
		t.Fatalf("job %d started while Stop drained", got)
	default:
	}
	ran := make(chan Job, 2)
	q2 := b.open(t, nil, func(q *Queue) {
		q.Handle("k", func(_ context.Context, j Job) error { ran <- j; return nil })
	}, one)
	if in, _ := q2.Get(context.Background(), first); in.State != StateCompleted {
		t.Errorf("the running job after the drain: %s", in.State)
	}
	select {
	case j := <-ran:
		if j.ID != waiting || j.Attempt != 1 {
			t.Fatalf("after the restart: job %d attempt %d, want job %d attempt 1", j.ID, j.Attempt, waiting)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting job did not run after the restart")
	}
}

// Discarding a directly started job while it runs cancels its handler's
// context, as River does for the jobs it runs; the job ends cancelled,
// not retried.
func TestDirectStartDiscardCancelsRunningJob(t *testing.T) {
	b := newBackend(t, DriverSQLite)
	started := make(chan struct{}, 1)
	var runs atomic.Int32
	q := b.open(t, nil, func(q *Queue) {
		q.Handle("k", func(ctx context.Context, j Job) error {
			runs.Add(1)
			started <- struct{}{}
			<-ctx.Done()
			return context.Cause(ctx)
		})
	})
	id, err := q.Enqueue(context.Background(), Params{Queue: "default", Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if q.d.started.Load() != 1 {
		t.Fatal("the job was not started directly")
	}
	if _, err := q.Discard(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	in := waitState(t, q, id, StateCancelled)
	if len(in.Errors) != 1 || !strings.Contains(in.Errors[0].Error, "discarded") {
		t.Errorf("errors %+v", in.Errors)
	}
	time.Sleep(200 * time.Millisecond) // a retry would come within this (backoff 10 ms)
	if n := runs.Load(); n != 1 {
		t.Errorf("the discarded job ran %d times", n)
	}
}
